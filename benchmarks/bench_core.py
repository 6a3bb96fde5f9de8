#!/usr/bin/env python
"""Core speed benchmark: sumi's defaults against an official-style implementation, side by side.

For the `sumi-57m` config (random, seeded weights), batch 1, at each canvas length and dtype:

* forward: the eager attention path (explicit fp32 off-by-one softmax with a sink column, the
  official style) against the SDPA path (one appended zero key/value row), with the largest
  logit difference between the two;
* one generate step: `model.generate(..., num_denoising_steps=K)` (SDPA + the exact mixture
  ancestral sampler) against an official-style loop written below (eager attention, dense fp32
  x_hat, dense posterior, one `torch.multinomial` over all B*S rows), time per step;
* the sampling part alone, given logits: dense posterior + multinomial against `ancestral_step`;
* the adaptive sampler's step at T = 0 alone, given logits: a dense fp32 softmax (official style)
  against `adaptive_step`;
* attention memory: the eager `[B, h, S, S+1]` fp32 score tensor (analytic); on CPU the measured
  peak memory of one layer's attention call (the process's peak resident memory, reset through
  /proc/self/clear_refs), on CUDA the measured peak memory of one forward;
* the forward's FLOP rate against the matmul probe's, and on CPU where sumi's forward spends its
  time (torch.profiler: matmuls of the linear layers and head, the attention kernel, the rest).

Method: `torch.set_num_threads(os.cpu_count())`, `torch.inference_mode()`, one warm-up, then the
best of `--repeats` runs (`time.perf_counter`, with `torch.cuda.synchronize()` around each on
CUDA). The two sides of a row are run alternately, so that load from other processes hits both.

    python benchmarks/bench_core.py                       # canvas 512 2048, float32 bfloat16, K=2
    python benchmarks/bench_core.py --quick               # smoke run (sumi-tiny, canvas 64), a few seconds
    python benchmarks/bench_core.py --device cuda --repeats 5 --json bench_core.json
"""

from __future__ import annotations

import argparse
import copy
import datetime
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
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sumi import (  # noqa: E402
    SumiConfig,
    SumiForMaskGeneration,
    kernels,  # noqa: E402
)
from sumi.diffusion import alpha_from_log_snr, sampling_schedule  # noqa: E402
from sumi.generation_sumi import _Randomness, adaptive_step, ancestral_step, dense_posterior  # noqa: E402

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
MIB = 2**20


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- timing
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_pair(fa, fb, repeats: int, device: torch.device):
    """Warm up each once, then run them alternately `repeats` times: (best_a, best_b, out_a, out_b)."""
    out_a, out_b = fa(), fb()
    best_a = best_b = math.inf
    for _ in range(repeats):
        for which, fn in (("a", fa), ("b", fb)):
            sync(device)
            t0 = time.perf_counter()
            out = fn()
            sync(device)
            dt = time.perf_counter() - t0
            if which == "a":
                best_a, out_a = min(best_a, dt), out
            else:
                best_b, out_b = min(best_b, dt), out
    return best_a, best_b, out_a, out_b


def matmul_gflops(device: torch.device, dtype: torch.dtype, n: int, repeats: int = 10) -> float:
    """Best-of-`repeats` GFLOP/s of an n x n x n matmul after three warm-up calls (the machine's
    practical peak: single probes right after start-up read up to 2x low on a shared VM)."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    for _ in range(3):
        torch.matmul(a, b)
    best = math.inf
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        torch.matmul(a, b)
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


# ----------------------------------------------------------------------------- machine
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in wanted if f in have]
    except OSError:
        pass
    return []


def machine_info(device: torch.device, matmul_n: int) -> dict:
    import transformers

    info = dict(
        date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        cpu=cpu_model(),
        cpu_flags=cpu_flags(),
        cpu_count=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        torch=torch.__version__,
        transformers=transformers.__version__,
        python=platform.python_version(),
        device=str(device),
        gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        matmul_n=matmul_n,
    )
    if device.type == "cuda":
        info["cuda_tf32_matmul"] = bool(torch.backends.cuda.matmul.allow_tf32)
    for name in ("float32", "bfloat16"):
        try:
            info[f"matmul_gflops_{name}"] = matmul_gflops(device, DTYPES[name], matmul_n)
        except RuntimeError as e:  # a dtype without a matmul kernel here
            info[f"matmul_gflops_{name}"] = None
            log(f"matmul {name}: {e}")
    return info


# ----------------------------------------------------------------------------- model
def build_model(preset: str, seed: int, device: torch.device) -> SumiForMaskGeneration:
    torch.manual_seed(seed)
    config = SumiConfig.from_preset(preset)
    return SumiForMaskGeneration(config).eval().to(device)


def set_attention(model: SumiForMaskGeneration, impl: str) -> None:
    """Select the attention path ("eager" or "sdpa") that `SumiAttention.forward` reads."""
    model.config._attn_implementation = impl
    assert model.model.layers[0].self_attn.config._attn_implementation == impl


def sdpa_backend(
    model: SumiForMaskGeneration, batch: int, canvas: int, dtype: torch.dtype, device: torch.device
) -> str:
    """The kernel this model's attention call runs (no padding mask): sumi's native one where it
    runs it (bf16 on an AVX512-BF16 CPU without AMX, `sumi.kernels`), else the SDPA kernel PyTorch picks."""
    cfg = model.config
    probe = torch.zeros(batch, cfg.num_attention_heads, canvas, cfg.head_dim, dtype=dtype, device=device)
    if kernels.use_kernel(probe, probe[:, : cfg.num_key_value_heads], probe[:, : cfg.num_key_value_heads]):
        return "sumi AVX512-BF16 kernel"
    try:
        from torch.nn.attention import SDPBackend

        q = torch.zeros(batch, cfg.num_attention_heads, canvas, cfg.head_dim, dtype=dtype, device=device)
        k = torch.zeros(batch, cfg.num_key_value_heads, canvas + 1, cfg.head_dim, dtype=dtype, device=device)
        choice = torch._fused_sdp_choice(q, k, k, enable_gqa=cfg.num_attention_heads != cfg.num_key_value_heads)
        return SDPBackend(choice).name
    except Exception:  # private API; only informative
        return "unknown"


# ----------------------------------------------------------------------------- official-style baseline
def official_ancestral_step(
    logits: torch.Tensor,
    z_t: torch.Tensor,
    free: torch.Tensor,
    log_snr_t: float,
    log_snr_s: float,
    generator: torch.Generator,
    vocab_size: int,
    temperature: float = 1.0,
) -> torch.Tensor:
    """The official ancestral step: dense fp32 x_hat `[B, S, V]`, dense posterior, then one
    `torch.multinomial` over all B*S rows (frozen positions are drawn too, then restored)."""
    B, S = z_t.shape
    x_hat = torch.softmax(logits[..., :vocab_size].float() / temperature, dim=-1)
    p = dense_posterior(x_hat, z_t, log_snr_t, log_snr_s)
    z_s = torch.multinomial(p.view(B * S, vocab_size), 1, generator=generator).view(B, S)
    return torch.where(free, z_s, z_t)


def official_adaptive_step(
    logits: torch.Tensor, z_t: torch.Tensor, free: torch.Tensor, vocab_size: int, tokens_per_step: int
) -> torch.Tensor:
    """The official adaptive step at T = 0: a dense fp32 softmax `[B, S, V]`, confidence
    `p_max - p(z_t)`, the top `tokens_per_step` free positions per row take their argmax."""
    probs = torch.softmax(logits[..., :vocab_size].float(), dim=-1)
    p_max, top1 = probs.max(-1)
    conf = (p_max - probs.gather(-1, z_t[..., None]).squeeze(-1)).masked_fill(~free, float("-inf"))
    selected = conf.topk(tokens_per_step, dim=-1).indices
    return z_t.scatter(1, selected, top1.gather(1, selected))


def official_canvas(
    model, input_ids: torch.Tensor, max_new_tokens: int, canvas_length: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt + one `randint` canvas, EOS/BOS anchors frozen after the budget (spec §6).
    Returns (canvas `[B, S]`, free `[B, S]` bool)."""
    cfg = model.config
    V = cfg.vocab_size
    B, P = input_ids.shape
    C = min(canvas_length, cfg.max_position_embeddings)
    budget = max(1, min(max_new_tokens, C - P - 2))
    init = torch.randint(0, V, (B, C - P), generator=generator, device=input_ids.device)
    canvas = torch.cat([input_ids, init], dim=1)
    free = torch.ones_like(canvas, dtype=torch.bool)
    free[:, :P] = False
    canvas[:, P + budget] = cfg.eos_token_id
    canvas[:, P + budget + 1] = cfg.bos_token_id
    free[:, P + budget : P + budget + 2] = False
    return canvas, free


def official_style_generate(
    model,
    input_ids: torch.Tensor,
    *,
    max_new_tokens: int,
    num_steps: int,
    canvas_length: int,
    seed: int,
    temperature: float = 1.0,
    schedule: str = "linear",
) -> torch.Tensor:
    """The official generation loop (ancestral, linear schedule): one forward and one dense
    ancestral step per step over the whole canvas. Run it with eager attention for the official
    style. Returns the final canvas `[B, S]`."""
    g = torch.Generator(device=input_ids.device).manual_seed(seed)
    canvas, free = official_canvas(model, input_ids, max_new_tokens, canvas_length, g)
    log_snrs = sampling_schedule(num_steps, schedule).tolist()
    for k in range(num_steps):
        logits = model(input_ids=canvas).logits
        canvas = official_ancestral_step(
            logits, canvas, free, log_snrs[k], log_snrs[k + 1], g, model.config.vocab_size, temperature
        )
    return canvas


def xhat_draw_fraction(
    logits: torch.Tensor, z_t: torch.Tensor, free: torch.Tensor, log_snr_t: float, log_snr_s: float, vocab_size: int
) -> float:
    """Expected fraction of free positions where the mixture sampler draws from x_hat (the only
    rows that need a full categorical draw): `(1 - keep_prob) * a_s`."""
    V = vocab_size
    scaled = logits[..., :V].float()
    xhat_z = torch.exp(scaled.gather(-1, z_t[..., None]).squeeze(-1) - torch.logsumexp(scaled, dim=-1))
    a_t = float(alpha_from_log_snr(torch.tensor(log_snr_t, dtype=torch.float64)))
    a_s = float(alpha_from_log_snr(torch.tensor(log_snr_s, dtype=torch.float64)))
    a_ts = a_t / a_s
    q_s_z = a_s * xhat_z + (1 - a_s) / V
    keep = a_ts * q_s_z / ((1 - a_ts) / V + a_ts * q_s_z)
    return float(((1 - keep) * a_s)[free].mean())


# Run in a child process: it sets glibc's mmap threshold, which would slow down every later
# allocation of the benchmark itself.
ATTENTION_MEMORY_CHILD = r"""
import ctypes, json, sys
from pathlib import Path
import torch
from sumi.modeling_sumi import eager_sink_attention, sdpa_sink_attention
B, h, kv, S, d, dtype, impl, threads = json.loads(sys.argv[1])
torch.set_num_threads(threads)
# glibc: serve every block >= 64 KiB from fresh pages, so each tensor counts while it lives
ctypes.CDLL("libc.so.6").mallopt(-3, 64 * 1024)  # -3: M_MMAP_THRESHOLD
def status(key):
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(key + ":"))
    return int(line.split()[1]) * 1024
g = torch.Generator().manual_seed(0)
q = torch.randn(B, h, S, d, generator=g).to(getattr(torch, dtype))
k, v = (torch.randn(B, kv, S, d, generator=g).to(q.dtype) for _ in range(2))
fn = {"eager": eager_sink_attention, "sdpa": sdpa_sink_attention}[impl]
with torch.inference_mode():
    fn(q, k, v, None, d ** -0.5)  # warm-up: one-time buffers of the kernel
    Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak resident set size
    before = status("VmRSS")
    out = fn(q, k, v, None, d ** -0.5)
    print(json.dumps(dict(peak_extra=status("VmHWM") - before, output=out.numel() * out.element_size())))
"""


def attention_peak_mib(cfg, batch: int, canvas: int, dtype_name: str, impl: str, threads: int) -> float | None:
    """Peak resident memory (MiB) one layer's attention call (`impl`: "eager" or "sdpa") adds,
    measured in a child process on random inputs; None where Linux's /proc/self/clear_refs (which
    resets the high-water mark) or glibc is missing. Output tensor included."""
    import subprocess

    if not Path("/proc/self/clear_refs").exists():
        return None
    spec = [batch, cfg.num_attention_heads, cfg.num_key_value_heads, canvas, cfg.head_dim, dtype_name, impl, threads]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src")] + sys.path))
    proc = subprocess.run(
        [sys.executable, "-c", ATTENTION_MEMORY_CHILD, json.dumps(spec)], capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        log(f"attention memory child failed: {proc.stderr.strip().splitlines()[-1:]}")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])["peak_extra"] / MIB


def forward_flops(cfg, batch: int, canvas: int) -> tuple[float, float]:
    """FLOPs of one forward: (linear layers + head, attention), 2 per multiply-add. Attention
    counts QK^T and PV over the S real keys: 4 B h S^2 d per layer."""
    H, I, d = cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
    h, k = cfg.num_attention_heads, cfg.num_key_value_heads
    per_token = cfg.num_hidden_layers * (H * (h + 2 * k) * d + h * d * H + 3 * H * I) + H * cfg.vocab_size
    return 2.0 * batch * canvas * per_token, 4.0 * batch * h * canvas**2 * d * cfg.num_hidden_layers


def forward_time_split(model, canvas: torch.Tensor) -> dict[str, float]:
    """Seconds of one forward by kind of op (CPU, torch.profiler self times): "matmul" (linear
    layers and head), "attention" (the SDPA kernel), "other", "total"."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        model(input_ids=canvas)
    split = dict(matmul=0.0, attention=0.0, other=0.0)
    for e in prof.key_averages():
        kind = (
            "matmul"
            if e.key in ("aten::mm", "aten::addmm", "aten::bmm")
            else "attention"
            if "scaled_dot_product" in e.key or "sink_attention" in e.key
            else "other"
        )
        split[kind] += e.self_cpu_time_total / 1e6
    split["total"] = sum(split.values())
    return split


# ----------------------------------------------------------------------------- one (canvas, dtype) cell
def bench_cell(base: SumiForMaskGeneration, canvas_len: int, dtype_name: str, args, device) -> list[dict]:
    dtype = DTYPES[dtype_name]
    model = base if dtype == torch.float32 else copy.deepcopy(base).to(dtype)
    cfg = model.config
    V, B, K = cfg.vocab_size, args.batch, args.steps
    seed = args.seed
    g = torch.Generator(device=device).manual_seed(seed)
    P = min(16, canvas_len // 4)
    prompt = torch.randint(3, V, (B, P), generator=g, device=device)
    max_new = canvas_len // 2
    canvas, free = official_canvas(model, prompt, max_new, canvas_len, g)
    cell = dict(canvas=canvas_len, dtype=dtype_name)
    rows = []

    def row(what, baseline, ours, unit="s", note="", **extra):
        ratio = baseline / ours if baseline is not None and ours and unit != "GFLOP/s" else None
        r = dict(cell, what=what, baseline=baseline, ours=ours, unit=unit, ratio=ratio, note=note, **extra)
        rows.append(r)
        log(
            f"  {what:<32} canvas {canvas_len:>5} {dtype_name:<9} official-style {fmt(baseline, unit):>10}  "
            f"sumi {fmt(ours, unit):>10}  ratio {fmt_ratio(r['ratio'])}"
        )

    # -- forward: eager vs SDPA
    def fwd(impl):
        def run():
            set_attention(model, impl)
            return model(input_ids=canvas).logits

        return run

    t_eager, t_sdpa, lg_eager, lg_sdpa = time_pair(fwd("eager"), fwd("sdpa"), args.repeats, device)
    diff = (lg_eager.float() - lg_sdpa.float()).abs().max().item()
    scale = lg_eager.float().abs().max().item()
    backend = sdpa_backend(model, B, canvas_len, dtype, device)
    row(
        "forward",
        t_eager,
        t_sdpa,
        note=f"max abs logit diff {diff:.2g} (max abs logit {scale:.2g}); attention kernel {backend}",
        max_abs_logit_diff=diff,
        max_abs_logit=scale,
        sdpa_kernel=backend,
    )
    logits = lg_sdpa
    del lg_eager
    lin_flop, att_flop = forward_flops(cfg, B, canvas_len)
    flop = lin_flop + att_flop
    peak = args.matmul_peak.get(dtype_name)
    share = (lambda rate: f"{100 * rate / peak:.0f}%") if peak else (lambda rate: "n/a")
    note = (
        f"{flop / 1e9:.0f} GFLOP ({lin_flop / 1e9:.0f} linear + head, {att_flop / 1e9:.0f} attention); "
        f"official-style {share(flop / t_eager / 1e9)}, sumi {share(flop / t_sdpa / 1e9)} of the {dtype_name} "
        f"matmul probe ({peak or 0:.0f} GFLOP/s)"
    )
    split = None
    if device.type == "cpu":
        set_attention(model, "sdpa")
        split = forward_time_split(model, canvas)
        note += (
            f"; sumi's time (profiler): linear + head {100 * split['matmul'] / split['total']:.0f}% at "
            f"{lin_flop / split['matmul'] / 1e9:.0f} GFLOP/s, attention kernel "
            f"{100 * split['attention'] / split['total']:.0f}% at {att_flop / max(split['attention'], 1e-9) / 1e9:.0f} "
            f"GFLOP/s, other {100 * split['other'] / split['total']:.0f}%"
        )
    row(
        "forward FLOP rate",
        flop / t_eager / 1e9,
        flop / t_sdpa / 1e9,
        unit="GFLOP/s",
        note=note,
        flop=flop,
        linear_flop=lin_flop,
        attention_flop=att_flop,
        time_split=split,
    )

    # -- attention memory: the eager score tensor, analytic; the forward's peak, measured on CUDA
    h = cfg.num_attention_heads
    score_mib = 4 * B * h * canvas_len * (canvas_len + 1) / MIB
    sdpa_mib = (
        0.0
        if backend in ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "sumi AVX512-BF16 kernel")
        else (torch.finfo(dtype).bits // 8 * B * h * canvas_len * (canvas_len + 1) / MIB)
    )
    row(
        "attention scores, 1 layer",
        score_mib,
        sdpa_mib,
        unit="MiB",
        note=f"analytic: eager fp32 [B,h,S,S+1] (~3 such tensors live at its softmax); "
        f"{backend}: {'tiled, no S x S tensor' if sdpa_mib == 0 else 'math kernel, ' + dtype_name + ' [B,h,S,S+1]'}",
    )
    if device.type == "cpu":
        measured = {
            impl: attention_peak_mib(cfg, B, canvas_len, dtype_name, impl, args.threads) for impl in ("eager", "sdpa")
        }
        out_mib = B * h * canvas_len * cfg.head_dim * torch.finfo(dtype).bits / 8 / MIB
        if None not in measured.values():
            row(
                "attention peak memory, 1 layer",
                measured["eager"],
                measured["sdpa"],
                unit="MiB",
                note=f"measured in a child process: peak resident memory one attention call adds to its "
                f"inputs (its output [B,h,S,d] {dtype_name} included: {out_mib:.1f} MiB)",
            )
    if device.type == "cuda":
        peaks = {}
        for impl in ("eager", "sdpa"):
            set_attention(model, impl)
            sync(device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
            _ = model(input_ids=canvas).logits
            sync(device)
            peaks[impl] = (torch.cuda.max_memory_allocated(device) - before) / MIB
        row(
            "forward peak memory",
            peaks["eager"],
            peaks["sdpa"],
            unit="MiB",
            note="measured: torch.cuda.max_memory_allocated above the weights (logits included)",
        )

    # -- one generate step: official-style loop (eager + dense) vs model.generate (SDPA + mixture)
    def official():
        set_attention(model, "eager")
        return official_style_generate(
            model, prompt, max_new_tokens=max_new, num_steps=K, canvas_length=canvas_len, seed=seed
        )

    def ours():
        set_attention(model, "sdpa")
        return model.generate(
            input_ids=prompt, max_new_tokens=max_new, num_denoising_steps=K, seed=seed, canvas_length=canvas_len
        ).canvas

    t_off, t_ours, c_off, c_ours = time_pair(official, ours, args.repeats, device)
    assert c_off.shape == c_ours.shape == canvas.shape, (c_off.shape, c_ours.shape, canvas.shape)
    assert bool((c_off[:, :P] == prompt).all()) and bool((c_ours[:, :P] == prompt).all())
    row(
        f"generate, per step (K={K})",
        t_off / K,
        t_ours / K,
        note=f"official-style: eager + dense posterior + multinomial; sumi: generate() default "
        f"({backend} + mixture ancestral); total over {K} steps / {K}",
    )

    # -- the sampling part alone, given the (SDPA) logits of this canvas
    rng_g = torch.Generator(device=device)
    for k, n in ((args.mid_step, args.mid_of), (0, K)):
        lam = sampling_schedule(n).tolist()
        lam_t, lam_s = lam[k], lam[k + 1]

        def dense():
            rng_g.manual_seed(seed)
            return official_ancestral_step(logits, canvas, free, lam_t, lam_s, rng_g, V)

        def mixture():
            rng_g.manual_seed(seed)
            return ancestral_step(
                logits, canvas, free, lam_t, lam_s, _Randomness([rng_g], [(0, canvas_len)], device), vocab_size=V
            )

        t_dense, t_mix, _, _ = time_pair(dense, mixture, args.repeats, device)
        frac = xhat_draw_fraction(logits, canvas, free, lam_t, lam_s, V)
        row(
            f"sampling only, step {k}/{n}",
            t_dense,
            t_mix,
            note=f"given logits: softmax + dense posterior + multinomial vs ancestral_step; "
            f"~{100 * frac:.1f}% of positions draw from x_hat",
            xhat_draw_fraction=frac,
        )
        if k == args.mid_step:
            # a typical step of a real N-step run; the generate row's K = 2 steps are the worst case
            row(
                f"whole step {k}/{n} (forward + sampling)",
                t_eager + t_dense,
                t_sdpa + t_mix,
                note="sum of the forward row and the sampling row above, each side",
            )
    # -- the adaptive sampler at T = 0 alone (the evaluation protocol's sampler)
    tps = max(1, math.ceil(canvas_len / 256))  # the evaluation default: the canvas over 256 steps

    def adaptive_dense():
        return official_adaptive_step(logits, canvas, free, V, tps)

    def adaptive_ours():
        return adaptive_step(
            logits,
            canvas,
            free,
            _Randomness([None], [(0, canvas_len)], device),
            vocab_size=V,
            tokens_per_step=tps,
            temperature=0.0,
        )[0]

    t_dense, t_ad, z_dense, z_ad = time_pair(adaptive_dense, adaptive_ours, args.repeats, device)
    row(
        "adaptive sampling only, T = 0",
        t_dense,
        t_ad,
        note=f"given logits: dense fp32 softmax + gap + top-{tps} vs adaptive_step (block-wise softmax "
        f"statistics); same canvas: {'yes' if torch.equal(z_dense, z_ad) else 'NO'}",
    )
    set_attention(model, "sdpa")
    return rows


# ----------------------------------------------------------------------------- output
def fmt(value, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "s":
        return f"{value * 1e3:.2f} ms" if value < 1.0 else f"{value:.3f} s"
    if unit == "GFLOP/s":
        return f"{value:.0f} {unit}"
    return f"{value:.1f} {unit}"


def fmt_ratio(ratio) -> str:
    return "—" if ratio is None else f"{ratio:.2f}×"


def render(info: dict, rows: list[dict], args) -> str:
    lines = ["## bench_core", ""]
    where = f"{info['gpu']} (CUDA), host " if info["gpu"] else ""
    lines.append(
        f"- machine: {where}{info['cpu']} ({', '.join(info['cpu_flags']) or 'no flags read'}), "
        f"{info['cpu_count']} cores, torch threads {info['torch_threads']}"
    )
    lines.append(
        f"- software: torch {info['torch']}, transformers {info['transformers']}, "
        f"Python {info['python']}; date {info['date']}"
    )
    mm = ", ".join(
        f"{name} {info[f'matmul_gflops_{name}']:.0f}" if info[f"matmul_gflops_{name}"] else f"{name} n/a"
        for name in ("float32", "bfloat16")
    )
    tf32 = "" if info["gpu"] is None else f" (TF32 {'on' if info.get('cuda_tf32_matmul') else 'off'})"
    lines.append(f"- matmul {info['matmul_n']}x{info['matmul_n']} GFLOP/s on {info['device']}: {mm}{tf32}")
    lines.append(
        f"- model: {args.preset}, random weights (seed {args.seed}), batch {args.batch}; "
        f"best of {args.repeats} after one warm-up; generate K={args.steps} steps, linear schedule"
    )
    lines.append("")
    lines.append("| measurement | canvas | dtype | official-style | sumi | ratio | notes |")
    lines.append("|---|---:|---|---:|---:|---:|---|")
    for r in rows:
        lines.append(
            f"| {r['what']} | {r['canvas']} | {r['dtype']} | {fmt(r['baseline'], r['unit'])} | "
            f"{fmt(r['ours'], r['unit'])} | {fmt_ratio(r['ratio'])} | {r['note']} |"
        )
    lines.append("")
    lines.append(
        "official-style = eager attention (fp32 off-by-one softmax with a sink column) and, when sampling, "
        "dense fp32 x_hat + `dense_posterior` + one `torch.multinomial` over all B*S rows; "
        "sumi = its default attention (bf16 on an AVX512-BF16 CPU: sumi's native kernel; else SDPA "
        "with an appended zero key/value row) and the exact mixture sampler "
        "(`ancestral_step`, what `generate()` runs). ratio = official-style / sumi (> 1: sumi is faster "
        "or smaller)."
    )
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--canvas", type=int, nargs="+", default=[512, 2048], help="canvas lengths (default 512 2048)")
    p.add_argument(
        "--dtypes",
        nargs="+",
        default=["float32", "bfloat16"],
        choices=sorted(DTYPES),
        help="model dtypes, cast with .to(dtype) (default float32 bfloat16)",
    )
    p.add_argument("--steps", type=int, default=2, help="K, denoising steps of the generate measurement (default 2)")
    p.add_argument("--repeats", type=int, default=2, help="best of N timed runs after one warm-up (default 2)")
    p.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preset", default=None, help="model preset (default sumi-57m; sumi-tiny with --quick)")
    p.add_argument("--mid-step", type=int, default=64, help="sampling-only row at step MID_STEP of MID_OF (64)")
    p.add_argument("--mid-of", type=int, default=128, help="... of an MID_OF-step schedule (128, the default N)")
    p.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default os.cpu_count(); 1 with --quick)"
    )
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: sumi-tiny preset, canvas 64, one repeat, one thread, small matmul probe "
        "(a few seconds; the timings mean nothing)",
    )
    p.add_argument("--json", metavar="PATH", help="also write the machine info and all rows as JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.canvas, args.repeats = [64], 1
    if args.threads is None:
        args.threads = 1 if args.quick else (os.cpu_count() or 1)
    if args.threads < 1:
        p.error("--threads must be >= 1")
    if args.preset is None:
        args.preset = "sumi-tiny" if args.quick else "sumi-57m"
    if args.steps < 1 or args.repeats < 1 or args.batch < 1:
        p.error("--steps, --repeats and --batch must be >= 1")
    if not 0 <= args.mid_step < args.mid_of:
        p.error("--mid-step must lie in [0, --mid-of)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    max_pos = SumiConfig.from_preset(args.preset).max_position_embeddings
    for c in args.canvas:
        if not 8 <= c <= max_pos:
            raise SystemExit(f"--canvas {c}: must lie in [8, max_position_embeddings={max_pos}]")
    t_start = time.perf_counter()
    with torch.inference_mode():
        info = machine_info(device, 256 if args.quick else 2048)
        args.matmul_peak = {name: info[f"matmul_gflops_{name}"] for name in ("float32", "bfloat16")}
        log(f"bench_core: {info['gpu'] or info['cpu']}, torch {info['torch']}, {info['torch_threads']} threads")
        base = build_model(args.preset, args.seed, device)
        rows = []
        for canvas_len in args.canvas:
            for dtype_name in args.dtypes:
                rows += bench_cell(base, canvas_len, dtype_name, args, device)
    info["wall_s"] = time.perf_counter() - t_start
    print(render(info, rows, args))
    if args.json:
        Path(args.json).write_text(json.dumps(dict(machine=info, args=vars(args), rows=rows), indent=2) + "\n")
        log(f"wrote {args.json}")
    log(f"bench_core: done in {info['wall_s']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
