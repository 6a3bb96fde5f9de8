"""Early exit and dead-tail skipping: forwards saved per sampler, and what it costs in quality.

    python benchmarks/bench_early_exit.py [--model demo] [--samples 8] [--canvas 512] [--json out.json]

For each sampler (ancestral; adaptive at T = 0; greedy) the same seeded batch of unconditional
samples is generated four ways, side by side in one run:
  * official: every row runs all `--steps` forwards over the whole canvas;
  * early exit: `early_stop_patience` (a row leaves the batch after PATIENCE steps without a
    change; exact for adaptive T = 0 and greedy with patience 1, a heuristic for ancestral);
  * skip tail: `skip_tail=True` (the canvas after the BOS anchor is left out of every forward);
  * both;
  * stop on cycle (greedy and adaptive at T = 0 only): `stop_on_cycle=True` (a row leaves once its
    canvas repeats one of its last 8 canvases, holding the canvas the remaining steps would end
    on; exact), alone and with skip tail.
Columns: row-forwards (forwards each sample took part in, mean), forward tokens (row-forwards x the
columns each forward saw, relative to official), judge generative perplexity (SmolLM2-135M) and
sample entropy (nats, low = repetitive), wall seconds per sample. "Equal quality" is read off the
judge column; where early exit is exact the samples are token-identical to the run without it
(checked: the "same samples" column).
"""

import argparse
import json
import math
import os
import platform
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

import sumi  # noqa: E402
from sumi.analysis.quality import token_entropy  # noqa: E402
from sumi.generation_sumi import is_deterministic  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="demo")
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--steps", type=int, default=128)
    ap.add_argument("--canvas", type=int, default=512)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--patience", default="1,1,1", help="early-stop patience for ancestral,adaptive,greedy")
    ap.add_argument("--samplers", default="ancestral,adaptive,greedy")
    ap.add_argument("--judge", default="smollm2", help="'none' skips the judge")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="smoke run: sumi-tiny random weights, 2 samples, 4 steps")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.quick:
        args.model, args.samples, args.steps, args.canvas, args.new_tokens, args.judge = (
            "sumi-tiny",
            2,
            4,
            48,
            16,
            "none",
        )
    model, tok = sumi.load(args.model)
    bos = model.config.bos_token_id
    C = min(args.canvas, model.config.max_position_embeddings)
    judge = None
    if args.judge != "none":
        from sumi.analysis.quality import ARJudge

        judge = ARJudge(args.judge)
    patience = dict(zip(("ancestral", "adaptive", "greedy"), (int(p) for p in args.patience.split(","))))
    prompt = torch.full((args.samples, 1), bos)
    started, rows = time.time(), []
    for sampler in args.samplers.split(","):
        base_kw = dict(
            max_new_tokens=args.new_tokens,
            num_denoising_steps=args.steps,
            canvas_length=C,
            sampler=sampler,
            seed=[args.seed + i for i in range(args.samples)],
        )
        if sampler == "adaptive":  # enough edits per step to fill the canvas within the budget
            base_kw.update(temperature=0.0, tokens_per_step=max(1, math.ceil((C - 1) / args.steps)))
        reference = {}  # samples without early exit, per skip_tail setting
        variants = [
            ("official", {}),
            ("early exit", dict(early_stop_patience=patience[sampler])),
            ("skip tail", dict(skip_tail=True)),
            ("both", dict(skip_tail=True, early_stop_patience=patience[sampler])),
        ]
        if is_deterministic(sampler, base_kw.get("temperature", 1.0)):  # greedy; adaptive at T = 0 here
            variants.insert(2, ("stop on cycle", dict(stop_on_cycle=True)))
            variants.append(("skip tail + stop on cycle", dict(skip_tail=True, stop_on_cycle=True)))
        for variant, extra in variants:
            t0 = time.perf_counter()
            with torch.no_grad():
                out = model.generate(prompt, **base_kw, **extra)
            dt = time.perf_counter() - t0
            width = (1 + args.new_tokens + 2) if extra.get("skip_tail") else C
            ids = [out.sequences[i, 1 : int(out.lengths[i])].tolist() for i in range(args.samples)]
            reference.setdefault(bool(extra.get("skip_tail")), ids)
            row = dict(
                sampler=sampler,
                variant=variant,
                patience=extra.get("early_stop_patience"),
                row_forwards=float(out.row_forwards.float().mean()),
                forward_tokens=float(out.row_forwards.float().mean()) * width,
                identical=ids == reference[bool(extra.get("skip_tail"))],
                seconds=dt / args.samples,
                entropy=float(np.mean([token_entropy(i) for i in ids])),
                gen_ppl=None,
            )
            if judge is not None:
                texts = [tok.decode(i, skip_special_tokens=True) for i in ids]
                row["gen_ppl"] = judge.perplexity([""] * len(texts), texts)["perplexity"]
            rows.append(row)
            print(
                f"{sampler:9s} {variant:10s} row-forwards {row['row_forwards']:6.1f}  "
                f"gen PPL {row['gen_ppl'] or float('nan'):7.1f}  {dt:.1f} s",
                file=sys.stderr,
            )

    cpu = next(
        (l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor()
    )
    print(
        f"### bench_early_exit: `{args.model}`, {args.samples} unconditional samples, {args.new_tokens}-token "
        f"budget on a {C}-token canvas, {args.steps} steps\n"
    )
    print(
        f"Machine: {cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads; torch "
        f"{torch.__version__}; {time.strftime('%Y-%m-%d')}. Judge: {judge.path if judge else 'none'}.\n"
    )
    print(
        "| sampler | variant | row-forwards | vs official | forward tokens vs official | same samples as without early exit | "
        "judge gen. PPL | entropy | s / sample |"
    )
    print("|---|---|---:|---:|---:|---|---:|---:|---:|")
    for r in rows:
        base = next(b for b in rows if b["sampler"] == r["sampler"] and b["variant"] == "official")
        name = r["variant"] + (f" (patience {r['patience']})" if r["patience"] else "")
        ppl = f"{r['gen_ppl']:.1f}" if r["gen_ppl"] is not None else "-"
        print(
            f"| {r['sampler']} | {name} | {r['row_forwards']:.1f} | {r['row_forwards'] / base['row_forwards']:.2f} | "
            f"{r['forward_tokens'] / base['forward_tokens']:.2f} | {'yes' if r['identical'] else 'no'} | {ppl} | "
            f"{r['entropy']:.2f} | {r['seconds']:.2f} |"
        )
    print(f"\n_{time.time() - started:.0f} s in all._")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(args=vars(args), rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
