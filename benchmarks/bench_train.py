#!/usr/bin/env python
"""Training throughput: sumi's trainer step against a plain training loop, side by side in one run.

For one model config (random, seeded, identical weights on both sides), per dtype:

* **sumi trainer**: `sumi.training.train_step`, the step `sumi.training.train` runs: FSDP2
  (`fully_shard` per decoder layer + root, a world-size-1 process group here), SDPA attention with
  the exact zero-key sink, the fused chunked head + GIDD loss (no `[tokens, V]` tensors kept for
  the backward), global-batch noise, AdamW, gradient clipping. bf16 = FSDP2 MixedPrecisionPolicy
  (bf16 params, fp32 reduce) on CUDA, `torch.autocast` on CPU.
* **plain loop**: the same model with the eager attention (explicit fp32 off-by-one softmax over an
  `[B, h, S, S+1]` score tensor, the official style) and the unfused loss
  (`model(input_ids=z, labels=x, t=t).loss`: fp32 `[tokens, V]` intermediates), `torch.autocast`
  for bf16, AdamW and clipping, no FSDP.

Both sides see the same batches and the same noise, so their first-step losses agree (printed).

Reported: tokens/s, step time (best over the timed steps, after warm-up; CUDA synchronised),
achieved FLOP/s = (6 N + 12 L S h d) per token with N the matmul parameters (all but the embedding)
and the attention term for a forward+backward of bidirectional attention, and that as a fraction of
the machine's measured dense matmul peak for the dtype (a square `--matmul-n` matmul); on CUDA the
peak memory of a step. Activation-checkpoint recomputation is not counted as useful work.

    python benchmarks/bench_train.py                      # CPU: sumi-57m, 4 x 512 tokens, fp32 + bf16
    python benchmarks/bench_train.py --quick              # smoke run: sumi-tiny, a few seconds
    python benchmarks/bench_train.py --device cuda        # GPU: sumi-1b, 4 x 1184 tokens, bf16
    python benchmarks/bench_train.py --device cuda --compile --activation-checkpointing
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch

try:
    import sumi  # noqa: F401
except ImportError:  # a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sumi import SumiForMaskGeneration  # noqa: E402
from sumi.seeding import derive_seed  # noqa: E402
from sumi.training import TrainConfig, build_optimizer, draw_step_noise  # noqa: E402
from sumi.training.distributed import init_distributed, shutdown  # noqa: E402
from sumi.training.dryrun import build_model_config, parameter_counts  # noqa: E402
from sumi.training.sources import SyntheticSource  # noqa: E402
from sumi.training.trainer import build_training_module, enable_activation_checkpointing, train_step  # noqa: E402

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_flops(device: torch.device, dtype: torch.dtype, n: int, repeats: int = 5) -> float:
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    for _ in range(2):
        torch.matmul(a, b)
    best = math.inf
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        torch.matmul(a, b)
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def machine_name(device: torch.device) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    name = f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
    if device.type == "cuda":
        name = f"{torch.cuda.get_device_name(device)} (host: {name})"
    return name


def step_flops(model_config, counts: dict, batch: int, seq_len: int) -> float:
    n_matmul = counts["total"] - counts["embedding"]
    hd = model_config.num_attention_heads * model_config.head_dim
    attn = 12 * model_config.num_hidden_layers * seq_len * hd  # per token: QK^T and PV, fwd + 2x bwd
    return (6 * n_matmul + attn) * batch * seq_len


def bench_config(args, dtype: str) -> TrainConfig:
    return TrainConfig.from_dict(
        {
            "model": {"preset": args.preset},
            "data": {"source": "synthetic", "synthetic_kind": "random", "seq_len": args.seq_len},
            "optim": {"lr": 1e-4, "min_lr": 1e-5, "warmup_steps": 0},
            "batch": {"global_batch_size": args.batch, "micro_batch_size": args.batch},
            "steps": 10**6,
            "seed": args.seed,
            "device": args.device,
            "dtype": dtype,
            "activation_checkpointing": args.activation_checkpointing,
            "compile": args.compile,
            "out_dir": "/tmp/sumi-bench-train",
            "log": {"progress": False},
        }
    )


def run_sumi(args, cfg: TrainConfig, ctx, model_config, n_steps: int):
    module = build_training_module(cfg, model_config, ctx)
    optimizer = build_optimizer(module.model, cfg.optim)
    params = list(module.parameters())
    src = SyntheticSource(model_config.vocab_size, kind="random")
    data = src.batches(cfg.data.seq_len, args.batch, seed=cfg.seed)
    times, losses, peak = [], [], 0
    for step in range(n_steps):
        if ctx.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(ctx.device)
        sync(ctx.device)
        t0 = time.perf_counter()
        loss, _, _ = train_step(
            module, optimizer, params, data, step, cfg.optim.lr, cfg, ctx, 1, model_config.vocab_size
        )
        sync(ctx.device)
        times.append(time.perf_counter() - t0)
        losses.append(loss)
        if ctx.device.type == "cuda":
            peak = max(peak, torch.cuda.max_memory_allocated(ctx.device))
        log(f"  sumi trainer  {cfg.dtype:<8} step {step}: {times[-1]:.3f} s, loss {loss:.5f}")
    del module, optimizer, params
    return times, losses, peak


def run_plain(args, cfg: TrainConfig, ctx, model_config, n_steps: int):
    dev = ctx.device
    torch.manual_seed(derive_seed("init", cfg.seed) % (2**62))  # the trainer's init: same weights
    model = SumiForMaskGeneration(model_config).to(dev).train()
    model.config._attn_implementation = "eager"
    if cfg.activation_checkpointing:
        enable_activation_checkpointing(model)
    optimizer = build_optimizer(model, cfg.optim)
    params = list(model.parameters())
    src = SyntheticSource(model_config.vocab_size, kind="random")
    data = src.batches(cfg.data.seq_len, args.batch, seed=cfg.seed)
    amp = (
        torch.autocast(dev.type, dtype=torch.bfloat16)
        if cfg.dtype == "bfloat16"
        else torch.autocast(dev.type, enabled=False)
    )
    times, losses, peak = [], [], 0
    for step in range(n_steps):
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        sync(dev)
        t0 = time.perf_counter()
        noise = draw_step_noise(step, args.batch, cfg.data.seq_len, model_config.vocab_size, cfg.data, cfg.seed, dev)
        x = next(data).to(dev)
        z, labels, t = noise.apply(x, slice(0, args.batch))
        with amp:
            loss = model(input_ids=z, labels=labels, t=t).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        value = loss.item()
        sync(dev)
        times.append(time.perf_counter() - t0)
        losses.append(value)
        if dev.type == "cuda":
            peak = max(peak, torch.cuda.max_memory_allocated(dev))
        log(f"  plain loop    {cfg.dtype:<8} step {step}: {times[-1]:.3f} s, loss {value:.5f}")
    del model, optimizer, params
    return times, losses, peak


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--preset", default=None, help="default: sumi-57m on CPU, sumi-1b on CUDA")
    p.add_argument("--seq-len", type=int, default=None, help="default: 512 on CPU, 1184 on CUDA")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=3, help="timed steps per side")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per side first")
    p.add_argument(
        "--dtypes",
        nargs="+",
        choices=tuple(DTYPES),
        default=None,
        help="default: float32 bfloat16 on CPU, bfloat16 on CUDA",
    )
    p.add_argument("--activation-checkpointing", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the decoder layers (sumi side)")
    p.add_argument("--matmul-n", type=int, default=None, help="peak-matmul size (default 2048 CPU, 8192 CUDA)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke run: sumi-tiny, 2 x 64 tokens, 1 timed step")
    p.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = p.parse_args(argv)
    cuda = args.device == "cuda"
    if args.quick:
        args.preset = args.preset or "sumi-tiny"
        args.seq_len = args.seq_len or 64
        args.batch, args.steps, args.warmup = 2, 1, 1
        args.matmul_n = args.matmul_n or 256
    args.preset = args.preset or ("sumi-1b" if cuda else "sumi-57m")
    args.seq_len = args.seq_len or (1184 if cuda else 512)
    args.dtypes = args.dtypes or (["bfloat16"] if cuda else ["float32", "bfloat16"])
    args.matmul_n = args.matmul_n or (8192 if cuda else 2048)

    ctx = init_distributed(args.device)
    rows, info = [], {}
    try:
        device = ctx.device
        info = dict(
            machine=machine_name(device),
            torch=torch.__version__,
            device=str(device),
            preset=args.preset,
            batch=args.batch,
            seq_len=args.seq_len,
            steps=args.steps,
            warmup=args.warmup,
            activation_checkpointing=args.activation_checkpointing,
            compile=args.compile,
            date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        )
        model_config = build_model_config(bench_config(args, "float32"))
        counts = parameter_counts(model_config)
        flops = step_flops(model_config, counts, args.batch, args.seq_len)
        tokens = args.batch * args.seq_len
        n = args.warmup + args.steps
        for dtype in args.dtypes:
            peak = matmul_flops(device, DTYPES[dtype], args.matmul_n)
            info[f"matmul_peak_flops_{dtype}"] = peak
            cfg = bench_config(args, dtype)
            log(
                f"[{dtype}] matmul peak {peak / 1e12:.3f} TFLOP/s; {counts['total'] / 1e6:.1f}M parameters, "
                f"{tokens} tokens/step, {flops / 1e9:.1f} GFLOP/step"
            )
            results = {}
            for side, fn in (("sumi trainer", run_sumi), ("plain loop", run_plain)):
                times, losses, mem = fn(args, cfg, ctx, model_config, n)
                results[side] = (times, losses, mem)
                gc.collect()
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            for side, (times, losses, mem) in results.items():
                best = min(times[args.warmup :])
                rows.append(
                    dict(
                        path=side,
                        dtype=dtype,
                        step_s=best,
                        tokens_per_s=tokens / best,
                        flops_per_s=flops / best,
                        peak_fraction=flops / best / peak,
                        peak_memory_bytes=mem or None,
                        first_loss=losses[0],
                    )
                )
            ours, plain = rows[-2], rows[-1]
            ours["speedup"] = plain["step_s"] / ours["step_s"]
            ours["loss_rel_diff"] = abs(ours["first_loss"] - plain["first_loss"]) / abs(plain["first_loss"])
    finally:
        shutdown(ctx)

    unit, scale = ("TFLOP/s", 1e12) if cuda else ("GFLOP/s", 1e9)
    print(
        f"### bench_train: {info['preset']}, batch {args.batch} x {args.seq_len} tokens, "
        f"{'activation checkpointing, ' if args.activation_checkpointing else ''}best of {args.steps} steps "
        f"after {args.warmup} warm-up\n"
    )
    print(
        f"Machine: {info['machine']}; torch {info['torch']}; {info['date']}. Matmul peak ({args.matmul_n}^3): "
        + ", ".join(f"{d} {info[f'matmul_peak_flops_{d}'] / scale:.1f} {unit}" for d in args.dtypes)
        + "\n"
    )
    mem_col = cuda
    head = (
        "| path | dtype | step (s) | tokens/s | achieved "
        + unit
        + " | % of matmul peak |"
        + (" peak memory |" if mem_col else "")
        + " speed-up | first-step loss |"
    )
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in rows:
        cells = [
            r["path"],
            r["dtype"],
            f"{r['step_s']:.3f}",
            f"{r['tokens_per_s']:,.0f}",
            f"{r['flops_per_s'] / scale:.2f}",
            f"{100 * r['peak_fraction']:.1f}",
        ]
        if mem_col:
            cells.append(f"{(r['peak_memory_bytes'] or 0) / 2**30:.2f} GiB")
        cells.append(f"{r['speedup']:.2f}x" if "speedup" in r else "1.00x")
        loss = f"{r['first_loss']:.5f}"
        if "loss_rel_diff" in r:
            loss += f" (rel. diff {r['loss_rel_diff']:.1e})"
        cells.append(loss)
        print("| " + " | ".join(cells) + " |")
    print(
        "\nFLOPs per token: 6 x (parameters - embedding) + 12 x layers x seq_len x heads x head_dim "
        "(bidirectional attention, forward + backward)."
    )
    if args.json:
        Path(args.json).write_text(json.dumps(dict(info=info, rows=rows), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
