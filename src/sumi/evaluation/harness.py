"""The `sumi` model for lm-evaluation-harness 0.4.x.

Importing this module registers the model name "sumi" with lm-eval's registry
(`@register_model("sumi")`). lm-eval 0.4.13 has **no plugin discovery** (no entry points; its
`lm_eval.models.MODEL_MAPPING` is a fixed table), so a plain `lm_eval` process never imports sumi.
Run lm-eval's own, unchanged command line through one of these instead (same arguments):

    sumi-lm-eval --model sumi --model_args pretrained=PATH --tasks hellaswag,arc_easy
    python -m sumi.evaluation.harness --model sumi --model_args pretrained=PATH --tasks hellaswag
    sumi eval --tasks hellaswag,arc_easy --model PATH               # sumi's own front end

or, in Python, `import sumi.evaluation.harness` before `lm_eval.simple_evaluate(model="sumi", ...)`.

Under torchrun (`torchrun --nproc_per_node=8 -m sumi.evaluation.harness ...`) the model reports its
`rank` and `world_size`, so lm-eval gives each process its share of the documents and gathers the
metrics on rank 0; each process runs on `cuda:LOCAL_RANK` (`sumi.distributed_inference`).

`--model_args` (all optional except `pretrained`; defaults in `sumi.evaluation.core.EVAL_DEFAULTS`):
  pretrained           checkpoint folder, preset name (random weights!) or Hub id
  dtype, device, attn_implementation      as in `sumi.load` (lm-eval's --device/--batch_size work too)
  num_samples=16       NELBO t samples per continuation / window (one forward each)
  nelbo_method=stratified-logsnr          or stratified / quadrature
  seed=1234            all randomness derives from it and the request's tokens
  batch_size (lm-eval's --batch_size, default 1) requests per forward: a forward holds
                       batch_size x num_samples canvases (one per t); generation runs batch_size prompts
  canvas_length=2048   largest scoring canvas / rolling window, and the generation canvas
  add_bos=True         start every canvas with BOS
  greedy_check=False   compute is_greedy by a greedy denoise (else reported False)
  score_canvas=exact   or anchored: continuation + EOS/BOS + random tail up to canvas_length
  rolling_context=0    clean context tokens carried into each rolling window
  sampler=adaptive, num_denoising_steps=256, temperature=0, tokens_per_step (auto),
  schedule=linear, early_stop_patience (off; T = 0 runs stop on a cycle, exactly), max_gen_toks=256, gen_batch_size, top_k, top_p, min_p
  max_gen_toks=auto    canvases that size themselves: a probe forward sizes each answer, up to the
                       task's max_gen_toks (or auto_max_new_tokens); grow, grow_max, shrink,
                       shrink_patience, auto_probe_steps as in generate()
  chat=False           contexts are chat-template renderings (set by itself when lm-eval calls
                       `apply_chat_template`)
A task's `gen_kwargs` may override `until`, `max_gen_toks`, and (when `do_sample` is true)
`temperature`; any of the generation options above may also be passed through `--gen_kwargs`.

Chat templates: `--apply_chat_template` (and lm-eval's `--fewshot_as_multiturn`, on with it) render
each context with the tokenizer's chat template (sumi's default where it has none; a model without
a tokenizer has none), its markers encoded as the special tokens. Generation then answers the way
`sumi eval --chat` does (`SumiEvaluator.generate_chat`): the model's generation config, overridden
by the options given in `--model_args`; the task's `until` cuts the answer, its `max_gen_toks`
is the budget where neither the options nor the generation config set one.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model

from .core import EVAL_DEFAULTS, SumiEvaluator, cut_at_stop

logger = logging.getLogger(__name__)

_GEN_OVERRIDES = (
    "sampler",
    "num_denoising_steps",
    "tokens_per_step",
    "schedule",
    "canvas_length",
    "early_stop_patience",
    "top_k",
    "top_p",
    "min_p",
)


def task_manager_for(names: list[str], include_path: str | None = None):
    """lm-eval's `TaskManager` (with `include_path`), after checking that each of `names` is a
    task, group or tag it knows, or a YAML file: a ValueError lists the unknown ones (with close
    matches) before anything is evaluated."""
    import difflib
    import os

    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=include_path) if include_path else TaskManager()
    known = set(manager.all_tasks)
    unknown = [n for n in names if n not in known and not os.path.isfile(n)]
    if unknown:

        def hint(name: str) -> str:
            close = difflib.get_close_matches(name, known, n=3)
            return f"{name!r}" + (f" (did you mean {', '.join(close)}?)" if close else "")

        raise ValueError(
            f"unknown lm-eval task(s): {'; '.join(hint(n) for n in unknown)}; "
            "`lm_eval --tasks list` lists them (--include-path adds task YAMLs)"
        )
    return manager


def _batch_size(value) -> int | None:
    if value is None:
        return None
    if isinstance(value, int):
        return value
    text = str(value)
    if text.startswith("auto"):
        logger.warning(
            "sumi: batch_size=%s is not supported; using the default (%d)", text, EVAL_DEFAULTS["batch_size"]
        )
        return None
    return int(text)


class SumiLM(TemplateLM):
    """lm-eval model: NELBO log-likelihoods and anchored-canvas generation (see the module docstring)."""

    def __init__(
        self,
        pretrained: Any = None,
        *,
        dtype: str | None = None,
        device: str | None = None,
        attn_implementation: str | None = None,
        batch_size: Any = None,
        max_batch_size: int | None = None,
        peers: Any = None,
        chat: bool = False,
        **options: Any,
    ):
        super().__init__()
        self._peers = peers if peers is not None else _own_peers()
        self._chat = chat if isinstance(chat, bool) else str(chat).lower() in ("1", "true", "yes")
        if "steps" in options:
            options["num_denoising_steps"] = options.pop("steps")
        bs = _batch_size(batch_size)
        if bs is not None:
            # lm-eval's batch size counts requests; each scored request is `num_samples` canvases
            options["batch_size"] = bs * int(options.get("num_samples") or EVAL_DEFAULTS["num_samples"])
            options.setdefault("gen_batch_size", bs)
        self._progress = True
        if isinstance(pretrained, SumiEvaluator):
            self.sumi = pretrained
            self._progress = pretrained.progress  # e.g. `sumi eval --no-progress`
            self.sumi.set(**options)
        elif hasattr(pretrained, "config") and hasattr(pretrained, "generate"):  # a model object
            self.sumi = SumiEvaluator(pretrained, options.pop("tokenizer", None), **options)
        else:
            import torch

            from ..loading import model_source

            if pretrained is None:
                raise ValueError(
                    "the sumi model needs --model_args pretrained=PATH (a checkpoint folder, a Hub id, "
                    "or a preset name for random weights)"
                )
            if model_source(str(pretrained)) == "preset":
                logger.warning("sumi: %r is a preset with RANDOM weights: scores are chance-level", pretrained)
            from ..distributed_inference import rank_device

            if device in (None, "", "auto"):
                device = "cuda" if torch.cuda.is_available() else "cpu"
            elif str(device).startswith("cuda") and not torch.cuda.is_available():
                # lm-eval's --device defaults to "cuda"; on a CPU-only machine run on the CPU
                logger.warning("sumi: device %r requested but CUDA is not available; using the CPU", device)
                device = "cpu"
            device = rank_device(device, self._peers.env)  # under torchrun: cuda:LOCAL_RANK
            self.sumi = SumiEvaluator.from_pretrained(
                str(pretrained),
                dtype=dtype,
                device=device,
                attn_implementation=attn_implementation,
                progress=True,
                **options,
            )
        self.pretrained = str(pretrained) if isinstance(pretrained, str) else type(pretrained).__name__
        self._device = self.sumi.device
        self.tokenizer = None if self.sumi.byte_level else self.sumi.tokenizer

    # ---- data parallelism: lm-eval splits the documents by rank and gathers the metrics on rank 0
    @property
    def rank(self) -> int:
        return self._peers.rank

    @property
    def world_size(self) -> int:
        return self._peers.world_size

    def all_gather(self, tensor):
        import torch

        parts = [p.to(tensor.device) for p in self._peers.all_gather(tensor.detach().cpu())]
        return torch.stack(parts) if tensor.dim() == 0 else torch.cat(parts)

    def gather_object(self, obj, dst: int = 0):
        return self._peers.gather(obj, dst)

    def barrier(self) -> None:
        self._peers.barrier()

    # ---- TemplateLM plumbing
    @property
    def eot_token_id(self) -> int:
        return self.sumi.eos_id

    @property
    def prefix_token_id(self) -> int:
        # an empty context becomes [BOS] (a document start), not lm-eval's default EOS
        return self.sumi.bos_id if self.sumi.bos_id is not None else self.sumi.eos_id

    @property
    def max_length(self) -> int:
        return self.sumi.max_length

    @property
    def tokenizer_name(self) -> str:
        return "byte-level" if self.sumi.byte_level else getattr(self.sumi.tokenizer, "name_or_path", "sumi")

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        # with chat templates every context is a rendering whose markers are special tokens
        return self.sumi.encode_rendered(string) if self._chat else self.sumi.encode(string)

    # ---- chat templates (lm-eval's --apply_chat_template)
    def chat_template(self, chat_template: bool | str = False) -> str | None:
        if self.sumi.byte_level:
            return ""
        from ..chat_template import DEFAULT_CHAT_TEMPLATE

        return getattr(self.sumi.tokenizer, "chat_template", None) or DEFAULT_CHAT_TEMPLATE

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        self._chat = True
        return self.sumi.chat_text(chat_history, add_generation_prompt=add_generation_prompt)

    def tok_decode(self, tokens, **kwargs) -> str:
        return self.sumi.decode(tokens)

    def get_model_info(self) -> dict:
        return {"model": "sumi", "pretrained": self.pretrained, **self.sumi.info()}

    # ---- the three request types
    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        # remember which document each request belongs to: the choices of a document share their
        # random numbers (common random numbers), documents get independent ones
        ids = [(getattr(r, "task_name", None), getattr(r, "doc_id", None)) for r in requests]
        self._item_keys = ids if all(d is not None for _, d in ids) else None
        try:
            return super().loglikelihood(requests, disable_tqdm=disable_tqdm)
        finally:
            self._item_keys = None

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        self.sumi.progress = self._progress and not disable_tqdm
        keys = getattr(self, "_item_keys", None)
        if keys is not None and len(keys) != len(requests):
            keys = None
        results = self.sumi.loglikelihood_tokens([(ctx, cont) for _, ctx, cont in requests], keys)
        for (key, _, _), res in zip(requests, results):
            if key is not None:
                self.cache_hook.add_partial("loglikelihood", key, res)
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        self.sumi.progress = self._progress and not disable_tqdm
        texts = [req.args[0] for req in requests]
        scores = self.sumi.rolling_nelbo(texts)
        out = []
        for text, score in zip(texts, scores):
            ll = -score.nelbo
            self.cache_hook.add_partial("loglikelihood_rolling", (text,), ll)
            out.append(ll)
        return out

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        self.sumi.progress = self._progress and not disable_tqdm
        if self._chat:
            return self._generate_chat(requests)
        groups: dict[str, list[int]] = {}
        settings = []
        for i, req in enumerate(requests):
            context, gen_kwargs = req.args
            gen_kwargs = dict(gen_kwargs or {})
            until = gen_kwargs.pop("until", None)
            until = [until] if isinstance(until, str) else list(until or [])
            # the task's budget (with the max_gen_toks="auto" option: the probe's largest), else the option's
            task_budget = gen_kwargs.pop("max_gen_toks", None)
            max_gen_toks = None if task_budget is None else int(task_budget)
            overrides = {}
            if gen_kwargs.pop("do_sample", False) and "temperature" in gen_kwargs:
                overrides["temperature"] = float(gen_kwargs["temperature"])
            gen_kwargs.pop("temperature", None)
            for name in _GEN_OVERRIDES:
                if name in gen_kwargs:
                    overrides[name] = gen_kwargs.pop(name)
            if "steps" in gen_kwargs:
                overrides["num_denoising_steps"] = int(gen_kwargs.pop("steps"))
            if gen_kwargs:
                logger.debug("sumi: ignoring gen_kwargs %s", sorted(gen_kwargs))
            settings.append((context, until, max_gen_toks, overrides))
            groups.setdefault(repr((max_gen_toks, sorted(overrides.items()))), []).append(i)
        out: list[str | None] = [None] * len(requests)
        for idx in groups.values():
            _, _, max_gen_toks, overrides = settings[idx[0]]
            canvas = overrides.pop("canvas_length", None)
            old_canvas, old_given = self.sumi.options["canvas_length"], set(self.sumi.given)
            if canvas is not None:
                self.sumi.set(canvas_length=int(canvas))
            try:
                texts = self.sumi.generate([settings[i][0] for i in idx], max_gen_toks=max_gen_toks, **overrides)
            finally:
                self.sumi.options["canvas_length"], self.sumi.given = old_canvas, old_given
            for i, text in zip(idx, texts):
                text = cut_at_stop(text, settings[i][1])
                out[i] = text
                self.cache_hook.add_partial("generate_until", requests[i].args, text)
        return out  # type: ignore[return-value]

    def _generate_chat(self, requests) -> list[str]:
        """Answers to chat-rendered contexts (`SumiEvaluator.generate_chat`), cut at each task's `until`."""
        groups: dict[int | None, list[int]] = {}
        untils = []
        for i, req in enumerate(requests):
            gen_kwargs = dict(req.args[1] or {})
            until = gen_kwargs.get("until")
            untils.append([until] if isinstance(until, str) else list(until or []))
            budget = gen_kwargs.get("max_gen_toks")
            groups.setdefault(None if budget is None else int(budget), []).append(i)
        out: list[str | None] = [None] * len(requests)
        for budget, idx in groups.items():
            prompts = [self.sumi.encode_rendered(requests[i].args[0]) for i in idx]
            for i, text in zip(idx, self.sumi.generate_chat(prompts, default_gen_toks=budget)):
                out[i] = text = cut_at_stop(text, untils[i])
                self.cache_hook.add_partial("generate_until", requests[i].args, text)
        return out  # type: ignore[return-value]


def _own_peers():
    """The processes of a launched `sumi-lm-eval` run (one when not launched); closed at exit."""
    import atexit

    from ..distributed_inference import Peers

    peers = Peers()
    atexit.register(peers.close)
    return peers


def main(argv: list[str] | None = None) -> None:
    """`sumi-lm-eval` / `python -m sumi.evaluation.harness`: lm-eval's CLI, unchanged, with "sumi" registered."""
    from lm_eval.__main__ import cli_evaluate

    if argv is not None:
        sys.argv = [sys.argv[0]] + list(argv)
    cli_evaluate()


if __name__ != "__main__":  # `python -m` runs this file as __main__: register the importable class instead
    register_model("sumi")(SumiLM)

__all__ = ["SumiLM", "main", "task_manager_for"]

if __name__ == "__main__":  # pragma: no cover
    from sumi.evaluation.harness import main as _main

    _main()
