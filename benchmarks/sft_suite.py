"""Exact match of a chat model on the synthetic instruction suite (sumi.sft_tasks), per task, on
held-out instances (seen words) and held-out words, with the model's generation config.

    python benchmarks/sft_suite.py --model demo-instruct --per-task 50 --out docs/demo-instruct/scores.json
    python benchmarks/sft_suite.py --model demo --generation-from demo-instruct   # the base model, same sampler
"""

from __future__ import annotations

import argparse
import json
import time

import torch

import sumi
from sumi.atomic import write_text_atomic
from sumi.sft_tasks import score_suite


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
    p.add_argument("--out", help="write the scores as JSON here")
    args = p.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model, tok = sumi.load(args.model)
    if args.generation_from:
        model.generation_config = sumi.load(args.generation_from)[0].generation_config
    result = {
        "model": args.model,
        "per_task": args.per_task,
        "seed": args.seed,
        "generation": {
            k: v
            for k, v in model.generation_config.to_dict().items()
            if k
            in (
                "canvas_length",
                "max_new_tokens",
                "sampler",
                "temperature",
                "tokens_per_step",
                "num_denoising_steps",
                "stop_on_cycle",
            )
        },
    }
    t0 = time.perf_counter()
    for split in ("heldout", "heldout_words"):
        result[split] = score_suite(model, tok, split, args.per_task, seed=args.seed)
        print(split, json.dumps({k: round(v, 3) for k, v in result[split].items()}), flush=True)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    if args.out:
        write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
