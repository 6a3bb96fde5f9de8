"""Exact match of a chat model on the synthetic instruction suite (sumi.sft_tasks), per task, on
held-out instances (seen words) and held-out words, with the model's generation config.

    python benchmarks/sft_suite.py --model demo-instruct --per-task 50 --out docs/demo-instruct/scores.json
    python benchmarks/sft_suite.py --model demo --generation-from demo-instruct   # the base model, same sampler
    python benchmarks/sft_suite.py --model DIR --splits train --seed 7 --set num_denoising_steps=64 --set tokens_per_step=1
        # a sampler setting tried on training instances (to choose the generation config without the held-out ones)
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import yaml

import sumi
from sumi.atomic import write_text_atomic
from sumi.generation_sumi import GENERATION_DEFAULTS
from sumi.sft_tasks import score_suite

# the generation settings recorded with the scores
SHOWN = (
    "canvas_length",
    "max_new_tokens",
    "sampler",
    "temperature",
    "tokens_per_step",
    "num_denoising_steps",
    "stop_on_cycle",
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="demo-instruct")
    p.add_argument(
        "--generation-from",
        metavar="MODEL",
        help="use this model's generation config (to score a base model the same way)",
    )
    p.add_argument("--per-task", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--splits", default="heldout,heldout_words", help="comma-separated suite splits to score")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one generation-config setting (repeatable), e.g. --set sampler=greedy",
    )
    p.add_argument("--out", help="write the scores as JSON here")
    args = p.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model, tok = sumi.load(args.model)
    if args.generation_from:
        model.generation_config = sumi.load(args.generation_from)[0].generation_config
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in GENERATION_DEFAULTS:
            p.error(f"--set {item}: generate() has no option {key!r}")
        setattr(model.generation_config, key, yaml.safe_load(value))  # 64 -> int, true -> bool, adaptive -> str
    result = {
        "model": args.model,
        "per_task": args.per_task,
        "seed": args.seed,
        "generation": {
            k: v
            for k, v in model.generation_config.to_dict().items()
            if k in SHOWN or k in [item.partition("=")[0] for item in args.set]
        },
    }
    t0 = time.perf_counter()
    for split in args.splits.split(","):
        result[split] = score_suite(model, tok, split, args.per_task, seed=args.seed)
        print(split, json.dumps({k: round(v, 3) for k, v in result[split].items()}), flush=True)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    if args.out:
        write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
