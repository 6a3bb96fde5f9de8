"""`SumiEvaluator`: the model-facing half of evaluation, shared by the lm-eval plugin
(`sumi.evaluation.harness`) and the offline runner (`sumi eval --offline`).

Three operations, on text or token ids:

* **loglikelihood** of a continuation given a context: `-NELBO(continuation | context)` on the
  canvas `[BOS] + context + continuation`, with only the continuation noised (`nelbo_scores`).
  No EOS/BOS anchor follows the continuation: lm-eval's question is `p(continuation | context)`,
  not "the document ends here", and a training canvas ends at an arbitrary window cut, so a canvas
  that simply stops is in-distribution. `BOS` starts the canvas because a prompt starts a document
  (as in `sumi generate`). Canvases longer than `canvas_length` lose context from the left.
  `is_greedy` is False unless `greedy_check=True`, which runs a greedy denoise of the continuation
  (canvas = context + len(continuation) free positions + EOS/BOS anchors) and compares tokens.
* **rolling NELBO** of whole documents (perplexity, `loglikelihood_rolling`): `[BOS] + doc` cut
  into canvas-sized windows (`rolling_windows`), each window's new tokens noised, earlier tokens
  of its canvas clean; every token is scored once.
* **generation** with the anchored fill of spec §9: prompt, then `max_gen_toks` free positions,
  EOS + BOS anchors, random tail up to `canvas_length` (2048); `adaptive` sampler at temperature 0
  by default; the output is cut at the first EOS, then at the first stop string.
* **chat generation** (`chat_prompt`, `generate_chat`; `sumi eval --chat`): a conversation rendered
  by the tokenizer's chat template (else `sumi.chat_template.DEFAULT_CHAT_TEMPLATE`, as `sumi chat`
  does) with the generation prompt, answered the way `sumi chat` answers: `generate()` with the
  model's generation config, overridden only by the options given explicitly (to the constructor
  or `set`, see `chat_options`), not by the defaults below.

Defaults (`EVAL_DEFAULTS`) and why:
  num_samples=16, nelbo_method="stratified-logsnr": unbiased and low-variance (see `nelbo.t_grid`);
    the choices of a question share their random numbers, so 16 samples separate them well.
  canvas_length=2048: the paper's generation canvas and its best perplexity (spec §10).
  sampler="adaptive", temperature=0: the paper's generation protocol; T = 0 is the deterministic
    (greedy-decoding) setting lm-eval tasks ask for (`do_sample: false`).
  num_denoising_steps=256, tokens_per_step=None (= ceil(canvas_length / steps), so the sampler can
    rewrite every canvas position at least once; the official default of 1 token per step leaves
    most of a 2048 canvas random, spec §6).
  early_stop_patience=None (off); adaptive/greedy at T = 0 always run with `stop_on_cycle` (a row
    leaves once its canvas repeats a recent state, with the canvas the remaining steps would end
    on, so stopping never changes the result).
  max_gen_toks=256 (lm-eval's default); seed=1234.
  max_gen_toks="auto": canvases that size themselves (generate()'s `max_new_tokens="auto"`): a probe
    forward sizes each answer to where the model puts EOS, up to `auto_max_new_tokens`, by default the
    answer budget the request would have had (the task's). `grow` / `shrink` (and `grow_max`,
    `shrink_patience`, `auto_probe_steps`) pass on to generate() when set (None: generate()'s
    defaults). Every generation call can report what each answer cost (`costs`: its final budget
    and the canvas positions it fed to the forwards, see `sumi.chat_template.answer_cost`).
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..chat_template import answer_cost, answer_prompts, chat_prompt_ids, ensure_chat_template
from ..generation_sumi import is_deterministic
from ..tokenization import encode_user_text
from .nelbo import (
    DEFAULT_NELBO_METHOD,
    NELBO_METHODS,
    ScoreRequest,
    count_canvases,
    derive_seed,
    nelbo_scores,
    rolling_windows,
)

logger = logging.getLogger(__name__)

EVAL_DEFAULTS: dict[str, Any] = dict(
    num_samples=16,
    nelbo_method=DEFAULT_NELBO_METHOD,
    seed=1234,
    batch_size=8,
    canvas_length=2048,
    add_bos=True,
    greedy_check=False,
    score_canvas="exact",
    rolling_context=0,
    # generation
    sampler="adaptive",
    num_denoising_steps=256,
    temperature=0.0,
    tokens_per_step=None,
    schedule="linear",
    early_stop_patience=None,
    max_gen_toks=256,
    gen_batch_size=None,
    top_k=None,
    top_p=None,
    min_p=None,
    # canvases that size themselves (max_gen_toks="auto" turns the probe on); None: generate()'s defaults
    auto_max_new_tokens=None,
    auto_probe_steps=None,
    grow=None,
    grow_max=None,
    shrink=None,
    shrink_patience=None,
)

# The options of canvases that size themselves that generation passes to generate() when set.
SIZING_OPTIONS = ("auto_probe_steps", "grow", "grow_max", "shrink", "shrink_patience")

# Evaluation options that chat generation passes on to generate() when given explicitly, by
# generate()'s names; the others come from the model's generation config.
CHAT_OPTIONS = {
    "sampler": "sampler",
    "num_denoising_steps": "num_denoising_steps",
    "temperature": "temperature",
    "tokens_per_step": "tokens_per_step",
    "schedule": "schedule",
    "early_stop_patience": "early_stop_patience",
    "top_k": "top_k",
    "top_p": "top_p",
    "min_p": "min_p",
    "canvas_length": "canvas_length",
    "max_gen_toks": "max_new_tokens",
    "auto_max_new_tokens": "auto_max_new_tokens",
    **{name: name for name in SIZING_OPTIONS},
}


def _first_budget(*candidates: Any) -> tuple[int, bool]:
    """`(budget, auto)` from answer budgets in order of precedence (None or 0: not set): the first
    integer, and whether "auto" came before it (the probe then sizes the answer, up to that budget)."""
    auto = False
    for value in candidates:
        if value == "auto":
            auto = True
        elif value:
            return int(value), auto
    return int(EVAL_DEFAULTS["max_gen_toks"]), auto


@dataclass
class RollingScore:
    """A document's rolling NELBO: total nats, scored tokens, and per-window (nats, tokens, bytes)."""

    nelbo: float
    num_tokens: int
    windows: list[tuple[float, int, int]]


class SumiEvaluator:
    """A loaded model + tokenizer + the evaluation options (see the module docstring)."""

    def __init__(self, model, tokenizer=None, *, progress: bool = False, name: str | None = None, **options: Any):
        unknown = set(options) - set(EVAL_DEFAULTS)
        if unknown:
            raise ValueError(f"unknown evaluation option(s) {sorted(unknown)}; the options are {sorted(EVAL_DEFAULTS)}")
        self.model = model.eval()
        cfg = model.config
        self.config = cfg
        self.options = dict(EVAL_DEFAULTS)
        # how many inputs did not fit the canvas and lost their oldest tokens (reported per task)
        self.truncated = {"contexts": 0, "prompts": 0}
        self.options.update({k: v for k, v in options.items() if v is not None})
        # the options given explicitly (not defaults): what chat generation overrides (`chat_options`)
        self.given = {k for k, v in options.items() if v is not None}
        self.progress = progress
        self.name = name or getattr(cfg, "_name_or_path", None) or None
        self.byte_level = False
        if tokenizer is None:
            from ..tokenization import ByteTokenizer

            if cfg.vocab_size < 256:
                raise ValueError(
                    f"the model has no tokenizer and its vocabulary ({cfg.vocab_size} ids) is too small "
                    "for the byte-level fallback (needs >= 256)"
                )
            tokenizer = ByteTokenizer(cfg.vocab_size, cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id)
            self.byte_level = True
        self.tokenizer = tokenizer
        # whose template renders chat prompts: the tokenizer's, sumi's default, or none (no tokenizer)
        self.chat_template_source = (
            None if self.byte_level else "tokenizer" if getattr(tokenizer, "chat_template", None) else "default"
        )
        self.validate()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        *,
        dtype=None,
        device=None,
        attn_implementation=None,
        progress: bool = False,
        **options: Any,
    ) -> SumiEvaluator:
        """Load with `sumi.load` (a folder, a preset with random weights, or a Hub id)."""
        from ..loading import load

        model, tok = load(name_or_path, dtype=dtype, device=device, attn_implementation=attn_implementation)
        return cls(model, tok, progress=progress, name=str(name_or_path), **options)

    def validate(self) -> None:
        o = self.options
        if o["nelbo_method"] not in NELBO_METHODS:
            raise ValueError(f"nelbo_method must be one of {NELBO_METHODS}, got {o['nelbo_method']!r}")
        for name in ("num_samples", "batch_size", "canvas_length", "num_denoising_steps"):
            if not isinstance(o[name], int) or o[name] < 1:
                raise ValueError(f"{name} must be a positive integer, got {o[name]!r}")
        if o["max_gen_toks"] != "auto" and (not isinstance(o["max_gen_toks"], int) or o["max_gen_toks"] < 1):
            raise ValueError(f"max_gen_toks must be a positive integer or 'auto', got {o['max_gen_toks']!r}")
        for name in ("auto_max_new_tokens", "auto_probe_steps", "grow_max", "shrink_patience"):
            low = 0 if name == "shrink_patience" else 1
            if o[name] is not None and (not isinstance(o[name], int) or isinstance(o[name], bool) or o[name] < low):
                raise ValueError(f"{name} must be an integer >= {low} (or None), got {o[name]!r}")
        for name in ("grow", "shrink"):
            if o[name] not in (None, True, False):
                raise ValueError(f"{name} must be true or false (or None), got {o[name]!r}")
        if o["tokens_per_step"] is not None and (not isinstance(o["tokens_per_step"], int) or o["tokens_per_step"] < 1):
            raise ValueError(f"tokens_per_step must be a positive integer or None (auto), got {o['tokens_per_step']!r}")
        if not isinstance(o["rolling_context"], int) or o["rolling_context"] < 0:
            raise ValueError(f"rolling_context must be an integer >= 0, got {o['rolling_context']!r}")
        if o["score_canvas"] not in ("exact", "anchored"):
            raise ValueError(f"score_canvas must be 'exact' or 'anchored', got {o['score_canvas']!r}")
        if o["sampler"] not in ("adaptive", "ancestral", "greedy"):
            raise ValueError(f"sampler must be adaptive, ancestral or greedy, got {o['sampler']!r}")
        if not isinstance(o["temperature"], (int, float)) or o["temperature"] < 0:
            raise ValueError(f"temperature must be a number >= 0, got {o['temperature']!r}")

    def set(self, **options: Any) -> None:
        """Change options (e.g. `canvas_length` for a canvas-length study); they count as given."""
        unknown = set(options) - set(EVAL_DEFAULTS)
        if unknown:
            raise ValueError(f"unknown evaluation option(s) {sorted(unknown)}")
        self.options.update(options)
        self.given |= {k for k, v in options.items() if v is not None}
        self.validate()

    def __getattr__(self, name: str):
        options = self.__dict__.get("options")
        if options is not None and name in options:
            return options[name]
        raise AttributeError(name)

    # ------------------------------------------------------------------ tokens
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def bos_id(self) -> int | None:
        return self.config.bos_token_id

    @property
    def eos_id(self) -> int | None:
        return self.config.eos_token_id

    @property
    def max_length(self) -> int:
        """The largest canvas: `canvas_length` capped at `max_position_embeddings`."""
        return min(int(self.options["canvas_length"]), int(self.config.max_position_embeddings))

    def encode(self, text: str) -> list[int]:
        return encode_user_text(self.tokenizer, text)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """lm-eval's rule: trailing spaces of the context move to the continuation; the pair is
        encoded as a whole and split after the context's tokens (so BPE merges match the text)."""
        if not context:
            return [], self.encode(continuation)
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        whole = self.encode(context + continuation)
        ctx = self.encode(context)
        return ctx, whole[len(ctx) :]

    def _prefix(self, ids: Sequence[int]) -> list[int]:
        ids = list(ids)
        if self.options["add_bos"] and self.bos_id is not None and (not ids or ids[0] != self.bos_id):
            ids = [self.bos_id] + ids
        return ids

    def _bar(self, total: int, desc: str):
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, disable=not self.progress, file=sys.stderr, dynamic_ncols=True, leave=False)

    # ------------------------------------------------------------------ likelihood
    def _nelbo(self, requests: Sequence[ScoreRequest], desc: str) -> list[float]:
        o = self.options
        with self._bar(count_canvases(requests, o["num_samples"]), desc) as bar:
            return nelbo_scores(
                self.model,
                requests,
                num_samples=o["num_samples"],
                method=o["nelbo_method"],
                seed=o["seed"],
                batch_size=o["batch_size"],
                progress=bar.update,
            )

    def loglikelihood_tokens(
        self, pairs: Sequence[tuple[Sequence[int], Sequence[int]]], keys: Sequence[Any] | None = None
    ) -> list[tuple[float, bool]]:
        """`(log-likelihood, is_greedy)` of each `(context_ids, continuation_ids)`: `-NELBO` of the
        continuation on the canvas `[BOS] + context + continuation` (context left-truncated to fit).

        `keys`: one hashable per pair naming the *item* it belongs to (e.g. `(task, doc_id)`): all
        pairs of an item share their random numbers (t grid, noise draws), items get independent
        ones. Without keys, pairs with the same clean context share them.

        With `score_canvas="anchored"` the canvas continues, like a generation canvas, with the
        EOS + BOS anchors and uniform random tokens up to `canvas_length` (clean context, not
        scored; seeded by the context): dearer, but the layout generation and training use."""
        L = self.max_length
        anchored = self.options["score_canvas"] == "anchored"
        reserve = 2 if anchored else 0
        V = self.config.vocab_size
        if keys is not None and len(keys) != len(pairs):
            raise ValueError(f"{len(keys)} keys for {len(pairs)} pairs")
        requests = []
        for n, (ctx, cont) in enumerate(pairs):
            ctx, cont = self._prefix(ctx), list(cont)
            if len(cont) > L - 1 - reserve:
                logger.warning(
                    "a continuation of %d tokens does not fit a canvas of %d: scoring its last %d",
                    len(cont),
                    L,
                    L - 1 - reserve,
                )
                cont = cont[-(L - 1 - reserve) :]
            if len(ctx) + len(cont) + reserve > L:
                ctx = ctx[len(ctx) + len(cont) + reserve - L :]
                self.truncated["contexts"] += 1
            tail: list[int] = []
            if anchored:
                g = torch.Generator().manual_seed(derive_seed(self.options["seed"], "tail", tuple(ctx)))
                fill = L - len(ctx) - len(cont) - 2
                tail = [self.eos_id, self.bos_id] + torch.randint(0, V, (fill,), generator=g).tolist()
            if keys is not None:
                key = ("item", keys[n])
            else:
                key = (tuple(ctx), len(ctx)) if anchored else None
            requests.append(ScoreRequest(tuple(ctx + cont + tail), len(ctx), len(ctx) + len(cont), key=key))
        nelbos = self._nelbo(requests, "NELBO")
        greedy = self._greedy_matches(pairs) if self.options["greedy_check"] else [False] * len(pairs)
        return [(-n, g) for n, g in zip(nelbos, greedy)]

    def loglikelihood(
        self, pairs: Sequence[tuple[str, str]], keys: Sequence[Any] | None = None
    ) -> list[tuple[float, bool]]:
        """Text version of `loglikelihood_tokens` (lm-eval's pair encoding)."""
        return self.loglikelihood_tokens([self.encode_pair(c, x) for c, x in pairs], keys)

    def _greedy_matches(self, pairs) -> list[bool]:
        """Whether greedy denoising of `len(continuation)` free positions reproduces the continuation."""
        out = []
        steps = self.options["num_denoising_steps"]
        for ctx, cont in pairs:
            cont = list(cont)
            if not cont:
                out.append(True)
                continue
            prompt = self._prefix(ctx)
            room = self.max_length - 2 - len(cont)
            if room < 1:
                out.append(False)
                continue
            prompt = prompt[-room:]
            L = len(prompt) + len(cont) + 2
            seed = derive_seed(self.options["seed"], "greedy", tuple(prompt))
            res = self.model.generate(
                torch.tensor([prompt], device=self.device),
                max_new_tokens=len(cont),
                num_denoising_steps=steps,
                sampler="greedy",
                canvas_length=L,
                seed=seed % (2**63),
                trim_at_eos=False,
                stop_on_cycle=True,
            )
            gen = res.canvas[0, len(prompt) : len(prompt) + len(cont)].tolist()
            out.append(gen == cont)
        return out

    def rolling_nelbo_tokens(self, docs: Sequence[Sequence[int]]) -> list[RollingScore]:
        """The NELBO of each whole document (token ids), over canvas-sized windows."""
        L = self.max_length
        bos = self.options["add_bos"] and self.bos_id is not None
        context = min(self.options["rolling_context"], L - 1)
        requests, owners = [], []
        for d, doc in enumerate(docs):
            U = ([self.bos_id] if bos else []) + list(doc)
            for c0, a, b in rolling_windows(len(doc), L, bos=bos, context=context):
                # keyed by the window's own tokens: windows (and documents) get independent random
                # numbers, so their errors average out and the bootstrap over windows is honest
                requests.append(ScoreRequest(tuple(U[c0:b]), a - c0, b - c0, key=("window", tuple(U[c0:b]), a - c0)))
                owners.append((d, a, b))
        nelbos = self._nelbo(requests, "rolling NELBO")
        out = [RollingScore(0.0, 0, []) for _ in docs]
        for (d, a, b), n in zip(owners, nelbos):
            U_off = 1 if bos else 0
            window_ids = list(docs[d])[a - U_off : b - U_off]
            nbytes = len(self.decode(window_ids).encode("utf-8"))
            out[d].nelbo += n
            out[d].num_tokens += b - a
            out[d].windows.append((n, b - a, nbytes))
        return out

    def rolling_nelbo(self, texts: Sequence[str]) -> list[RollingScore]:
        return self.rolling_nelbo_tokens([self.encode(t) for t in texts])

    # ------------------------------------------------------------------ generation
    def _fit_prompt(
        self, prompt: list[int], max_gen_toks: int, L: int | None = None, anchors: int = 2
    ) -> tuple[list[int], int]:
        """Left-truncate a prompt so that the answer keeps at least min(max_gen_toks, L // 2)
        positions of an L-token canvas (default: `max_length`) with its `anchors`; returns (prompt, budget)."""
        L = self.max_length if L is None else L
        reserve = max(1, min(max_gen_toks, L // 2))
        max_prompt = max(1, L - anchors - reserve)
        if len(prompt) > max_prompt:
            prompt = prompt[-max_prompt:]
            self.truncated["prompts"] += 1
        return prompt, max(1, min(max_gen_toks, L - anchors - len(prompt)))

    def generate_tokens(
        self,
        prompts: Sequence[Sequence[int]],
        *,
        max_gen_toks: int | str | None = None,
        auto: bool | None = None,
        desc: str = "generating",
        costs: list[dict[str, int]] | None = None,
        **overrides: Any,
    ) -> list[list[int]]:
        """Generated ids after each prompt (cut at the first EOS), anchored canvas of spec §9.

        The answer budget: `max_gen_toks`, else the `max_gen_toks` option. With `auto` (None: when
        either of them is "auto") a probe forward sizes each answer, up to `auto_max_new_tokens`, else
        that budget (the option's integer, else 256). `costs`: when given, one `answer_cost` per
        prompt is appended to it, in prompt order.

        Every row gets its own seed (derived from the prompt) and `align_rows=True`, so a prompt's
        output does not depend on the batch it runs in. `overrides` may set any generation option.
        """
        o = {**self.options, **{k: v for k, v in overrides.items() if v is not None}}
        unknown = set(overrides) - set(EVAL_DEFAULTS)
        if unknown:
            raise ValueError(f"unknown generation option(s) {sorted(unknown)}")
        max_gen_toks, said_auto = _first_budget(max_gen_toks, o["max_gen_toks"])
        auto = said_auto or o["max_gen_toks"] == "auto" if auto is None else auto
        if auto:
            max_gen_toks = int(o["auto_max_new_tokens"] or max_gen_toks)
        L = self.max_length
        steps = int(o["num_denoising_steps"])
        k = o["tokens_per_step"] or math.ceil(L / steps)
        patience = o["early_stop_patience"]
        cycles = is_deterministic(o["sampler"], o["temperature"])
        budget: dict[str, Any] = (
            dict(max_new_tokens="auto", auto_max_new_tokens=max_gen_toks) if auto else dict(max_new_tokens=max_gen_toks)
        )
        budget.update({name: o[name] for name in SIZING_OPTIONS if o[name] is not None})
        fitted = [self._fit_prompt(self._prefix(p), max_gen_toks) for p in prompts]
        bs = int(o["gen_batch_size"] or o["batch_size"])
        order = sorted(range(len(fitted)), key=lambda i: -len(fitted[i][0]))
        out: list[list[int] | None] = [None] * len(fitted)
        spent: list[dict[str, int]] = [{} for _ in fitted]
        pad = self.config.pad_token_id if self.config.pad_token_id is not None else 0
        with self._bar(len(fitted), desc) as bar:
            for b0 in range(0, len(order), bs):
                idx = order[b0 : b0 + bs]
                P = max(len(fitted[i][0]) for i in idx)
                ids = torch.full((len(idx), P), pad, dtype=torch.long)
                mask = torch.zeros((len(idx), P), dtype=torch.long)
                for r, i in enumerate(idx):
                    p = fitted[i][0]
                    ids[r, P - len(p) :] = torch.tensor(p)
                    mask[r, P - len(p) :] = 1
                seeds = [derive_seed(o["seed"], "generate", tuple(fitted[i][0])) for i in idx]
                res = self.model.generate(
                    ids.to(self.device),
                    attention_mask=mask.to(self.device),
                    num_denoising_steps=steps,
                    seed=seeds,
                    sampler=o["sampler"],
                    schedule=o["schedule"],
                    temperature=float(o["temperature"]),
                    tokens_per_step=int(k),
                    canvas_length=L,
                    anchor_eosbos=True,
                    trim_at_eos=True,
                    align_rows=True,
                    early_stop_patience=patience,
                    stop_on_cycle=cycles,
                    top_k=o["top_k"],
                    top_p=o["top_p"],
                    min_p=o["min_p"],
                    **budget,
                )
                for r, i in enumerate(idx):
                    out[i] = res.sequences[r, P : int(res.lengths[r])].tolist()
                    spent[i] = answer_cost(res, r)
                bar.update(len(idx))
        if costs is not None:
            costs.extend(spent)
        return out  # type: ignore[return-value]

    def generate(
        self,
        prompts: Sequence[str],
        *,
        until: Iterable[str] | str | None = None,
        max_gen_toks: int | str | None = None,
        auto: bool | None = None,
        desc: str = "generating",
        costs: list[dict[str, int]] | None = None,
        **overrides: Any,
    ) -> list[str]:
        """Generated text after each prompt, cut at the first EOS and then at the first stop string
        (`generate_tokens` for the rest)."""
        ids = self.generate_tokens(
            [self.encode(p) for p in prompts], max_gen_toks=max_gen_toks, auto=auto, desc=desc, costs=costs, **overrides
        )
        return [cut_at_stop(self.decode(x), until) for x in ids]

    # ------------------------------------------------------------------ chat generation
    def chat_text(self, messages: list[dict[str, str]], *, add_generation_prompt: bool = True) -> str:
        """`messages` rendered by the tokenizer's chat template (else sumi's default), by default
        with the generation prompt that opens the assistant's turn. ValueError without a tokenizer
        or when the template rejects the messages."""
        self._need_chat_template()
        try:
            return self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=add_generation_prompt
            )
        except Exception as e:  # jinja reports bad input with any exception (raise_exception)
            raise ValueError(f"messages: the chat template rejected them: {e}") from None

    def chat_prompt(self, messages: list[dict[str, str]]) -> list[int]:
        """The ids of `chat_text(messages)` (`sumi.chat_template.chat_prompt_ids`)."""
        self._need_chat_template()
        return chat_prompt_ids(self.tokenizer, messages)

    def encode_rendered(self, text: str) -> list[int]:
        """Ids of text a chat template rendered: its special-token markers are the special tokens."""
        if self.byte_level:
            return self.encode(text)
        return list(self.tokenizer(text, add_special_tokens=False).input_ids)

    def _need_chat_template(self) -> None:
        if self.byte_level:
            raise ValueError(
                "chat formatting needs the model's tokenizer and its chat template; this model has no "
                "tokenizer (byte-level fallback)"
            )
        ensure_chat_template(self.tokenizer)  # the default where the tokenizer has none (`sumi chat` too)

    def chat_options(
        self, max_gen_toks: int | str | None = None, default_gen_toks: int | None = None, auto: bool | None = None
    ) -> dict[str, Any]:
        """generate()'s options for chat answers: the evaluation options given explicitly (`CHAT_OPTIONS`),
        nothing else, so that the model's generation config decides the rest. The answer budget
        (max_new_tokens): `max_gen_toks`, else a `max_gen_toks` option given, else the generation
        config's max_new_tokens, else `default_gen_toks` (the task's), else the `max_gen_toks` option.
        "auto" before the first of them that is a number (or `auto=True`) makes it
        `max_new_tokens="auto"` with that number as `auto_max_new_tokens` (unless that option is given)."""
        kw = {CHAT_OPTIONS[k]: self.options[k] for k in sorted(self.given) if k in CHAT_OPTIONS}
        budget, said_auto = _first_budget(
            max_gen_toks,
            kw.pop("max_new_tokens", None),
            getattr(self.model.generation_config, "max_new_tokens", None),
            default_gen_toks,
            self.options["max_gen_toks"],
        )
        if said_auto if auto is None else auto:
            kw["max_new_tokens"] = "auto"
            kw.setdefault("auto_max_new_tokens", budget)
        else:
            kw["max_new_tokens"] = budget
        return kw

    def generate_chat(
        self,
        prompts: Sequence[Sequence[int]],
        *,
        until: Iterable[str] | str | None = None,
        max_gen_toks: int | str | None = None,
        default_gen_toks: int | None = None,
        auto: bool | None = None,
        desc: str = "chat",
        costs: list[dict[str, int]] | None = None,
    ) -> list[str]:
        """The model's answer to each rendered chat prompt (`chat_prompt`): `answer_prompts` with
        `chat_options(max_gen_toks, default_gen_toks, auto)`, each row seeded from `seed` and its
        prompt (so an answer depends on neither its batch nor the process), then cut at the first
        stop string. A prompt too long for the generation canvas loses its oldest tokens (counted in
        `truncated["prompts"]`). `costs`: when given, one `answer_cost` per prompt is appended."""
        self._need_chat_template()
        kw = self.chat_options(max_gen_toks, default_gen_toks, auto)
        o = self.model.resolve_generation_options(kw)
        L = min(int(o["canvas_length"]), int(self.config.max_position_embeddings))
        anchors = 2 if o["anchor_eosbos"] else 0
        budget = kw["auto_max_new_tokens"] if kw["max_new_tokens"] == "auto" else kw["max_new_tokens"]
        fitted = [self._fit_prompt(list(p), budget, L, anchors)[0] for p in prompts]
        seeds = [derive_seed(self.options["seed"], "chat", tuple(p)) for p in fitted]
        bs = int(self.options["gen_batch_size"] or self.options["batch_size"])
        with self._bar(len(fitted), desc) as bar:
            texts = answer_prompts(
                self.model, self.tokenizer, fitted, seeds=seeds, batch_size=bs, progress=bar.update, costs=costs, **kw
            )
        return [cut_at_stop(t, until).strip() for t in texts]

    def info(self) -> dict:
        cfg = self.config
        return dict(
            name=self.name,
            vocab_size=cfg.vocab_size,
            max_position_embeddings=cfg.max_position_embeddings,
            max_canvas=self.max_length,
            num_parameters=sum(p.numel() for p in self.model.parameters()),
            dtype=str(next(self.model.parameters()).dtype).removeprefix("torch."),
            device=str(self.device),
            tokenizer="byte-level fallback" if self.byte_level else type(self.tokenizer).__name__,
            **{k: self.options[k] for k in EVAL_DEFAULTS},
        )


def cut_at_stop(text: str, until: Iterable[str] | str | None) -> str:
    """`text` up to the first occurrence of any stop string (empty strings ignored)."""
    if until is None:
        return text
    if isinstance(until, str):
        until = [until]
    cut = len(text)
    for s in until:
        if s:
            i = text.find(s)
            if i != -1:
                cut = min(cut, i)
    return text[:cut]


__all__ = ["EVAL_DEFAULTS", "CHAT_OPTIONS", "SIZING_OPTIONS", "SumiEvaluator", "RollingScore", "cut_at_stop"]
