"""`sumi sft RECIPE.yaml`: supervised fine-tuning on chat conversations (`sumi train` with ``task: sft``),
then optionally the export of a chat-ready folder (weights with LoRA merged, tokenizer with its chat
template, generation config from ``sft.generation``). Under torchrun:
``torchrun --nproc_per_node=N -m sumi.training RECIPE.yaml task=sft``."""

from __future__ import annotations

import argparse
import os

from ..cli.common import CLIError, positive_int

EPILOG = """\
examples:
  sumi sft recipes/demo-instruct.yaml --export my-instruct --dtype bfloat16
  sumi sft recipes/demo-instruct.yaml --resume
  sumi sft recipes/sumi-7b-sft.yaml --dry-run --world-size 64
Data (sft.data): a JSONL file with a "messages" list per line, a `datasets` name with a
"messages" column, or suite:SPLIT:PER_TASK (the synthetic instruction suite, sumi.sft_tasks)."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "sft",
        help="fine-tune on chat conversations (prompt clean, answer noised and scored)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
        description=__doc__.split("\n\n")[0].replace("`", ""),
    )
    p.add_argument("recipe", help="YAML recipe (task: sft is implied)")
    p.add_argument("overrides", nargs="*", help="config overrides, key.sub=value")
    p.add_argument("--resume", action="store_true", help="continue from the newest complete, verified checkpoint")
    p.add_argument("--dry-run", action="store_true", help="validate; print parameters, batch arithmetic, memory")
    p.add_argument("--world-size", type=positive_int, default=None, help="world size for --dry-run")
    p.add_argument("--export", metavar="DIR", help="after training, write a chat-ready model folder to DIR")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default=None, help="weight dtype of --export")
    p.set_defaults(intermixed="overrides")
    return p


def run(args: argparse.Namespace) -> int:
    from . import TrainConfig, dry_run_report, train
    from .checkpoint import CheckpointError
    from .sft import export_sft

    try:
        config = TrainConfig.from_yaml(args.recipe, ["task=sft", *args.overrides])
        if args.dry_run:
            print(dry_run_report(config, args.world_size or int(os.environ.get("WORLD_SIZE", "1"))))
            return 0
        train(config, resume=True if args.resume else None)
        if args.export and int(os.environ.get("RANK", "0")) == 0:
            out = export_sft(config.checkpoint_dir(), args.export, dtype=args.dtype, generation=config.sft.generation)
            print(f"exported {config.checkpoint_dir()} -> {out}")
    except CheckpointError as e:
        raise CLIError(str(e)) from None
    return 0


__all__ = ["add_parser", "run"]
