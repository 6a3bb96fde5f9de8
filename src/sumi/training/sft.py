"""Supervised fine-tuning on chat conversations (``task: sft``): data, canvases, masking, LoRA, export.

The canvas of one conversation (``data.seq_len`` = S tokens, one bucket per run; conversations that
do not fit are dropped and counted):

    [ prompt turns | answer EOS | padding ... | EOS BOS | filler ... ]
      clean         noised+scored  (policy)     anchors   (policy)
      ^0            ^P             ^P+n         ^P+A      ^P+A+2     ^S

P is the prompt length (the conversation rendered by the chat template up to the last assistant
turn's header: exactly what ``apply_chat_template(..., add_generation_prompt=True)`` gives at
inference), n the answer's tokens with its EOS (the template's `{% generation %}` marks them),
A = `sft.answer_tokens` (0: ``S - P - 2``). The EOS,BOS anchors sit where `generate()` pins them
for ``max_new_tokens=A`` (with A = 0, where it pins them when the budget fills the canvas), so a
training canvas looks like a generation canvas. Padding and filler follow `sft.padding`:

* "eos" (default, as LLaDA's SFT): EOS tokens, noised and scored: the model learns to end the
  answer and to fill the rest with EOS; `.sequences` is cut at the first one.
* "none": EOS tokens, noised but not scored (the loss sees only the answer and its one EOS).
* "pad": the tokenizer's pad id, noised and scored.

Prompt tokens and the anchors are never noised and never scored, in every row of every batch.
With `sft.supervise: all`, earlier assistant turns (inside the prompt) are noised and scored too.

The loss is the pre-training loss (uniform GIDD, mean over the scored tokens of the global batch);
the noise of a step is drawn for the whole global batch from (seed, step) as in pre-training and
only applied at the noisable positions, so resume is exact. Rows are read in a seeded permutation
per epoch, a function of (seed, global row index).
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ..chat_template import check_assistant_marking, ensure_chat_template, render_conversation
from ..seeding import derive_seed

logger = logging.getLogger("sumi.training")

CONTEXT, TARGET, NOISE_ONLY = 0, 1, 2  # canvas roles: clean; noised + scored; noised, not scored
ROLES = ("user", "assistant", "system")


# ----------------------------------------------------------------------------- reading conversations
def _check_messages(messages: Any, where: str) -> list[dict[str, str]]:
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"{where}: 'messages' must be a non-empty list of {{role, content}} objects")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise ValueError(
                f'{where}: messages[{i}] must be {{"role": one of {ROLES}, "content": a string}}, got {str(m)[:80]}'
            )
    if messages[-1]["role"] != "assistant":
        raise ValueError(f"{where}: the last message must be the assistant's (the answer to learn)")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _read_jsonl(path: Path) -> list[list[dict[str, str]]]:
    opener = gzip.open if path.suffix == ".gz" else open
    out = []
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{n}: not valid JSON ({e.msg})") from None
                if not isinstance(record, dict):
                    raise ValueError(f"{path}:{n}: expected an object with a 'messages' list")
                out.append(_check_messages(record.get("messages"), f"{path}:{n}"))
    except (OSError, UnicodeDecodeError, EOFError) as e:
        raise ValueError(f"cannot read SFT data {str(path)!r}: {e}") from None
    return out


def _suite_conversations(spec: str) -> list[list[dict[str, str]]]:
    """``suite:SPLIT:PER_TASK[:SEED]``: the package's synthetic instruction suite (`sumi.sft_tasks`)."""
    from ..sft_tasks import generate_suite

    parts = spec.split(":")
    try:
        split, per_task, seed = parts[1], int(parts[2]), int(parts[3]) if len(parts) > 3 else 0
        if len(parts) > 4 or per_task < 1:
            raise ValueError
    except (IndexError, ValueError):
        raise ValueError(f"SFT data {spec!r}: expected suite:SPLIT:PER_TASK[:SEED], e.g. suite:train:2000") from None
    return [inst.messages() for inst in generate_suite(split, per_task, seed=seed)]


def read_conversations(
    spec: str, *, split: str = "train", config_name: str | None = None
) -> list[list[dict[str, str]]]:
    """Conversations from a JSONL file (``{"messages": [...]}`` per line, optionally .gz), a
    `datasets` dataset (name or folder; `config_name`, `split`) with a ``messages`` column, or
    ``suite:SPLIT:PER_TASK[:SEED]`` (the synthetic suite of `sumi.sft_tasks`)."""
    if spec.startswith("suite:"):
        return _suite_conversations(spec)
    path = Path(spec).expanduser()
    if path.is_file():
        return _read_jsonl(path)
    if spec.endswith((".jsonl", ".json", ".jsonl.gz")):
        raise ValueError(f"SFT data {spec!r} does not exist")
    import datasets

    try:
        ds = datasets.load_dataset(spec, config_name, split=split)
    except Exception as e:  # offline, unknown name, missing split: one line naming the source
        raise ValueError(f"cannot load the SFT dataset {spec!r} (split {split!r}): {type(e).__name__}: {e}") from None
    if "messages" not in ds.column_names:
        raise ValueError(f"SFT dataset {spec!r} has no 'messages' column (columns: {', '.join(ds.column_names)})")
    return [_check_messages(m, f"{spec}[{i}]") for i, m in enumerate(ds["messages"])]


def load_sft_tokenizer(config) -> Any:
    """The run's tokenizer (`sft.tokenizer`, else the model folder's; digits and letters split
    with `sft.split_digits` / `sft.split_letters`) with its chat template
    (`sft.chat_template`, else its own, else the default), checked to mark the assistant turn."""
    from ..tokenization import load_tokenizer, split_digits, split_letters

    name = config.sft.tokenizer or config.model.path
    tok = load_tokenizer(name)
    if config.sft.split_digits:
        split_digits(tok)
    if config.sft.split_letters:
        split_letters(tok)
    if config.sft.chat_template:
        tok.chat_template = Path(config.sft.chat_template).read_text(encoding="utf-8")
    ensure_chat_template(tok)
    check_assistant_marking(tok)
    return tok


# ----------------------------------------------------------------------------- canvases
def _segments(mask: list[int]) -> list[tuple[int, int]]:
    """[start, end) of each run of 1s in `mask`."""
    out, start = [], None
    for i, m in enumerate(list(mask) + [0]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            out.append((start, i))
            start = None
    return out


def build_canvas(
    ids: list[int],
    mask: list[int],
    *,
    seq_len: int,
    eos_id: int,
    bos_id: int,
    pad_id: int | None,
    padding: str = "eos",
    supervise: str = "last",
    answer_tokens: int = 0,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """One conversation's canvas (see the module docstring): (tokens `[S]` long, roles `[S]` int8),
    or None when it does not fit in `seq_len`. `ids` / `mask`: `render_conversation`'s output,
    ending with the last assistant turn."""
    segments = _segments(mask)
    if not segments:
        raise ValueError("the chat template marked no assistant tokens in a conversation")
    start, end = segments[-1]
    answer = ids[start:end] if ids[end - 1] == eos_id else ids[start:end] + [eos_id]
    P, n = start, len(answer)
    A = answer_tokens or seq_len - P - 2
    if n > A or P + A + 2 > seq_len:
        return None
    fill = pad_id if padding == "pad" else eos_id
    fill_role = NOISE_ONLY if padding == "none" else TARGET
    tokens = torch.full((seq_len,), fill, dtype=torch.long)
    roles = torch.full((seq_len,), fill_role, dtype=torch.int8)
    tokens[:P] = torch.tensor(ids[:P])
    roles[:P] = CONTEXT
    if supervise == "all":
        for s, e in segments[:-1]:
            roles[s:e] = TARGET
    tokens[P : P + n] = torch.tensor(answer)
    roles[P : P + n] = TARGET
    tokens[P + A], tokens[P + A + 1] = eos_id, bos_id
    roles[P + A : P + A + 2] = CONTEXT
    return tokens, roles


def build_canvases(conversations: list[list[dict[str, str]]], tokenizer, *, seq_len: int, sft) -> SFTExamples:
    """Every conversation that fits, as stacked canvases; logs how many were dropped."""
    pad_id = tokenizer.pad_token_id
    if sft.padding == "pad" and pad_id is None:
        raise ValueError("sft.padding=pad: the tokenizer has no pad token; use 'eos' or 'none'")
    tokens, roles, dropped = [], [], 0
    for conv in conversations[: sft.max_examples or None]:
        ids, mask = render_conversation(tokenizer, conv)
        canvas = build_canvas(
            ids,
            mask,
            seq_len=seq_len,
            eos_id=tokenizer.eos_token_id,
            bos_id=tokenizer.bos_token_id,
            pad_id=pad_id,
            padding=sft.padding,
            supervise=sft.supervise,
            answer_tokens=sft.answer_tokens,
        )
        if canvas is None:
            dropped += 1
            continue
        tokens.append(canvas[0])
        roles.append(canvas[1])
    if not tokens:
        raise ValueError(
            f"no conversation fits a canvas of data.seq_len={seq_len} tokens "
            f"(sft.answer_tokens={sft.answer_tokens}); raise data.seq_len"
        )
    if dropped:
        logger.warning(
            "SFT: %d of %d conversations do not fit data.seq_len=%d and are skipped",
            dropped,
            dropped + len(tokens),
            seq_len,
        )
    return SFTExamples(torch.stack(tokens), torch.stack(roles))


# ----------------------------------------------------------------------------- batches
@dataclass
class SFTBatch:
    """Clean canvases and their roles, `[b, S]` each; noised by `noised` (what `StepNoise.apply` calls)."""

    tokens: torch.Tensor
    roles: torch.Tensor

    def to(self, device, non_blocking: bool = False) -> SFTBatch:
        return SFTBatch(
            self.tokens.to(device, non_blocking=non_blocking), self.roles.to(device, non_blocking=non_blocking)
        )

    @property
    def shape(self) -> torch.Size:
        return self.tokens.shape

    def numel(self) -> int:
        return self.tokens.numel()

    def num_scored(self) -> int:
        return int((self.roles == TARGET).sum())

    def noised(self, replaced: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(z_t, labels, t): `replaced` (`[b, S]`, a uniform draw or -1) applied only where the role is
        noisable; labels are the clean tokens where scored, else -100."""
        x = self.tokens
        if replaced.shape != x.shape:
            raise ValueError(f"batch of shape {tuple(x.shape)} does not match the noise rows {tuple(replaced.shape)}")
        z = torch.where((self.roles != CONTEXT) & (replaced >= 0), replaced, x)
        labels = torch.where(self.roles == TARGET, x, torch.full_like(x, -100))
        return z, labels, t


@dataclass
class SFTExamples:
    tokens: torch.Tensor  # [N, S] long
    roles: torch.Tensor  # [N, S] int8

    def __len__(self) -> int:
        return self.tokens.shape[0]


class SFTSource:
    """The `BatchSource` of SFT: global row j is example ``perm_e[j mod N]`` of epoch ``e = j // N``,
    ``perm_e`` a permutation seeded by (seed, e) (``shuffle=False``: the file order)."""

    def __init__(self, examples: SFTExamples, *, shuffle: bool = True):
        self.examples = examples
        self.shuffle = shuffle
        self._perms: dict[tuple[int, int], torch.Tensor] = {}

    def _index(self, row: int, seed: int) -> int:
        N = len(self.examples)
        epoch, pos = divmod(row, N)
        if not self.shuffle:
            return pos
        key = (seed, epoch)
        if key not in self._perms:
            self._perms = {
                key: torch.randperm(
                    N, generator=torch.Generator().manual_seed(derive_seed("sft-order", seed, epoch) % (2**63))
                )
            }
        return int(self._perms[key][pos])

    def get_batch(
        self, k: int, seq_len: int, batch_size: int, *, seed: int, rank: int = 0, world_size: int = 1
    ) -> SFTBatch:
        if seq_len != self.examples.tokens.shape[1]:
            raise ValueError(
                f"SFT canvases have {self.examples.tokens.shape[1]} tokens, the trainer asks for {seq_len}"
            )
        first = k * batch_size * world_size + rank * batch_size
        idx = torch.tensor([self._index(first + i, seed) for i in range(batch_size)])
        return SFTBatch(self.examples.tokens[idx], self.examples.roles[idx])

    def batches(
        self, seq_len: int, batch_size: int, *, seed: int, rank: int = 0, world_size: int = 1, start_step: int = 0
    ) -> Iterator[SFTBatch]:
        k = int(start_step)
        while True:
            yield self.get_batch(k, seq_len, batch_size, seed=seed, rank=rank, world_size=world_size)
            k += 1


def sft_sources(config, val_source=None) -> tuple[SFTSource, Any]:
    """The train source and (unless given) the validation source of a ``task: sft`` run."""
    s = config.sft
    tok = load_sft_tokenizer(config)
    train = SFTSource(
        build_canvases(
            read_conversations(s.data, split=s.data_split, config_name=s.data_config),
            tok,
            seq_len=config.data.seq_len,
            sft=s,
        )
    )
    if val_source is None and s.val_data:
        convs = read_conversations(s.val_data, split=s.val_split, config_name=s.data_config)
        val_source = SFTSource(build_canvases(convs, tok, seq_len=config.data.seq_len, sft=s), shuffle=False)
    return train, val_source


def global_scored_tokens(micro_batches: list, fallback: int, device) -> int:
    """Scored tokens of a step's global batch: summed over ranks for batches that know them (SFT and
    distillation batches: their masks come with the data), else `fallback` (the noise's own count)."""
    if not micro_batches or not hasattr(micro_batches[0], "num_scored"):
        return fallback
    count = torch.tensor(float(sum(b.num_scored() for b in micro_batches)), dtype=torch.float64, device=device)
    if dist.is_initialized():
        dist.all_reduce(count)
    return int(count.item())


# ----------------------------------------------------------------------------- validation
@torch.no_grad()
def evaluate_sft(module, source: SFTSource, config, ctx) -> dict[str, float]:
    """Validation NELBO (nats per scored token) of the answers given the clean prompts: the
    estimator of `trainer.evaluate` with only the noisable positions corrupted and only the scored
    ones counted; the corruption of eval batch i, grid point k is drawn from (seed, i, k) for the
    whole global eval batch."""
    from ..diffusion import corrupt, nelbo_on_grid
    from .noise import eval_t_grid

    cfg = module.model.config
    V, S = cfg.vocab_size, config.data.seq_len
    gb = config.eval_batch_size(ctx.world_size)
    b = gb // ctx.world_size
    ts, ws = eval_t_grid(config)
    was_training = module.training
    module.eval()
    total = torch.zeros((), dtype=torch.float64, device=ctx.device)
    count = 0
    rows = slice(ctx.rank * b, (ctx.rank + 1) * b)
    for i in range(config.eval.batches):
        batch = source.get_batch(i, S, b, seed=0, rank=ctx.rank, world_size=ctx.world_size).to(ctx.device)

        def noise(k: int, t: float, batch=batch, i=i) -> torch.Tensor:
            g = torch.Generator(device=ctx.device).manual_seed(derive_seed("sft-eval-noise", config.seed, i, k))
            rep = corrupt(torch.full((gb, S), -1, dtype=torch.long, device=ctx.device), t, V, generator=g)[rows]
            return batch.noised(rep, torch.full((b, S), t))[0]

        labels = torch.where(batch.roles == TARGET, batch.tokens, torch.full_like(batch.tokens, -100))
        total += nelbo_on_grid(module, labels, ts, ws, noise, vocab_size=V, beta_is=cfg.uniform_diffusion_beta_is).sum()
        count += batch.num_scored()
    stats = torch.tensor([total.item(), float(count)], dtype=torch.float64, device=ctx.device)
    if dist.is_initialized():
        dist.all_reduce(stats)
    module.train(was_training)
    nelbo = float(stats[0] / max(1.0, float(stats[1])))
    return {"val_nelbo": nelbo, "val_ppl_bound": math.exp(min(nelbo, 700.0)), "val_tokens": int(stats[1])}


# ----------------------------------------------------------------------------- LoRA
def lora_config(sft):
    try:
        from peft import LoraConfig
    except ImportError:
        raise ValueError("sft.lora_r > 0 needs the `peft` package: pip install 'sumi[sft]'") from None
    targets = [t.strip() for t in sft.lora_targets.split(",") if t.strip()]
    return LoraConfig(r=sft.lora_r, lora_alpha=sft.lora_alpha, lora_dropout=sft.lora_dropout, target_modules=targets)


def apply_lora(model, sft) -> None:
    """Inject LoRA adapters in place (the model keeps its class) and freeze everything else."""
    from peft import inject_adapter_in_model

    try:
        inject_adapter_in_model(lora_config(sft), model)
    except ValueError as e:  # no module matched the targets
        raise ValueError(f"sft.lora_targets={sft.lora_targets!r}: {e}") from None
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)


def merge_lora(model) -> None:
    """Fold every LoRA adapter into its base weight and put the plain module back (in place)."""
    from peft.tuners.lora import LoraLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
            setattr(parent, name.rsplit(".", 1)[-1], module.get_base_layer())


# ----------------------------------------------------------------------------- export
def export_sft(
    ckpt_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    dtype: str | None = None,
    generation: dict[str, Any] | None = None,
) -> Path:
    """An SFT checkpoint as a model folder: weights (LoRA merged), config, the tokenizer with its
    chat template, and a generation config holding `generation` (generate() keyword -> value).
    Atomic (written aside and renamed into place); replaces only an earlier export."""
    import warnings

    import torch.distributed.checkpoint as dcp

    from ..atomic import atomic_folder, check_target
    from ..configuration_sumi import SumiConfig
    from ..modeling_sumi import SumiForMaskGeneration
    from ..tokenization import save_tokenizer
    from .checkpoint import read_trainer_state, resolve_checkpoint, why_not_an_export
    from .config import TrainConfig

    # a target it may not replace is refused before the weights are read, not after
    check_target(Path(out_dir), overwrite=True, may_replace=why_not_an_export, what="a model folder")
    latest = resolve_checkpoint(ckpt_dir)
    state = read_trainer_state(latest)
    config = TrainConfig.from_dict(state["config"], where=str(latest))
    model_config = SumiConfig.from_dict(dict(state["model_config"]))
    with torch.device("meta"):
        model = SumiForMaskGeneration(model_config)
    model = model.to_empty(device="cpu")
    if config.sft.lora_r:
        apply_lora(model, config.sft)
    sd = model.state_dict()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.distributed is disabled.*")
        dcp.load({"model": sd}, checkpoint_id=str(latest), no_dist=True)
    model.load_state_dict(sd)
    if config.sft.lora_r:
        merge_lora(model)
    if dtype is not None:
        model = model.to({"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype])
    tok = load_sft_tokenizer(config)
    with atomic_folder(out_dir, overwrite=True, may_replace=why_not_an_export, what="a model folder") as tmp:
        model.save_pretrained(tmp)
        save_tokenizer(tok, tmp)  # the template inside tokenizer_config.json
        # written directly: transformers' GenerationConfig rejects temperature 0 without do_sample,
        # while sumi's generate() reads temperature 0 as the argmax
        gc_path = tmp / "generation_config.json"
        gc_path.write_text(json.dumps({**json.loads(gc_path.read_text()), **(generation or {})}, indent=2) + "\n")
    return Path(out_dir)


__all__ = [
    "CONTEXT",
    "TARGET",
    "NOISE_ONLY",
    "read_conversations",
    "load_sft_tokenizer",
    "build_canvas",
    "build_canvases",
    "SFTBatch",
    "SFTExamples",
    "SFTSource",
    "sft_sources",
    "global_scored_tokens",
    "evaluate_sft",
    "apply_lora",
    "merge_lora",
    "export_sft",
]
