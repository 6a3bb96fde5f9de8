"""Serving throughput: concurrent clients against `sumi serve` vs the same requests one after another.

    python benchmarks/bench_serve.py [--model demo] [--requests 125] [--clients 1,4,8,16] [--json out.json]
    python benchmarks/bench_serve.py --model sumi-1b --device cuda --dtype bfloat16 --canvas 2048 \
        --budgets 256,512,1024 --clients 1,8,16 --requests 48 --forward-rows 1,8,32 --max-batch-rows 32

A bounded load on loopback, in one run:
  * sequential: the request set served one after another through `model.generate()` in this process
    (the same prompt ids, options and per-row seed the server uses);
  * for each client count c: the server (`python -m sumi.serving`, a subprocess) answers the same
    request set to c closed-loop clients (each sends its next request when its answer arrives).
Columns: errors (any non-200), answer tokens/s (completion tokens / wall time) and its ratio to
the sequential run, answer tokens per CPU-second (of the server process, or of the sequential run:
the same ratio without the noise of other jobs on a shared machine), p50/p95/p99 request latency,
whether every answer equals the sequential one (the server's batch invariance, checked on every
request), and the server's resident memory after the level (from /proc). The request set mixes
prompt lengths, answer budgets and samplers (every fourth request adaptive at T = 0). Both sides
run the model in `--dtype` (default: the checkpoint's, as `sumi serve` does; float32 for the demo
model on a CPU), on `--device`, with `--threads` torch threads (default 1: on a 2-core machine a
second OpenMP thread slows the small per-row operations, and the server's HTTP thread needs a core).
The forward table times one forward of the server's model at `--forward-rows` live rows (forwards/s,
row-forwards/s, and the gain over one plain row: what step-level batching can buy on the device).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

import sumi  # noqa: E402
from sumi.batch_invariance import make_batch_invariant  # noqa: E402
from sumi.serving.client import post  # noqa: E402
from sumi.serving.jobs import TextCodec  # noqa: E402

PROMPTS = [
    "def read_config(path):",
    "import os\n",
    "class Stack:\n    def push(self, item):",
    "ROMEO.\n",
    "    return self.",
    "KING HENRY.\nWhat says",
    "def test_split(self):\n",
    "#",
    "if __name__ == '__main__':\n",
    "First Citizen.\nBefore we proceed",
]


# ----------------------------------------------------------------------------- the request set
def request_set(n: int, steps: int, canvas: int, budgets: list[int]) -> list[dict]:
    """n request bodies: prompts, budgets and samplers in rotation, one seed each."""
    out = []
    for i in range(n):
        body = dict(
            prompt=PROMPTS[i % len(PROMPTS)],
            max_tokens=budgets[i % len(budgets)],
            steps=steps,
            canvas_length=canvas,
            seed=1000 + i,
        )
        if i % 4 == 3:  # adaptive at T = 0, enough edits per step to reach every answer position
            body.update(sampler="adaptive", temperature=0.0, tokens_per_step=math.ceil(body["max_tokens"] / steps) + 1)
        out.append(body)
    return out


def generate_alone(model, codec: TextCodec, body: dict) -> tuple[str, int, float, float]:
    """(text, answer tokens, seconds, CPU seconds) of one request through generate(), as the server
    would run it."""
    ids = [model.config.bos_token_id] + codec.encode(body["prompt"])
    options = {k: v for k, v in body.items() if k not in ("prompt", "seed", "max_tokens", "steps")}
    start, cpu = time.perf_counter(), time.process_time()
    out = model.generate(
        torch.tensor([ids], device=model.device),
        seed=[body["seed"]],
        max_new_tokens=body["max_tokens"],
        num_denoising_steps=body["steps"],
        **options,
    )
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    answer = out.sequences[0, len(ids) : int(out.lengths[0])].tolist()
    return codec.decode(answer), len(answer), seconds, cpu


# ----------------------------------------------------------------------------- the server
class ServerProcess:
    """`python -m sumi.serving` on a free port, with its resident memory sampled from /proc."""

    def __init__(
        self,
        model: str,
        dtype: str | None,
        threads: int,
        max_batch_rows: int,
        max_queue: int,
        invariant: bool = True,
        device: str = "cpu",
    ):
        env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(
            [os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"), env.get("PYTHONPATH", "")]
        )
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sumi.serving",
                "--model",
                model,
                "--port",
                "0",
                "--log-level",
                "warning",
                *(["--dtype", dtype] if dtype else []),
                "--max-batch-rows",
                str(max_batch_rows),
                "--max-queue",
                str(max_queue),
                "--threads",
                str(threads),
                "--device",
                device,
                *([] if invariant else ["--no-batch-invariant"]),
            ],
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        seen = []  # notices (e.g. about random weights) come before the line with the address
        while not (found := re.search(r"http://\S+:\d+", seen[-1] if seen else "")):
            seen.append(self.proc.stderr.readline())
            if not seen[-1]:
                self.proc.kill()
                raise RuntimeError("the server did not start:\n" + "".join(seen))
        self.url = found.group(0)
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()  # keep its pipe drained
        self.peak_rss = 0
        self._stop = threading.Event()
        threading.Thread(target=self._sample_rss, daemon=True).start()

    def rss(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _sample_rss(self) -> None:
        while not self._stop.wait(0.25):
            try:
                self.peak_rss = max(self.peak_rss, self.rss())
            except (OSError, StopIteration):
                return

    def close(self) -> None:
        self._stop.set()
        self.proc.terminate()
        self.proc.wait(timeout=30)


def run_level(url: str, requests: list[dict], clients: int) -> dict:
    """The request set through `clients` closed-loop clients: per-request latency, status, answer."""
    results: list[dict | None] = [None] * len(requests)
    lock, cursor = threading.Lock(), iter(range(len(requests)))

    def client() -> None:
        while True:
            with lock:
                i = next(cursor, None)
            if i is None:
                return
            start = time.perf_counter()
            try:
                status, body = post(url, "/v1/completions", requests[i])
            except OSError as e:
                status, body = 0, str(e)
            seconds = time.perf_counter() - start
            ok = status == 200
            results[i] = dict(
                status=status,
                seconds=seconds,
                text=body["choices"][0]["text"] if ok else None,
                tokens=body["usage"]["completion_tokens"] if ok else 0,
                error=None if ok else str(body)[:200],
            )

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(client) for _ in range(clients)]:
            future.result()
    return dict(wall=time.perf_counter() - start, results=results)


# ----------------------------------------------------------------------------- report
def percentiles(seconds: list[float]) -> tuple[float, float, float]:
    p50, p95, p99 = np.percentile(np.array(seconds), [50, 95, 99])
    return float(p50), float(p95), float(p99)


def forward_seconds(model, canvas: int, rows: int, repeats: int = 7) -> float:
    """The best of `repeats` forwards of `rows` random rows over `canvas` positions (after a warm-up)."""
    ids = torch.randint(3, model.config.vocab_size, (rows, canvas), generator=torch.Generator().manual_seed(0))
    ids = ids.to(model.device)
    times = []
    with torch.inference_mode():
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            model(input_ids=ids)
            if ids.is_cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    return min(times[1:])


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = f"; GPU: {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{cpu}, {os.cpu_count()} cores{gpu}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="demo")
    ap.add_argument("--requests", type=int, default=125, help="requests per level (the same set at each level)")
    ap.add_argument("--clients", default="1,4,8,16", help="concurrent clients, one level each")
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--canvas", type=int, default=96)
    ap.add_argument("--budgets", default="16,32,48", help="answer budgets (max_tokens) in rotation")
    ap.add_argument(
        "--dtype",
        default=None,
        choices=("bfloat16", "float32"),
        help="model dtype on both sides (default: the checkpoint's, as `sumi serve`). bfloat16 is "
        "faster on CPUs with AVX512-BF16/AMX, but its matmuls depend on the batch size there",
    )
    ap.add_argument("--device", default="cpu", help="cpu or cuda (both sides)")
    ap.add_argument(
        "--forward-rows",
        default="1,8",
        help="live rows at which to time one forward of the server's model over --canvas positions",
    )
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the server and of the sequential run")
    ap.add_argument("--max-batch-rows", type=int, default=16)
    ap.add_argument(
        "--no-batch-invariant",
        action="store_true",
        help="serve with plain GEMM calls (`sumi serve --no-batch-invariant`): faster, answers not bit-identical",
    )
    ap.add_argument("--quick", action="store_true", help="smoke run: sumi-tiny random weights, 6 requests, 1-2 clients")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.quick:
        args.model, args.requests, args.clients, args.steps, args.canvas, args.budgets = (
            "sumi-tiny",
            6,
            "1,2",
            4,
            80,
            "8,16",
        )
    levels = [int(c) for c in args.clients.split(",")]
    forward_rows = [int(r) for r in args.forward_rows.split(",")]
    budgets = [int(b) for b in args.budgets.split(",")]
    torch.set_num_threads(args.threads)
    started = time.time()

    model, tok = sumi.load(args.model, dtype=args.dtype, device=args.device)
    model.eval()
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    codec = TextCodec(tok, model.config)
    requests = request_set(args.requests, args.steps, args.canvas, budgets)
    generate_alone(model, codec, requests[0])  # warm-up
    sequential = [generate_alone(model, codec, body) for body in requests]
    seq_wall, seq_cpu = sum(r[2] for r in sequential), sum(r[3] for r in sequential)
    seq_tokens = sum(r[1] for r in sequential)
    print(f"sequential: {seq_tokens / seq_wall:.1f} answer tokens/s", file=sys.stderr)
    invariant = not args.no_batch_invariant  # `sumi serve`'s default
    expected = [r[0] for r in sequential]
    # the most step-level batching can gain here: 8 one-row forwards of the baseline against one
    # 8-row forward of the server. Sharing a forward saves per-forward overhead and weight reads,
    # not arithmetic: when one row already keeps the cores busy, no scheduler passes this ratio.
    one_row = forward_seconds(model, args.canvas, 1)
    if invariant:
        # the baseline above is plain generate(), the fastest way to run one request at a time; the
        # server's answers (and forwards) are generate()'s in the server's batch-invariant mode
        plan = make_batch_invariant(model)
    forwards = {r: forward_seconds(model, args.canvas, r) for r in sorted({1, 8, *forward_rows})}
    ceiling = 8 * one_row / forwards[8]
    if invariant:
        exact = [generate_alone(model, codec, body) for body in requests]
        expected = [r[0] for r in exact]
    del model

    rows = [
        dict(
            clients="sequential (generate)",
            requests=len(requests),
            errors=0,
            tokens_per_s=seq_tokens / seq_wall,
            speedup=1.0,
            tokens_per_cpu_s=seq_tokens / seq_cpu,
            cpu_speedup=1.0,
            latency=percentiles([r[2] for r in sequential]),
            identical=None,
            rss=None,
        )
    ]
    if invariant:
        wall, cpu = sum(r[2] for r in exact), sum(r[3] for r in exact)
        rows.append(
            dict(
                clients="sequential (generate, batch-invariant)",
                requests=len(requests),
                errors=0,
                tokens_per_s=seq_tokens / wall,
                speedup=seq_tokens / wall / (seq_tokens / seq_wall),
                tokens_per_cpu_s=seq_tokens / cpu,
                cpu_speedup=seq_tokens / cpu / (seq_tokens / seq_cpu),
                latency=percentiles([r[2] for r in exact]),
                identical=None,
                rss=None,
            )
        )
    server = ServerProcess(
        args.model,
        args.dtype,
        args.threads,
        args.max_batch_rows,
        max_queue=max(levels) * 2,
        invariant=invariant,
        device=args.device,
    )
    try:
        post(server.url, "/v1/completions", requests[0])  # warm-up
        rss_start = server.rss()
        for clients in levels:
            cpu = server.cpu_seconds()
            level = run_level(server.url, requests, clients)
            cpu = server.cpu_seconds() - cpu
            results = level["results"]
            ok = [r for r in results if r["status"] == 200]
            tokens = sum(r["tokens"] for r in ok)
            differ = sum(r["text"] != e for r, e in zip(results, expected) if r["status"] == 200)
            rate = tokens / level["wall"]
            rows.append(
                dict(
                    clients=clients,
                    requests=len(results),
                    errors=len(results) - len(ok),
                    tokens_per_s=rate,
                    speedup=rate / (seq_tokens / seq_wall),
                    tokens_per_cpu_s=tokens / cpu,
                    cpu_speedup=tokens / cpu / (seq_tokens / seq_cpu),
                    latency=percentiles([r["seconds"] for r in ok]) if ok else (math.nan,) * 3,
                    identical=differ == 0,
                    differ=differ,
                    rss=server.rss(),
                    first_error=next((r["error"] for r in results if r["status"] != 200), None),
                )
            )
            print(
                f"{clients:2d} clients: {rows[-1]['tokens_per_s']:.1f} answer tokens/s, {rows[-1]['errors']} errors",
                file=sys.stderr,
            )
        peak_rss = max([server.peak_rss, rss_start] + [r["rss"] for r in rows if r["rss"] is not None])
    finally:
        server.close()

    mib = 1 << 20
    served = [r for r in rows if isinstance(r["clients"], int)]
    total = sum(r["requests"] for r in served)
    errors = sum(r["errors"] for r in served)
    at8 = next(((r["speedup"], r["cpu_speedup"]) for r in served if r["clients"] == 8), None)
    print(
        f"### bench_serve: `{args.model}` ({dtype}), {args.requests} requests per level ({args.steps} steps, "
        f"canvas "
        f"{args.canvas}, answer budgets {args.budgets}, every 4th adaptive T=0), max {args.max_batch_rows} rows, "
        f"{'batch-invariant GEMM calls ' + json.dumps(plan) if invariant else 'plain GEMM calls'}\n"
    )
    print(
        f"Machine: {machine()}; {args.threads} torch thread(s) per side; torch {torch.__version__}; "
        f"{time.strftime('%Y-%m-%d')}; server and clients on loopback.\n"
    )
    print(
        "| clients | requests | errors | answer tokens/s | vs sequential | answer tokens / CPU-s | vs sequential "
        "| p50 latency | p95 | p99 | answers identical to generate() | server RSS after |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for r in rows:
        p50, p95, p99 = r["latency"]
        same = "-" if r["identical"] is None else ("yes" if r["identical"] else f"no: {r['differ']} differ")
        rss = "-" if r["rss"] is None else f"{r['rss'] / mib:.0f} MiB"
        print(
            f"| {r['clients']} | {r['requests']} | {r['errors']} | {r['tokens_per_s']:.1f} | {r['speedup']:.2f}× "
            f"| {r['tokens_per_cpu_s']:.1f} | {r['cpu_speedup']:.2f}× | {p50:.2f} s | {p95:.2f} s | {p99:.2f} s "
            f"| {same} | {rss} |"
        )
    print(
        f"\n{total} requests to the server, {errors} errors; server RSS {rss_start / mib:.0f} MiB after the warm-up, "
        f"{rows[-1]['rss'] / mib:.0f} MiB at the end, peak {peak_rss / mib:.0f} MiB. "
        + (
            f"At 8 clients: {at8[0]:.2f}× the sequential throughput in wall time, {at8[1]:.2f}× per CPU-second "
            "(goal ≥ 3×). "
            if at8
            else ""
        )
        + f"Forward ceiling (8 one-row forwards of the baseline / one 8-row forward of the server, canvas "
        f"{args.canvas}): {ceiling:.2f}×. " + f"_{time.time() - started:.0f} s in all._"
    )
    print(
        f"\nOne forward of the server's model over {args.canvas} positions "
        f"({'exact mode' if invariant else 'plain GEMM calls'}; best of 7):\n"
    )
    print("| live rows | forward | forwards/s | row-forwards/s | vs one plain row |")
    print("|---:|---:|---:|---:|---:|")
    for r, t in forwards.items():
        print(f"| {r} | {t * 1e3:.1f} ms | {1 / t:.1f} | {r / t:.1f} | {r * one_row / t:.2f}× |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                dict(
                    args=vars(args),
                    machine=machine(),
                    torch=torch.__version__,
                    rows=rows,
                    rss_start=rss_start,
                    peak_rss=peak_rss,
                    forward_ceiling_8_rows=ceiling,
                    forward_seconds={str(r): t for r, t in forwards.items()},
                    forward_seconds_one_row_plain=one_row,
                    gemm_plan=plan if invariant else None,
                ),
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
