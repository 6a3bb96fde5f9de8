"""Canvas frames: what the answer regions look like while they denoise (the /v1/canvas stream).

A `CanvasFrames` is a job's `progress_callback`. After every step it notes, per position, whether
the token changed and whether the position already held a token the model had written (not the
initial random one); every `every` steps (and after the last) it emits a frame of the answer
regions: ids, the denoiser's confidence (top-1 probability), `changed` (differs from the previous
frame) and `overwrote` (changed, and the token it replaced had been written by the model: the
thing only a uniform-noise model does). It runs in the engine's thread, so it only slices small
tensors; decoding ids to text is left to the receiver.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class CanvasFrames:
    """initial: the job's canvas `[B, S]` before the first step; the answer of row i is columns
    `[prompt_len, prompt_len + budgets[i])`; emit(frame) receives
    `{"step": k (steps done, 1..N), "num_steps": N,
      "rows": [{"index", "ids", "confidence", "changed", "overwrote"}]}`."""

    def __init__(
        self, initial: torch.Tensor, prompt_len: int, budgets: list[int], every: int, emit: Callable[[dict], None]
    ):
        self.P, self.budgets, self.every, self.emit = prompt_len, list(budgets), every, emit
        self.width = max(self.budgets)
        region = self._region(initial)
        self.last = region.clone()  # the canvas after the previous step  [B, W]
        self.frame = region.clone()  # the canvas of the previous frame    [B, W]
        self.written = torch.zeros_like(region, dtype=torch.bool)  # the model has changed it at least once
        self.overwrote = torch.zeros_like(self.written)  # changed a written token since the last frame

    def _region(self, canvas: torch.Tensor) -> torch.Tensor:
        return canvas[:, self.P : self.P + self.width].detach().cpu()

    def initial_rows(self) -> list[dict]:
        """The rows of the start event: the random canvas the run begins from."""
        return [{"index": i, "ids": self.frame[i, :n].tolist()} for i, n in enumerate(self.budgets)]

    def __call__(self, info: dict) -> None:
        now = self._region(info["z"])
        step_changed = now != self.last
        self.overwrote |= step_changed & self.written
        self.written |= step_changed
        self.last = now
        done = info["step"] + 1
        if done % self.every and done != info["num_steps"]:
            return
        confidence = self._region(info["top1_prob"]).float()
        changed = now != self.frame
        overwrote = changed & self.overwrote
        rows = [
            {
                "index": i,
                "ids": now[i, :n].tolist(),
                "confidence": [round(c, 4) for c in confidence[i, :n].tolist()],
                "changed": changed[i, :n].tolist(),
                "overwrote": overwrote[i, :n].tolist(),
            }
            for i, n in enumerate(self.budgets)
        ]
        self.frame = now.clone()
        self.overwrote.zero_()
        self.emit({"step": done, "num_steps": info["num_steps"], "rows": rows})
