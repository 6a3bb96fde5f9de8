"""Peak memory and time of the GIDD training loss at Sumi's vocabulary: unfused vs chunked/fused.

Unfused = `lm_head` logits [N, V] + `uniform_gidd_loss` + backward (what a plain loop does).
Fused   = `fused_linear_gidd_loss` (logits built chunk by chunk, gradients computed per chunk).
Each variant runs in a fresh subprocess; peak memory is the growth of the process's max RSS
(CPU) or torch.cuda.max_memory_allocated (CUDA) over the inputs already allocated.

    python benchmarks/bench_loss.py [--tokens 2048] [--hidden 512] [--vocab 100278] [--chunk 512] [--device cpu]
"""

import argparse
import json
import os
import platform
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time, torch
sys.path.insert(0, {src!r})
from sumi.diffusion import fused_linear_gidd_loss, uniform_gidd_loss, corrupt
N, H, V, chunk, variant, device = {N}, {H}, {V}, {chunk}, {variant!r}, {device!r}
torch.set_num_threads({threads})
g = torch.Generator().manual_seed(0)
hidden = (torch.randn(1, N, H, generator=g) / H ** 0.5).to(device).requires_grad_()
weight = (0.02 * torch.randn(V, H, generator=g)).to(device).requires_grad_()
x = torch.randint(0, V, (1, N), generator=g)
t = torch.rand(1, N, generator=g)
z = corrupt(x, t, V, generator=g).to(device); x = x.to(device); t = t.to(device)
def run():
    if variant == "unfused":
        loss, valid = uniform_gidd_loss(hidden @ weight.T, z, x, t, vocab_size=V)
        loss = loss.sum() / valid.sum()
    else:
        total, count = fused_linear_gidd_loss(hidden, weight, z, x, t, vocab_size=V, chunk_size=chunk)
        loss = total / count
    loss.backward()
    return loss.item()
if device == "cuda":
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
else:
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
t0 = time.perf_counter(); value = run()
if device == "cuda": torch.cuda.synchronize()
first = time.perf_counter() - t0
peak = (torch.cuda.max_memory_allocated() if device == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) - base
gw = weight.grad.double().norm().item(); gh = hidden.grad.double().norm().item()
hidden.grad = weight.grad = None
t0 = time.perf_counter(); run()
if device == "cuda": torch.cuda.synchronize()
second = time.perf_counter() - t0
print(json.dumps(dict(loss=value, peak=peak, seconds=min(first, second), grad_w=gw, grad_h=gh)))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--vocab", type=int, default=100278)
    ap.add_argument("--chunk", type=int, default=0, help="tokens per chunk (0 = the default rule)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
    results = {}
    for variant in ("unfused", "fused"):
        code = CHILD.format(
            src=src,
            N=args.tokens,
            H=args.hidden,
            V=args.vocab,
            chunk=args.chunk,
            variant=variant,
            device=args.device,
            threads=args.threads,
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        results[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    u, f = results["unfused"], results["fused"]
    cpu = next(
        (l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor()
    )
    print(
        f"\n## bench_loss: N={args.tokens} tokens, hidden {args.hidden}, vocab {args.vocab}, chunk {args.chunk}, "
        f"device {args.device} ({cpu if args.device == 'cpu' else 'cuda'}, {args.threads} threads)\n"
    )
    print("| variant | loss | peak extra memory | forward+backward | |grad W| | |grad h| |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        print(
            f"| {name} | {r['loss']:.6f} | {r['peak'] / 2**20:,.0f} MiB | {r['seconds']:.2f} s | {r['grad_w']:.6e} | {r['grad_h']:.6e} |"
        )
    print(
        f"\nmemory ratio unfused/fused: {u['peak'] / max(f['peak'], 1):.1f}x; time ratio: {u['seconds'] / f['seconds']:.2f}x; "
        f"relative loss difference {abs(u['loss'] - f['loss']) / abs(u['loss']):.1e}"
    )
    if args.json:
        json.dump(dict(args=vars(args), results=results), open(args.json, "w"), indent=1)


if __name__ == "__main__":
    main()
