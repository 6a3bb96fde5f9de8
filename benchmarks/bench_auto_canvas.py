"""Canvases that size themselves: exact match against positions paid, per task, fixed budgets vs auto.

    python benchmarks/bench_auto_canvas.py [--model demo-instruct] [--per-task 20] [--samplers all] \\
        [--json benchmarks/results/bench_auto_canvas_cpu2.json]

Each instance of the synthetic instruction suite (`sumi.sft_tasks`, held-out split) is answered
through the chat template (row i seeded with i; prompts of equal length batched, which leaves each
row's answer as it is alone), once per configuration, under each run: the model's generation
config, a long ancestral run (64 steps, a 256-token canvas, budget 128, no early exit) and, with
`--samplers`, every sampler at the model's step count. The cost of an answer is its positions: the
canvas positions its row fed to every forward (`row_positions`, the auto probe included), i.e.
forwards x canvas positions.

Configurations: fixed budgets (the generation config's; 8, 16, 32, 64 and 96 answer tokens with the
canvas cut after their anchors by `skip_tail`; the full budget with `skip_tail`) and the self-sizing ones (`max_new_tokens="auto"`, with `shrink`, with
`grow`). The goal check of issue 16, per task: an auto configuration meets it when its exact match
is at least that of the best fixed budget at no more than 60 % of that budget's positions. Two
readings of "the best fixed budget", both checked: the one budget a user would pick for the whole
suite (most exact overall, then fewest positions) and, stricter, an oracle that picks the best
budget for each task separately (most exact on the task, then fewest positions).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

import sumi  # noqa: E402
from sumi import denoising  # noqa: E402
from sumi.chat_template import answer_prompts, chat_prompt_ids, ensure_chat_template  # noqa: E402
from sumi.sft_tasks import TASKS, exact_match, generate_suite  # noqa: E402

GOAL_FRACTION = 0.6  # auto may pay at most this share of the best fixed budget's positions

# the runs each configuration is measured under
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
# --samplers: each sampler at the generation config's canvas and step count
SAMPLER_BASES = {
    "greedy": dict(sampler="greedy"),
    "adaptive": dict(sampler="adaptive", temperature=0.0),
    "ancestral + greedy tail 1": dict(sampler="ancestral", temperature=1.0, greedy_tail=1),
    "predictor_corrector": dict(sampler="predictor_corrector", temperature=1.0, greedy_tail=1),
    "entropy_bounded": dict(sampler="entropy_bounded", temperature=0.0),
}
CONFIGS = {
    "fixed (generation config)": {},
    # a fixed budget pays only for the canvas up to its anchors (skip_tail), as a canvas sized to it
    "fixed, budget 8": dict(max_new_tokens=8, skip_tail=True),
    "fixed, budget 16": dict(max_new_tokens=16, skip_tail=True),
    "fixed, budget 32": dict(max_new_tokens=32, skip_tail=True),
    "fixed, budget 64": dict(max_new_tokens=64, skip_tail=True),
    "fixed, budget 96": dict(max_new_tokens=96, skip_tail=True),
    "fixed + skip_tail": dict(skip_tail=True),
    "max_new_tokens=auto": dict(max_new_tokens="auto"),
    "auto + shrink": dict(max_new_tokens="auto", shrink=True),
    "fixed + shrink": dict(shrink=True),
    "auto + grow + shrink": dict(max_new_tokens="auto", grow=True, shrink=True),
}
FIXED = tuple(name for name in CONFIGS if name.startswith("fixed") and "shrink" not in name)
AUTO = tuple(name for name in CONFIGS if "auto" in name)


def parse_tasks(ap: argparse.ArgumentParser, text: str) -> tuple[str, ...]:
    """--tasks: comma-separated names of the suite's tasks (a parser error otherwise)."""
    tasks = tuple(t for t in text.split(",") if t)
    if not tasks or any(t not in TASKS for t in tasks):
        ap.error(f"--tasks: expected some of {', '.join(TASKS)}, got {text!r}")
    return tasks


def task_cells(row: dict) -> str:
    """A row's exact matches per task as markdown cells ("-" for a task it did not run)."""
    cells = (
        f"{row['per_task'][t]['exact']}/{row['per_task'][t]['instances']}" if t in row["per_task"] else "-"
        for t in TASKS
    )
    return " | ".join(cells)


def measure(model, tok, instances, prompts, name: str, options: dict, first_seed: int = 0) -> dict:
    """One configuration over every instance (instance i with seed first_seed + i): positions, exact
    matches and mean budget, overall and per task."""
    start = time.perf_counter()
    costs: list[dict[str, int]] = []
    seeds = list(range(first_seed, first_seed + len(prompts)))
    answers = answer_prompts(model, tok, prompts, seeds=seeds, costs=costs, **options)
    per_task: dict[str, dict[str, int]] = {}
    for inst, answer, cost in zip(instances, answers, costs):
        t = per_task.setdefault(inst.task, dict(exact=0, positions=0, instances=0))
        t["exact"] += exact_match(answer, inst.answer)
        t["positions"] += cost["positions"]
        t["instances"] += 1
    n = len(instances)
    return dict(
        config=name,
        options=options,
        positions=sum(c["positions"] for c in costs),
        exact=sum(t["exact"] for t in per_task.values()),
        instances=n,
        mean_budget=round(sum(c["budget"] for c in costs) / n, 1),
        per_task=per_task,
        seconds=round(time.perf_counter() - start, 2),
    )


def goal_check(rows: list[dict], per_task_oracle: bool = False) -> list[dict]:
    """Per task: the best fixed budget (the suite's best one, or each task's with `per_task_oracle`)
    and, for each auto configuration, whether it meets the goal."""
    by = {r["config"]: r for r in rows}
    fixed = [by[c] for c in FIXED if c in by]
    if not fixed:
        return []
    overall = max(fixed, key=lambda r: (r["exact"], -r["positions"]))
    out = []
    for task in TASKS:
        if task not in overall["per_task"]:
            continue
        best = overall
        if per_task_oracle:
            best = max(fixed, key=lambda r: (r["per_task"][task]["exact"], -r["per_task"][task]["positions"]))
        b = best["per_task"][task]
        for c in AUTO:
            if c not in by or task not in by[c]["per_task"]:
                continue
            a = by[c]["per_task"][task]
            ratio = a["positions"] / max(1, b["positions"])
            out.append(
                dict(
                    task=task,
                    best_fixed=best["config"],
                    best_exact=b["exact"],
                    best_positions=b["positions"],
                    auto=c,
                    auto_exact=a["exact"],
                    auto_positions=a["positions"],
                    ratio=round(ratio, 3),
                    instances=a["instances"],
                    # no fixed budget answers any instance: nothing to match (shown as "-")
                    met=None if b["exact"] == 0 else a["exact"] >= b["exact"] and ratio <= GOAL_FRACTION,
                )
            )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="demo-instruct")
    ap.add_argument("--per-task", type=int, default=4)
    ap.add_argument("--configs", default=None, help="comma-separated indices into the configurations (default: all)")
    ap.add_argument(
        "--samplers",
        default="",
        help=f"comma-separated runs to add from {', '.join(SAMPLER_BASES)} ('all': every one)",
    )
    ap.add_argument("--no-long-run", action="store_true", help="skip the long ancestral run")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 instance per task, 4 steps per run")
    ap.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="instance i is answered with seed FIRST_SEED + i (another value: the same run on other draws)",
    )
    ap.add_argument("--tasks", default=",".join(TASKS), help="comma-separated tasks of the suite (default: all)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    tasks = parse_tasks(ap, args.tasks)
    bases = dict(BASES)
    long_run = list(BASES)[1]
    if args.no_long_run:
        del bases[long_run]
    elif args.quick:  # a short ancestral run
        bases[long_run] = dict(bases[long_run], canvas_length=96, max_new_tokens=48)
    if args.quick:  # one instance per task, 4 steps for every run
        bases = {name: dict(base, num_denoising_steps=4) for name, base in bases.items()}
        args.per_task = 1
    names = list(SAMPLER_BASES) if args.samplers == "all" else [s for s in args.samplers.split(",") if s]
    for s in names:
        if s not in SAMPLER_BASES:
            ap.error(f"--samplers: unknown run {s!r}; expected some of {', '.join(SAMPLER_BASES)}")
        bases[s] = SAMPLER_BASES[s]
    torch.manual_seed(0)
    model, tok = sumi.load(args.model)
    tok = ensure_chat_template(tok)
    instances = generate_suite("heldout", args.per_task, seed=0, tasks=tasks)
    prompts = [chat_prompt_ids(tok, inst.messages(with_answer=False)) for inst in instances]
    gen = {
        k: model.generation_config.to_dict().get(k)
        for k in ("sampler", "temperature", "num_denoising_steps", "tokens_per_step", "canvas_length", "stop_on_cycle")
    }
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}"
    rule = dict(min=denoising.AUTO_MIN, margin=denoising.AUTO_MARGIN, share=denoising.AUTO_MARGIN_SHARE)
    print(f"{args.model} ({gen}); {len(instances)} held-out instances; auto rule {rule}; {machine}")
    tables, goals = {}, {}
    for base_name, base in bases.items():
        rows = []
        for c, (name, options) in enumerate(CONFIGS.items()):
            if args.configs is not None and str(c) not in args.configs.split(","):
                continue
            rows.append(measure(model, tok, instances, prompts, name, {**base, **options}, args.first_seed))
        tables[base_name] = rows
        goals[base_name] = {"suite's best budget": goal_check(rows), "per-task oracle": goal_check(rows, True)}
        first = rows[0]["positions"]
        print(f"\n{args.model}, {len(instances)} held-out suite instances, {base_name}\n")
        print("| configuration | positions | vs fixed | exact match | mean budget | " + " | ".join(TASKS) + " |")
        print("|---|---:|---:|---:|---:|" + "---:|" * len(TASKS))
        for r in rows:
            cells = task_cells(r)
            print(
                f"| {r['config']} | {r['positions']} | {r['positions'] / first:.2f} | "
                f"{r['exact']}/{r['instances']} | {r['mean_budget']} | {cells} |"
            )
        for reading, checks in goals[base_name].items():
            if not checks:
                continue
            print(
                f"\ngoal (auto >= best fixed exact at <= {GOAL_FRACTION:.0%} of its positions; {reading}), {base_name}\n"
            )
            print("| task | best fixed | exact | positions | auto | exact | positions | ratio | met |")
            print("|---|---|---:|---:|---|---:|---:|---:|---|")
            for g in checks:
                print(
                    f"| {g['task']} | {g['best_fixed']} | {g['best_exact']}/{g['instances']} | {g['best_positions']} | "
                    f"{g['auto']} | {g['auto_exact']}/{g['instances']} | {g['auto_positions']} | {g['ratio']:.2f} | "
                    f"{'-' if g['met'] is None else 'yes' if g['met'] else 'no'} |"
                )
    if args.json:
        from sumi.atomic import write_text_atomic

        result = dict(
            model=args.model, generation=gen, auto_rule=rule, machine=machine, per_task=args.per_task, tables=tables
        )
        write_text_atomic(args.json, json.dumps(dict(result, goals=goals), indent=2) + "\n")


if __name__ == "__main__":
    main()
