"""Quality of a (small) Sumi model: held-out NELBO vs a unigram baseline, and samples judged by an
external autoregressive model (SmolLM2-135M), per sampler and step count, with the judge's scores
of unigram samples and of held-out real text as the two reference points.

    python benchmarks/demo_quality.py --model demo --data runs/demo/data [--samples 8] [--json out.json]

Prints a markdown table (pasted into the README by hand) and a few samples.
Definitions:
  * NELBO bits/byte: per-token NELBO (spec §4, 16 Gauss-Legendre nodes in log-SNR) summed over
    held-out windows of the validation split, divided by their UTF-8 bytes and ln 2.
  * unigram bits/byte: cross-entropy of the validation tokens under the training split's
    add-one-smoothed unigram distribution, per byte.
  * gen. PPL: exp(mean NLL per judge token) of the decoded samples under the judge (token-pooled).
  * entropy: Shannon entropy (nats) of each sample's own token histogram, averaged over samples
    (low = repetitive).
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
from sumi.analysis.quality import ARJudge, token_entropy  # noqa: E402
from sumi.data import PackedDataset  # noqa: E402
from sumi.diffusion import estimate_nelbo  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="demo")
    ap.add_argument("--data", required=True, help="the prepared dataset (its validation split is held out)")
    ap.add_argument("--samples", type=int, default=8, help="samples per sampler / step count")
    ap.add_argument("--steps", default="16,64,256")
    ap.add_argument("--canvas", type=int, default=256)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--nelbo-windows", type=int, default=32)
    ap.add_argument("--judge", default="smollm2")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    model, tok = sumi.load(args.model)
    model.eval()
    V = model.config.vocab_size
    bos, eos = model.config.bos_token_id, model.config.eos_token_id
    started = time.time()

    # ---- held-out NELBO vs unigram
    val = PackedDataset(args.data, split="validation")
    train = PackedDataset(args.data, split="train")
    n_win = min(args.nelbo_windows, val.num_windows(args.canvas))
    windows = torch.stack([val.get_window(i, args.canvas) for i in range(n_win)])
    nats = 0.0
    g = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        for i in range(0, n_win, 8):
            x = windows[i : i + 8]
            per_tok = estimate_nelbo(
                lambda z: model(z).logits, x, vocab_size=V, num_samples=16, method="quadrature", generator=g
            )
            nats += float(per_tok.double().sum())
    val_bytes = sum(len(tok.decode(w.tolist()).encode("utf-8")) for w in windows)
    counts = np.bincount(np.asarray(train.tokens(), dtype=np.int64), minlength=V).astype(np.float64) + 1.0
    log_p = np.log(counts / counts.sum())
    uni_nats = float(-log_p[windows.numpy()].sum())
    nelbo = dict(
        tokens=int(windows.numel()),
        bytes=val_bytes,
        nelbo_nats_per_token=nats / windows.numel(),
        nelbo_bits_per_byte=nats / val_bytes / math.log(2),
        unigram_nats_per_token=uni_nats / windows.numel(),
        unigram_bits_per_byte=uni_nats / val_bytes / math.log(2),
    )
    print(
        f"held-out: NELBO {nelbo['nelbo_bits_per_byte']:.3f} bits/byte vs unigram "
        f"{nelbo['unigram_bits_per_byte']:.3f} ({n_win} windows of {args.canvas} tokens)",
        file=sys.stderr,
    )

    # ---- samples
    judge = ARJudge(args.judge)
    rows, texts = [], {}
    prompt = torch.tensor([[bos]])

    def judge_row(name, sampler, steps, id_lists, seconds=None, forwards=None):
        decoded = [tok.decode(ids, skip_special_tokens=True) for ids in id_lists]
        ppl = judge.perplexity([""] * len(decoded), decoded)["perplexity"]
        ent = float(np.mean([token_entropy(ids) for ids in id_lists]))
        rows.append(
            dict(
                name=name,
                sampler=sampler,
                steps=steps,
                gen_ppl=ppl,
                entropy=ent,
                mean_tokens=float(np.mean([len(i) for i in id_lists])),
                seconds=seconds,
                forwards=forwards,
            )
        )
        texts[name] = decoded
        print(f"{name}: gen PPL {ppl:.1f}, entropy {ent:.2f}", file=sys.stderr)

    for sampler in ("ancestral", "adaptive", "greedy"):
        for steps in [int(s) for s in args.steps.split(",")]:
            kw = dict(
                max_new_tokens=args.new_tokens,
                num_denoising_steps=steps,
                canvas_length=args.canvas,
                sampler=sampler,
                seed=[args.seed + i for i in range(args.samples)],
            )
            if sampler == "adaptive":  # enough edits per step to fill the canvas within the budget
                kw.update(temperature=0.0, tokens_per_step=max(1, math.ceil((args.canvas - 1) / steps)))
            t0 = time.perf_counter()
            out = model.generate(prompt.expand(args.samples, 1), **kw)
            dt = time.perf_counter() - t0
            ids = [out.sequences[i, 1 : int(out.lengths[i])].tolist() for i in range(args.samples)]
            judge_row(f"{sampler} {steps}", sampler, steps, ids, dt / args.samples, out.num_forwards)

    # ---- references: unigram samples and real held-out text of the same length
    rng = np.random.default_rng(args.seed)
    probs = counts / counts.sum()
    probs[[bos, eos]] = 0
    probs /= probs.sum()
    lens = [int(r["mean_tokens"]) or args.new_tokens for r in rows[:1]] * args.samples
    judge_row("unigram samples", "reference", None, [rng.choice(V, size=n, p=probs).tolist() for n in lens])
    real = []
    for w in windows[: args.samples]:
        ids = [t for t in w.tolist() if t not in (bos, eos)][: args.new_tokens]
        real.append(ids)
    judge_row("held-out text", "reference", None, real)

    cpu = next(
        (l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor()
    )
    print(f"\n## Quality of `{args.model}` ({sum(p.numel() for p in model.parameters()):,} parameters)\n")
    print(
        f"Held-out NELBO: **{nelbo['nelbo_bits_per_byte']:.3f} bits/byte** "
        f"({nelbo['nelbo_nats_per_token']:.3f} nats/token) vs unigram {nelbo['unigram_bits_per_byte']:.3f} "
        f"bits/byte, on {n_win} validation windows of {args.canvas} tokens.\n"
    )
    print(
        f"Samples: {args.samples} per row, unconditional (prompt = BOS), {args.new_tokens}-token budget on a "
        f"{args.canvas}-token canvas; judge {judge.path}.\n"
    )
    print("| samples | steps | judge gen. PPL | entropy (nats) | tokens | s / sample (CPU) |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        secs = f"{r['seconds']:.2f}" if r["seconds"] is not None else ""
        print(
            f"| {r['name'].rsplit(' ', 1)[0] if r['steps'] else r['name']} | {r['steps'] or ''} | "
            f"{r['gen_ppl']:.1f} | {r['entropy']:.2f} | {r['mean_tokens']:.0f} | {secs} |"
        )
    print(f"\n_{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}; {time.time() - started:.0f} s._")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(args=vars(args), nelbo=nelbo, rows=rows, samples=texts), f, indent=1)


if __name__ == "__main__":
    main()
