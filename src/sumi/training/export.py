"""``python -m sumi.training.export CHECKPOINT OUT_DIR [--dtype bfloat16]``, the same as ``sumi export``:
a training checkpoint (a ``step_XXXXXXX`` folder, or a checkpoint root for its newest complete one)
-> a normal HF folder. In Python: `sumi.training.export_checkpoint`."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from ..cli import main as sumi_main

    return sumi_main(["export", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
