"""`sumi train` and `sumi export`: the trainer's commands inside the `sumi` CLI (same code as
`python -m sumi.train`, which torchrun launches)."""

import argparse


def register_cli(sub) -> None:
    t = sub.add_parser(
        "train", help="train a Sumi model from a YAML recipe (torchrun-ready, FSDP2)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a Sumi uniform diffusion language model from a YAML recipe (see recipes/).\n"
                    "Noisy canvases are drawn as in the paper (t ~ U in log-SNR [-9, 9], per-row / per-token\n"
                    "mix) and the GIDD loss is minimised. For several processes or GPUs run\n"
                    "  torchrun --nproc_per_node=N -m sumi.train RECIPE.yaml [key.sub=value ...]",
        epilog="examples:\n  sumi train recipes/tiny-cpu.yaml\n  sumi train recipes/demo.yaml steps=100 optim.lr=1e-3\n"
               "  sumi train recipes/tiny-cpu.yaml --resume steps=400\n"
               "  sumi train recipes/sumi-7b.yaml --dry-run --world-size 288")
    t.add_argument("recipe", help="YAML recipe")
    t.add_argument("overrides", nargs="*", help="config overrides, key.sub=value")
    t.add_argument("--resume", action="store_true", help="continue from the newest complete, verified checkpoint")
    t.add_argument("--dry-run", action="store_true", help="validate; print parameters, batch arithmetic, memory per rank")
    t.add_argument("--world-size", type=int, default=None, help="world size for --dry-run")
    t.set_defaults(func=_train)

    e = sub.add_parser("export", help="write a Hugging Face folder (weights + remote code) from a training checkpoint",
                       description="Write a Hugging Face folder from a training checkpoint (a step_XXXXXXX folder or a\n"
                                   "checkpoint root, whose newest complete checkpoint is used). The folder loads with\n"
                                   "sumi or with plain transformers (trust_remote_code=True).")
    e.add_argument("checkpoint", help="checkpoint folder")
    e.add_argument("out", help="output folder")
    e.add_argument("--dtype", choices=("float32", "bfloat16"), default=None, help="weight dtype (default: as trained)")
    e.set_defaults(func=_export)


def _train(args) -> int:
    from ..train import main

    argv = [args.recipe, *args.overrides]
    if args.resume:
        argv.append("--resume")
    if args.dry_run:
        argv.append("--dry-run")
    if args.world_size:
        argv += ["--world-size", str(args.world_size)]
    return main(argv)


def _export(args) -> int:
    from ..train import main

    argv = ["--export", args.checkpoint, args.out] + (["--dtype", args.dtype] if args.dtype else [])
    return main(argv)
