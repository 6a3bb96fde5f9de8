"""`TrainConfig`: the typed, nested configuration of a training run.

A run is described by a YAML file (a *recipe*, see `recipes/`) plus command-line overrides of the
form ``section.key=value`` (``optim.lr=3e-4``, ``batch.micro_batch_size=2``,
``model.overrides.num_hidden_layers=4``). Values are parsed according to the field's declared type
(``1e-4`` is a float even though YAML 1.1 would read it as a string; ``true``/``false`` are bools;
``null`` is None; a tuple takes ``0.9,0.95`` or ``[0.9, 0.95]``; a dict takes YAML). Anything the
config does not know, and batch arithmetic that cannot work, fails immediately with a message that
names the key (`ConfigError`).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .distill_config import DistillSection, validate_distill
from .sft_config import SFTSection, validate_sft


class ConfigError(ValueError):
    """A recipe or override that cannot describe a valid run; the message names the key."""


# ----------------------------------------------------------------------------- sections
@dataclass
class ModelSection:
    """What to train: a `preset` (see `sumi.PRESETS`) with field `overrides`, or `path`: a saved HF
    folder (e.g. an exported checkpoint) whose config and weights to continue from (`overrides`
    apply to its config too). When `path` is set the preset is ignored, so a recipe's preset can
    stay in place for a later stage (``model.path=EXPORT``). The optimizer starts fresh; to continue
    a run with its optimizer state, resume from its checkpoint instead."""

    preset: str | None = None
    path: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    attn_implementation: str = "sdpa"  # "sdpa" (default, exact off-by-one softmax via SDPA) or "eager"
    # "cpu": every rank builds the full model on the CPU from the same seed, then shards it
    # (identical on every rank; fine up to a few B parameters). "meta": build on the meta device,
    # shard, allocate only the local shards on the device and initialise them in place (big models).
    init: str = "cpu"


@dataclass
class SourceSection:
    """One named source of a data mixture (`data.sources`): a prepared dataset (kind "packed", a
    `sumi.data.prepare_dataset` folder at `path`), a `datasets` dataset streamed and tokenized on the
    fly (kind "stream", `sumi.data.StreamedDataset`: `path` is data files, a folder or
    ``hf:owner/name``; the documents are its `text_field`, tokenized with `tokenizer`, default the
    model folder's) or in-memory synthetic rows (kind "synthetic"; `grammar_seed` picks its toy
    "language", so two synthetic sources can differ)."""

    name: str = ""
    kind: str = "packed"  # "packed" | "stream" | "synthetic"
    path: str | None = None
    train_split: str = "train"
    val_split: str = "validation"
    text_field: str = "text"  # kind stream: the field holding each document's text
    tokenizer: str | None = None  # kind stream: a name or path for load_tokenizer; default model.path
    subset: str | None = None  # kind stream, a Hub dataset: its configuration (load_dataset's `name`)
    synthetic_kind: str = "pattern"
    synthetic_sequences: int = 0  # > 0: a finite pool of that many rows (it runs out like a dataset)
    grammar_seed: int = 0


@dataclass
class LrSegment:
    """The learning rate over one phase. "run" (default): the run-wide `optim` schedule over all the
    phases' steps. "constant": `start` after `warmup_steps` of linear warm-up. "linear" / "cosine":
    from `start` to `end`, reaching `end` at the phase's last step (e.g. WSD's decay in mid-training).
    `start` defaults to optim.lr, `end` to optim.min_lr."""

    schedule: str = "run"  # "run" | "constant" | "linear" | "cosine"
    start: float | None = None
    end: float | None = None
    warmup_steps: int = 0


@dataclass
class PhaseSection:
    """A stretch of training (`phases`): its length in `steps` or in `tokens` (rounded up to whole
    steps of global_batch_size x seq_len tokens), its `mixture` (source name -> token weight, summing
    to 1; empty: `data.mixture`) and its learning-rate segment."""

    name: str = ""
    steps: int = 0
    tokens: int = 0
    mixture: dict[str, float] = field(default_factory=dict)
    lr: LrSegment = field(default_factory=LrSegment)

    def num_steps(self, tokens_per_step: int) -> int:
        return self.steps or -(-self.tokens // tokens_per_step)


@dataclass
class DataSection:
    """Training data and the noise of spec §4.

    One dataset: `source` and `path`. A mixture: named `sources` and a `mixture` of token weights
    (per phase in `phases`, else `data.mixture`); `on_exhausted` says what a finite source does when
    the run has drawn all its windows: "epoch" (start a new pass, reshuffled for a prepared dataset,
    in stream order for a streamed one; logged) or "stop" (end the run before the first step that
    would reuse data)."""

    source: str = "synthetic"  # "packed" (a `sumi.data.prepare_dataset` folder at `path`) or "synthetic"
    path: str | None = None
    sources: list[SourceSection] = field(default_factory=list)
    mixture: dict[str, float] = field(default_factory=dict)
    on_exhausted: str = "epoch"  # "epoch" | "stop"
    seq_len: int = 128
    train_split: str = "train"
    val_split: str = "validation"
    # synthetic source (no files): "pattern" rows are learnable (arithmetic progressions mod V),
    # "random" rows are uniform noise; synthetic_sequences > 0 cycles a fixed pool of that many rows.
    synthetic_kind: str = "pattern"
    synthetic_sequences: int = 0
    # noise: t ~ U[sigmoid(-max_log_snr), sigmoid(-min_log_snr)]; a row gets one t per token with
    # probability per_token_fraction, else one t for the whole row.
    per_token_fraction: float = 0.5
    min_log_snr: float = -9.0
    max_log_snr: float = 9.0
    # clean-prefix conditioning: a row gets, with probability prefix_fraction, a clean prefix of
    # U{1..prefix_len} tokens that is never noised and excluded from the loss (a "prompt").
    prefix_fraction: float = 0.0
    prefix_len: int = 0


@dataclass
class OptimSection:
    """AdamW and the learning-rate schedule.

    Weight decay applies to every parameter with two or more dimensions (all linear weights, the
    token embedding and the untied head); RMSNorm weights (1-D) get none.
    Schedules (step s counted from 0): linear warm-up ``lr * (s+1) / warmup_steps`` for
    ``s < warmup_steps``; then "wsd": constant `lr` until the last ``round(decay_fraction * steps)``
    steps, which decay linearly to `min_lr` (reached at the last step); "cosine": half a cosine from
    `lr` to `min_lr` over the steps after the warm-up.
    """

    lr: float = 3e-4
    min_lr: float = 3e-5
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.1
    eps: float = 1e-8
    grad_clip: float = 1.0  # max global L2 norm; 0 disables clipping (the norm is still logged)
    schedule: str = "wsd"  # "wsd" | "cosine"
    warmup_steps: int = 0
    decay_fraction: float = 0.1  # WSD only


@dataclass
class BatchSection:
    """Sizes in sequences of `data.seq_len` tokens. Gradient accumulation steps are derived:
    ``global_batch_size / (micro_batch_size * world_size)``, which must be a whole number."""

    global_batch_size: int = 8
    micro_batch_size: int = 8  # per rank, per forward/backward


@dataclass
class EvalSection:
    """Validation NELBO (nats/token) on `batches` fixed validation batches of `batch_size` global
    rows, on a fixed t grid of `nelbo_samples` points (`nelbo_method`: "quadrature" is
    deterministic, "stratified" draws from a fixed seed)."""

    every: int = 0  # steps; 0 = only at the end (if at_end)
    at_end: bool = True
    batches: int = 2
    batch_size: int | None = None  # global rows per batch; default micro_batch_size * world_size
    nelbo_samples: int = 8
    nelbo_method: str = "quadrature"


@dataclass
class CheckpointSection:
    """DCP checkpoints at ``{dir}/step_XXXXXXX/`` (default dir: ``{out_dir}/checkpoints``)."""

    dir: str | None = None
    every: int = 0  # steps; 0 = only at the end (if at_end)
    at_end: bool = True
    keep_last: int = 3  # 0 keeps all
    resume: bool = False  # start from the newest complete, verified checkpoint in `dir` (if any)
    verify: str = "sha256"  # "sha256" (hash every file on resume) or "size" (sizes only: fast)


@dataclass
class LogSection:
    every: int = 1  # steps between JSONL/TensorBoard records
    jsonl: str | None = None  # default ``{out_dir}/train_log.jsonl``
    tensorboard: bool = False  # needs the `tensorboard` package; skipped with a warning otherwise
    tensorboard_dir: str | None = None  # default ``{out_dir}/tensorboard``
    progress: bool = True  # tqdm bar on rank 0


@dataclass
class TrainConfig:
    """A training run. See the section classes for each key; `recipes/` for complete examples."""

    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    batch: BatchSection = field(default_factory=BatchSection)
    eval: EvalSection = field(default_factory=EvalSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    log: LogSection = field(default_factory=LogSection)
    phases: list[PhaseSection] = field(default_factory=list)
    task: str = "pretrain"  # "pretrain" | "sft" (chat fine-tuning, `sft`) | "distill" (few-step student, `distill`)
    sft: SFTSection = field(default_factory=SFTSection)
    distill: DistillSection = field(default_factory=DistillSection)
    steps: int = 100  # with phases: their total (set by the phases; not a key to set)
    seed: int = 0
    out_dir: str = "runs/default"
    device: str = "auto"  # "auto" (cuda if available), "cpu" or "cuda"
    num_threads: int = 0  # torch.set_num_threads on each rank; 0 leaves torch's default
    dtype: str = "float32"  # "float32" | "bfloat16" (FSDP mixed precision on CUDA, autocast on CPU)
    activation_checkpointing: bool = False
    compile: bool = False  # torch.compile each decoder layer
    fused_loss: bool = True  # chunked head + loss (no [tokens, V] tensors kept for backward)
    loss_chunk_tokens: int = 0  # tokens per chunk of the fused loss; 0 = about 64 MiB of fp32 logits
    step_delay_s: float = 0.0  # seconds of pause after each step (to interrupt a run at a known point)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, *, where: str = "config") -> TrainConfig:
        config = _build(cls, data or {}, prefix="", where=where)
        if config.phases:
            config._set_steps_from_phases(data.get("steps") if isinstance(data, Mapping) else None, where)
        return config

    def _set_steps_from_phases(self, given: Any, where: str) -> None:
        """With phases, `steps` is their total; a recipe that also sets it must agree."""
        tokens_per_step = self.batch.global_batch_size * self.data.seq_len
        for i, p in enumerate(self.phases):
            if (p.steps > 0) == (p.tokens > 0):
                raise ConfigError(
                    f"config key 'phases.{i}' in {where}: give the phase's length as exactly one "
                    f"of steps or tokens (both > 0), got steps={p.steps}, tokens={p.tokens}"
                )
        total = sum(p.num_steps(max(1, tokens_per_step)) for p in self.phases)
        if given is not None and int(given) != total:
            raise ConfigError(
                f"config key 'steps' in {where}: the phases make the run {total} steps long, not "
                f"{given}; change phases.N.steps or phases.N.tokens instead"
            )
        self.steps = total

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
        """Load a recipe and apply ``key.sub=value`` overrides (later ones win)."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"recipe {str(path)!r} does not exist") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"recipe {str(path)!r} is not valid YAML: {e}") from None
        except UnicodeDecodeError as e:
            raise ConfigError(
                f"recipe {str(path)!r} is not UTF-8 text (a binary file?): {e.reason} at byte {e.start}"
            ) from None
        except IsADirectoryError:
            raise ConfigError(f"recipe {str(path)!r} is a folder, not a YAML file") from None
        if data is not None and not isinstance(data, dict):
            raise ConfigError(f"recipe {str(path)!r} must be a mapping of sections, got {type(data).__name__}")
        config = cls.from_dict(data, where=str(path))
        return config.with_overrides(overrides) if overrides else config

    def with_overrides(self, overrides: Sequence[str]) -> TrainConfig:
        data = self.to_dict()
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override {item!r} is not of the form key.sub=value")
            key, value = item.split("=", 1)
            key = key.strip()
            if key.startswith("--"):
                key = key[2:]
            _set_path(type(self), data, key.split("."), _RawString(value))
        return type(self).from_dict(data, where="overrides")

    def to_dict(self) -> dict[str, Any]:
        def conv(v):
            if isinstance(v, tuple):
                return list(v)
            if isinstance(v, dict):
                return {k: conv(x) for k, x in v.items()}
            return v

        out = {k: conv(v) for k, v in dataclasses.asdict(self).items()}
        if self.phases:
            del out["steps"]  # derived from the phases (and from the batch size, for lengths in tokens)
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    # ------------------------------------------------------------------ derived values
    def grad_accum_steps(self, world_size: int) -> int:
        """``global_batch_size / (micro_batch_size * world_size)``; ConfigError unless whole."""
        g, m = self.batch.global_batch_size, self.batch.micro_batch_size
        if g % (m * world_size):
            unit = m * world_size
            options = sorted({x for x in (g // unit * unit, (g // unit + 1) * unit) if x > 0})
            hint = f"use batch.global_batch_size={' or '.join(map(str, options))}"
            if g % world_size == 0:
                micro = max(d for d in range(1, min(m, g // world_size) + 1) if (g // world_size) % d == 0)
                hint += f", or batch.micro_batch_size={micro}"
            raise ConfigError(
                f"batch.global_batch_size={g} is not divisible by batch.micro_batch_size={m} x world size "
                f"{world_size} = {unit}: gradient accumulation needs a whole number of micro-batches per rank; "
                f"{hint}"
            )
        return g // (m * world_size)

    def eval_batch_size(self, world_size: int) -> int:
        b = self.eval.batch_size or self.batch.micro_batch_size * world_size
        if b % world_size:
            raise ConfigError(f"eval.batch_size={b} is not divisible by the world size {world_size}")
        return b

    def checkpoint_dir(self) -> Path:
        return Path(self.checkpoint.dir) if self.checkpoint.dir else Path(self.out_dir) / "checkpoints"

    def jsonl_path(self) -> Path:
        return Path(self.log.jsonl) if self.log.jsonl else Path(self.out_dir) / "train_log.jsonl"

    def tensorboard_dir(self) -> Path:
        return Path(self.log.tensorboard_dir) if self.log.tensorboard_dir else Path(self.out_dir) / "tensorboard"

    def validate(self, world_size: int | None = None) -> None:
        """Check value ranges and cross-field consistency (and the batch arithmetic for `world_size`)."""

        def need(ok: bool, key: str, msg: str) -> None:
            if not ok:
                raise ConfigError(f"config key {key!r}: {msg}")

        m, d, o, b = self.model, self.data, self.optim, self.batch
        need(
            m.preset is not None or m.path is not None,
            "model.preset",
            "name the model: model.preset (e.g. sumi-tiny) or model.path (a saved HF folder)",
        )
        if m.path is None:
            from ..configuration_sumi import PRESETS

            need(m.preset in PRESETS, "model.preset", f"unknown preset {m.preset!r}; choose one of {sorted(PRESETS)}")
        need(
            m.attn_implementation in ("sdpa", "eager"),
            "model.attn_implementation",
            f"must be 'sdpa' or 'eager', got {m.attn_implementation!r}",
        )
        need(m.init in ("cpu", "meta"), "model.init", f"must be 'cpu' or 'meta', got {m.init!r}")
        _check_model_overrides(m.overrides)
        need(d.source in ("packed", "synthetic"), "data.source", f"must be 'packed' or 'synthetic', got {d.source!r}")
        need(
            d.source != "packed" or bool(d.path), "data.path", "data.source=packed needs data.path (a prepared dataset)"
        )
        need(d.seq_len >= 2, "data.seq_len", f"must be >= 2, got {d.seq_len}")
        need(
            d.synthetic_kind in ("pattern", "random"),
            "data.synthetic_kind",
            f"must be 'pattern' or 'random', got {d.synthetic_kind!r}",
        )
        need(d.synthetic_sequences >= 0, "data.synthetic_sequences", "must be >= 0")
        need(
            0.0 <= d.per_token_fraction <= 1.0,
            "data.per_token_fraction",
            f"must be in [0, 1], got {d.per_token_fraction}",
        )
        need(d.min_log_snr < d.max_log_snr, "data.min_log_snr", "must be below data.max_log_snr")
        need(0.0 <= d.prefix_fraction <= 1.0, "data.prefix_fraction", f"must be in [0, 1], got {d.prefix_fraction}")
        need(
            0 <= d.prefix_len < d.seq_len, "data.prefix_len", f"must be in [0, seq_len={d.seq_len}), got {d.prefix_len}"
        )
        need(
            d.prefix_fraction == 0.0 or d.prefix_len >= 1,
            "data.prefix_len",
            "data.prefix_fraction > 0 needs data.prefix_len >= 1",
        )
        need(o.lr > 0 and math.isfinite(o.lr), "optim.lr", f"must be a positive number, got {o.lr}")
        need(0 <= o.min_lr <= o.lr, "optim.min_lr", f"must be in [0, optim.lr={o.lr}], got {o.min_lr}")
        need(all(0.0 <= x < 1.0 for x in o.betas), "optim.betas", f"both must be in [0, 1), got {o.betas}")
        need(o.weight_decay >= 0, "optim.weight_decay", "must be >= 0")
        need(o.eps > 0, "optim.eps", "must be > 0")
        need(o.grad_clip >= 0, "optim.grad_clip", "must be >= 0 (0 disables clipping)")
        need(o.schedule in ("wsd", "cosine"), "optim.schedule", f"must be 'wsd' or 'cosine', got {o.schedule!r}")
        need(o.warmup_steps >= 0, "optim.warmup_steps", "must be >= 0")
        need(0.0 <= o.decay_fraction <= 1.0, "optim.decay_fraction", f"must be in [0, 1], got {o.decay_fraction}")
        need(b.global_batch_size >= 1, "batch.global_batch_size", "must be >= 1")
        need(b.micro_batch_size >= 1, "batch.micro_batch_size", "must be >= 1")
        need(self.steps >= 1, "steps", f"must be >= 1, got {self.steps}")
        need(self.device in ("auto", "cpu", "cuda"), "device", f"must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        need(self.dtype in ("float32", "bfloat16"), "dtype", f"must be 'float32' or 'bfloat16', got {self.dtype!r}")
        need(self.num_threads >= 0, "num_threads", "must be >= 0 (0 = torch's default)")
        need(self.loss_chunk_tokens >= 0, "loss_chunk_tokens", "must be >= 0 (0 = automatic)")
        need(
            self.step_delay_s >= 0 and math.isfinite(self.step_delay_s),
            "step_delay_s",
            f"must be a number of seconds >= 0, got {self.step_delay_s}",
        )
        need(self.eval.every >= 0, "eval.every", "must be >= 0")
        need(self.eval.batches >= 1, "eval.batches", "must be >= 1")
        need(self.eval.nelbo_samples >= 1, "eval.nelbo_samples", "must be >= 1")
        need(
            self.eval.nelbo_method in ("quadrature", "stratified"),
            "eval.nelbo_method",
            f"must be 'quadrature' or 'stratified', got {self.eval.nelbo_method!r}",
        )
        need(self.eval.batch_size is None or self.eval.batch_size >= 1, "eval.batch_size", "must be >= 1")
        need(self.checkpoint.every >= 0, "checkpoint.every", "must be >= 0")
        need(self.checkpoint.keep_last >= 0, "checkpoint.keep_last", "must be >= 0")
        need(
            self.checkpoint.verify in ("sha256", "size"),
            "checkpoint.verify",
            f"must be 'sha256' or 'size', got {self.checkpoint.verify!r}",
        )
        need(self.log.every >= 1, "log.every", "must be >= 1")
        from .phases import check_phases

        check_phases(self)
        need(
            self.task in ("pretrain", "sft", "distill"),
            "task",
            f"must be 'pretrain', 'sft' or 'distill', got {self.task!r}",
        )
        if self.task == "sft":
            validate_sft(self, need)
        if self.task == "distill":
            validate_distill(self, need)
        if world_size is not None:
            self.grad_accum_steps(world_size)
            self.eval_batch_size(world_size)


# ----------------------------------------------------------------------------- parsing
class _RawString(str):
    """A value typed on the command line: parsed by the field's type (YAML values arrive typed)."""


def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _unknown(key: str, valid: Sequence[str], where: str) -> ConfigError:
    close = difflib.get_close_matches(key.rsplit(".", 1)[-1], list(valid), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    section = f"section {key.rsplit('.', 1)[0]!r}" if "." in key else "the top level"
    return ConfigError(f"unknown config key {key!r} in {where}{hint}; valid keys in {section}: {', '.join(valid)}")


def _build(cls, data: Mapping[str, Any], *, prefix: str, where: str):
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"config key {prefix.rstrip('.') or 'root'!r} in {where} must be a mapping, got {type(data).__name__}"
        )
    types_ = _field_types(cls)
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in types_:
            raise _unknown(full, list(types_), where)
        tp = types_[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value or {}, prefix=full + ".", where=where)
        else:
            kwargs[key] = _coerce(value, tp, full, where)
    return cls(**kwargs)


def _set_path(cls, data: dict, parts: list[str], value: Any, prefix: str = "") -> None:
    types_ = _field_types(cls)
    key = parts[0]
    full = prefix + ".".join(parts)
    if key not in types_:
        raise _unknown(prefix + key, list(types_), "overrides")
    tp = types_[key]
    if _origin(tp) is list and len(parts) > 1:  # phases.1.steps=5
        _set_list_item(tp, data, key, parts, value, prefix)
        return
    if dataclasses.is_dataclass(tp):
        if len(parts) == 1:
            raise ConfigError(f"config key {full!r} is a section; override one of its keys ({full}.KEY=value)")
        sub = data.get(key) or {}
        data[key] = sub
        _set_path(tp, sub, parts[1:], value, prefix=f"{prefix}{key}.")
    elif len(parts) > 1:
        if _origin(tp) is dict:  # model.overrides.hidden_size=128
            sub = dict(data.get(key) or {})
            sub[".".join(parts[1:])] = yaml.safe_load(value) if isinstance(value, _RawString) else value
            data[key] = sub
        else:
            raise ConfigError(f"unknown config key {full!r}: {prefix + key!r} is not a section")
    else:
        data[key] = value


def _set_list_item(tp, data: dict, key: str, parts: list[str], value: Any, prefix: str) -> None:
    items = data.get(key) or []
    full = f"{prefix}{key}.{parts[1]}"
    if not parts[1].isdigit() or int(parts[1]) >= len(items):
        raise ConfigError(
            f"config key {full!r} in overrides: {prefix + key!r} has {len(items)} entries; "
            f"write {prefix + key}.I.KEY=value with I in 0..{len(items) - 1}"
        )
    item_tp = typing.get_args(tp)[0]
    if len(parts) == 2 or not dataclasses.is_dataclass(item_tp):
        raise ConfigError(f"config key {full!r} is an entry of a list; override one of its keys ({full}.KEY=value)")
    _set_path(item_tp, items[int(parts[1])], parts[2:], value, prefix=f"{full}.")


def _origin(tp):
    return typing.get_origin(tp) or tp


def _coerce(value: Any, tp: Any, key: str, where: str) -> Any:
    """Convert `value` (typed YAML or a raw command-line string) to the declared type `tp`."""

    def fail(expected: str):
        return ConfigError(f"config key {key!r} in {where}: expected {expected}, got {value!r}")

    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.strip().lower() in ("null", "none", "~", "")):
            return None
        return _coerce(value, args[0], key, where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1"):
            return True
        if isinstance(value, str) and value.strip().lower() in ("false", "no", "off", "0"):
            return False
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise fail("a boolean (true/false)")
    if tp is int:
        if isinstance(value, bool):
            raise fail("an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                f = float(value.replace("_", ""))
            except ValueError:
                raise fail("an integer") from None
            if f.is_integer():
                return int(f)
        raise fail("an integer")
    if tp is float:
        if isinstance(value, bool):
            raise fail("a number")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise fail("a number") from None
        raise fail("a number")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise fail("a string")
    if origin is tuple:
        args = typing.get_args(tp)
        if isinstance(value, str):
            text = value.strip()
            value = yaml.safe_load(text) if text.startswith("[") else [v for v in text.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise fail(f"a list of {len(args)} values")
        return tuple(_coerce(v, a, key, where) for v, a in zip(value, args))
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, _RawString):
            value = yaml.safe_load(value)
        if value is None:
            return []
        if not isinstance(value, (list, tuple)):
            raise fail("a list")
        if dataclasses.is_dataclass(item_tp):
            return [_build(item_tp, v, prefix=f"{key}.{i}.", where=where) for i, v in enumerate(value)]
        return [_coerce(v, item_tp, f"{key}.{i}", where) for i, v in enumerate(value)]
    if origin is dict:
        if isinstance(value, _RawString):
            value = yaml.safe_load(value)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise fail("a mapping")
        return dict(value)
    raise fail(str(tp))  # pragma: no cover - every declared type is handled above


def _check_model_overrides(overrides: Mapping[str, Any]) -> None:
    from ..configuration_sumi import SumiConfig

    known = {"dtype", "rope_parameters"}
    for klass in SumiConfig.__mro__:
        known |= set(vars(klass).get("__annotations__", {}))
    for key in overrides:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown config key 'model.overrides.{key}': not a SumiConfig field{hint}")


__all__ = [
    "ConfigError",
    "TrainConfig",
    "ModelSection",
    "DataSection",
    "OptimSection",
    "BatchSection",
    "EvalSection",
    "CheckpointSection",
    "LogSection",
    "SourceSection",
    "PhaseSection",
    "LrSegment",
]
