"""Canvas generation for uniform diffusion: the options and `generate()`.

Generation starts from a canvas of random tokens after the prompt and denoises every free
position in parallel for `num_denoising_steps` steps (one forward each). Three samplers:

* ancestral (default): draw z_s ~ p(z_s | z_t, x_hat) at every position (spec §5);
* adaptive: overwrite the `tokens_per_step` positions whose top-1 probability most exceeds the
  probability of their current token;
* greedy: every free position becomes the argmax.

The default behaviour and signature follow the official `tohoku-nlp/sumi-7b` remote code; greedy
and adaptive at temperature 0 replay it token for token given the same seed (same initial
`randint`). Extensions, all off by default: top-k / top-p / min-p, stop strings, per-row seeds,
`align_rows` (left-padded rows get the positions and anchors they would have alone) and
`early_stop_patience` (a row leaves the batch once its canvas stops changing), `stop_on_cycle`
(a row of a deterministic sampler leaves once its canvas repeats a recent state, with the canvas
the remaining steps would end on) and `skip_tail` (leave the canvas after the BOS anchor out of
the forward), and canvases that size themselves: `max_new_tokens="auto"` (a probe forward picks each
row's answer budget from where the model puts EOS), `grow` and `shrink` (the budget follows the
answer while it denoises).

The samplers live in sampling.py, the step-driven engine that runs them in denoising.py;
`generate()` prepares one `CanvasJob` (`prepare_generation`) and steps it to the end.

Exported verbatim as a checkpoint's remote code: imports only torch, transformers and siblings.
"""

import math
import numbers
from collections.abc import Callable
from typing import Any

import torch
from transformers import GenerationConfig

from .denoising import (  # noqa: F401 (re-exported: the public names of generation)
    CYCLE_WINDOW,
    CanvasJob,
    DenoisingEngine,
    SumiGenerationOutput,
    Trajectory,
    canvas_layout,
    trim_sequences,
)
from .diffusion import MAX_LOG_SNR, MIN_LOG_SNR, SCHEDULES, sampling_schedule
from .sampling import (  # noqa: F401 (re-exported)
    SAMPLERS,
    _Randomness,
    adaptive_step,
    ancestral_step,
    denoiser_probs,
    dense_posterior,
    filter_probs,
    greedy_step,
    is_deterministic,
    softmax_summary,
)

# Options that resolve through generation configs: explicit argument, else the `generation_config`
# passed in, else the model's generation config, else these defaults (spec §6).
GENERATION_DEFAULTS: dict[str, Any] = dict(
    max_new_tokens=None,
    max_length=None,
    num_denoising_steps=128,
    seed=None,
    sampler="ancestral",
    schedule="linear",
    min_log_snr=MIN_LOG_SNR,
    max_log_snr=MAX_LOG_SNR,
    temperature=1.0,
    tokens_per_step=1,
    frozen=None,
    denoise_end=None,
    canvas_length=2048,
    anchor_eosbos=True,
    trim_at_eos=True,
    # sumi extensions (None / False reproduces the official behaviour)
    top_k=None,
    top_p=None,
    min_p=None,
    stop_strings=None,
    align_rows=False,
    early_stop_patience=None,
    stop_on_cycle=False,
    skip_tail=False,
    # few-step samplers (issue 16): corrector moves per predictor step of "predictor_corrector",
    # argmax steps at the end of a run, the entropy bound (nats) of "entropy_bounded"
    corrector_steps=1,
    greedy_tail=0,
    entropy_bound=1.0,
    # canvases that size themselves (issue 16 §3; max_new_tokens="auto" turns the probe on): the
    # probe's largest budget (None = what fits the canvas) and its forwards; growth (up to grow_max,
    # None = what fits the canvas) and shrinking (after an EOS sat still for shrink_patience steps)
    auto_max_new_tokens=None,
    auto_probe_steps=1,
    grow=False,
    grow_max=None,
    shrink=False,
    shrink_patience=4,
)


def self_sizing(o: dict) -> bool:
    """Whether resolved options `o` size the canvas while generating (auto budget, grow or shrink)."""
    return o.get("max_new_tokens") == "auto" or bool(o.get("grow")) or bool(o.get("shrink"))


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def validate_generation_options(o: dict) -> None:
    """Check resolved options (`GENERATION_DEFAULTS` keys) once, for `generate()`, the command line
    and the server alike: raises ValueError naming the option and what it must be."""
    if o["max_new_tokens"] is None:
        raise ValueError("pass `max_new_tokens` (or `max_length`): how many tokens to generate")
    if o["max_new_tokens"] != "auto" and (not _is_int(o["max_new_tokens"]) or o["max_new_tokens"] < 0):
        raise ValueError(f"max_new_tokens must be a non-negative integer or 'auto', got {o['max_new_tokens']!r}")
    if o["sampler"] not in SAMPLERS:
        raise ValueError(f"unknown sampler {o['sampler']!r}; choose one of {SAMPLERS}")
    if o["schedule"] not in SCHEDULES:
        raise ValueError(f"unknown schedule {o['schedule']!r}; choose one of {SCHEDULES}")
    if not _is_int(o["num_denoising_steps"]) or o["num_denoising_steps"] < 1:
        raise ValueError(f"num_denoising_steps must be a positive integer, got {o['num_denoising_steps']!r}")
    T = o["temperature"]
    if not isinstance(T, (int, float)) or isinstance(T, bool) or not math.isfinite(T) or T < 0:
        raise ValueError(f"temperature must be a finite number >= 0, got {T!r}")
    lo, hi = o["min_log_snr"], o["max_log_snr"]
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (lo, hi)) or not lo <= hi:
        raise ValueError(
            f"min_log_snr and max_log_snr must be finite numbers with min_log_snr <= max_log_snr, got {lo!r} and {hi!r}"
        )
    if not _is_int(o["tokens_per_step"]) or o["tokens_per_step"] < 1:
        raise ValueError(f"tokens_per_step must be a positive integer, got {o['tokens_per_step']!r}")
    if not _is_int(o["canvas_length"]) or o["canvas_length"] < 2:
        raise ValueError(f"canvas_length must be an integer >= 2, got {o['canvas_length']!r}")
    if o["top_k"] is not None and (not _is_int(o["top_k"]) or o["top_k"] < 1):
        raise ValueError(f"top_k must be a positive integer, got {o['top_k']!r}")
    for name in ("top_p", "min_p"):
        value = o[name]
        if value is not None and not (isinstance(value, (int, float)) and 0.0 < value <= 1.0):
            raise ValueError(f"{name} must be in (0, 1], got {value!r}")
    for name in ("corrector_steps", "greedy_tail"):
        if not _is_int(o[name]) or o[name] < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {o[name]!r}")
    bound = o["entropy_bound"]
    if not isinstance(bound, (int, float)) or isinstance(bound, bool) or not math.isfinite(bound) or bound < 0:
        raise ValueError(f"entropy_bound must be a finite number of nats >= 0, got {bound!r}")
    patience = o["early_stop_patience"]
    if patience is not None and (not _is_int(patience) or patience < 0):
        raise ValueError(f"early_stop_patience must be a non-negative integer (or None), got {patience!r}")
    seeds = o["seed"] if isinstance(o["seed"], (list, tuple)) else [o["seed"]]
    if not all(s is None or _is_int(s) for s in seeds) or (len(seeds) > 1 and None in seeds):
        raise ValueError(f"seed must be an integer or one integer per row, got {o['seed']!r}")
    _validate_sizing(o)
    if o["stop_on_cycle"] and not is_deterministic(o["sampler"], T):
        raise ValueError(
            f"stop_on_cycle needs a deterministic sampler (greedy, or adaptive with temperature=0), "
            f"got sampler={o['sampler']!r} at temperature={T}: with random draws a repeated canvas "
            f"does not repeat its future (early_stop_patience is the heuristic for those)"
        )


def _validate_sizing(o: dict) -> None:
    """The options of canvases that size themselves."""
    for name in ("auto_max_new_tokens", "grow_max"):
        if o[name] is not None and (not _is_int(o[name]) or o[name] < 1):
            raise ValueError(f"{name} must be a positive integer (or None: what fits the canvas), got {o[name]!r}")
    if not _is_int(o["auto_probe_steps"]) or o["auto_probe_steps"] < 1:
        raise ValueError(f"auto_probe_steps must be a positive integer, got {o['auto_probe_steps']!r}")
    if not _is_int(o["shrink_patience"]) or o["shrink_patience"] < 0:
        raise ValueError(f"shrink_patience must be a non-negative integer, got {o['shrink_patience']!r}")
    for name in ("grow", "shrink"):
        if not isinstance(o[name], bool):
            raise ValueError(f"{name} must be true or false, got {o[name]!r}")
    if not self_sizing(o):
        return
    on = [
        name
        for name, v in (
            ("max_new_tokens='auto'", o["max_new_tokens"] == "auto"),
            ("grow", o["grow"]),
            ("shrink", o["shrink"]),
        )
        if v
    ]
    what = " and ".join(on)
    if not o["anchor_eosbos"] or o["frozen"] is not None:
        raise ValueError(
            f"{what}: needs the EOS/BOS anchors (anchor_eosbos=True and no `frozen`): they mark where the answer ends"
        )
    if o["denoise_end"] is not None:
        raise ValueError(f"{what} cannot be combined with denoise_end (the canvas ends at each row's BOS anchor)")


# ----------------------------------------------------------------------------- generate
class SumiGenerationMixin:
    """Adds `generate()` to `SumiForMaskGeneration` (a diffusion sampler, not transformers' AR loop)."""

    def adjust_generation_fn(
        self, generation_config, from_auto_class, from_pipeline, pretrained_model_name_or_path, **kwargs
    ):
        """Called by `from_pretrained`: adopt the folder's `generation_config.json` (sampler defaults)."""
        if generation_config is not None:
            self.generation_config = generation_config
            return
        hub_kwargs = {
            k: kwargs[k]
            for k in ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder")
            if kwargs.get(k) is not None
        }
        try:
            self.generation_config = GenerationConfig.from_pretrained(pretrained_model_name_or_path, **hub_kwargs)
        except OSError:  # no generation_config.json: keep the one derived from the model config
            pass

    def resolve_generation_options(self, explicit: dict | None = None, generation_config=None) -> dict:
        """The options `generate()` would use: `explicit` values (None = unset), else
        `generation_config`'s, else the model's generation config, else `GENERATION_DEFAULTS`.
        A canvas that sizes itself (auto / grow / shrink) ends at each row's BOS anchor: skip_tail on."""
        explicit = explicit or {}
        resolved = {}
        model_config = getattr(self, "generation_config", None)
        for name, default in GENERATION_DEFAULTS.items():
            value = explicit.get(name)
            for source in (generation_config, model_config):
                if value is None and source is not None:
                    value = getattr(source, name, None)
            resolved[name] = default if value is None else value
        if self_sizing(resolved):
            resolved["skip_tail"] = True
        return resolved

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        max_new_tokens: int | str | None = None,
        max_length: int | None = None,
        num_denoising_steps: int | None = None,
        seed: int | list[int] | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        sampler: str | None = None,
        schedule: str | None = None,
        min_log_snr: float | None = None,
        max_log_snr: float | None = None,
        temperature: float | None = None,
        tokens_per_step: int | None = None,
        frozen: list | None = None,
        denoise_end: int | list[int] | None = None,
        canvas_length: int | None = None,
        anchor_eosbos: bool | None = None,
        trim_at_eos: bool | None = None,
        progress_callback: Callable[[dict], Any] | None = None,
        generation_config: GenerationConfig | None = None,
        *,
        top_k: int | None = None,
        top_p: float | None = None,
        min_p: float | None = None,
        stop_strings: str | list[str] | None = None,
        tokenizer=None,
        align_rows: bool | None = None,
        early_stop_patience: int | None = None,
        stop_on_cycle: bool | None = None,
        skip_tail: bool | None = None,
        corrector_steps: int | None = None,
        greedy_tail: int | None = None,
        entropy_bound: float | None = None,
        auto_max_new_tokens: int | None = None,
        auto_probe_steps: int | None = None,
        grow: bool | None = None,
        grow_max: int | None = None,
        shrink: bool | None = None,
        shrink_patience: int | None = None,
        record_trajectory: bool = False,
        **kwargs,
    ) -> SumiGenerationOutput:
        """Write `max_new_tokens` tokens after `input_ids` by denoising a random canvas.

        Args:
            input_ids: prompt ids `[B, P]` (left-padded for batches) or `[P]`; None = `[[bos]]`.
            attention_mask: `[B, P]`, 1 = token, 0 = padding.
            max_new_tokens / max_length: how much to write (one is required; 0 returns the prompt).
                `max_new_tokens="auto"`: each row's answer budget is chosen by a probe: the first
                `auto_probe_steps` forwards (counted in `num_forwards`) run on the canvas laid out
                with the largest budget (`auto_max_new_tokens`, default what fits the canvas), and
                the budget becomes the first answer position where EOS holds at least half the
                prediction (`AUTO_EOS_PROB`), plus room: as many positions again (at least 4),
                and at least 16 in all (`sumi.denoising.auto_budget`); the
                denoising then starts from the initial random canvas of that size (`.auto_budgets`).
            num_denoising_steps: N, one forward each (default 128).
            seed / generator: randomness; `seed` may be a list with one seed per row.
            sampler: "ancestral" (default), "adaptive", "greedy", "predictor_corrector" (each ancestral
                step followed by `corrector_steps` corrector forwards: re-noise one schedule step back,
                denoise again) or "entropy_bounded" (positions with predicted entropy under
                `entropy_bound` nats take the argmax, the rest are redrawn; a row ends once all of it
                is accepted and unchanged).
            schedule: "linear" (default) or "cosine", between `min_log_snr` and `max_log_snr`.
            temperature: softmax temperature of the denoiser (0 = argmax).
            tokens_per_step: positions the adaptive sampler rewrites per step.
            frozen: `[(pos, id), ...]` for all rows, or one list per row: pinned tokens (then no
                EOS/BOS anchors are added).
            denoise_end: per-row bound; positions from it on keep their random initial tokens.
            canvas_length: canvas size (capped at `max_position_embeddings`), default 2048.
            anchor_eosbos: pin EOS right after the budget and BOS after it (the document boundary
                the model saw in training).
            trim_at_eos: cut `.sequences` at the first EOS after the prompt.
            progress_callback: called after each step with a dict (step, num_steps, log_snr_t,
                log_snr_s, z, top1_z, top1_prob, noise_mask, selected_pos; a canvas that sizes
                itself adds each row's current `budgets` and, with auto, the probe's `auto_budgets`;
                `sumi.denoising.RowBudgets` follows them for a display).
            generation_config: options not given explicitly are taken from it, then from the
                model's generation config, then from the defaults above.
            top_k / top_p / min_p: truncate the denoiser distribution before sampling.
            stop_strings (+ tokenizer): also cut `.sequences` before the first stop string.
            align_rows: give each left-padded row the positions, anchors and canvas it would have
                alone (batch output == per-row output); off = the official layout.
            early_stop_patience: a row leaves the batch after this many consecutive steps in which
                its canvas did not change, and generation ends when no row is left. With greedy,
                and adaptive at T = 0, an unchanged canvas is a fixed point, so patience 1 never
                changes the result; with ancestral it is a heuristic (measured in
                benchmarks/bench_early_exit.py). With `record_trajectory` or `progress_callback`
                every row stays in the batch until all have stopped (their records keep one shape).
            stop_on_cycle: for the deterministic samplers (greedy, adaptive at T = 0; an error for
                the others). Each step is then a function of the canvas alone (the network has no
                time input, these samplers no randomness), so once a row's canvas equals one of
                its last `CYCLE_WINDOW` canvases its future repeats with that period: the row
                leaves the batch holding the canvas it would have after the last step. The
                result is the full run's, with fewer forwards. With `record_trajectory` or
                `progress_callback` every row stays in the batch, and generation ends at the first
                step at which every row has cycled and holds its last canvas.
            skip_tail: leave the canvas after the BOS anchor out of every forward (it keeps its
                random initial tokens). The official code denoises that tail each step as free
                context; skipping it saves that share of each forward (most of it at the default
                canvas of 2048) and changes the result. Needs the EOS/BOS anchors.
            corrector_steps: corrector forwards after each predictor step (predictor_corrector; default 1).
            greedy_tail: the last `greedy_tail` forwards take the argmax (ancestral-type samplers).
            entropy_bound: the acceptance bound of the entropy_bounded sampler, in nats (default 1.0).
            auto_max_new_tokens / auto_probe_steps: the probe of `max_new_tokens="auto"` (above).
            grow: a row whose last `GROW_WINDOW` (4) answer positions are predicted confidently (top-1
                >= 0.5) as non-EOS tokens gets max(4, budget // 4) fresh random positions before its
                EOS anchor (the anchors move right), up to `grow_max` (default what fits the canvas),
                in the first half of the run.
            shrink: a row whose first EOS in the answer (where the model's argmax is EOS too: a random
                initial EOS does not count) sat at the same position for more than
                `shrink_patience` steps (default 4) ends there: that EOS becomes its EOS anchor, a BOS
                anchor follows, and the columns after it leave the forwards.
                auto, grow and shrink need the anchors, imply `skip_tail` (a row's canvas ends at
                its BOS anchor) and draw fresh tokens from each row's own stream, so a job gives the
                same result alone or among others; `stop_on_cycle` stays exact (a cycle counts
                only once no row can grow, and a row's budget is part of its state). `.budgets`
                holds the final budgets, `.row_positions` the positions each row fed (its cost).
            record_trajectory: also return `.trajectory` (initial canvas, per-step changes,
                confidence and entropy; see `Trajectory`). Costs one extra softmax per step.
        Returns: `SumiGenerationOutput` with `.sequences`, `.lengths`, `.canvas`, `.num_forwards`,
            `.row_forwards`, `.row_positions`, `.budgets` (and `.auto_budgets`, `.trajectory`).
        """
        options = {name: value for name, value in locals().items() if name in GENERATION_DEFAULTS}
        job = self.prepare_generation(
            input_ids,
            attention_mask,
            generator=generator,
            tokenizer=tokenizer,
            progress_callback=progress_callback,
            generation_config=generation_config,
            record_trajectory=record_trajectory,
            **options,
            **kwargs,
        )
        engine = DenoisingEngine(self)
        engine.add(job)
        while not job.done:
            engine.step()
        return job.result()

    def prepare_generation(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        *,
        generator: torch.Generator | list[torch.Generator] | None = None,
        tokenizer=None,
        progress_callback: Callable[[dict], Any] | None = None,
        generation_config: GenerationConfig | None = None,
        record_trajectory: bool = False,
        **options,
    ) -> CanvasJob:
        """The `CanvasJob` that `generate()` with these arguments would run (same arguments), for a
        `DenoisingEngine` to step, alone or among other jobs. Every option is checked here: a bad
        one raises ValueError (TypeError for an unknown name) before any work."""
        options.pop("token_type_ids", None)  # some tokenizers return it; the model has no segments
        unknown = sorted(set(options) - set(GENERATION_DEFAULTS))
        if unknown:
            raise TypeError(
                f"generate() got unexpected arguments {unknown}; the options are "
                f"{sorted(list(GENERATION_DEFAULTS) + ['input_ids', 'attention_mask', 'generator', 'progress_callback', 'generation_config', 'tokenizer', 'record_trajectory'])}"
            )
        o = self.resolve_generation_options(options, generation_config)
        input_ids, attention_mask = self._prompt_batch(input_ids, attention_mask)
        if o["max_new_tokens"] is None and o["max_length"] is not None:
            o["max_new_tokens"] = o["max_length"] - input_ids.shape[1]
        validate_generation_options(o)
        if o["stop_strings"] and tokenizer is None:
            raise ValueError("stop_strings need `tokenizer=` to decode the generated text")
        log_snrs = sampling_schedule(
            o["num_denoising_steps"], o["schedule"], o["min_log_snr"], o["max_log_snr"]
        ).tolist()
        return CanvasJob(
            self,
            input_ids,
            attention_mask,
            o,
            log_snrs,
            generator=generator,
            tokenizer=tokenizer,
            progress_callback=progress_callback,
            record_trajectory=record_trajectory,
        )

    def _prompt_batch(self, input_ids, attention_mask) -> tuple[torch.Tensor, torch.Tensor]:
        """The prompt as ids `[B, P]` and its mask `[B, P]` on the model's device, checked; no prompt
        = `[[bos]]`."""
        cfg = self.config
        device = next(self.parameters()).device
        V = cfg.vocab_size
        if input_ids is None:
            if cfg.bos_token_id is None:
                raise ValueError("no input_ids and no bos_token_id to start from")
            input_ids = torch.tensor([[cfg.bos_token_id]], device=device)
        input_ids = torch.as_tensor(input_ids, device=device)
        if input_ids.dim() == 1:
            input_ids = input_ids[None]
        if input_ids.dim() != 2 or input_ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(
                f"input_ids must be integer ids [batch, prompt_len] or [prompt_len], "
                f"got {input_ids.dtype} of shape {tuple(input_ids.shape)}"
            )
        input_ids = input_ids.long()
        if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= V):
            raise ValueError(
                f"input_ids must lie in [0, vocab_size={V}), got values in "
                f"[{int(input_ids.min())}, {int(input_ids.max())}]"
            )
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        attention_mask = torch.as_tensor(attention_mask, device=device)
        if attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask must have the prompt's shape {tuple(input_ids.shape)}, "
                f"got {tuple(attention_mask.shape)}"
            )
        return input_ids, attention_mask


__all__ = [
    "SAMPLERS",
    "GENERATION_DEFAULTS",
    "SumiGenerationOutput",
    "Trajectory",
    "SumiGenerationMixin",
    "filter_probs",
    "denoiser_probs",
    "dense_posterior",
    "softmax_summary",
    "ancestral_step",
    "adaptive_step",
    "is_deterministic",
    "greedy_step",
    "trim_sequences",
    "validate_generation_options",
    "self_sizing",
    "CanvasJob",
    "DenoisingEngine",
    "canvas_layout",
]
