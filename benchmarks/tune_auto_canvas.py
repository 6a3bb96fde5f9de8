"""Choose the room `max_new_tokens="auto"` leaves after the probe's EOS, on training instances.

    python benchmarks/tune_auto_canvas.py [--model demo-instruct] [--per-task 50] [--suite-seed 11] \\
        [--tasks sort] [--fixed 96] [--rules 1:4:0,16:4:0,16:4:0.25] \\
        [--json benchmarks/results/tune_auto_canvas_cpu2.json]

The auto rule (`sumi.denoising.auto_budget`) gives each row the probe's first EOS position plus
max(AUTO_MARGIN, ceil(AUTO_MARGIN_SHARE x that position)) positions, at least AUTO_MIN. Each rule
MIN:MARGIN:SHARE is run over the same instances of the suite's *training* split (`sumi.sft_tasks`,
split "train", drawn with `--suite-seed`: never a held-out instance), beside a fixed budget, and
the table shows exact match and positions paid per task. The rule is chosen here, and measured on the
held-out split by `bench_auto_canvas.py`; choosing it on the held-out instances would leave nothing to
measure it with.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from bench_auto_canvas import measure, parse_tasks, task_cells  # noqa: E402

import sumi  # noqa: E402
import sumi.denoising as denoising  # noqa: E402
from sumi.chat_template import chat_prompt_ids, ensure_chat_template  # noqa: E402
from sumi.sft_tasks import TASKS, generate_suite  # noqa: E402

DEFAULT_RULES = "1:4:0,8:4:0,16:4:0,1:4:0.25,16:4:0.25,16:4:0.5"


def parse_rules(ap: argparse.ArgumentParser, text: str) -> list[tuple[int, int, float]]:
    """--rules: comma-separated MIN:MARGIN:SHARE (a parser error otherwise)."""
    rules = []
    for item in text.split(","):
        try:
            lo, margin, share = item.split(":")
            rules.append((int(lo), int(margin), float(share)))
        except ValueError:
            ap.error(f"--rules: expected MIN:MARGIN:SHARE items such as 16:4:0.25, got {item!r}")
    return rules


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="demo-instruct")
    ap.add_argument("--per-task", type=int, default=50)
    ap.add_argument("--suite-seed", type=int, default=11, help="draws the training instances (split 'train')")
    ap.add_argument("--rules", default=DEFAULT_RULES, help="comma-separated MIN:MARGIN:SHARE rules")
    ap.add_argument("--no-fixed", action="store_true", help="skip the fixed budget")
    ap.add_argument("--steps", type=int, default=None, help="denoising steps (default: the generation config's)")
    ap.add_argument("--tasks", default=",".join(TASKS), help="comma-separated tasks of the suite (default: all)")
    ap.add_argument("--fixed", type=int, default=96, help="the fixed budget shown beside the rules")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rules = parse_rules(ap, args.rules)
    tasks = parse_tasks(ap, args.tasks)
    torch.manual_seed(0)
    model, tok = sumi.load(args.model)
    tok = ensure_chat_template(tok)
    instances = generate_suite("train", args.per_task, seed=args.suite_seed, tasks=tasks)
    prompts = [chat_prompt_ids(tok, inst.messages(with_answer=False)) for inst in instances]
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}"
    print(f"{args.model}; {len(instances)} training instances (suite seed {args.suite_seed}); {machine}")
    steps = {} if args.steps is None else dict(num_denoising_steps=args.steps)
    rows = []
    if not args.no_fixed:
        name = f"fixed, budget {args.fixed}"
        rows.append(
            measure(model, tok, instances, prompts, name, dict(max_new_tokens=args.fixed, skip_tail=True, **steps))
        )
    saved = denoising.AUTO_MIN, denoising.AUTO_MARGIN, denoising.AUTO_MARGIN_SHARE
    try:
        for lo, margin, share in rules:
            denoising.AUTO_MIN, denoising.AUTO_MARGIN, denoising.AUTO_MARGIN_SHARE = lo, margin, share
            name = f"auto, min {lo}, margin {margin}, share {share:g}"
            rows.append(measure(model, tok, instances, prompts, name, dict(max_new_tokens="auto", **steps)))
            print(f"  {name}: {rows[-1]['exact']}/{len(instances)}, {rows[-1]['positions']} positions", flush=True)
    finally:
        denoising.AUTO_MIN, denoising.AUTO_MARGIN, denoising.AUTO_MARGIN_SHARE = saved
    print("\n| rule | positions | exact match | mean budget | " + " | ".join(TASKS) + " |")
    print("|---|---:|---:|---:|" + "---:|" * len(TASKS))
    for r in rows:
        cells = task_cells(r)
        print(f"| {r['config']} | {r['positions']} | {r['exact']}/{r['instances']} | {r['mean_budget']} | {cells} |")
    if args.json:
        from sumi.atomic import write_text_atomic

        result = dict(model=args.model, machine=machine, suite_seed=args.suite_seed, per_task=args.per_task, rows=rows)
        write_text_atomic(args.json, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
