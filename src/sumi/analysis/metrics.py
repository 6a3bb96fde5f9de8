"""How a uniform diffusion model writes: metrics over a recorded `Trajectory` (pure functions).

Conventions (docs/analysis.md gives every formula):

* canvases `z^(0)` (initial) ... `z^(N)` (final); **step j** (1-based, j = 1..N) turns `z^(j-1)`
  into `z^(j)`. `Trajectory.changes[j - 1]` holds step j; `top1_prob[j - 1]` / `entropy[j - 1]`
  are the denoiser outputs step j computed on `z^(j-1)`. Per-step arrays below are indexed
  `[j - 1]`; per-canvas arrays (length N + 1) are indexed by the canvas index j.
* the analysed positions `M` are a `[B, S]` mask, always inside `trajectory.free` (prompt, EOS/BOS
  anchors and other frozen tokens never count). `region_mask()` builds it.
* a position's **commit step** `c` is the last step that changed it (0 = never changed): from
  canvas `z^(c)` on, it holds its final value.
* a **revision window** `(w, N]` is the steps after canvas `z^(w)` (e.g. extra steps beyond a
  nominal schedule of w steps).

Shares are pooled over every analysed position of every row (one number per batch), except
`edit_step_share`, which pools (row, step) pairs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

REGIONS = ("generated", "free", "tail")


# ----------------------------------------------------------------------------- basics
@dataclass
class Events:
    """Every change of a trajectory as flat arrays (numpy int64), ordered by step: 1-based `step`,
    `row`, `col`, new `value`."""

    step: np.ndarray
    row: np.ndarray
    col: np.ndarray
    value: np.ndarray


def events(trajectory, mask: torch.Tensor | None = None) -> Events:
    """The trajectory's changes, keeping only positions in `mask` (default: all free positions)."""
    mask = analysed_mask(trajectory, mask)
    steps, rows, cols, values = [], [], [], []
    for j, (r, c, v) in enumerate(trajectory.changes, start=1):
        r, c, v = (torch.as_tensor(x).long().reshape(-1) for x in (r, c, v))
        keep = mask[r, c] if r.numel() else torch.zeros(0, dtype=torch.bool)
        n = int(keep.sum())
        if n:
            steps.append(np.full(n, j, dtype=np.int64))
            rows.append(r[keep].numpy())
            cols.append(c[keep].numpy())
            values.append(v[keep].numpy())
    if not steps:
        empty = np.zeros(0, dtype=np.int64)
        return Events(empty, empty.copy(), empty.copy(), empty.copy())
    return Events(*(np.concatenate(x).astype(np.int64) for x in (steps, rows, cols, values)))


def analysed_mask(trajectory, mask: torch.Tensor | None = None) -> torch.Tensor:
    """`mask & trajectory.free` (`[B, S]` bool); `mask=None` means every free position."""
    free = torch.as_tensor(trajectory.free).bool()
    if mask is None:
        return free.clone()
    mask = torch.as_tensor(mask).bool()
    if mask.shape != free.shape:
        raise ValueError(f"mask has shape {tuple(mask.shape)}, the trajectory's canvas is {tuple(free.shape)}")
    return mask & free


def region_mask(trajectory, metadata: dict | None = None, region: str = "generated") -> torch.Tensor:
    """The positions to analyse, `[B, S]` bool (always inside `trajectory.free`).

    region: "free" = every position the sampler could change (the generated text and the free
    context after the BOS anchor); "generated" = row b's columns `generated_columns[b]` from the
    metadata (the answer budget between the prompt and the EOS anchor), or every free position
    when the metadata does not say; "tail" = free positions outside the generated region.
    """
    if region not in REGIONS:
        raise ValueError(f"unknown region {region!r}; choose one of {REGIONS}")
    free = torch.as_tensor(trajectory.free).bool()
    spans = (metadata or {}).get("generated_columns")
    if region == "free" or spans is None:
        if region == "tail" and spans is None:
            raise ValueError("region 'tail' needs metadata with generated_columns")
        return free.clone()
    generated = torch.zeros_like(free)
    for b, (lo, hi) in enumerate(spans):
        generated[b, int(lo) : int(hi)] = True
    return free & generated if region == "generated" else free & ~generated


def truncate(trajectory, num_steps: int):
    """The trajectory of the first `num_steps` steps (what a shorter run of a sampler whose steps do
    not depend on the total, greedy or adaptive, would have recorded)."""
    if not 0 <= num_steps <= trajectory.num_steps:
        raise ValueError(f"num_steps must be in [0, {trajectory.num_steps}], got {num_steps}")
    return type(trajectory)(
        trajectory.initial,
        trajectory.free,
        list(trajectory.log_snrs[: num_steps + 1]),
        list(trajectory.changes[:num_steps]),
        list(trajectory.top1_prob[:num_steps]),
        list(trajectory.entropy[:num_steps]),
        list(trajectory.selected[:num_steps]),
    )


def _nan_div(a: float, b: float) -> float:
    return float(a) / float(b) if b else float("nan")


def _window(trajectory, window_start: int | None, window_end: int | None = None) -> tuple[int, int]:
    N = trajectory.num_steps
    w = 0 if window_start is None else int(window_start)
    e = N if window_end is None else int(window_end)
    if not 0 <= w <= e <= N:
        raise ValueError(f"revision window must satisfy 0 <= start <= end <= {N}, got ({w}, {e}]")
    return w, e


# ----------------------------------------------------------------------------- overwrite
def change_counts(trajectory, mask: torch.Tensor | None = None) -> np.ndarray:
    """`[N, B]` int: analysed positions of row b that step j changed (index `[j - 1, b]`)."""
    ev = events(trajectory, mask)
    B = trajectory.initial.shape[0]
    N = trajectory.num_steps
    return np.bincount((ev.step - 1) * B + ev.row, minlength=N * B).reshape(N, B)


def overwrite_rates(trajectory, mask: torch.Tensor | None = None) -> np.ndarray:
    """`[N]`: per-step overwrite rate `r_j = |{i in M : z_i^(j) != z_i^(j-1)}| / |M|`."""
    M = analysed_mask(trajectory, mask)
    return (
        change_counts(trajectory, M).sum(1) / max(int(M.sum()), 1) if M.any() else np.full(trajectory.num_steps, np.nan)
    )


def rows_changed(trajectory, mask: torch.Tensor | None = None) -> np.ndarray:
    """`[N, B]` bool: step j changed at least one analysed position of row b."""
    return change_counts(trajectory, mask) > 0


def edit_step_share(
    trajectory, mask: torch.Tensor | None = None, window_start: int | None = None, window_end: int | None = None
) -> float:
    """Share of (row, step) pairs, steps j in the window `(w, e]`, in which the step overwrote at
    least one analysed token of the row (rows without analysed positions are left out)."""
    M = analysed_mask(trajectory, mask)
    w, e = _window(trajectory, window_start, window_end)
    rows = M.any(1).numpy()
    hit = rows_changed(trajectory, M)[w:e][:, rows]
    return _nan_div(hit.sum(), hit.size)


def gross_change(
    trajectory, mask: torch.Tensor | None = None, window_start: int | None = None, window_end: int | None = None
) -> float:
    """Overwrites per analysed position in the window: `sum_{j in (w, e]} r_j` (the churn)."""
    M = analysed_mask(trajectory, mask)
    w, e = _window(trajectory, window_start, window_end)
    return _nan_div(change_counts(trajectory, M)[w:e].sum(), M.sum())


# ----------------------------------------------------------------------------- net change
def net_change(trajectory, start: int = 0, end: int | None = None, mask: torch.Tensor | None = None) -> float:
    """Share of analysed positions whose token differs between canvases `z^(start)` and `z^(end)`
    (default end = N): the net change over the revision window `(start, end]`."""
    M = analysed_mask(trajectory, mask)
    w, e = _window(trajectory, start, end)
    a, b = trajectory.canvas(w - 1), trajectory.canvas(e - 1)
    return _nan_div(((a != b) & M).sum(), M.sum())


def net_change_to_final(trajectory, mask: torch.Tensor | None = None) -> np.ndarray:
    """`[N + 1]`: `d_j = |{i in M : z_i^(j) != z_i^(N)}| / |M|` for every canvas index j = 0..N."""
    M = analysed_mask(trajectory, mask)
    final = trajectory.canvas(trajectory.num_steps - 1)
    z = trajectory.initial.clone()
    n = max(int(M.sum()), 1)
    out = [float(((z != final) & M).sum()) / n]
    for rows, cols, values in trajectory.changes:
        z[rows, cols] = values
        out.append(float(((z != final) & M).sum()) / n)
    return np.asarray(out) if M.any() else np.full(len(out), np.nan)


# ----------------------------------------------------------------------------- commitment
def commit_steps(trajectory) -> torch.LongTensor:
    """`[B, S]`: the last (1-based) step that changed each position, 0 if it never changed
    (then it kept its initial token; frozen and prompt positions are always 0)."""
    c = torch.zeros(trajectory.initial.shape, dtype=torch.long)
    for j, (rows, cols, _) in enumerate(trajectory.changes, start=1):
        c[rows, cols] = j
    return c


def settled_share(trajectory, mask: torch.Tensor | None = None) -> np.ndarray:
    """`[N + 1]`: share of analysed positions already at their final value for good at canvas j,
    `s_j = |{i in M : c_i <= j}| / |M|` (1 - s_j bounds the net change d_j from above)."""
    M = analysed_mask(trajectory, mask)
    c = commit_steps(trajectory)[M].numpy()
    N = trajectory.num_steps
    if not c.size:
        return np.full(N + 1, np.nan)
    return np.cumsum(np.bincount(c, minlength=N + 1)) / c.size


def _rankdata(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties get their average rank (like scipy.stats.rankdata)."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    bounds = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1], True])
    avg = (bounds[:-1] + bounds[1:] - 1) / 2.0 + 1.0
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.repeat(avg, np.diff(bounds))
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (Pearson correlation of average ranks); NaN if either input is
    constant or has fewer than 2 entries."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"spearman: shapes differ {x.shape} vs {y.shape}")
    if x.size < 2:
        return float("nan")
    rx, ry = _rankdata(x), _rankdata(y)
    rx -= rx.mean()
    ry -= ry.mean()
    den = math.sqrt(float((rx * rx).sum()) * float((ry * ry).sum()))
    return float((rx * ry).sum() / den) if den > 0 else float("nan")


def position_features(trajectory, metadata: dict | None = None) -> dict[str, torch.Tensor]:
    """`[B, S]` float features of each column, for the commitment-order correlations:

    * position: the column's index in its row's own canvas (`col - row_starts[b]`);
    * distance_from_prompt: `col - (P - 1)`, P = the end of the (padded) prompt (metadata
      `prompt_len`; else the row's first free column);
    * distance_from_anchors: `min_a |col - a|` over the row's pinned columns after the prompt
      (the EOS/BOS anchors or `frozen` tokens: metadata `anchor_columns`; else the non-free columns
      between the row's first and last free column); NaN where a row has none;
    * distance_from_context: the smaller of the two distances.
    """
    meta = metadata or {}
    free = torch.as_tensor(trajectory.free).bool()
    B, S = free.shape
    cols = torch.arange(S, dtype=torch.float64).expand(B, S)
    starts = meta.get("row_starts") or [0] * B
    position = cols - torch.tensor(starts, dtype=torch.float64)[:, None]
    prompt_end = []
    for b in range(B):
        if meta.get("prompt_len") is not None:
            prompt_end.append(int(meta["prompt_len"]))
        else:
            idx = free[b].nonzero()
            prompt_end.append(int(idx[0]) if idx.numel() else 0)
    d_prompt = cols - (torch.tensor(prompt_end, dtype=torch.float64)[:, None] - 1)
    d_anchor = torch.full((B, S), float("nan"), dtype=torch.float64)
    anchors = meta.get("anchor_columns")
    for b in range(B):
        if anchors is not None:
            a = [int(x) for x in anchors[b]]
        else:
            idx = free[b].nonzero().squeeze(-1)
            if idx.numel() == 0:
                continue
            lo, hi = int(idx[0]), int(idx[-1])
            a = [c for c in range(lo, hi + 1) if not bool(free[b, c])]
        if a:
            at = torch.tensor(a, dtype=torch.float64)
            d_anchor[b] = (cols[b][:, None] - at[None, :]).abs().min(-1).values
    d_context = torch.where(torch.isnan(d_anchor), d_prompt.abs(), torch.minimum(d_prompt.abs(), d_anchor))
    return dict(
        position=position,
        distance_from_prompt=d_prompt,
        distance_from_anchors=d_anchor,
        distance_from_context=d_context,
    )


def commitment_order(trajectory, mask: torch.Tensor | None = None, metadata: dict | None = None) -> dict[str, float]:
    """Spearman correlations between the commit step `c_i` and each `position_features()` feature,
    pooled over the analysed positions of all rows (positions where a feature is NaN are dropped).
    Positive with position = the canvas settles left to right; negative with distance from the
    anchors = positions near the EOS/BOS anchors settle last."""
    M = analysed_mask(trajectory, mask)
    c = commit_steps(trajectory)[M].double().numpy()
    out = {}
    for name, feature in position_features(trajectory, metadata).items():
        f = feature[M].numpy()
        ok = ~np.isnan(f)
        out[name] = spearman(c[ok], f[ok]) if ok.any() else float("nan")
    return out


# ----------------------------------------------------------------------------- round trips
@dataclass
class RoundTrips:
    """Every return of a position to a value it held before.

    For each analysed position the values it takes are `v_0` (initial), `v_1`, ..., `v_m` (after
    its 1st, ..., m-th change, at steps `s_1 < ... < s_m`). Change k is a *return* (one round
    trip) when `v_k = v_i` for some `i < k`; with the latest such i: `hops = k - i` (2 = A->B->A,
    3 = A->B->C->A, ...) and `length = s_k - s_{i+1}` = the number of canvases in which the position
    showed something other than `v_k` (>= 1). Arrays are aligned, one entry per return.
    """

    step: np.ndarray
    row: np.ndarray
    col: np.ndarray
    hops: np.ndarray
    length: np.ndarray
    num_positions: int
    num_changes: int
    positions_with_return: int
    returned_to_initial: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def count(self) -> int:
        return int(self.step.size)

    def summary(self) -> dict[str, Any]:
        n = self.count
        hops_hist = np.bincount(self.hops, minlength=4) if n else np.zeros(4, dtype=np.int64)
        return dict(
            count=n,
            rate_per_position=_nan_div(n, self.num_positions),
            positions_with_round_trip=self.positions_with_return,
            share_of_positions=_nan_div(self.positions_with_return, self.num_positions),
            share_of_changes=_nan_div(n, self.num_changes),
            aba=int(hops_hist[2]),
            abca=int(hops_hist[3]),
            longer_cycles=int(hops_hist[4:].sum()),
            returned_to_initial=self.returned_to_initial,
            mean_length=float(self.length.mean()) if n else float("nan"),
            median_length=float(np.median(self.length)) if n else float("nan"),
            max_length=int(self.length.max()) if n else 0,
        )


def round_trips(
    trajectory, mask: torch.Tensor | None = None, window_start: int | None = None, window_end: int | None = None
) -> RoundTrips:
    """The round trips (returns) of the analysed positions whose return step lies in the window
    `(w, e]` (default: the whole run); the earlier visit may lie before the window."""
    M = analysed_mask(trajectory, mask)
    w, e = _window(trajectory, window_start, window_end)
    ev = events(trajectory, M)
    S = trajectory.initial.shape[1]
    init_r, init_c = M.nonzero(as_tuple=True)
    init_v = trajectory.initial[init_r, init_c]
    # occurrences: the initial value (step 0) of every analysed position, then each change
    step = np.concatenate([np.zeros(init_r.numel(), dtype=np.int64), ev.step])
    row = np.concatenate([init_r.numpy().astype(np.int64), ev.row])
    col = np.concatenate([init_c.numpy().astype(np.int64), ev.col])
    value = np.concatenate([init_v.numpy().astype(np.int64), ev.value])
    pos = row * S + col
    order = np.lexsort((step, pos))  # by position, then time
    step, row, col, value, pos = step[order], row[order], col[order], value[order], pos[order]
    first = np.r_[True, pos[1:] != pos[:-1]]
    group_start = np.maximum.accumulate(np.where(first, np.arange(pos.size), 0))
    k = np.arange(pos.size) - group_start  # change index within the position (0 = initial)
    by_value = np.lexsort((k, value, pos))  # occurrences of the same value at a position, in time order
    same = np.zeros(pos.size, dtype=bool)
    same[1:] = (pos[by_value][1:] == pos[by_value][:-1]) & (value[by_value][1:] == value[by_value][:-1])
    ret = by_value[same]  # index (position order) of each return
    prev = by_value[np.flatnonzero(same) - 1]  # the latest earlier visit of the same value
    left_at = step[prev + 1]  # the step that left the earlier visit
    in_window = (step[ret] > w) & (step[ret] <= e)
    ret, prev, left_at = ret[in_window], prev[in_window], left_at[in_window]
    time_order = np.lexsort((col[ret], row[ret], step[ret]))
    ret, prev, left_at = ret[time_order], prev[time_order], left_at[time_order]
    in_w_changes = int(((ev.step > w) & (ev.step <= e)).sum())
    return RoundTrips(
        step=step[ret],
        row=row[ret],
        col=col[ret],
        hops=k[ret] - k[prev],
        length=step[ret] - left_at,
        num_positions=int(M.sum()),
        num_changes=in_w_changes,
        positions_with_return=int(np.unique(pos[ret]).size),
        returned_to_initial=int((k[prev] == 0).sum()),
    )


def return_rates(trajectory, mask: torch.Tensor | None = None, trips: RoundTrips | None = None) -> np.ndarray:
    """`[N]`: returns (round trips completed) at step j per analysed position."""
    M = analysed_mask(trajectory, mask)
    trips = trips if trips is not None else round_trips(trajectory, M)
    counts = np.bincount(trips.step - 1, minlength=trajectory.num_steps)[: trajectory.num_steps]
    return counts / int(M.sum()) if M.any() else np.full(trajectory.num_steps, np.nan)


# ----------------------------------------------------------------------------- confidence
def confidence_entropy(trajectory, mask: torch.Tensor | None = None) -> dict[str, np.ndarray] | None:
    """Per step j, the mean over analysed positions of the denoiser's top-1 probability and entropy
    (nats) computed on `z^(j-1)`, over all of M, over the *committed* positions (c_i <= j - 1: the
    token the model sees is already final) and the *uncommitted* ones (c_i >= j). NaN where a group
    is empty. None if the trajectory holds no confidence records."""
    if not trajectory.top1_prob or len(trajectory.top1_prob) != trajectory.num_steps:
        return None
    M = analysed_mask(trajectory, mask)
    c = commit_steps(trajectory)
    out: dict[str, list] = {
        f"{q}_{g}": [] for q in ("confidence", "entropy") for g in ("all", "committed", "uncommitted")
    }
    for j in range(1, trajectory.num_steps + 1):
        groups = dict(all=M, committed=M & (c <= j - 1), uncommitted=M & (c >= j))
        for q, values in (("confidence", trajectory.top1_prob[j - 1]), ("entropy", trajectory.entropy[j - 1])):
            values = torch.as_tensor(values).float()
            for g, sel in groups.items():
                out[f"{q}_{g}"].append(float(values[sel].mean()) if sel.any() else float("nan"))
    return {k: np.asarray(v) for k, v in out.items()}


# ----------------------------------------------------------------------------- everything
def _clean(x: Any) -> Any:
    """JSON-safe: numpy -> python, NaN/inf -> None."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return _clean(x.tolist())
    if isinstance(x, torch.Tensor):
        return _clean(x.tolist())
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def analyze_trajectory(
    trajectory,
    metadata: dict | None = None,
    *,
    region: str = "generated",
    mask: torch.Tensor | None = None,
    window_start: int | None = None,
) -> dict[str, Any]:
    """All metrics of one trajectory as a JSON-ready dict: `summary` (scalars), `per_step` (arrays of
    length N, index j - 1), `per_canvas` (length N + 1, index j), histograms and the commit-step
    matrix of the analysed columns. `window_start` w adds the revision-window metrics of `(w, N]`."""
    meta = metadata or {}
    M = analysed_mask(trajectory, mask if mask is not None else region_mask(trajectory, meta, region))
    N = trajectory.num_steps
    trips = round_trips(trajectory, M)
    counts = change_counts(trajectory, M)
    overwrite = counts.sum(1) / max(int(M.sum()), 1)
    rows = M.any(1).numpy()
    hit = counts[:, rows] > 0
    c = commit_steps(trajectory)
    cm = c[M].double()
    conf = confidence_entropy(trajectory, M)
    summary: dict[str, Any] = dict(
        num_rows=int(M.shape[0]),
        num_positions=int(M.sum()),
        num_steps=N,
        overwrite_rate_mean=float(overwrite.mean()) if N else float("nan"),
        edit_step_share=_nan_div(hit.sum(), hit.size),
        steps_with_any_change=int((counts.sum(1) > 0).sum()),
        gross_change=_nan_div(counts.sum(), M.sum()),
        net_change=net_change(trajectory, 0, N, M),
        round_trips=trips.summary(),
        commit=dict(
            mean_step=float(cm.mean()) if cm.numel() else float("nan"),
            median_step=float(cm.median()) if cm.numel() else float("nan"),
            mean_fraction=float(cm.mean() / N) if cm.numel() and N else float("nan"),
            never_changed_share=_nan_div((cm == 0).sum(), cm.numel()),
            changed_at_last_step_share=_nan_div((cm == N).sum(), cm.numel()) if N else float("nan"),
        ),
        order=commitment_order(trajectory, M, meta),
    )
    if conf is not None:
        for q in ("confidence", "entropy"):
            a = conf[f"{q}_all"]
            summary[q] = dict(
                first=float(a[0]) if N else None,
                last=float(a[-1]) if N else None,
                mean=float(np.nanmean(a)) if N and not np.isnan(a).all() else None,
            )
    if window_start is not None:
        w = int(window_start)
        wt = round_trips(trajectory, M, w)
        summary["window"] = dict(
            start=w,
            end=N,
            steps=N - w,
            edit_step_share=edit_step_share(trajectory, M, w),
            overwrite_rate_mean=float(overwrite[w:].mean()) if N > w else float("nan"),
            gross_change=gross_change(trajectory, M, w),
            net_change=net_change(trajectory, w, N, M),
            round_trips=wt.summary(),
        )
    per_step = dict(
        overwrite_rate=overwrite,
        rows_changed_share=hit.mean(1) if hit.size else np.full(N, np.nan),
        return_rate=return_rates(trajectory, M, trips),
        log_snr_t=list(trajectory.log_snrs[:N]),
        log_snr_s=list(trajectory.log_snrs[1 : N + 1]),
    )
    if conf is not None:
        per_step.update(conf)
    # the commit-step matrix over the analysed columns (None outside M)
    cols = M.any(0).nonzero().squeeze(-1)
    lo, hi = (int(cols[0]), int(cols[-1]) + 1) if cols.numel() else (0, 0)
    matrix = [[int(c[b, x]) if bool(M[b, x]) else None for x in range(lo, hi)] for b in range(M.shape[0])]
    return _clean(
        dict(
            metadata=meta,
            region=region if mask is None else "custom",
            summary=summary,
            per_step=per_step,
            per_canvas=dict(
                net_change_to_final=net_change_to_final(trajectory, M), settled_share=settled_share(trajectory, M)
            ),
            round_trip_length_histogram={int(k): int(v) for k, v in zip(*np.unique(trips.length, return_counts=True))},
            round_trip_hops_histogram={int(k): int(v) for k, v in zip(*np.unique(trips.hops, return_counts=True))},
            commit_steps=dict(first_column=lo, rows=matrix),
        )
    )


__all__ = [
    "REGIONS",
    "Events",
    "events",
    "analysed_mask",
    "region_mask",
    "truncate",
    "change_counts",
    "overwrite_rates",
    "rows_changed",
    "edit_step_share",
    "gross_change",
    "net_change",
    "net_change_to_final",
    "commit_steps",
    "settled_share",
    "spearman",
    "position_features",
    "commitment_order",
    "RoundTrips",
    "round_trips",
    "return_rates",
    "confidence_entropy",
    "analyze_trajectory",
]
