"""Rank-0 run logging: a JSONL file, TensorBoard when installed, and a tqdm progress bar."""

from __future__ import annotations

import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

logger = logging.getLogger("sumi.training")


class RunLogger:
    """Writes records (dicts with a "step") to JSONL and TensorBoard; no-op on ranks other than 0.

    On resume from step N the existing JSONL keeps only its records with ``step <= N`` (an
    interrupted run may have logged steps past its last checkpoint), so the file always reads as
    one uninterrupted run.
    """

    def __init__(
        self,
        jsonl: Path,
        *,
        enabled: bool,
        start_step: int,
        tensorboard_dir: Path | None,
        progress: bool,
        total_steps: int,
        every: int = 1,
    ):
        self.enabled = enabled
        self.every, self.total_steps = every, total_steps
        self.file = None
        self.tb = None
        self.bar = None
        if not enabled:
            return
        jsonl.parent.mkdir(parents=True, exist_ok=True)
        kept: list[str] = []
        if start_step > 0 and jsonl.is_file():
            for line in jsonl.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a kill
                if int(rec.get("step", 0)) <= start_step:
                    kept.append(line)
        tmp = jsonl.with_name(jsonl.name + ".part")
        tmp.write_text("".join(k + "\n" for k in kept), encoding="utf-8")
        tmp.replace(jsonl)
        self.file = open(jsonl, "a", encoding="utf-8")
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(log_dir=str(tensorboard_dir), purge_step=start_step + 1 if start_step else None)
            except ImportError:
                warnings.warn(
                    "log.tensorboard=true but the `tensorboard` package is not installed: "
                    "skipping TensorBoard logging (the JSONL log is still written)",
                    stacklevel=2,
                )
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total_steps, initial=start_step, desc="train", unit="step", file=sys.stderr, dynamic_ncols=True
            )

    def should_log(self, step: int) -> bool:
        """Whether the training record of `step` is written: every `every` steps and the last one."""
        return step % self.every == 0 or step == self.total_steps

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tb is not None:
            step = int(record["step"])
            prefix = "eval" if record.get("kind") == "eval" else "train"
            for k, v in record.items():
                if k not in ("step", "kind") and isinstance(v, (int, float)):
                    self.tb.add_scalar(f"{prefix}/{k}", v, step)

    def progress(self, loss: float, tokens_per_s: float) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tokens_per_s:,.0f}", refresh=False)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(f"[sumi.train] {text}", file=sys.stderr)
        else:
            logger.info(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()
        if self.file is not None:
            self.file.close()


__all__ = ["RunLogger"]
