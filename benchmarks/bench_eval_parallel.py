"""Items/s of `sumi eval --offline hellaswag` with 1 and N data-parallel processes (torchrun).

Each process count runs the same command (the same items, options and seed) as a subprocess: one
process plainly, N through `python -m torch.distributed.run --nproc_per_node=N`. The CPU's cores are
shared out: each process gets `cores // N` torch threads (`OMP_NUM_THREADS`), so the comparison is
of one process using the whole machine against N processes splitting it. items/s = items / the
task's seconds in results.json (rank 0's wall time of the task, model loading excluded); the
end-to-end column includes interpreter start and model loading. The runs must agree item by item
(the "same predictions" column compares every item's prediction with the first run's).

    python benchmarks/bench_eval_parallel.py                        # demo model, 1 and 2 processes
    python benchmarks/bench_eval_parallel.py --procs 1,2,4 --limit 200 --json out.json
    python benchmarks/bench_eval_parallel.py --device cuda --procs 1 --model sumi-1b --canvas-length 2048
    python benchmarks/bench_eval_parallel.py --quick                # a smoke run (8 items, 2 t samples)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def machine() -> dict:
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return dict(
        cpu=cpu,
        cores=os.cpu_count(),
        torch=torch.__version__,
        gpu=gpu,
        python=platform.python_version(),
        date=dt.date.today().isoformat(),
        load_average=os.getloadavg()[0],
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_eval(procs: int, args: argparse.Namespace, out_dir: Path) -> dict:
    """One `sumi eval` run with `procs` processes; its task seconds, items/s and predictions."""
    eval_args = [
        "eval",
        "--offline",
        "hellaswag",
        "--limit",
        str(args.limit),
        "--model",
        args.model,
        "--num-samples",
        str(args.num_samples),
        "--batch-size",
        str(args.batch_size),
        "--device",
        args.device,
        "--no-progress",
        "--log-samples",
        "--output-dir",
        str(out_dir),
    ]
    if args.canvas_length:
        eval_args += ["--canvas-length", str(args.canvas_length)]
    if args.dtype:
        eval_args += ["--dtype", args.dtype]
    if args.data_dir:
        eval_args += ["--data-dir", args.data_dir]
    if procs == 1:
        cmd = [sys.executable, "-m", "sumi.cli", *eval_args]
    else:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={procs}",
            "--master_addr=127.0.0.1",
            f"--master_port={_free_port()}",
            "-m",
            "sumi.cli",
            *eval_args,
        ]
    threads = args.threads_per_process or max(1, (args.threads or os.cpu_count() or 1) // procs)
    env = dict(
        os.environ,
        OMP_NUM_THREADS=str(threads),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"bench_eval_parallel: the {procs}-process run failed:\n{proc.stderr[-3000:]}")
    result = json.loads((out_dir / "results.json").read_text())["results"]["hellaswag"]
    samples = [json.loads(line) for line in (out_dir / "samples_hellaswag.jsonl").read_text().splitlines()]
    return dict(
        processes=procs,
        threads_each=threads,
        items=result["n"],
        task_seconds=result["seconds"],
        items_per_s=result["n"] / result["seconds"],
        end_to_end_s=wall,
        acc_norm=result["metrics"]["acc_norm"],
        preds=[(s["pred"], s["pred_norm"]) for s in samples],
    )


def table(rows: list[dict], info: dict, args: argparse.Namespace) -> str:
    base = rows[0]
    lines = [
        f"**{info['cpu']}, {info['cores']} cores{', ' + info['gpu'] if info['gpu'] else ''}, torch "
        f"{info['torch']}, {info['date']}** (load average {info['load_average']:.1f} at the start); "
        f"`sumi eval --offline hellaswag --limit {args.limit} --model {args.model} --num-samples "
        f"{args.num_samples}` on {args.device}",
        "",
        "| processes | threads each | items | task s | items/s | speed-up | end-to-end s | acc_norm | "
        "same predictions |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        same = "yes" if r["preds"] == base["preds"] else "NO"
        lines.append(
            f"| {r['processes']} | {r['threads_each']} | {r['items']} | {r['task_seconds']:.1f} | "
            f"{r['items_per_s']:.2f} | {r['items_per_s'] / base['items_per_s']:.2f}x | "
            f"{r['end_to_end_s']:.1f} | {r['acc_norm']:.4f} | {same} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--procs", default="1,2", help="process counts, comma-separated (default: 1,2)")
    p.add_argument("--model", default="demo", help="model folder or preset (default: the bundled demo model)")
    p.add_argument("--limit", type=int, default=100, help="hellaswag items (default: 100)")
    p.add_argument("--num-samples", type=int, default=16, help="NELBO t samples per choice (default: 16)")
    p.add_argument("--batch-size", type=int, default=8, help="canvases per forward (default: 8)")
    p.add_argument("--canvas-length", type=int, help="scoring canvas cap (default: the evaluation's)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), help="weight dtype (default: the checkpoint's)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (each process takes cuda:LOCAL_RANK)")
    p.add_argument("--threads", type=int, help="cores to share out among the processes (default: all)")
    p.add_argument(
        "--threads-per-process",
        type=int,
        help="torch threads of every process instead (e.g. 1: the "
        "same per-process work whatever the process count; on a busy machine multi-threaded OpenMP "
        "loses far more than its share)",
    )
    p.add_argument("--data-dir", help="benchmark JSONL folder (default: $SUMI_EVAL_DATA_DIR or ../shared/...)")
    p.add_argument("--quick", action="store_true", help="smoke run: 8 items, 2 t samples")
    p.add_argument("--json", metavar="PATH", help="also write the numbers here")
    args = p.parse_args()
    if args.quick:
        args.limit, args.num_samples = 8, 2
    try:
        procs = [int(x) for x in args.procs.split(",") if x.strip()]
    except ValueError:
        sys.exit(f"bench_eval_parallel: --procs must be comma-separated integers, got {args.procs!r}")
    if not procs or min(procs) < 1:
        sys.exit(f"bench_eval_parallel: --procs must be integers >= 1, got {args.procs!r}")
    info = machine()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_eval_parallel_") as tmp:
        for n in procs:
            print(f"running {n} process(es) ...", file=sys.stderr, flush=True)
            rows.append(run_eval(n, args, Path(tmp) / f"p{n}"))
    print(table(rows, info, args))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                dict(
                    machine=info,
                    settings=vars(args),
                    rows=[
                        {k: v for k, v in r.items() if k != "preds"}
                        | {"same_predictions": r["preds"] == rows[0]["preds"]}
                        for r in rows
                    ],
                ),
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
