"""`sumi distill RECIPE.yaml`: distil a many-step teacher into a few-step student (`sumi train` with
``task: distill``; `sumi.training.distill`), then optionally export it as a model folder with its
tokenizer and few-step generation config (``distill.generation``). Under torchrun:
``torchrun --nproc_per_node=N -m sumi.training RECIPE.yaml task=distill``."""

from __future__ import annotations

import argparse
import os

from ..cli.common import CLIError, positive_int

EPILOG = """\
examples:
  sumi distill recipes/demo-fast.yaml --export my-fast --dtype bfloat16
  sumi distill recipes/demo-fast.yaml --resume
  sumi distill recipes/demo-fast.yaml --dry-run
  sumi distill recipes/demo-fast.yaml distill.teacher=ROUND1 model.path=ROUND1 distill.teacher_steps=16 \\
      out_dir=runs/round2                     # a second round: the student becomes the teacher
The teacher's trajectories are generated once into distill.cache_dir (default OUT_DIR/teacher)."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "distill",
        help="distil a many-step teacher into a few-step student (consistency distillation)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
        description=__doc__.split("\n\n")[0].replace("`", ""),
    )
    p.add_argument("recipe", help="YAML recipe (task: distill is implied)")
    p.add_argument("overrides", nargs="*", help="config overrides, key.sub=value")
    p.add_argument("--resume", action="store_true", help="continue from the newest complete, verified checkpoint")
    p.add_argument("--dry-run", action="store_true", help="validate; print parameters, batch arithmetic, memory")
    p.add_argument("--world-size", type=positive_int, default=None, help="world size for --dry-run")
    p.add_argument(
        "--teacher-only",
        action="store_true",
        help="only generate (or check) the cached teacher trajectories, then stop",
    )
    p.add_argument("--export", metavar="DIR", help="after training, write the student's model folder to DIR")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default=None, help="weight dtype of --export")
    p.set_defaults(intermixed="overrides")
    return p


def run(args: argparse.Namespace) -> int:
    import torch

    from . import TrainConfig, dry_run_report, train
    from .checkpoint import CheckpointError
    from .distill import describe, distill_sources, export_distill
    from .distributed import DistContext, resolve_device

    try:
        config = TrainConfig.from_yaml(args.recipe, ["task=distill", *args.overrides])
        if args.dry_run:
            print(dry_run_report(config, args.world_size or int(os.environ.get("WORLD_SIZE", "1"))))
            print(describe(config))
            return 0
        if args.teacher_only:  # in this one process
            config.validate()
            if config.num_threads > 0:
                torch.set_num_threads(config.num_threads)
            ctx = DistContext(0, 1, 0, resolve_device(config.device, 0), owns_group=False)
            train_source, val_source = distill_sources(config, ctx)
            n_val = len(val_source.data) if val_source is not None else 0
            print(f"teacher trajectories: {len(train_source.data)} train, {n_val} validation, in {config.out_dir}")
            return 0
        train(config, resume=True if args.resume else None)
        if args.export and int(os.environ.get("RANK", "0")) == 0:
            out = export_distill(
                config.checkpoint_dir(),
                args.export,
                dtype=args.dtype,
                generation=config.distill.generation,
                tokenizer_from=config.model.path or config.distill.teacher,
            )
            print(f"exported {config.checkpoint_dir()} -> {out}")
    except CheckpointError as e:
        raise CLIError(str(e)) from None
    return 0


__all__ = ["add_parser", "run"]
