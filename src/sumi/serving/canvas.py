"""Canvas frames: what the answer regions look like while they denoise (the /v1/canvas stream).

A `CanvasFrames` is a job's `progress_callback`. After every step it notes, per position, whether
the token changed and whether the position already held a token the model had written (not the
initial random one); every `every` steps (and after the last) it emits a frame of the answer
regions: ids, the denoiser's confidence (top-1 probability), `changed` (differs from the previous
frame) and `overwrote` (changed, and the token it replaced had been written by the model: the
thing only a uniform-noise model does). A canvas that sizes itself (auto_length, grow, shrink)
reports each row's budget after every step: a row's region follows it (`sumi.denoising.RowBudgets`),
so a grown row shows its new positions (fresh random tokens, not the model's: no confidence
until a step writes them, like the start event's) and a shrunk row
keeps its dropped tail, past its `budget`, to be shown as ended. It runs in the engine's thread, so
it only slices small tensors; decoding ids to text is left to the receiver.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..denoising import RowBudgets


class CanvasFrames:
    """initial: the job's canvas `[B, S]` before the first step; the answer of row i is columns
    `[prompt_len, prompt_len + budgets[i])` (the layout's budgets; they follow the steps' `budgets`);
    `width`: the columns after the prompt a row may ever use (default: the largest budget);
    emit(frame) receives `{"step": k (steps done, 1..N), "num_steps": N,
      "rows": [{"index", "budget", "ids", "confidence", "changed", "overwrote"}]}`, where `ids` and
    the lists beside them cover the most the row has had since its denoising started: positions from
    `budget` on are a tail the row dropped when it shrank (ended); a confidence is None at a grown
    row's new position until a step rewrites it."""

    def __init__(
        self,
        initial: torch.Tensor,
        prompt_len: int,
        budgets: list[int],
        every: int,
        emit: Callable[[dict], None],
        width: int | None = None,
    ):
        self.P, self.every, self.emit = prompt_len, every, emit
        self.start_budgets = list(budgets)
        self.rows = RowBudgets(budgets)
        self.width = max(width or 0, max(budgets))
        region = self._region(initial)
        self.last = region.clone()  # the canvas after the previous step  [B, W]
        self.frame = region.clone()  # the canvas of the previous frame    [B, W]
        self.written = torch.zeros_like(region, dtype=torch.bool)  # the model has changed it at least once
        self.overwrote = torch.zeros_like(self.written)  # changed a written token since the last frame
        self.fresh = torch.zeros_like(self.written)  # a grown row's new random token, not yet rewritten

    def _region(self, canvas: torch.Tensor) -> torch.Tensor:
        region = canvas[:, self.P : self.P + self.width].detach().cpu()
        short = self.width - region.shape[1]  # (a canvas narrower than the widest row: pad)
        return torch.nn.functional.pad(region, (0, short)) if short > 0 else region

    def initial_rows(self) -> list[dict]:
        """The rows of the start event: the random canvas the run begins from (with auto_length the
        probe's canvas, of the largest budget)."""
        return [{"index": i, "budget": n, "ids": self.frame[i, :n].tolist()} for i, n in enumerate(self.start_budgets)]

    def __call__(self, info: dict) -> None:
        now = self._region(info["z"])
        before = self.rows.update(info)
        step_changed = now != self.last
        self.overwrote |= step_changed & self.written
        self.written |= step_changed
        self.fresh &= ~step_changed
        for i, (n0, n) in enumerate(zip(before, self.rows.budgets)):
            if n > n0:  # grown: fresh random tokens where the old anchors were and after: not the model's
                self.written[i, n0:] = False
                self.overwrote[i, n0:] = False
                self.fresh[i, n0:n] = True
        self.last = now
        done = info["step"] + 1
        if done % self.every and done != info["num_steps"]:
            return
        confidence = self._region(info["top1_prob"]).float()
        changed = now != self.frame
        overwrote = changed & self.overwrote
        fresh = self.fresh.tolist()
        widest = self.rows.widest or self.rows.budgets  # (set by the update above)
        rows = [
            {
                "index": i,
                "budget": n,
                "ids": now[i, :w].tolist(),
                "confidence": [None if f else round(c, 4) for c, f in zip(confidence[i, :w].tolist(), fresh[i])],
                "changed": changed[i, :w].tolist(),
                "overwrote": overwrote[i, :w].tolist(),
            }
            for i, (n, w) in enumerate(zip(self.rows.budgets, widest))
        ]
        self.frame = now.clone()
        self.overwrote.zero_()
        self.emit({"step": done, "num_steps": info["num_steps"], "rows": rows})
