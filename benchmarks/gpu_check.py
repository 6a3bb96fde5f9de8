"""CUDA checks of the core model (run on a GPU machine; prints a table, exits 1 on a failed check).

What it checks, per dtype (fp32, bf16) and canvas:
  * SDPA-with-sink logits == eager off-by-one-softmax logits (relative error vs a float64 eager
    reference), with and without a padding mask;
  * which SDPA kernels accept the sink trick (flash / memory-efficient / math), no mask;
  * peak attention memory of the eager path vs SDPA for one forward;
  * generate() on CUDA for every sampler: seeded runs reproduce, prompt and anchors are intact,
    and fp32 logits on CUDA match the CPU's for a fixed canvas.
Usage: python benchmarks/gpu_check.py [--json PATH]
"""

import argparse
import json
import sys

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from sumi import SumiConfig, SumiForMaskGeneration


def rel_err(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def build(preset, dtype, device, seed=0, **overrides):
    torch.manual_seed(seed)
    model = SumiForMaskGeneration(SumiConfig.from_preset(preset, **overrides)).eval()
    return model.to(device=device, dtype=dtype)


@torch.inference_mode()
def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    assert torch.cuda.is_available(), "needs a CUDA GPU"
    dev = torch.device("cuda")
    name = torch.cuda.get_device_name()
    rows, failures = [], []

    def check(what, ok, detail):
        rows.append((what, "ok" if ok else "FAIL", detail))
        if not ok:
            failures.append(what)

    # --- logits: SDPA vs eager vs float64 reference
    for preset, S in [("sumi-57m", 512), ("sumi-57m", 2048), ("sumi-1b", 2048)]:
        ref_model = build(preset, torch.float64, dev)
        ref_model.config._attn_implementation = "eager"
        x = torch.randint(0, ref_model.config.vocab_size, (2, S), device=dev)
        mask = torch.ones(2, S, dtype=torch.long, device=dev)
        mask[1, : S // 3] = 0
        refs = {m: ref_model(x, attention_mask=(mask if m else None)).logits.float() for m in (False, True)}
        del ref_model
        for dtype, tol in [(torch.float32, 1e-3), (torch.bfloat16, 5e-2)]:
            model = build(preset, dtype, dev)
            for masked in (False, True):
                am = mask if masked else None
                for impl in ("eager", "sdpa"):
                    model.config._attn_implementation = impl
                    err = rel_err(model(x, attention_mask=am).logits, refs[masked])
                    check(f"{preset} S={S} {str(dtype)[6:]} {impl} mask={masked}", err < tol, f"rel err {err:.2e}")
            del model
        torch.cuda.empty_cache()

    # --- which SDPA kernels run the sink trick (no padding mask)
    # each kernel against a float64 eager reference; bf16 rounding alone gives ~3e-2 on sumi-1b
    ref_model = build("sumi-1b", torch.float64, dev)
    ref_model.config._attn_implementation = "eager"
    x = torch.randint(0, ref_model.config.vocab_size, (1, 2048), device=dev)
    ref = ref_model(x).logits.float()
    del ref_model
    model = build("sumi-1b", torch.bfloat16, dev)
    model.config._attn_implementation = "eager"
    eager_err = rel_err(model(x).logits, ref)
    model.config._attn_implementation = "sdpa"
    for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION):
        try:
            with sdpa_kernel([backend]):
                err = rel_err(model(x).logits, ref)
            check(
                f"sdpa backend {backend.name} (bf16, sumi-1b)",
                err < 1.2 * eager_err + 1e-3,
                f"rel err vs fp64 {err:.2e} (bf16 eager: {eager_err:.2e})",
            )
        except RuntimeError as e:
            rows.append((f"sdpa backend {backend.name}", "n/a", str(e).splitlines()[0][:80]))

    # --- peak memory of one forward, eager vs SDPA (bf16, sumi-1b, canvas 2048 and 4096)
    for S in (2048, 4096):
        x = torch.randint(0, model.config.vocab_size, (1, S), device=dev)
        peaks = {}
        for impl in ("eager", "sdpa"):
            model.config._attn_implementation = impl
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            model(x)
            torch.cuda.synchronize()
            peaks[impl] = (torch.cuda.max_memory_allocated() - before) / 2**20
        rows.append(
            (
                f"forward peak extra memory S={S} (sumi-1b bf16)",
                "info",
                f"eager {peaks['eager']:.0f} MiB, sdpa {peaks['sdpa']:.0f} MiB, ratio {peaks['eager'] / peaks['sdpa']:.2f}",
            )
        )
    del model
    torch.cuda.empty_cache()

    # --- generate on CUDA
    model = build("sumi-57m", torch.bfloat16, dev)
    prompt = torch.tensor([[5, 6, 7, 8]], device=dev)
    for sampler in ("ancestral", "adaptive", "greedy"):
        kw = dict(max_new_tokens=32, num_denoising_steps=8, canvas_length=256, sampler=sampler, tokens_per_step=4)
        a = model.generate(prompt, seed=1, **kw)
        b = model.generate(prompt, seed=1, **kw)
        ok = (
            torch.equal(a.canvas, b.canvas)
            and torch.equal(a.canvas[:, :4], prompt)
            and int(a.canvas[0, 4 + 32]) == model.config.eos_token_id
        )
        check(f"generate cuda {sampler}: seeded, prompt+anchors intact", ok, f"forwards {a.num_forwards}")
    cpu = build("sumi-tiny", torch.float32, "cpu")
    gpu = build("sumi-tiny", torch.float32, dev)
    z = torch.randint(0, 256, (2, 64), generator=torch.Generator().manual_seed(3))
    err = rel_err(gpu(z.to(dev)).logits.cpu(), cpu(z).logits)
    check("tiny fp32 logits cpu vs cuda", err < 1e-4, f"rel err {err:.1e}")

    print(f"\n## gpu_check on {name} (torch {torch.__version__})\n")
    print("| check | result | detail |\n|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": name, "torch": torch.__version__, "rows": rows}, f, indent=1)
    if failures:
        print(f"\nFAILED: {failures}")
        sys.exit(1)


if __name__ == "__main__":
    main()
