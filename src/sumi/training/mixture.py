"""Data mixtures: each global batch drawn from several named sources, as a pure function of (seed, step).

Rows of a run are numbered globally: optimizer step s holds rows ``s*G .. s*G + G - 1`` (G = the
global batch), in the order of the `BatchSource` contract (micro-step, rank, row), so the row a
rank reads does not depend on the number of processes or the micro-batch size.

**Which source** (`MixtureSchedule`): within phase p, local row j goes to source i iff
``u_j = (A*j + B_p) mod 2**64`` falls in ``[C_{i-1}, C_i)``, where A = 0x9E3779B97F4A7C15 (2**64
over the golden ratio, odd), ``B_p`` is derived from (seed, phase) and the ``C_i`` are the
cumulative weights times 2**64. This Weyl sequence is equidistributed with discrepancy
O(log n / n), so any stretch of rows follows the weights closely: the realised share of a source
over n rows is its weight to within a few rows (a few hundred rows suffice for +-1 %), not the
+-1/sqrt(n) of independent draws. The number of rows of each source among local rows ``[0, n)``
is exact and closed-form (`counts_before`: a floor sum, O(log n) integer steps), so the position
of every source at any step is known without replaying the run: resuming, any world size and the
per-source token counts all follow from the step.

**Which window** of a source: its k-th row (counted over the whole run, across phases) is window
``perm_e(k mod N)`` of its N windows of seq_len tokens, with ``e = k // N`` the pass (epoch) and
``perm_e`` the `WindowPermutation` seeded by (seed, source name, e): each pass is a new shuffle.
What happens when a finite source runs out is `data.on_exhausted`: "epoch" (start the next pass,
logged) or "stop" (the run ends before the first step that would reuse a window: `stop_step`).

A **streamed** source (`StreamedDataset`) has no random access and no length until it has been read
to its end, so its k-th row is window ``k mod N`` in stream order, every pass (``N`` learnt when
the stream first ends): still a pure function of k, so ranks and resumed runs agree. Every rank
reads (and tokenizes) the whole stream, keeping only its own rows. Its passes are counted as it is
read (`epochs_before`), and under "stop" the run learns its end one step ahead (`runs_out`).
`stream_positions` / `restore_streams` carry where each stream's next row starts through a
checkpoint, so a resumed run skips the tokenization of everything before it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from ..data.packed import WindowPermutation
from ..data.streamed import StreamedDataset, StreamPosition
from ..seeding import derive_seed
from .config import ConfigError, TrainConfig
from .phases import PhasePlan
from .sources import SyntheticSource, open_source

GOLDEN = 0x9E3779B97F4A7C15  # round(2**64 / golden ratio), odd
MOD = 1 << 64


def floor_sum(n: int, m: int, a: int, b: int) -> int:
    """``sum(floor((a*j + b) / m) for j in range(n))`` for integers n, m >= 1, a, b >= 0, in O(log)
    steps (the Euclid-like reduction of the lattice-point count under a line)."""
    total = 0
    while True:
        if a >= m:
            total += n * (n - 1) // 2 * (a // m)
            a %= m
        if b >= m:
            total += n * (b // m)
            b %= m
        y_max = a * n + b
        if y_max < m:
            return total
        n, b = divmod(y_max, m)
        m, a = a, m


class MixtureSchedule:
    """The source of every row of one phase (see the module docstring)."""

    def __init__(self, weights: Sequence[float], offset: int):
        w = np.asarray(weights, dtype=np.float64)
        cum = np.cumsum(w) / w.sum()
        self.bounds = [0] + [min(MOD, int(round(c * MOD))) for c in cum[:-1]] + [MOD]  # C_0 .. C_k
        self.offset = int(offset) % MOD
        # lower bounds as uint64; trailing zero-weight sources start at 2**64 and are never drawn
        self._lower = np.array([c for c in self.bounds[:-1] if c < MOD], dtype=np.uint64)

    def sources(self, first: int, n: int) -> np.ndarray:
        """Source index (int64 [n]) of local rows ``first .. first + n - 1``."""
        j = np.arange(first, first + n, dtype=np.uint64)
        with np.errstate(over="ignore"):
            u = j * np.uint64(GOLDEN) + np.uint64(self.offset)  # wraps mod 2**64
        return np.searchsorted(self._lower, u, side="right").astype(np.int64) - 1

    def _below(self, n: int, c: int) -> int:
        """#{j < n : u_j < c}: floor(x) - floor(x - c/2**64) is 1 exactly when frac(x) < c/2**64."""
        if n <= 0 or c <= 0:
            return 0
        b = self.offset
        return floor_sum(n, MOD, GOLDEN, b) - floor_sum(n, MOD, GOLDEN, b - c + MOD) + n

    def counts_before(self, n: int) -> list[int]:
        """Rows of each source among local rows ``0 .. n - 1``."""
        below = [self._below(n, c) for c in self.bounds]
        return [hi - lo for lo, hi in zip(below, below[1:])]


def phase_schedules(plan: PhasePlan, seed: int) -> list[MixtureSchedule]:
    """The `MixtureSchedule` of each phase of `plan` (its offset derived from seed, phase index and name)."""
    return [MixtureSchedule(p.weights, derive_seed("mixture", seed, p.index, p.name)) for p in plan.phases]


def rows_per_phase(plan: PhasePlan, global_batch_size: int, seed: int) -> np.ndarray:
    """Rows each phase draws from each source: int64 [phases, sources] (exact, without opening any data)."""
    return np.array(
        [
            sched.counts_before(p.steps * global_batch_size)
            for p, sched in zip(plan.phases, phase_schedules(plan, seed))
        ],
        dtype=np.int64,
    )


def _num_rows(source: Any, seq_len: int) -> int | None:
    """Windows a source holds (None: endless synthetic rows, or a stream not yet read to its end)."""
    if isinstance(source, SyntheticSource):
        return source.num_sequences or None
    return source.num_windows(seq_len)


class MixtureSource:
    """A `BatchSource` over named sources following a `PhasePlan` (see the module docstring).

    `sources` are opened train splits (`PackedDataset` / `StreamedDataset` / `SyntheticSource`), in
    ``plan.source_names`` order; `seed` is the run's seed (the `seed` passed to `batches` must be the same).
    """

    def __init__(
        self,
        sources: Sequence[Any],
        plan: PhasePlan,
        *,
        global_batch_size: int,
        seq_len: int,
        seed: int,
        on_exhausted: str = "epoch",
    ):
        self.names = list(plan.source_names)
        self.sources, self.plan = list(sources), plan
        self.G, self.seq_len, self.seed = int(global_batch_size), int(seq_len), int(seed)
        self.on_exhausted = on_exhausted
        self.sizes = [_num_rows(s, self.seq_len) for s in self.sources]  # a stream's stays None
        self.streamed = [i for i, s in enumerate(self.sources) if isinstance(s, StreamedDataset)]
        self.schedules = phase_schedules(plan, self.seed)
        per_phase = rows_per_phase(plan, self.G, self.seed)
        self._before_phase = [per_phase[:i].sum(axis=0) for i in range(len(per_phase) + 1)]  # before each phase

    # ------------------------------------------------------------------ counts
    def rows_before(self, step: int) -> np.ndarray:
        """Rows drawn from each source (int64 [k]) by optimizer steps ``0 .. step - 1``."""
        if step >= self.plan.total_steps:
            return self._before_phase[-1].copy()
        phase = self.plan.at(step)
        local = (step - phase.start) * self.G
        return self._before_phase[phase.index] + np.array(self.schedules[phase.index].counts_before(local))

    def tokens_before(self, step: int) -> dict[str, int]:
        """Tokens drawn from each source by steps ``0 .. step - 1``, by name."""
        return {n: int(r) * self.seq_len for n, r in zip(self.names, self.rows_before(step))}

    def epochs_before(self, step: int) -> dict[str, int]:
        """Passes begun over each finite source by steps ``0 .. step - 1`` (0 before any row; a streamed
        source is read as far as those rows)."""
        out = {}
        for i, (name, r) in enumerate(zip(self.names, self.rows_before(step).tolist())):
            size = self._stream_size(i, r) if i in self.streamed else self.sizes[i]
            if size:
                out[name] = -(-r // size)
            elif i in self.streamed:
                out[name] = min(r, 1)  # all r rows within the first pass
        return out

    def known_sizes(self) -> list[int | None]:
        """Windows of each source as far as known (None: endless, or a stream not read to its end)."""
        return [
            self.sources[i].num_windows(self.seq_len) if i in self.streamed else n for i, n in enumerate(self.sizes)
        ]

    def _stream_size(self, i: int, rows: int) -> int | None:
        """Windows of streamed source i if it holds fewer than `rows` (read as far as needed), else None."""
        if rows == 0 or self.sources[i].has_window(rows - 1, self.seq_len):
            return None
        return self.sources[i].num_windows(self.seq_len)

    def runs_out(self, step: int) -> bool:
        """With ``on_exhausted="stop"``: whether step `step` would reuse a window of a streamed source
        (`stop_step` cannot know, their lengths are learnt as they are read); reads them as far as
        that step's rows. Always False with "epoch"."""
        if self.on_exhausted != "stop":
            return False
        rows = self.rows_before(step + 1).tolist()
        return any(self._stream_size(i, rows[i]) is not None for i in self.streamed)

    def stop_step(self) -> int | None:
        """With ``on_exhausted="stop"``: the number of steps the run can take before some finite source
        would reuse a window (None if it never does); always None with "epoch". Streamed sources
        count only once read to their end: see `runs_out`."""
        if self.on_exhausted != "stop":
            return None
        total = self.plan.total_steps
        over = lambda s: any(size and r > size for r, size in zip(self.rows_before(s), self.sizes))  # noqa: E731
        if not over(total):
            return None
        lo, hi = 0, total  # over(lo) is False, over(hi) is True
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if not over(mid) else (lo, mid)
        return lo

    # ------------------------------------------------------------------ rows
    def rows(self, first: int, n: int) -> torch.Tensor:
        """Global rows ``first .. first + n - 1`` (within one optimizer step): LongTensor [n, seq_len]."""
        step = first // self.G
        if (first + n - 1) // self.G != step:
            raise ValueError(f"rows {first}..{first + n - 1} span two optimizer steps of {self.G} rows")
        phase = self.plan.at(step)
        local = first - phase.start * self.G
        schedule = self.schedules[phase.index]
        src = schedule.sources(local, n)
        nxt = self._before_phase[phase.index] + np.array(schedule.counts_before(local))
        out = torch.empty((n, self.seq_len), dtype=torch.long)
        for r, i in enumerate(src.tolist()):
            out[r] = self._row(i, int(nxt[i]))
            nxt[i] += 1
        return out

    def _row(self, i: int, k: int) -> torch.Tensor:
        """Row k (0-based, over the run) of source i."""
        source, size, name = self.sources[i], self.sizes[i], self.names[i]
        if isinstance(source, StreamedDataset):
            if self.on_exhausted == "stop" and not source.has_window(k, self.seq_len):
                raise RuntimeError(
                    f"source {name!r} is exhausted ({source.num_windows(self.seq_len)} windows) and "
                    "data.on_exhausted=stop"
                )
            return source.row(k, self.seq_len)
        if size is None:
            return source.row(k, self.seq_len, derive_seed("mixture-rows", self.seed, name))
        epoch, pos = divmod(k, size)
        if epoch and self.on_exhausted == "stop":
            raise RuntimeError(f"source {name!r} is exhausted ({size} windows) and data.on_exhausted=stop")
        window = int(WindowPermutation(size, derive_seed("mixture-source", self.seed, name), epoch)([pos])[0])
        if isinstance(source, SyntheticSource):
            return source.row(window, self.seq_len, derive_seed("mixture-rows", self.seed, name))
        return source.get_window(window, self.seq_len)

    # ------------------------------------------------------------------ streams through checkpoints
    def stream_positions(self, step: int) -> dict[str, dict[str, Any]]:
        """Where the next row (after `step` steps) of each streamed source starts in its stream
        (`StreamPosition.to_dict`), for a checkpoint; reads the streams that far."""
        rows = self.rows_before(step).tolist()
        out = {}
        for i in self.streamed:
            size = self._stream_size(i, rows[i] + 1)
            window = rows[i] if size is None else rows[i] % size
            out[self.names[i]] = self.sources[i].position(window, self.seq_len).to_dict()
        return out

    def restore_streams(self, positions: dict[str, dict[str, Any]]) -> None:
        """Start each streamed source at the position a checkpoint recorded (`stream_positions`)."""
        for i in self.streamed:
            if positions.get(self.names[i]):
                self.sources[i].restore(StreamPosition.from_dict(positions[self.names[i]]))

    def batches(
        self, seq_len: int, batch_size: int, *, seed: int, rank: int = 0, world_size: int = 1, start_step: int = 0
    ) -> Iterator[torch.Tensor]:
        """The `BatchSource` contract: data batch k holds global rows ``k*batch_size*world_size ..``, rank r
        its slice ``r*batch_size ..``."""
        if seq_len != self.seq_len or seed != self.seed:
            raise ValueError(
                f"this mixture was built for seq_len={self.seq_len}, seed={self.seed}; "
                f"got seq_len={seq_len}, seed={seed}"
            )
        if not 0 <= rank < world_size or self.G % (batch_size * world_size):
            raise ValueError(
                f"rank {rank} of {world_size} with {batch_size} rows each does not tile the global "
                f"batch of {self.G} rows"
            )
        per = batch_size * world_size
        return (self.rows(k * per + rank * batch_size, batch_size) for k in itertools.count(int(start_step)))


def open_mixture(config: TrainConfig, plan: PhasePlan, vocab_size: int) -> MixtureSource:
    """The run's `MixtureSource`; ConfigError (naming the source) for a source that is missing (or,
    streamed, has no such text field, or no such tokenizer), has no windows of seq_len tokens, or is
    too small for one step under on_exhausted=stop."""
    opened = []
    S = config.data.seq_len
    for i, section in enumerate(config.data.sources):
        key = f"config key 'data.sources.{i}' (source {section.name!r})"
        try:
            source = open_source(section, "train", vocab_size, model_path=config.model.path)
        except (OSError, ValueError, ImportError) as e:
            raise ConfigError(f"{key}: {e}") from None
        if isinstance(source, StreamedDataset):
            if not source.has_window(0, S):  # reads the first documents only
                raise ConfigError(
                    f"{key}: the source is empty: its documents hold {source.num_tokens:,} tokens, not one "
                    f"window of seq_len={S}"
                )
        elif _num_rows(source, S) == 0:
            raise ConfigError(f"{key}: the source is empty: {len(source):,} tokens, not one window of seq_len={S}")
        opened.append(source)
    mix = MixtureSource(
        opened,
        plan,
        global_batch_size=config.batch.global_batch_size,
        seq_len=config.data.seq_len,
        seed=config.seed,
        on_exhausted=config.data.on_exhausted,
    )
    if mix.stop_step() == 0 or mix.runs_out(0):
        raise ConfigError(
            "data.on_exhausted=stop: a source is too small for even one step; "
            f"windows per source: {dict(zip(mix.names, mix.known_sizes()))}"
        )
    return mix


__all__ = ["MixtureSchedule", "MixtureSource", "open_mixture", "floor_sum", "phase_schedules", "rows_per_phase"]
