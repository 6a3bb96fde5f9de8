"""Batched NELBO scoring of token canvases (spec §4): the likelihood side of evaluation.

A *score request* is a clean canvas `tokens` and a span `[start, end)` of it. The span is noised
and scored; every other position stays clean and acts as conditioning context. The estimate is

    NELBO(span | rest) = E_{t ~ U[t_min, t_max]} [ sum_{i in span} loss_i(z_t, x, t) / (t (1 - t)) ]

with `loss` the uniform GIDD loss without the z-loss (`sumi.diffusion.uniform_gidd_loss`) and z_t
the canvas with only the span noised. It is an upper bound on `-log p(span | rest)` in nats (up to
the endpoint constants of order 1e-4 that the spec drops), so `-NELBO` is the log-likelihood we
report. `t` comes from `sumi.diffusion.nelbo_t_grid`: "stratified-logsnr" (the default here: one
uniform draw of the log-SNR per stratum, unbiased, low variance), "stratified" (uniform-in-t strata)
or "quadrature" (Gauss-Legendre nodes in log-SNR, deterministic in t).

Batching and seeding. Each request expands into `num_samples` canvases (one per t). The random
numbers of a request (its t grid and its noise draws) come from generators seeded by `(seed, key)`,
where `key` defaults to the *clean context* (the canvas with the span removed, plus the span's
start). The canvases of the requests that share a key (a *group*: the choices of a question, one
rolling window) are sorted by length (then content) and run `batch_size` at a time (right-padded,
padded keys masked); a batch never mixes groups. Only the span's hidden states go through the LM
head, so a long few-shot context costs no `[S, V]` logits. Hence

* a request's estimate does not depend on the order of the requests, and not even in the last
  float bit on what else is scored in the same call: its group runs the very same batches (same
  shapes, same padding) whether it is scored alone, in a shard of a data-parallel run or with a
  whole benchmark, so 1 and N processes give identical scores (the batch size still changes the
  shapes, hence the rounding);
* the choices of a multiple-choice question (same context, different continuations) share their
  t grid and noise draws: *common random numbers*, so that the comparison between choices is far
  less noisy than each estimate on its own.

Callers pass an explicit `key` when that default is wrong: `SumiEvaluator` keys log-likelihoods by
item (so that WinoGrande's two contexts share draws and different items never do) and rolling
windows by their own tokens (windows without clean context would otherwise all share one key).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch

from ..diffusion import MAX_LOG_SNR, MIN_LOG_SNR, NELBO_METHODS, check_nelbo_grid, nelbo_terms
from ..diffusion import nelbo_t_grid as t_grid
from ..seeding import derive_seed

DEFAULT_NELBO_METHOD = "stratified-logsnr"


@dataclass(frozen=True)
class ScoreRequest:
    """A clean canvas and the span `[start, end)` of it to noise and score.

    `key`: what the request's random numbers derive from (with the global seed). None = the clean
    context `(tokens[:start], tokens[end:], start)`, so requests sharing a context share them.
    """

    tokens: tuple[int, ...]
    start: int
    end: int
    key: tuple | None = None

    def __post_init__(self):
        if not 0 <= self.start <= self.end <= len(self.tokens):
            raise ValueError(f"span [{self.start}, {self.end}) is outside the canvas of {len(self.tokens)} tokens")

    @property
    def num_scored(self) -> int:
        return self.end - self.start

    def random_key(self) -> tuple:
        if self.key is not None:
            return tuple(self.key)
        return (tuple(self.tokens[: self.start]), tuple(self.tokens[self.end :]), self.start)


@torch.no_grad()
def nelbo_scores(
    model,
    requests: Sequence[ScoreRequest],
    *,
    num_samples: int = 16,
    method: str = DEFAULT_NELBO_METHOD,
    seed: int = 0,
    batch_size: int = 8,
    min_log_snr: float = MIN_LOG_SNR,
    max_log_snr: float = MAX_LOG_SNR,
    beta_is: float | None = None,
    pad_id: int | None = None,
    max_loss_elements: int = 1 << 27,
    progress: Callable[[int], None] | None = None,
) -> list[float]:
    """The NELBO (nats, summed over the span) of each request; see the module docstring.

    Args:
        model: a `SumiForMaskGeneration` (uses `model.model` and `model.lm_head`).
        num_samples: t samples per request (one forward of its canvas each).
        method: "stratified-logsnr" (default), "stratified" or "quadrature" (see `t_grid`).
        seed: base seed; a request's randomness derives from `(seed, request.random_key())`.
        batch_size: canvases per forward (at most: a batch holds the canvases of one random key).
        beta_is: weight of the Itakura-Saito term (default: the model config's).
        max_loss_elements: the loss is computed over at most this many `position x vocab` entries
            at once (bounds the fp32 temporaries for large vocabularies).
        progress: called with the number of canvases done after each forward.
    Returns: one float per request (0.0 for an empty span).
    """
    check_nelbo_grid(num_samples, method)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    cfg = model.config
    V = cfg.vocab_size
    beta = float(cfg.uniform_diffusion_beta_is if beta_is is None else beta_is)
    if pad_id is None:
        pad_id = cfg.pad_token_id if cfg.pad_token_id is not None else 0
    device = next(model.parameters()).device
    max_len = cfg.max_position_embeddings
    for r in requests:
        if len(r.tokens) > max_len:
            raise ValueError(f"a canvas of {len(r.tokens)} tokens exceeds max_position_embeddings={max_len}")
        if r.tokens and (min(r.tokens) < 0 or max(r.tokens) >= V):
            raise ValueError(f"token ids must lie in [0, {V})")

    batches = _group_batches(requests, num_samples, method, seed, batch_size, min_log_snr, max_log_snr)
    parts = [[0.0] * num_samples for _ in requests]  # per (request, k): summed in k order at the end
    lm_head = model.lm_head
    chunk = max(1, max_loss_elements // V)
    for batch in batches:
        S = max(len(requests[i].tokens) for i, *_ in batch)
        z_b = torch.full((len(batch), S), pad_id, dtype=torch.long)
        x_b = torch.full((len(batch), S), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), S), dtype=torch.long)
        sel_rows, sel_cols, sel_t, sel_w = [], [], [], []
        for b, (i, _, t, w, noise_seed) in enumerate(batch):
            r = requests[i]
            n, L = r.num_scored, len(r.tokens)
            x = torch.tensor(r.tokens, dtype=torch.long)
            # one generator per t sample: span position j draws the same numbers for every
            # continuation length (common random numbers across the choices of a question)
            gk = torch.Generator().manual_seed(noise_seed)
            replace = torch.rand(n, generator=gk) < t
            noise = torch.randint(0, V, (n,), generator=gk)
            x_b[b, :L] = x
            z_b[b, :L] = x
            z_b[b, r.start : r.end] = torch.where(replace, noise, x[r.start : r.end])
            mask[b, :L] = 1
            sel_rows += [b] * n
            sel_cols += list(range(r.start, r.end))
            sel_t += [t] * n
            sel_w += [w] * n
        z_b, x_b = z_b.to(device), x_b.to(device)
        attn = None if bool(mask.all()) else mask.to(device)
        hidden = model.model(input_ids=z_b, attention_mask=attn).last_hidden_state
        rows_t = torch.tensor(sel_rows, device=device)
        cols_t = torch.tensor(sel_cols, device=device)
        t_t = torch.tensor(sel_t, dtype=torch.float64, device=device)
        w_t = torch.tensor(sel_w, dtype=torch.float64, device=device)
        per_pos = torch.empty(len(sel_rows), dtype=torch.float64, device=device)
        for c0 in range(0, len(sel_rows), chunk):
            rr, cc, part = rows_t[c0 : c0 + chunk], cols_t[c0 : c0 + chunk], slice(c0, c0 + chunk)
            per_pos[part] = nelbo_terms(
                lm_head(hidden[rr, cc]), z_b[rr, cc], x_b[rr, cc], t_t[part], w_t[part], vocab_size=V, beta_is=beta
            )
        per_row = torch.zeros(len(batch), dtype=torch.float64, device=device).index_add_(0, rows_t, per_pos)
        for (i, k, *_), value in zip(batch, per_row.tolist()):
            parts[i][k] = value
        if progress is not None:
            progress(len(batch))
    return [math.fsum(p) for p in parts]


def _group_batches(
    requests: Sequence[ScoreRequest],
    num_samples: int,
    method: str,
    seed: int,
    batch_size: int,
    min_log_snr: float,
    max_log_snr: float,
) -> list[list[tuple[int, int, float, float, int]]]:
    """The batches of `(request index, k, t, weight, noise seed)` rows, one row per canvas to run.

    Rows are grouped by random key and a batch holds one group's rows only, in an order that depends
    on the group's requests alone (length, then content): what else is scored cannot change a
    request's batches. Only these numbers are kept; the noised canvas is built when its batch
    runs, so memory stays O(batch) however many requests come."""
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(requests):
        if r.num_scored:
            groups.setdefault(r.random_key(), []).append(i)
    batches = []
    for key, members in groups.items():
        base = derive_seed(seed, method, num_samples, key)  # hashes the (long) key once
        ts, ws = t_grid(
            num_samples,
            method,
            min_log_snr=min_log_snr,
            max_log_snr=max_log_snr,
            generator=torch.Generator().manual_seed(base),
        )
        grid = [(k, t, w, derive_seed(base, k)) for k, (t, w) in enumerate(zip(ts.tolist(), ws.tolist()))]
        members.sort(key=lambda i: (-len(requests[i].tokens), requests[i].tokens, requests[i].start, requests[i].end))
        rows = [(i, *g) for i in members for g in grid]
        batches += [rows[a : a + batch_size] for a in range(0, len(rows), batch_size)]
    return batches


def count_canvases(requests: Iterable[ScoreRequest], num_samples: int) -> int:
    """How many forwards-worth of canvases `nelbo_scores` will run (for progress bars)."""
    return sum(num_samples for r in requests if r.num_scored > 0)


# ----------------------------------------------------------------------------- rolling windows
def rolling_windows(num_tokens: int, window: int, *, bos: bool = True, context: int = 0) -> list[tuple[int, int, int]]:
    """Windows that score every token of a document exactly once, for `loglikelihood_rolling` and
    perplexity, over the sequence `U = [BOS] + doc` (or `doc` when `bos` is False).

    Scored chunks: the first covers U[b : window) (b = 1 with a BOS, which is given, not scored),
    the next ones `window - context` tokens each. Each chunk is scored on the canvas of the (up to)
    `window` tokens of U that *end* with it, so the earlier tokens of that canvas are clean
    context: with `context = 0` the chunks are disjoint canvases except the last, which is filled
    up with clean context from before it (lm-eval's rule: full context for the last window).

    Returns `(canvas_start, score_start, score_end)` triples in U coordinates.
    """
    if window < 2:
        raise ValueError(f"window must be >= 2, got {window}")
    if not 0 <= context < window:
        raise ValueError(f"context must be in [0, window), got {context}")
    first = 1 if bos else 0
    total = num_tokens + first
    out = []
    a = first
    b = min(window, total)
    while a < total:
        out.append((max(0, b - window), a, b))
        a, b = b, min(b + window - context, total)
    return out


__all__ = [
    "NELBO_METHODS",
    "DEFAULT_NELBO_METHOD",
    "t_grid",
    "ScoreRequest",
    "derive_seed",
    "nelbo_scores",
    "count_canvases",
    "rolling_windows",
]
