#!/usr/bin/env python
"""The bf16 CPU attention kernel (`sumi.kernels`) against PyTorch SDPA, one attention call, side by side.

For several shapes (batch, query heads, KV heads, canvas, head dim) of Sumi's models: the time of
sumi's native kernel (`kernels.sink_attention`) and of the model's SDPA path (`sdpa_sink_attention`:
SDPA with an appended zero key/value row) on bf16 inputs, alternating, best of `--repeats`;
GFLOP/s counts `4 B h S^2 d`; the largest difference between the two outputs; whether the CPU has
AMX and which of the two the model picks here. Needs an x86-64 Linux CPU with AVX512-BF16 and gcc
(the script says so otherwise).

    python benchmarks/bench_attention.py [--repeats 15] [--threads N] [--json out.json]
    python benchmarks/bench_attention.py --quick      # smoke run: small shapes, 2 repeats
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

try:
    import sumi  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import sumi.modeling_sumi as modeling  # noqa: E402
from sumi import kernels  # noqa: E402

# (label, B, h, k, S, d)
SHAPES = [
    ("demo (bundled), canvas 512", 1, 5, 1, 512, 64),
    ("demo, batch 8", 8, 5, 1, 512, 64),
    ("sumi-57m, canvas 2048", 1, 8, 2, 2048, 64),
    ("sumi-57m, canvas 4096", 1, 8, 2, 4096, 64),
    ("sumi-7b heads (32 / 8 KV, d 128), canvas 2048", 1, 32, 8, 2048, 128),
]
QUICK = [("small", 1, 2, 1, 96, 64), ("small, d 128", 2, 4, 2, 70, 128)]


def best_of(fn, repeats: int) -> tuple[float, torch.Tensor]:
    out = fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=15, help="best of N after one warm-up (default 15)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)")
    p.add_argument("--quick", action="store_true", help="smoke run: small shapes, 2 repeats")
    p.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.repeats = 2
    torch.set_num_threads(args.threads)
    if not kernels.available():
        print(f"bench_attention: the native kernel cannot run here: {kernels.why_not()}", file=sys.stderr)
        return 1
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    rows = []
    g = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for label, B, h, k, S, d in QUICK if args.quick else SHAPES:
            q = torch.randn(B, h, S, d, generator=g).bfloat16()
            kv = [torch.randn(B, k, S, d, generator=g).bfloat16() for _ in range(2)]

            attention = {
                "sumi": kernels.sink_attention,  # the kernel itself, whichever the model would pick
                "sdpa": modeling.ALL_ATTENTION_FUNCTIONS["sdpa"],
            }
            times = {"sumi": float("inf"), "sdpa": float("inf")}
            outs = {}
            for _ in range(3):  # alternate, so that load from elsewhere hits both
                for name, fn in attention.items():
                    t, outs[name] = best_of(lambda: fn(q, kv[0], kv[1], None, d**-0.5), max(1, args.repeats // 3))
                    times[name] = min(times[name], t)
            flop = 4.0 * B * h * S * S * d
            diff = float((outs["sumi"].float() - outs["sdpa"].float()).abs().max())
            rows.append(
                dict(
                    shape=label,
                    B=B,
                    h=h,
                    k=k,
                    S=S,
                    d=d,
                    sdpa_s=times["sdpa"],
                    sumi_s=times["sumi"],
                    sdpa_gflops=flop / times["sdpa"] / 1e9,
                    sumi_gflops=flop / times["sumi"] / 1e9,
                    ratio=times["sdpa"] / times["sumi"],
                    max_abs_diff=diff,
                )
            )
    amx = kernels.AMX_FLAG in kernels._cpu_flags()
    default = "SDPA" if kernels.why_not_for(64) else "the sumi kernel"
    print(
        f"## bench_attention\n\n- machine: {cpu}, {os.cpu_count()} cores ({'with' if amx else 'no'} AMX), torch "
        f"threads {args.threads}; torch {torch.__version__}; {time.strftime('%Y-%m-%d')}; best of {args.repeats}, "
        f"bf16, no mask; the model's default attention here: {default}\n"
    )
    print("| shape | B, h / KV heads, S, d | SDPA | sumi kernel | ratio | max abs diff |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['shape']} | {r['B']}, {r['h']} / {r['k']}, {r['S']}, {r['d']} | {r['sdpa_s'] * 1e3:.2f} ms "
            f"({r['sdpa_gflops']:.0f} GFLOP/s) | {r['sumi_s'] * 1e3:.2f} ms ({r['sumi_gflops']:.0f} GFLOP/s) | "
            f"{r['ratio']:.2f}× | {r['max_abs_diff']:.2g} |"
        )
    print(
        "\nratio = SDPA time / sumi time (> 1: the kernel is faster); GFLOP/s counts 4 B h S² d. "
        "Both outputs are bf16: the difference is output rounding (tests/test_kernels.py checks both "
        "against float64)."
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(dict(cpu=cpu, amx=amx, default=default, threads=args.threads, rows=rows), indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
