"""Server counters, rendered in the Prometheus text exposition format (version 0.0.4).

Counters only ever grow; the per-second rates are taken over a sliding window so that a scrape
shows what the server does now, not its lifetime average.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import deque
from collections.abc import Callable

# Request latency buckets in seconds: a few steps of the demo model up to long canvases on a CPU.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
RATE_WINDOW_S = 10.0


class RateWindow:
    """A growing total and its rate: the amount counted in the last `window_s` seconds divided by
    the window (or by the time since creation while that is shorter)."""

    def __init__(self, window_s: float = RATE_WINDOW_S, clock: Callable[[], float] = time.monotonic):
        self.window_s, self.clock = window_s, clock
        self.created = clock()
        self.events: deque[tuple[float, float]] = deque()  # (time, amount)
        self.in_window = 0.0
        self.total = 0.0

    def add(self, amount: float) -> None:
        now = self.clock()
        self.total += amount
        self.events.append((now, amount))
        self.in_window += amount
        self._forget(now)

    def rate(self) -> float:
        now = self.clock()
        self._forget(now)
        span = min(self.window_s, now - self.created)
        return self.in_window / span if span > 0 else 0.0

    def _forget(self, now: float) -> None:
        while self.events and self.events[0][0] <= now - self.window_s:
            self.in_window -= self.events.popleft()[1]


class Histogram:
    """Cumulative buckets, sum and count, as Prometheus wants them."""

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS):
        self.buckets = tuple(sorted(buckets))
        self.counts = [0] * (len(self.buckets) + 1)  # the last: +Inf
        self.sum, self.count = 0.0, 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str) -> list[str]:
        out, running = [], 0
        for bound, n in zip(list(self.buckets) + [float("inf")], self.counts):
            running += n
            le = "+Inf" if bound == float("inf") else repr(bound)
            out.append(f'{name}_bucket{{le="{le}"}} {running}')
        return out + [f"{name}_sum {self.sum!r}", f"{name}_count {self.count}"]


class ServerMetrics:
    """What /metrics reports. Updated from the scheduler thread and the event loop (one lock)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.lock = threading.Lock()
        self.forwards = RateWindow(clock=clock)
        self.answer_tokens = RateWindow(clock=clock)
        self.latency = Histogram()
        self.requests: dict[str, int] = {}  # by status code

    def count_forwards(self, n: int) -> None:
        with self.lock:
            self.forwards.add(n)

    def count_answer(self, tokens: int) -> None:
        with self.lock:
            self.answer_tokens.add(tokens)

    def count_request(self, status: int, seconds: float | None) -> None:
        """A finished request; `seconds` (receipt to last byte) for the ones that were served."""
        with self.lock:
            self.requests[str(status)] = self.requests.get(str(status), 0) + 1
            if seconds is not None:
                self.latency.observe(seconds)

    def render(self, queue_depth: int, live_rows: int, max_batch_rows: int) -> str:
        with self.lock:
            families = [
                ("sumi_queue_depth", "gauge", "Requests waiting for a free row.", [f"sumi_queue_depth {queue_depth}"]),
                ("sumi_live_rows", "gauge", "Canvas rows being denoised now.", [f"sumi_live_rows {live_rows}"]),
                (
                    "sumi_max_batch_rows",
                    "gauge",
                    "The row limit (--max-batch-rows).",
                    [f"sumi_max_batch_rows {max_batch_rows}"],
                ),
                (
                    "sumi_forwards_total",
                    "counter",
                    "Forward passes run.",
                    [f"sumi_forwards_total {int(self.forwards.total)}"],
                ),
                (
                    "sumi_forwards_per_second",
                    "gauge",
                    f"Forward passes per second over the last {RATE_WINDOW_S:g} s.",
                    [f"sumi_forwards_per_second {self.forwards.rate():.4f}"],
                ),
                (
                    "sumi_answer_tokens_total",
                    "counter",
                    "Answer tokens returned.",
                    [f"sumi_answer_tokens_total {int(self.answer_tokens.total)}"],
                ),
                (
                    "sumi_answer_tokens_per_second",
                    "gauge",
                    f"Answer tokens per second over the last {RATE_WINDOW_S:g} s.",
                    [f"sumi_answer_tokens_per_second {self.answer_tokens.rate():.4f}"],
                ),
                (
                    "sumi_requests_total",
                    "counter",
                    "Requests answered, by HTTP status.",
                    [f'sumi_requests_total{{status="{s}"}} {n}' for s, n in sorted(self.requests.items())],
                ),
                (
                    "sumi_request_latency_seconds",
                    "histogram",
                    "Seconds from a request's arrival to its last byte.",
                    self.latency.lines("sumi_request_latency_seconds"),
                ),
            ]
        lines = []
        for name, kind, help_text, samples in families:
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *samples]
        return "\n".join(lines) + "\n"
