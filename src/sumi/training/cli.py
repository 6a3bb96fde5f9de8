"""`sumi train` and `sumi export`: the trainer's commands. `python -m sumi.training ...` is `sumi
train ...` (the form torchrun launches); `python -m sumi.training.export ...` is `sumi export ...`.

Overrides use the config's dotted keys (``optim.lr=3e-4 batch.micro_batch_size=2 steps=1000``), before
or after the options; unknown keys and impossible batch arithmetic stop the run before anything starts.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from ..cli.common import CLIError, positive_int

TRAIN_DESCRIPTION = """\
Train a Sumi uniform diffusion language model from a YAML recipe (see recipes/).
Noisy canvases are drawn as in the paper (t ~ U in log-SNR [-9, 9], per-row / per-token
mix) and the GIDD loss is minimised. For several processes or GPUs run
  torchrun --nproc_per_node=N -m sumi.training RECIPE.yaml [key.sub=value ...]"""

TRAIN_EPILOG = """\
examples:
  sumi train recipes/tiny-cpu.yaml
  sumi train recipes/demo.yaml steps=100 optim.lr=1e-3
  sumi train recipes/tiny-cpu.yaml --resume steps=400
  sumi train recipes/sumi-7b.yaml --dry-run --world-size 288 --tokens-per-second 9.5e6"""


def add_parser(subparsers) -> None:
    t = subparsers.add_parser(
        "train",
        help="train a Sumi model from a YAML recipe (torchrun-ready, FSDP2)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=TRAIN_DESCRIPTION,
        epilog=TRAIN_EPILOG,
    )
    t.add_argument("recipe", help="YAML recipe")
    t.add_argument("overrides", nargs="*", help="config overrides, key.sub=value")
    t.add_argument("--resume", action="store_true", help="continue from the newest complete, verified checkpoint")
    t.add_argument(
        "--dry-run", action="store_true", help="validate; print parameters, batch arithmetic, memory per rank"
    )
    t.add_argument(
        "--world-size", type=positive_int, default=None, help="world size for --dry-run (default: $WORLD_SIZE or 1)"
    )
    t.add_argument(
        "--tokens-per-second",
        type=float,
        default=None,
        metavar="TOK_S",
        help="for --dry-run: the whole job's training throughput, to print each phase's duration",
    )
    t.set_defaults(func=run_train, intermixed="overrides")

    e = subparsers.add_parser(
        "export",
        help="write a Hugging Face folder (weights + remote code) from a training checkpoint",
        description="Write a Hugging Face folder from a training checkpoint (a step_XXXXXXX "
        "folder or a\ncheckpoint root, whose newest complete checkpoint is used). "
        "The folder loads with\nsumi or with plain transformers "
        "(trust_remote_code=True). A checkpoint of sumi sft or\nsumi distill also gets its "
        "tokenizer and its recipe's generation settings.",
    )
    e.add_argument("checkpoint", help="checkpoint folder")
    e.add_argument("out", help="output folder")
    e.add_argument("--dtype", choices=("float32", "bfloat16"), default=None, help="weight dtype (default: as trained)")
    e.set_defaults(func=run_export)


def run_train(args: argparse.Namespace) -> int:
    from . import TrainConfig, dry_run_report, train
    from .checkpoint import CheckpointError

    try:
        config = TrainConfig.from_yaml(args.recipe, list(args.overrides))
        if args.dry_run:
            if args.tokens_per_second is not None and not args.tokens_per_second > 0:
                raise CLIError(f"--tokens-per-second must be a positive number, got {args.tokens_per_second}")
            print(
                dry_run_report(
                    config, args.world_size or int(os.environ.get("WORLD_SIZE", "1")), args.tokens_per_second
                )
            )
            return 0
        train(config, resume=True if args.resume else None)
    except CheckpointError as e:  # ConfigError is a ValueError: `sumi` reports it as an input error
        raise CLIError(str(e)) from None
    return 0


def run_export(args: argparse.Namespace) -> int:
    from .checkpoint import CheckpointError
    from .export import export_model

    try:
        out = export_model(args.checkpoint, args.out, dtype=args.dtype)
    except CheckpointError as e:
        raise CLIError(str(e)) from None
    print(f"exported {args.checkpoint} -> {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m sumi.training RECIPE.yaml [key.sub=value ...] [--resume] [--dry-run]` = `sumi train ...`."""
    import sys

    from ..cli import main as sumi_main

    return sumi_main(["train", *(sys.argv[1:] if argv is None else argv)])


__all__ = ["add_parser", "run_train", "run_export", "main"]
