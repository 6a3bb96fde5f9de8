"""Canvases that size themselves: positions paid and exact match, fixed budget vs auto / grow / shrink.

    python benchmarks/bench_auto_canvas.py [--model demo-instruct] [--per-task 4] [--json out.json]

Each instance of the synthetic instruction suite (`sumi.sft_tasks`, held-out split) is answered
through the chat template, row i seeded with i, once per configuration, under the model's
generation config (demo-instruct: adaptive, T = 0, 4 tokens per step, 16 steps, a 64-token canvas,
stop_on_cycle) and under a long ancestral run (64 steps, a 256-token canvas, budget 128, no early
exit). Columns: positions (the sum over instances of `row_positions`: every position a row fed to
every forward, the cost), forwards (`num_forwards`, the auto probe included), exact match, and the
mean final budget.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

import sumi  # noqa: E402
from sumi.chat_template import chat_prompt_ids, ensure_chat_template  # noqa: E402
from sumi.sft_tasks import exact_match, generate_suite  # noqa: E402

# the runs each configuration is measured under: the model's generation config, and a long
# ancestral run with no early exit (where every forward pays the whole canvas)
BASES = {
    "generation config": {},
    "ancestral, 64 steps, 256-token canvas, budget 128": dict(
        sampler="ancestral",
        temperature=1.0,
        num_denoising_steps=64,
        canvas_length=256,
        max_new_tokens=128,
        auto_max_new_tokens=128,
        stop_on_cycle=False,
    ),
}
CONFIGS = {
    "fixed (generation config)": {},
    "fixed + skip_tail": dict(skip_tail=True),
    "max_new_tokens=auto": dict(max_new_tokens="auto"),
    "auto + shrink": dict(max_new_tokens="auto", shrink=True),
    "fixed + shrink": dict(shrink=True),
    "auto + grow + shrink": dict(max_new_tokens="auto", grow=True, shrink=True),
}


def measure(model, tok, instances, prompts, name: str, options: dict) -> dict:
    """One configuration over every instance: positions, forwards, exact matches, mean budget."""
    positions = forwards = hits = budget = 0
    start = time.perf_counter()
    for i, (inst, ids) in enumerate(zip(instances, prompts)):
        out = model.generate(torch.tensor([ids]), seed=[i], **options)
        answer = tok.decode(out.sequences[0, len(ids) : int(out.lengths[0])].tolist(), skip_special_tokens=True)
        hits += exact_match(answer, inst.answer)
        positions += int(out.row_positions[0])
        forwards += int(out.num_forwards)
        budget += int(out.budgets[0])
    n = len(instances)
    return dict(
        config=name,
        options=options,
        positions=positions,
        forwards=forwards,
        exact=hits,
        instances=n,
        mean_budget=round(budget / n, 1),
        seconds=round(time.perf_counter() - start, 2),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="demo-instruct")
    ap.add_argument("--per-task", type=int, default=4)
    ap.add_argument("--configs", default=None, help="comma-separated indices into the configurations (default: all)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 instance per task, 8 ancestral steps")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    bases = dict(BASES)
    if args.quick:  # one instance per task, a short ancestral run
        args.per_task = 1
        long_run = list(bases)[1]
        bases[long_run] = dict(bases[long_run], num_denoising_steps=8, canvas_length=96, max_new_tokens=48)
    torch.set_num_threads(1)
    model, tok = sumi.load(args.model)
    tok = ensure_chat_template(tok)
    instances = generate_suite("heldout", args.per_task, seed=0)
    prompts = [chat_prompt_ids(tok, inst.messages(with_answer=False)) for inst in instances]
    tables = {}
    for base_name, base in bases.items():
        rows = []
        for c, (name, options) in enumerate(CONFIGS.items()):
            if args.configs is not None and str(c) not in args.configs.split(","):
                continue
            rows.append(measure(model, tok, instances, prompts, name, {**base, **options}))
        tables[base_name] = rows
        first = rows[0]["positions"]
        print(f"\n{args.model}, {len(instances)} held-out suite instances, {base_name}\n")
        print("| configuration | positions | vs fixed | forwards | exact match | mean budget |")
        print("|---|---:|---:|---:|---:|---:|")
        for r in rows:
            print(
                f"| {r['config']} | {r['positions']} | {r['positions'] / first:.2f} | {r['forwards']} | "
                f"{r['exact']}/{r['instances']} | {r['mean_budget']} |"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(model=args.model, per_task=args.per_task, tables=tables), f, indent=2)


if __name__ == "__main__":
    main()
