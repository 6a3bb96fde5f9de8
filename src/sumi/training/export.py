"""Export a training checkpoint as a model folder, whatever trained it: ``sumi export CHECKPOINT
OUT_DIR [--dtype bfloat16]`` (or ``python -m sumi.training.export ...``). The checkpoint records its
recipe, so the export needs nothing else: a pre-training checkpoint gives weights, config and remote
code (`export_checkpoint`); an SFT checkpoint adds the tokenizer with its chat template and the
recipe's generation settings (`export_sft`); a distillation checkpoint adds the teacher's tokenizer
and the student's few-step settings (`export_distill`)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path


def export_model(ckpt_dir: str | os.PathLike, out_dir: str | os.PathLike, *, dtype: str | None = None) -> Path:
    """`ckpt_dir` (a ``step_XXXXXXX`` folder or a checkpoint root: its newest complete checkpoint)
    -> the model folder `out_dir`, by the task recorded in the checkpoint's recipe. Atomic."""
    from .checkpoint import export_checkpoint, read_trainer_state, resolve_checkpoint
    from .config import TrainConfig

    # the recipe only (the same in every checkpoint of a run); the export verifies the weights it reads
    newest = resolve_checkpoint(ckpt_dir, checksum=False)
    config = TrainConfig.from_dict(read_trainer_state(newest)["config"], where=str(newest))
    if config.task == "sft":
        from .sft import export_sft

        return export_sft(ckpt_dir, out_dir, dtype=dtype, generation=config.sft.generation)
    if config.task == "distill":
        from .distill import export_distill

        return export_distill(
            ckpt_dir,
            out_dir,
            dtype=dtype,
            generation=config.distill.generation,
            tokenizer_from=config.model.path or config.distill.teacher,
        )
    return export_checkpoint(ckpt_dir, out_dir, dtype=dtype)


def main(argv: Sequence[str] | None = None) -> int:
    from ..cli import main as sumi_main

    return sumi_main(["export", *(sys.argv[1:] if argv is None else argv)])


__all__ = ["export_model", "main"]

if __name__ == "__main__":
    sys.exit(main())
