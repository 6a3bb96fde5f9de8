"""``python -m sumi.training.export CHECKPOINT OUT_DIR [--dtype bfloat16]``: a training checkpoint
(a ``step_XXXXXXX`` folder, or a checkpoint root for its newest complete one) -> a normal HF folder.
Same as ``python -m sumi.train --export CHECKPOINT OUT_DIR`` and `sumi.training.export_checkpoint`."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sumi.training.export", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("out_dir")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default=None)
    args = p.parse_args(argv)
    from ..train import main as train_main

    extra = ["--dtype", args.dtype] if args.dtype else []
    return train_main(["--export", args.checkpoint, args.out_dir, *extra])


if __name__ == "__main__":
    sys.exit(main())
