"""Command-line entry of the trainer (thin: everything lives in `sumi.training`).

    python -m sumi.train RECIPE.yaml [key.sub=value ...] [--resume] [--dry-run [--world-size N]]
    torchrun --nproc_per_node=2 -m sumi.train RECIPE.yaml [overrides]
    python -m sumi.train --export CHECKPOINT_DIR OUT_DIR [--dtype bfloat16]

Overrides use the config's dotted keys (``optim.lr=3e-4 batch.micro_batch_size=2 steps=1000``);
unknown keys and impossible batch arithmetic stop the run before anything starts.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sumi.train", description="Train a Sumi uniform diffusion language model.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("recipe", nargs="?", help="YAML recipe (see recipes/)")
    p.add_argument("overrides", nargs="*", help="config overrides, key.sub=value")
    p.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint")
    p.add_argument("--dry-run", action="store_true",
                   help="validate the recipe and print parameters, batch arithmetic and memory per rank")
    p.add_argument("--world-size", type=int, default=None,
                   help="world size for --dry-run (default: $WORLD_SIZE or 1)")
    p.add_argument("--export", nargs=2, metavar=("CHECKPOINT_DIR", "OUT_DIR"),
                   help="write an HF folder from a checkpoint (a step_XXXXXXX folder or a checkpoint root)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default=None, help="weight dtype for --export")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    from sumi.training import ConfigError, TrainConfig, dry_run_report, export_checkpoint, train
    from sumi.training.checkpoint import CheckpointError

    prog = "sumi.train"
    try:
        if args.export:
            out = export_checkpoint(args.export[0], args.export[1], dtype=args.dtype)
            print(f"exported {args.export[0]} -> {out}")
            return 0
        if not args.recipe:
            build_parser().error("a recipe is required (or --export CHECKPOINT_DIR OUT_DIR)")
        overrides = list(args.overrides)
        config = TrainConfig.from_yaml(args.recipe, overrides)
        if args.dry_run:
            world = args.world_size or int(os.environ.get("WORLD_SIZE", "1"))
            print(dry_run_report(config, world))
            return 0
        train(config, resume=True if args.resume else None)
        return 0
    except (ConfigError, CheckpointError, FileNotFoundError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
