"""The scheduler thread: one `DenoisingEngine`, fed from a bounded queue, one step at a time.

Requests become `Ticket`s in the event loop and are `submit`ted to a FIFO queue. The scheduler
thread, the only one that touches the engine, admits queued jobs at each step boundary while their
rows fit (`live rows + job rows <= max_batch_rows`: a new request waits for a free row, never for
other requests to finish), runs `engine.step()` while there is work and sleeps on a condition
variable when there is none. Each ticket receives its events (canvas frames, the result, or an
error) on an asyncio.Queue through `loop.call_soon_threadsafe`. A ticket cancelled by its client
leaves the queue at once, or the batch at the next step boundary.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .metrics import ServerMetrics

logger = logging.getLogger(__name__)


class QueueFull(Exception):
    """The queue holds `max_queue` requests already."""


class SchedulerStopped(Exception):
    """The server is shutting down (or its engine thread died)."""


@dataclass(eq=False)
class Ticket:
    """One request's job and the channel back to its handler.

    events: ("frame", dict) per canvas frame, then ("result", SumiGenerationOutput) or ("error", exc).
    """

    loop: asyncio.AbstractEventLoop
    num_rows: int
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    job: Any = None
    state: str = "new"  # new -> queued -> running -> finished | cancelled
    submitted_at: float = 0.0

    def post(self, kind: str, payload: Any = None) -> None:
        """Hand an event to the handler's loop (callable from any thread)."""
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, payload))
        except RuntimeError:  # the loop is closed: the server is going down, nobody is listening
            pass


class Scheduler:
    """engine_factory() -> a fresh `DenoisingEngine` (a new one replaces an engine whose step failed)."""

    def __init__(
        self,
        engine_factory: Callable[[], Any],
        *,
        max_batch_rows: int,
        max_queue: int,
        metrics: ServerMetrics | None = None,
    ):
        self.engine_factory, self.max_batch_rows, self.max_queue = engine_factory, max_batch_rows, max_queue
        self.metrics = metrics or ServerMetrics()
        self.engine = engine_factory()
        self.cond = threading.Condition()
        self.queue: deque[Ticket] = deque()
        self.running: list[Ticket] = []  # admitted, not yet finished (touched by the scheduler thread only)
        self.to_cancel: list[Ticket] = []  # running tickets whose client went away
        self.rows_in_use = 0
        self.stopping = False
        self.thread: threading.Thread | None = None

    # ---- called from the event loop
    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="sumi-scheduler", daemon=True)
        self.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        if self.thread is not None:
            self.thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive() and not self.stopping

    @property
    def queue_depth(self) -> int:
        return len(self.queue)

    @property
    def live_rows(self) -> int:
        return self.rows_in_use

    def submit(self, ticket: Ticket) -> None:
        """Queue a ticket whose job is prepared. Raises QueueFull or SchedulerStopped."""
        if ticket.num_rows > self.max_batch_rows:
            raise ValueError(f"a job of {ticket.num_rows} rows can never fit max_batch_rows={self.max_batch_rows}")
        with self.cond:
            if not self.alive:
                raise SchedulerStopped("the server is shutting down")
            if len(self.queue) >= self.max_queue:
                raise QueueFull(f"{len(self.queue)} requests are waiting already (max_queue={self.max_queue})")
            ticket.state, ticket.submitted_at = "queued", time.monotonic()
            self.queue.append(ticket)
            self.cond.notify_all()

    def cancel(self, ticket: Ticket) -> None:
        """The client went away: drop the ticket from the queue now, or from the batch at the next
        step boundary. A finished ticket is left alone."""
        with self.cond:
            if ticket.state == "queued":
                self.queue.remove(ticket)
                ticket.state = "cancelled"
            elif ticket.state == "running":
                self.to_cancel.append(ticket)
                self.cond.notify_all()

    # ---- the scheduler thread
    def _run(self) -> None:
        while True:
            with self.cond:
                while not self.stopping and not self.queue and not self.running:
                    self.cond.wait()
                if self.stopping:
                    break
                cancels, self.to_cancel = self.to_cancel, []
                admitted = self._admit()
            for ticket in cancels:
                self._drop(ticket)
            for ticket in admitted:
                self.engine.add(ticket.job)
            if self.running:
                self._step()
        for ticket in list(self.running) + list(self.queue):
            ticket.post("error", SchedulerStopped("the server is shutting down"))

    def _admit(self) -> list[Ticket]:
        """Queued tickets that fit, first come first served (the head waits for room: no starvation)."""
        admitted = []
        while self.queue and self.rows_in_use + self.queue[0].num_rows <= self.max_batch_rows:
            ticket = self.queue.popleft()
            ticket.state = "running"
            self.rows_in_use += ticket.num_rows
            self.running.append(ticket)
            admitted.append(ticket)
        return admitted

    def _drop(self, ticket: Ticket) -> None:
        if ticket.state != "running":
            return
        self.engine.cancel(ticket.job)
        self._leave(ticket, "cancelled")

    def _leave(self, ticket: Ticket, state: str) -> None:
        with self.cond:
            ticket.state = state
            self.running.remove(ticket)
            self.rows_in_use -= ticket.num_rows

    def _step(self) -> None:
        forwards = self.engine.forwards
        try:
            self.engine.step()
        except Exception as e:  # a failed forward: fail the batch, start over with a fresh engine
            logger.exception("denoising step failed; failing the %d running request(s)", len(self.running))
            for ticket in list(self.running):
                self._leave(ticket, "finished")
                ticket.post("error", e)
            self.engine = self.engine_factory()
            return
        self.metrics.count_forwards(self.engine.forwards - forwards)
        for ticket in [t for t in self.running if t.job.done]:
            self._finish(ticket)

    def _finish(self, ticket: Ticket) -> None:
        self._leave(ticket, "finished")
        try:
            result = ticket.job.result()
        except Exception as e:  # e.g. a tokenizer failing on the stop strings
            logger.exception("building a result failed")
            ticket.post("error", e)
            return
        ticket.post("result", result)
