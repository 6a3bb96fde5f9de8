"""Canvas generation for uniform diffusion: samplers and `generate()`.

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
the forward).

Exported verbatim as a checkpoint's remote code: imports only torch, transformers and siblings.
"""

from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import torch
from transformers import GenerationConfig
from transformers.utils import ModelOutput

from .diffusion import MAX_LOG_SNR, MIN_LOG_SNR, alpha_from_log_snr, sampling_schedule

SAMPLERS = ("ancestral", "adaptive", "greedy")

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
)

# How many past canvases `stop_on_cycle` compares against: cycles up to this period are caught.
# Greedy and adaptive at T = 0 settle into period-2 oscillations (two tokens swapping back and
# forth) far more often than into fixed points (measured in benchmarks/bench_early_exit.py).
CYCLE_WINDOW = 8


@dataclass
class SumiGenerationOutput(ModelOutput):
    """`sequences` `[B, L]`: prompt + text up to the first EOS (pad-filled); `lengths` `[B]`: each
    row's real length in `sequences` (prompt included); `canvas` `[B, S]`: the final canvas;
    `num_forwards`: forward calls actually run (fewer than the steps after an early stop);
    `row_forwards` `[B]`: how many of them each row took part in (rows leave the batch one by one
    with `early_stop_patience`)."""

    sequences: torch.LongTensor | None = None
    canvas: torch.LongTensor | None = None
    num_forwards: int | None = None
    lengths: torch.LongTensor | None = None
    trajectory: "Trajectory | None" = None
    row_forwards: torch.LongTensor | None = None


@dataclass
class Trajectory:
    """What a run did, compactly (`generate(..., record_trajectory=True)`): the initial canvas and,
    per step, only the positions that changed, plus the denoiser's confidence and entropy.

    initial `[B, S]`; free `[B, S]` (positions the sampler could change); log_snrs: the N+1
    schedule; changes[k] = (rows, cols, new ids) of step k; top1_prob[k] / entropy[k] `[B, S]`
    float16 (untempered softmax of the logits step k saw); selected[k] `[B, tokens_per_step]`
    for the adaptive sampler, else None. `canvas(k)` rebuilds the canvas after step k (-1 = initial).
    """

    initial: torch.LongTensor
    free: torch.BoolTensor
    log_snrs: list
    changes: list
    top1_prob: list
    entropy: list
    selected: list

    @property
    def num_steps(self) -> int:
        return len(self.changes)

    def canvas(self, step: int = -1) -> torch.LongTensor:
        z = self.initial.clone()
        for rows, cols, values in self.changes[: step + 1]:
            z[rows, cols] = values
        return z

    def canvases(self) -> torch.LongTensor:
        """`[N + 1, B, S]`: the initial canvas, then the canvas after each step."""
        z, out = self.initial.clone(), [self.initial.clone()]
        for rows, cols, values in self.changes:
            z[rows, cols] = values
            out.append(z.clone())
        return torch.stack(out)


# ----------------------------------------------------------------------------- random draws
class _Randomness:
    """The random draws of one run: one generator for the whole batch (the official way), or one
    per row, each drawing only over its row's own span of columns, so that a row of a batch draws
    exactly what it would draw alone."""

    def __init__(self, generators: list[torch.Generator | None], spans: list[tuple[int, int]], device):
        self.generators, self.spans, self.device = generators, spans, device
        self.per_row = len(generators) > 1

    def select(self, rows: torch.Tensor) -> "_Randomness":
        """The randomness of a subset of rows (the rows still denoised after others stopped)."""
        if not self.per_row:
            return self
        keep = rows.tolist()
        sub = _Randomness([self.generators[i] for i in keep], [self.spans[i] for i in keep], self.device)
        sub.per_row = True  # even a single remaining row keeps drawing from its own generator
        return sub

    def _per_row(self, shape, fill, draw) -> torch.Tensor:
        out = torch.full(shape, fill, device=self.device, dtype=torch.float32 if isinstance(fill, float) else torch.long)
        for i, ((a, b), g) in enumerate(zip(self.spans, self.generators)):
            out[i, a:b] = draw(b - a, g)
        return out

    def rand(self, B: int, S: int) -> torch.Tensor:
        if not self.per_row:
            return torch.rand(B, S, generator=self.generators[0], device=self.device)
        return self._per_row((B, S), 1.0, lambda n, g: torch.rand(n, generator=g, device=self.device))

    def randint(self, high: int, B: int, S: int) -> torch.Tensor:
        if not self.per_row:
            return torch.randint(0, high, (B, S), generator=self.generators[0], device=self.device)
        return self._per_row((B, S), 0, lambda n, g: torch.randint(0, high, (n,), generator=g, device=self.device))

    def categorical(self, probs: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """One draw per row of `probs` `[n, V]` (unnormalised is fine); `rows` `[n]` says which batch
        row each belongs to. Inverse-CDF sampling: one uniform per draw, where CPU `multinomial`
        draws an exponential per vocabulary entry (~8x slower at V = 32000)."""
        if not self.per_row:
            u = torch.rand(probs.shape[0], generator=self.generators[0], device=probs.device)
        else:
            u = torch.empty(probs.shape[0], device=probs.device)
            for i, g in enumerate(self.generators):
                sel = (rows == i).nonzero().squeeze(-1)
                if sel.numel():
                    u[sel] = torch.rand(sel.numel(), generator=g, device=probs.device)
        cdf = probs.float().cumsum(-1)
        # side="right" never lands on a zero-probability entry
        idx = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None], side="right").squeeze(-1)
        return idx.clamp_(max=probs.shape[-1] - 1)


# ----------------------------------------------------------------------------- distributions
def filter_probs(
    probs: torch.Tensor, top_k: int | None = None, top_p: float | None = None, min_p: float | None = None
) -> torch.Tensor:
    """Truncate a categorical `[..., V]` to its top-k / nucleus (top-p) / min-p support and renormalise.

    min-p keeps tokens with probability >= min_p * p_max. The most likely token always survives.
    """
    if top_k is None and top_p is None and min_p is None:
        return probs
    keep = torch.ones_like(probs, dtype=torch.bool)
    if top_k is not None and top_k < probs.shape[-1]:
        kth = probs.topk(top_k, dim=-1).values[..., -1:]
        keep &= probs >= kth
    if min_p is not None:
        keep &= probs >= min_p * probs.amax(-1, keepdim=True)
    if top_p is not None and top_p < 1.0:
        sorted_p, order = probs.sort(-1, descending=True)
        # keep a token if the mass strictly before it is < top_p (so the top token is always kept)
        before = sorted_p.cumsum(-1) - sorted_p
        keep_sorted = before < top_p
        keep &= torch.zeros_like(keep).scatter(-1, order, keep_sorted)
    probs = probs * keep
    return probs / probs.sum(-1, keepdim=True)


def denoiser_probs(logits: torch.Tensor, temperature: float, top_k=None, top_p=None, min_p=None) -> torch.Tensor:
    """x_hat = softmax(logits / T) in fp32, filtered; T = 0 gives the one-hot argmax."""
    logits = logits.float()
    if temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float()
    return filter_probs(torch.softmax(logits / temperature, dim=-1), top_k, top_p, min_p)


def dense_posterior(x_hat: torch.Tensor, z_t: torch.Tensor, log_snr_t: float, log_snr_s: float) -> torch.Tensor:
    """The ancestral posterior p(z_s = v | z_t) `[..., V]`, written out densely (spec §5).

    `p(v) ∝ (a_s x_hat_v + u_s) (a_ts 1[v = z_t] + u_ts)`, `u_* = (1 - a_*) / V`. This is the
    official implementation's computation; `ancestral_step` samples the same law without it.
    """
    V = x_hat.shape[-1]
    a_t = float(alpha_from_log_snr(torch.tensor(log_snr_t, dtype=torch.float64)))
    a_s = float(alpha_from_log_snr(torch.tensor(log_snr_s, dtype=torch.float64)))
    a_ts = a_t / a_s
    q_s = a_s * x_hat + (1 - a_s) / V
    q_ts = torch.full_like(x_hat, (1 - a_ts) / V)
    q_ts.scatter_add_(-1, z_t[..., None], torch.full_like(q_ts[..., :1], a_ts))
    p = q_s * q_ts
    return p / p.sum(-1, keepdim=True)


def softmax_summary(logits: torch.Tensor, z: torch.Tensor, temperature: float = 1.0, *, top1: bool = False,
                    entropy: bool = False) -> dict[str, torch.Tensor]:
    """What the samplers read of `softmax(logits / T)` over the vocabulary, never the whole of it.

    logits `[B, S, V]`, z `[B, S]` -> dict of fp32 `[B, S]` tensors: "at_z" (the probability of z),
    with `top1` also "max" (the top-1 probability) and "argmax" (int64), with `entropy` also
    "entropy" (nats). On CPU in row blocks of ~4 MiB: an fp32 copy of all the logits at once
    (262 MB at S = 2048, V = 32000) costs more in fresh-page faults than the arithmetic, while a
    small block is reused from the cache. Each row's values are computed exactly as without blocks.
    """
    B, S, V = logits.shape
    flat, z_flat = logits.reshape(B * S, V), z.reshape(B * S, 1)
    n = B * S if logits.device.type != "cpu" else max(1, (1 << 20) // V)
    out = {"at_z": torch.empty(B * S, dtype=torch.float32, device=logits.device)}
    if top1:
        out["max"] = torch.empty_like(out["at_z"])
        out["argmax"] = torch.empty(B * S, dtype=torch.long, device=logits.device)
    if entropy:
        out["entropy"] = torch.empty_like(out["at_z"])
    for a in range(0, B * S, n):
        block = flat[a:a + n].float()
        if temperature != 1.0:
            block = block / temperature
        lse = torch.logsumexp(block, dim=-1)
        out["at_z"][a:a + n] = torch.exp(block.gather(-1, z_flat[a:a + n]).squeeze(-1) - lse)
        if top1:
            top, arg = block.max(-1)
            out["max"][a:a + n] = torch.exp(top - lse)
            out["argmax"][a:a + n] = arg
        if entropy:  # H = lse - sum_v p_v l_v
            out["entropy"][a:a + n] = lse - (torch.exp(block - lse[:, None]) * block).sum(-1)
    return {k: v.view(B, S) for k, v in out.items()}


def ancestral_step(
    logits: torch.Tensor,
    z_t: torch.Tensor,
    free: torch.Tensor,
    log_snr_t: float,
    log_snr_s: float,
    rng: _Randomness,
    *,
    vocab_size: int,
    temperature: float = 1.0,
    top_k=None,
    top_p=None,
    min_p=None,
) -> torch.Tensor:
    """One ancestral step, exactly distributed as `dense_posterior` but without building it.

    With `q_s = a_s x_hat + (1 - a_s)/V` (a distribution), the posterior is the mixture: keep z_t
    with probability `a_ts q_s(z_t) / Z`, `Z = (1 - a_ts)/V + a_ts q_s(z_t)`; otherwise draw from q_s,
    i.e. from x_hat with probability a_s, else uniformly. Only x_hat(z_t) is needed everywhere;
    a categorical draw from x_hat only where that branch is taken.

    Args: logits `[B, S, V']`, z_t `[B, S]`, free `[B, S]` bool (positions to update).
    Returns: z_s `[B, S]`.
    """
    B, S = z_t.shape
    V = vocab_size
    logits = logits[..., :V]
    a_t = float(alpha_from_log_snr(torch.tensor(log_snr_t, dtype=torch.float64)))
    a_s = float(alpha_from_log_snr(torch.tensor(log_snr_s, dtype=torch.float64)))
    a_ts = a_t / a_s
    filtered = temperature == 0 or any(v is not None for v in (top_k, top_p, min_p))
    if filtered:
        x_hat = denoiser_probs(logits, temperature, top_k, top_p, min_p)
        xhat_z = x_hat.gather(-1, z_t[..., None]).squeeze(-1)
    else:
        xhat_z = softmax_summary(logits, z_t, temperature)["at_z"]
    q_s_z = a_s * xhat_z + (1 - a_s) / V
    keep_prob = a_ts * q_s_z / ((1 - a_ts) / V + a_ts * q_s_z)

    u_keep, u_branch = rng.rand(B, S), rng.rand(B, S)
    uniform_tokens = rng.randint(V, B, S)
    keep = u_keep < keep_prob
    from_xhat = ~keep & (u_branch < a_s) & free
    z_s = torch.where(keep, z_t, uniform_tokens)
    rows, cols = from_xhat.nonzero(as_tuple=True)
    if rows.numel():
        if filtered:
            p = x_hat[rows, cols]
        else:
            p = torch.softmax(logits[rows, cols].float() / temperature, dim=-1)
        z_s[rows, cols] = rng.categorical(p, rows)
    return torch.where(free, z_s, z_t)


def adaptive_step(
    logits: torch.Tensor,
    z_t: torch.Tensor,
    free: torch.Tensor,
    rng: _Randomness,
    *,
    vocab_size: int,
    tokens_per_step: int = 1,
    temperature: float = 1.0,
    top_k=None,
    top_p=None,
    min_p=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Overwrite the `tokens_per_step` free positions per row with the largest confidence
    `p_max - p(z_t)` (untempered softmax) with the argmax (T = 0) or a tempered sample.

    Returns: z_s `[B, S]` and the selected positions `[B, k]` (-1 where a row had too few free ones).
    """
    logits = logits[..., :vocab_size]
    summary = softmax_summary(logits, z_t, top1=True)
    top1 = summary["argmax"]
    conf = (summary["max"] - summary["at_z"]).masked_fill(~free, float("-inf"))
    k = min(tokens_per_step, z_t.shape[1])
    conf_k, selected = conf.topk(k, dim=-1)
    valid = conf_k > float("-inf")
    rows = torch.arange(z_t.shape[0], device=z_t.device)[:, None].expand_as(selected)
    rows, cols = rows[valid], selected[valid]
    if temperature == 0:
        new = top1[rows, cols]
    else:
        p = denoiser_probs(logits[rows, cols], temperature, top_k, top_p, min_p)
        new = rng.categorical(p, rows)
    z_s = z_t.clone()
    z_s[rows, cols] = new
    return z_s, selected.masked_fill(~valid, -1)


def is_deterministic(sampler: str, temperature: float) -> bool:
    """Whether a step is a function of the canvas alone (no random draws): greedy, and adaptive at
    T = 0. Only then does a repeated canvas repeat its future (`stop_on_cycle`)."""
    return sampler == "greedy" or (sampler == "adaptive" and float(temperature) == 0)


def greedy_step(logits: torch.Tensor, z_t: torch.Tensor, free: torch.Tensor, *, vocab_size: int) -> torch.Tensor:
    """Every free position becomes the argmax of the denoiser."""
    return torch.where(free, logits[..., :vocab_size].argmax(-1), z_t)


# ----------------------------------------------------------------------------- canvas layout
def _per_row(value, B: int) -> list:
    """`value` for all rows, or a list with one entry per row."""
    if isinstance(value, (list, tuple)):
        if len(value) != B:
            raise ValueError(f"expected one value per row ({B} rows), got {len(value)}")
        return list(value)
    return [value] * B


def _normalise_frozen(frozen, B: int) -> list[list[tuple[int, int]]]:
    """`[(pos, id), ...]` for all rows or one such list per row -> one list per row."""
    if frozen is None:
        return [[] for _ in range(B)]
    frozen = list(frozen)
    is_pair = lambda x: isinstance(x, (list, tuple)) and len(x) == 2 and all(isinstance(v, int) for v in x)
    if all(is_pair(x) for x in frozen):
        return [[tuple(x) for x in frozen] for _ in range(B)]
    if len(frozen) == B and all(isinstance(r, (list, tuple)) and all(is_pair(x) for x in r) for r in frozen):
        return [[tuple(x) for x in r] for r in frozen]
    raise ValueError("`frozen` must be a list of (position, token_id) pairs for all rows, "
                     f"or one such list per row ({B} rows)")


def _find_cycles(now: torch.Tensor, history: deque, pending: torch.Tensor, k: int, steps: int) -> dict[int, torch.Tensor]:
    """stop_on_cycle, after step k: rows (among `pending` `[B]` bool) whose new canvas
    s_{k+1} = `now[r]` equals s_{k+1-p} = `history[-p][r]` for some p <= len(history) (the
    smallest) repeat with period p from i = k+1-p on, so after the last step they hold
    s_{i + (steps - i) % p}, still in `history`. Returns {row: that final canvas `[width]`}."""
    found: dict[int, torch.Tensor] = {}
    for p in range(1, len(history) + 1):
        hit = (pending & (now == history[-p]).all(-1)).nonzero().squeeze(-1).tolist()
        for r in hit:
            if r not in found:
                offset = (steps - (k + 1 - p)) % p
                found[r] = history[offset - p][r].clone()  # s_{k+1-p+offset}
    return found


def trim_sequences(canvas: torch.Tensor, prompt_len: int, gen_lens: list[int], eos_id: int | None,
                   pad_id: int, trim_at_eos: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt + generated tokens, each row cut at its first EOS after the prompt (EOS dropped) when
    `trim_at_eos`, else at its generation budget; right-padded with `pad_id`.
    Returns: sequences `[B, L]` and each row's length `[B]`."""
    rows = []
    for i, n in enumerate(gen_lens):
        gen = canvas[i, prompt_len:prompt_len + n + 1] if trim_at_eos else canvas[i, prompt_len:prompt_len + n]
        if trim_at_eos and eos_id is not None:
            hits = (gen == eos_id).nonzero()
            cut = int(hits[0]) if hits.numel() else n
            gen = gen[:min(cut, n)]
        rows.append(torch.cat([canvas[i, :prompt_len], gen]))
    width = max(r.numel() for r in rows)
    out = canvas.new_full((len(rows), width), pad_id)
    for i, r in enumerate(rows):
        out[i, :r.numel()] = r
    return out, torch.tensor([r.numel() for r in rows])


def _cut_at_stop_strings(sequences: torch.Tensor, lengths: torch.Tensor, prompt_len: int, tokenizer,
                         stop_strings: list[str], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut each row before the first token whose decoded text contains the start of a stop string."""
    out, lengths = sequences.clone(), lengths.clone()
    for i in range(out.shape[0]):
        gen = out[i, prompt_len:int(lengths[i])].tolist()
        text = tokenizer.decode(gen)
        starts = [text.find(s) for s in stop_strings if s and s in text]
        if not starts:
            continue
        first = min(starts)
        keep = 0  # largest token prefix whose text ends at or before the stop string starts
        for j in range(1, len(gen) + 1):
            if len(tokenizer.decode(gen[:j])) > first:
                break
            keep = j
        out[i, prompt_len + keep:] = pad_id
        lengths[i] = prompt_len + keep
    return out, lengths


# ----------------------------------------------------------------------------- generate
class SumiGenerationMixin:
    """Adds `generate()` to `SumiForMaskGeneration` (a diffusion sampler, not transformers' AR loop)."""

    def adjust_generation_fn(self, generation_config, from_auto_class, from_pipeline, pretrained_model_name_or_path,
                             **kwargs):
        """Called by `from_pretrained`: adopt the folder's `generation_config.json` (sampler defaults)."""
        if generation_config is not None:
            self.generation_config = generation_config
            return
        hub_kwargs = {k: kwargs[k] for k in ("cache_dir", "force_download", "local_files_only", "token",
                                             "revision", "subfolder") if kwargs.get(k) is not None}
        try:
            self.generation_config = GenerationConfig.from_pretrained(pretrained_model_name_or_path, **hub_kwargs)
        except OSError:  # no generation_config.json: keep the one derived from the model config
            pass

    def resolve_generation_options(self, explicit: dict | None = None, generation_config=None) -> dict:
        """The options `generate()` would use: `explicit` values (None = unset), else
        `generation_config`'s, else the model's generation config, else `GENERATION_DEFAULTS`."""
        explicit = explicit or {}
        resolved = {}
        model_config = getattr(self, "generation_config", None)
        for name, default in GENERATION_DEFAULTS.items():
            value = explicit.get(name)
            for source in (generation_config, model_config):
                if value is None and source is not None:
                    value = getattr(source, name, None)
            resolved[name] = default if value is None else value
        return resolved

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        max_new_tokens: int | None = None,
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
        record_trajectory: bool = False,
        **kwargs,
    ) -> SumiGenerationOutput:
        """Write `max_new_tokens` tokens after `input_ids` by denoising a random canvas.

        Args:
            input_ids: prompt ids `[B, P]` (left-padded for batches) or `[P]`; None = `[[bos]]`.
            attention_mask: `[B, P]`, 1 = token, 0 = padding.
            max_new_tokens / max_length: how much to write (one is required; 0 returns the prompt).
            num_denoising_steps: N, one forward each (default 128).
            seed / generator: randomness; `seed` may be a list with one seed per row.
            sampler: "ancestral" (default), "adaptive" or "greedy".
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
                log_snr_s, z, top1_z, top1_prob, noise_mask, selected_pos).
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
            record_trajectory: also return `.trajectory` (initial canvas, per-step changes,
                confidence and entropy; see `Trajectory`). Costs one extra softmax per step.
        Returns: `SumiGenerationOutput` with `.sequences`, `.lengths`, `.canvas`, `.num_forwards`,
            `.row_forwards` (and `.trajectory`).
        """
        kwargs.pop("token_type_ids", None)  # some tokenizers return it; the model has no segments
        if kwargs:
            raise TypeError(f"generate() got unexpected arguments {sorted(kwargs)}; the options are "
                            f"{sorted(list(GENERATION_DEFAULTS) + ['input_ids', 'attention_mask', 'generator', 'progress_callback', 'generation_config', 'tokenizer'])}")
        explicit = dict(
            max_new_tokens=max_new_tokens, max_length=max_length, num_denoising_steps=num_denoising_steps,
            seed=seed, sampler=sampler, schedule=schedule, min_log_snr=min_log_snr, max_log_snr=max_log_snr,
            temperature=temperature, tokens_per_step=tokens_per_step, frozen=frozen, denoise_end=denoise_end,
            canvas_length=canvas_length, anchor_eosbos=anchor_eosbos, trim_at_eos=trim_at_eos, top_k=top_k,
            top_p=top_p, min_p=min_p, stop_strings=stop_strings, align_rows=align_rows,
            early_stop_patience=early_stop_patience, stop_on_cycle=stop_on_cycle, skip_tail=skip_tail,
        )
        o = self.resolve_generation_options(explicit, generation_config)
        cfg = self.config
        device = next(self.parameters()).device
        V = cfg.vocab_size

        # ---- prompt
        if input_ids is None:
            if cfg.bos_token_id is None:
                raise ValueError("no `input_ids` and the config has no bos_token_id to start from")
            input_ids = torch.tensor([[cfg.bos_token_id]], device=device)
        input_ids = torch.as_tensor(input_ids, device=device)
        if input_ids.dim() == 1:
            input_ids = input_ids[None]
        if input_ids.dim() != 2 or input_ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"input_ids must be integer ids [batch, prompt_len] or [prompt_len], "
                             f"got {input_ids.dtype} of shape {tuple(input_ids.shape)}")
        input_ids = input_ids.long()
        if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= V):
            raise ValueError(f"input_ids must lie in [0, vocab_size={V}), got values in "
                             f"[{int(input_ids.min())}, {int(input_ids.max())}]")
        B, P = input_ids.shape
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        attention_mask = torch.as_tensor(attention_mask, device=device)
        if attention_mask.shape != input_ids.shape:
            raise ValueError(f"attention_mask must have the prompt's shape {tuple(input_ids.shape)}, "
                             f"got {tuple(attention_mask.shape)}")
        prompt_lens = attention_mask.long().sum(-1).tolist()

        # ---- how much to write
        mnt = o["max_new_tokens"]
        if mnt is None and o["max_length"] is not None:
            mnt = o["max_length"] - P
        if mnt is None:
            raise ValueError("pass `max_new_tokens` (or `max_length`): how many tokens to generate")
        if not isinstance(mnt, int) or mnt < 0:
            raise ValueError(f"max_new_tokens must be a non-negative integer, got {mnt!r}")
        if mnt == 0:
            return SumiGenerationOutput(sequences=input_ids, canvas=input_ids, num_forwards=0,
                                        lengths=attention_mask.new_full((B,), P).long(),
                                        row_forwards=torch.zeros(B, dtype=torch.long))
        sampler_name, steps, T = o["sampler"], o["num_denoising_steps"], o["temperature"]
        if sampler_name not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler_name!r}; choose one of {SAMPLERS}")
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"num_denoising_steps must be a positive integer, got {steps!r}")
        if not isinstance(T, (int, float)) or T < 0:
            raise ValueError(f"temperature must be a number >= 0, got {T!r}")
        if not isinstance(o["tokens_per_step"], int) or o["tokens_per_step"] < 1:
            raise ValueError(f"tokens_per_step must be a positive integer, got {o['tokens_per_step']!r}")
        if o["top_k"] is not None and (not isinstance(o["top_k"], int) or o["top_k"] < 1):
            raise ValueError(f"top_k must be a positive integer, got {o['top_k']!r}")
        for name in ("top_p", "min_p"):
            if o[name] is not None and not 0.0 < o[name] <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {o[name]!r}")
        cycle_exit = bool(o["stop_on_cycle"])
        if cycle_exit and not is_deterministic(sampler_name, T):
            raise ValueError(f"stop_on_cycle needs a deterministic sampler (greedy, or adaptive with temperature=0), "
                             f"got sampler={sampler_name!r} at temperature={T}: with random draws a repeated canvas "
                             f"does not repeat its future (early_stop_patience is the heuristic for those)")
        log_snrs = sampling_schedule(steps, o["schedule"], o["min_log_snr"], o["max_log_snr"]).tolist()

        # ---- canvas layout: each row owns columns [start_i, start_i + C) of a [B, S] tensor
        C = min(int(o["canvas_length"]), cfg.max_position_embeddings)
        anchors = bool(o["anchor_eosbos"]) and o["frozen"] is None
        reserve = 2 if anchors else 0
        align = bool(o["align_rows"])
        row_prompt = prompt_lens if align else [P] * B
        for p in row_prompt:
            if p + reserve >= C:
                raise ValueError(f"the prompt ({p} tokens) does not fit a canvas of {C} tokens"
                                 f"{' with the EOS/BOS anchors' if anchors else ''}: shorten it or raise canvas_length")
        budgets = [max(1, min(mnt, C - p - reserve)) for p in row_prompt]
        starts = [P - p for p in row_prompt] if align else [0] * B
        S = max(starts) + C
        cols = torch.arange(S, device=device)
        start_t = torch.tensor(starts, device=device)[:, None]
        in_row = (cols >= start_t) & (cols < start_t + C)  # [B, S]
        position_ids = (cols - start_t).clamp(min=0) if align else cols.expand(B, S)
        key_mask = torch.cat([attention_mask.bool(), in_row[:, P:]], dim=1)

        # ---- randomness and the initial canvas (one randint after the prompt, spec §6)
        gens = generator if isinstance(generator, (list, tuple)) else None
        seeds = o["seed"] if isinstance(o["seed"], (list, tuple)) else None
        if gens is None and seeds is not None:
            if len(seeds) != B:
                raise ValueError(f"seed is a list of {len(seeds)} seeds for {B} rows")
            gens = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
        if gens is None:
            g = generator
            if g is None and o["seed"] is not None:
                g = torch.Generator(device=device).manual_seed(int(o["seed"]))
            gens = [g]
        elif len(gens) != B:
            raise ValueError(f"generator is a list of {len(gens)} generators for {B} rows")
        rng = _Randomness(gens, [(s, s + C) for s in starts], device)
        if rng.per_row:
            init = _Randomness(gens, [(0, C - p) for p in row_prompt], device).randint(V, B, S - P)
        else:
            init = torch.randint(0, V, (B, S - P), generator=gens[0], device=device)
        canvas = torch.cat([input_ids, init], dim=1)
        pad_id = cfg.pad_token_id if cfg.pad_token_id is not None else cfg.eos_token_id
        canvas = torch.where(in_row | (cols < P), canvas, torch.full_like(canvas, pad_id or 0))

        # ---- which positions the sampler may change
        free = in_row & (cols >= P)
        frozen_rows = _normalise_frozen(o["frozen"], B)
        if anchors:
            if cfg.eos_token_id is None or cfg.bos_token_id is None:
                raise ValueError("anchor_eosbos needs eos_token_id and bos_token_id in the config")
            frozen_rows = [[(p + n, cfg.eos_token_id), (p + n + 1, cfg.bos_token_id)]
                           for p, n in zip(row_prompt, budgets)]
        ends = _per_row(o["denoise_end"], B)
        for i in range(B):
            if ends[i] is not None:
                if not isinstance(ends[i], int) or ends[i] < 0:
                    raise ValueError(f"denoise_end must be a non-negative int (or one per row), got {ends[i]!r}")
                free[i, starts[i] + ends[i]:] = False
            for pos, tok in frozen_rows[i]:
                if not 0 <= pos < C or not 0 <= tok < V:
                    raise ValueError(f"frozen entry ({pos}, {tok}) of row {i} is outside the canvas "
                                     f"[0, {C}) or the vocabulary [0, {V})")
                canvas[i, starts[i] + pos] = tok
                free[i, starts[i] + pos] = False

        # ---- skip_tail: each row's forward ends at its BOS anchor; the columns after it are masked
        # out of attention (rows of an aligned batch end at different columns) and never change
        width = S  # columns fed to the model
        if o["skip_tail"]:
            if not anchors:
                raise ValueError("skip_tail needs the EOS/BOS anchors (anchor_eosbos=True and no `frozen`)")
            row_ends = [s + p + n + 2 for s, p, n in zip(starts, row_prompt, budgets)]
            width = max(row_ends)
            for i, e in enumerate(row_ends):
                free[i, e:] = False
                key_mask[i, e:] = False
            rng.spans = [(s, e) for s, e in zip(starts, row_ends)]

        # (clones: on CPU `.cpu()` returns the same tensor, and the canvas is updated in place below)
        trajectory = Trajectory(canvas.cpu().clone(), free.cpu().clone(), log_snrs, [], [], [], []) if record_trajectory else None

        # ---- the denoising loop
        was_training = self.training
        self.eval()
        patience = o["early_stop_patience"]
        per_row_exit = ((patience is not None and patience > 0) or cycle_exit) \
            and not record_trajectory and progress_callback is None
        unchanged = torch.zeros(B, dtype=torch.long, device=device)  # consecutive steps without a change
        active = torch.ones(B, dtype=torch.bool, device=device)  # rows still in the batch
        row_forwards = torch.zeros(B, dtype=torch.long, device=device)
        forwards = 0
        key_mask, free, position_ids = key_mask[:, :width], free[:, :width], position_ids[:, :width]
        # canvases after steps k+1-CYCLE_WINDOW .. k (oldest first), for stop_on_cycle
        history = deque([canvas[:, :width].clone()], maxlen=CYCLE_WINDOW) if cycle_exit else None
        finals: dict[int, torch.Tensor] = {}  # stop_on_cycle with every row kept: each row's last canvas
        try:
            for k in range(steps):
                lam_t, lam_s = log_snrs[k], log_snrs[k + 1]
                # the rows still being denoised: all of them unless some have stopped
                rows_in = None if bool(active.all()) else active.nonzero().squeeze(-1)
                pick = (lambda x: x) if rows_in is None else (lambda x: x.index_select(0, rows_in))
                z, free_k, mask_k = pick(canvas[:, :width]), pick(free), pick(key_mask)
                rng_k = rng if rows_in is None else rng.select(rows_in)
                logits = self(input_ids=z, attention_mask=None if bool(mask_k.all()) else mask_k.long(),
                              position_ids=pick(position_ids) if align else None).logits
                forwards += 1
                row_forwards += active.long()
                selected = None
                if sampler_name == "ancestral":
                    new = ancestral_step(logits, z, free_k, lam_t, lam_s, rng_k, vocab_size=V, temperature=T,
                                         top_k=o["top_k"], top_p=o["top_p"], min_p=o["min_p"])
                elif sampler_name == "adaptive":
                    new, selected = adaptive_step(logits, z, free_k, rng_k, vocab_size=V,
                                                  tokens_per_step=o["tokens_per_step"], temperature=T,
                                                  top_k=o["top_k"], top_p=o["top_p"], min_p=o["min_p"])
                else:
                    new = greedy_step(logits, z, free_k, vocab_size=V)
                summary = None
                if record_trajectory or progress_callback is not None:
                    summary = softmax_summary(logits[..., :V], z, top1=True, entropy=record_trajectory)
                if record_trajectory:  # (all rows are in the batch here, see per_row_exit)
                    pad = (0, S - width)  # skipped tail columns: zeros (they are never free)
                    rows, cols = (new != z).nonzero(as_tuple=True)
                    trajectory.changes.append((rows.cpu(), cols.cpu(), new[rows, cols].cpu()))
                    trajectory.top1_prob.append(torch.nn.functional.pad(summary["max"], pad).half().cpu())
                    trajectory.entropy.append(torch.nn.functional.pad(summary["entropy"], pad).half().cpu())
                    trajectory.selected.append(None if selected is None else selected.cpu())
                row_changed = (new != z).any(-1)
                if rows_in is None:
                    canvas[:, :width] = new
                    unchanged = torch.where(row_changed, 0, unchanged + 1)
                else:
                    canvas[rows_in, :width] = new
                    unchanged[rows_in] = torch.where(row_changed, 0, unchanged[rows_in] + 1)
                if progress_callback is not None:
                    progress_callback(dict(step=k, num_steps=steps, log_snr_t=lam_t, log_snr_s=lam_s, z=new,
                                           top1_z=summary["argmax"], top1_prob=summary["max"], noise_mask=free_k,
                                           selected_pos=selected))
                if cycle_exit:
                    now = canvas[:, :width]
                    pending = active.clone()
                    pending[list(finals)] = False
                    for r, final in _find_cycles(now, history, pending, k, steps).items():
                        if per_row_exit:  # the row takes its last canvas now and leaves
                            canvas[r, :width] = final
                            active[r] = False
                        else:
                            finals[r] = final
                    history.append(now.clone())
                    # with callbacks or a trajectory every row stays in: stop at a step where each
                    # row already holds its last canvas, so the records end on the result
                    if len(finals) == B and all(torch.equal(now[r], f) for r, f in finals.items()):
                        break
                if patience is not None and patience > 0:
                    if per_row_exit:
                        active &= unchanged < patience
                    elif bool((unchanged >= patience).all()):
                        break
                if per_row_exit and not bool(active.any()):
                    break
        finally:
            self.train(was_training)

        # ---- output: with align_rows, `.canvas` holds each row's own C columns (as if it ran alone)
        canvas_out = torch.stack([canvas[i, s:s + C] for i, s in enumerate(starts)]) if align else canvas
        sequences, lengths = trim_sequences(canvas, P, budgets, cfg.eos_token_id, pad_id if pad_id is not None else 0,
                                   bool(o["trim_at_eos"]))
        stops = o["stop_strings"]
        if stops:
            if tokenizer is None:
                raise ValueError("stop_strings need `tokenizer=` to decode the generated text")
            stops = [stops] if isinstance(stops, str) else list(stops)
            sequences, lengths = _cut_at_stop_strings(sequences, lengths, P, tokenizer, stops,
                                                      pad_id if pad_id is not None else 0)
        return SumiGenerationOutput(sequences=sequences, canvas=canvas_out, num_forwards=forwards, lengths=lengths,
                                    trajectory=trajectory, row_forwards=row_forwards.cpu())


__all__ = [
    "SAMPLERS", "GENERATION_DEFAULTS", "SumiGenerationOutput", "Trajectory", "SumiGenerationMixin", "filter_probs",
    "denoiser_probs", "dense_posterior", "softmax_summary", "ancestral_step", "adaptive_step", "is_deterministic",
    "greedy_step", "trim_sequences",
]
