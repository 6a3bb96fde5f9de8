"""The sampling frontier: judge perplexity and entropy against forwards, for every sampler.

Unconditional samples (prompt = BOS) of the bundled model at 4..128 forwards each, judged by an
external autoregressive model (SmolLM2-135M, as in demo_quality.py), with the goal line of issue 16:
at 8 forwards, the judge perplexity of 128-step ancestral sampling at an entropy within 0.2 nats.

    python benchmarks/bench_sampling.py [--samples 8] [--forwards 4,8,16,32,64,128] \\
        [--json benchmarks/results/bench_sampling_cpu2.json] [--plot docs/sampling-frontier.png]
    python benchmarks/bench_sampling.py --model runs/demo-fast/export --forwards 4,8,16 \\
        --only "ancestral,ancestral + greedy tail 1" --reference 176.4,3.93     # a distilled student
    python benchmarks/bench_sampling.py --student demo-fast ...    # the student beside the samplers

`--student MODEL` adds one curve: that model (a distilled student) with its own generation config's
sampler at each budget, on the same prompts, seeds and judge.

Definitions (as in demo_quality.py): gen. PPL = exp(mean judge NLL per judge token) of the decoded
samples (token-pooled); entropy = Shannon entropy (nats) of each sample's own token histogram,
averaged over samples; forwards = the model forwards a sample took part in (a row of the
entropy-bounded sampler may end before its budget), averaged over samples.
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

# options a variant does not name take these values, not the model's generation config (a distilled
# student's config may set greedy_tail, which would turn "ancestral" into "ancestral + greedy tail")
NEUTRAL = dict(greedy_tail=0, temperature=1.0, top_k=None, top_p=None, min_p=None)


def steps(forwards: int) -> dict:
    """The options that spend `forwards` forwards on a one-forward-per-step sampler."""
    return dict(num_denoising_steps=forwards)


def variants(canvas: int) -> dict[str, tuple[dict, callable]]:
    """name -> (fixed options, forwards -> the options that spend that many forwards)."""
    return {
        "ancestral": (dict(sampler="ancestral"), steps),
        "ancestral + greedy tail 1": (dict(sampler="ancestral", greedy_tail=1), steps),
        **{
            f"ancestral T={t} + greedy tail 1": (
                dict(sampler="ancestral", greedy_tail=1, temperature=t),
                steps,
            )
            for t in (0.95, 0.9)
        },
        # truncation instead of temperature: drop the unlikely tail of each prediction
        "ancestral top_p=0.8": (dict(sampler="ancestral", top_p=0.8), steps),
        **{
            f"ancestral {k}={v} + greedy tail 1": (
                dict(sampler="ancestral", greedy_tail=1, **{k: v}),
                steps,
            )
            for k, v in (("top_p", 0.95), ("top_p", 0.9), ("min_p", 0.02), ("min_p", 0.05), ("min_p", 0.1))
        },
        "predictor-corrector c=1": (
            dict(sampler="predictor_corrector", corrector_steps=1),
            lambda f: dict(num_denoising_steps=max(1, f // 2)),
        ),
        "entropy-bounded H<1 T=1": (
            dict(sampler="entropy_bounded", entropy_bound=1.0, temperature=1.0),
            steps,
        ),
        "entropy-bounded H<2 T=0.9": (
            dict(sampler="entropy_bounded", entropy_bound=2.0, temperature=0.9),
            steps,
        ),
        "adaptive T=0": (
            dict(sampler="adaptive", temperature=0.0),
            lambda f: dict(num_denoising_steps=f, tokens_per_step=max(1, math.ceil((canvas - 1) / f))),
        ),
        "greedy": (dict(sampler="greedy"), steps),
    }


ANCESTRAL_KEYS = {"temperature": float, "top_p": float, "min_p": float, "top_k": int, "greedy_tail": int}


def ancestral_variant(spec: str) -> tuple[str, dict]:
    """`--ancestral "top_p=0.8,greedy_tail=0"` -> (its name, its generate() options); greedy_tail defaults to 1."""
    options: dict = dict(sampler="ancestral", greedy_tail=1)
    for item in filter(None, (kv.strip() for kv in spec.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key not in ANCESTRAL_KEYS:
            raise ValueError(f"expected KEY=VALUE with KEY in {', '.join(ANCESTRAL_KEYS)}, got {item!r}")
        try:
            options[key] = ANCESTRAL_KEYS[key](value)
        except ValueError:
            raise ValueError(f"{key} needs a {ANCESTRAL_KEYS[key].__name__}, got {value!r}") from None
    knobs = [f"{k}={v:g}" for k, v in options.items() if k not in ("sampler", "greedy_tail")]
    tail = options["greedy_tail"]
    return " ".join(["ancestral", *knobs]) + (f" + greedy tail {tail}" if tail else ""), options


def machine() -> str:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
        platform.processor(),
    )
    return f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def plot(rows: list[dict], reference: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in dict.fromkeys(r["variant"] for r in rows):
        rs = [r for r in rows if r["variant"] == name]
        a.plot([r["forwards"] for r in rs], [r["gen_ppl"] for r in rs], marker="o", label=name)
        b.plot([r["forwards"] for r in rs], [r["entropy"] for r in rs], marker="o", label=name)
    a.axhline(reference["gen_ppl"], color="k", ls="--", lw=0.8, label="128-step ancestral")
    b.axhspan(
        reference["entropy"] - 0.2, reference["entropy"] + 0.2, color="k", alpha=0.08, label="128-step ancestral ± 0.2"
    )
    a.axvline(8, color="grey", ls=":", lw=0.8)
    b.axvline(8, color="grey", ls=":", lw=0.8)
    for ax, label in ((a, "judge perplexity (lower is better)"), (b, "sample entropy (nats)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("forwards per sample")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    a.set_yscale("log")
    b.legend(fontsize=7, loc="lower right")
    fig.suptitle("The sampling frontier of the bundled model (unconditional, 128 tokens)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


SAME_RUN = ("model", "samples", "canvas", "new_tokens", "judge", "seed")


def earlier_rows(args, ap) -> list[dict]:
    """The rows of `--extend`'s run, if it was measured under the same settings as this one."""
    try:
        with open(args.extend) as f:
            earlier = json.load(f)
        differ = [k for k in SAME_RUN if earlier["args"][k] != getattr(args, k)]
        rows = earlier["rows"]
    except (OSError, ValueError, KeyError) as e:
        ap.error(f"--extend {args.extend!r}: not a bench_sampling --json file ({e})")
    if differ:
        ap.error(
            f"--extend {args.extend!r} was measured with other "
            + ", ".join(f"{k} ({earlier['args'][k]!r}, here {getattr(args, k)!r})" for k in differ)
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="demo")
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--forwards", default="4,8,16,32,64,128")
    ap.add_argument("--canvas", type=int, default=256)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--judge", default="smollm2")
    ap.add_argument("--only", default=None, help="comma-separated variant names (default: all)")
    ap.add_argument(
        "--ancestral",
        action="append",
        default=[],
        metavar="KEY=VALUE,...",
        help="add a variant: ancestral with these generate() options (greedy_tail defaults to 1), e.g. "
        "'temperature=1.05,min_p=0.02' or 'greedy_tail=0,min_p=0.05' (repeatable)",
    )
    ap.add_argument("--student", default=None, help="also a distilled student with its generation config's sampler")
    ap.add_argument(
        "--extend",
        default=None,
        metavar="JSON",
        help="an earlier run's --json with the same model, samples, canvas, tokens, judge and seed: its rows "
        "are kept and only the (sampler, forwards) pairs it lacks are measured (the samples are seeded, so a "
        "pair measured again gives the same numbers)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    ap.add_argument("--plot", default=None)
    ap.add_argument("--quick", action="store_true", help="2 samples, 4 and 8 forwards, 32 tokens (a smoke run)")
    ap.add_argument(
        "--reference",
        default=None,
        metavar="PPL,ENTROPY",
        help="the goal's reference (default: this run's ancestral at its largest budget), e.g. the teacher's "
        "128-step numbers when scoring a distilled student at few forwards",
    )
    args = ap.parse_args()
    if args.quick:
        args.samples, args.forwards, args.new_tokens, args.canvas = 2, "4,8", 32, 64
    model, tok = sumi.load(args.model)
    model.eval()
    judge = ARJudge(args.judge)
    prompt = torch.tensor([[model.config.bos_token_id]]).expand(args.samples, 1)
    chosen = variants(args.canvas)
    if args.only:
        chosen = {k: v for k, v in chosen.items() if k in args.only.split(",")}
    for spec in args.ancestral:
        try:
            name, options = ancestral_variant(spec)
        except ValueError as e:
            ap.error(f"--ancestral {spec!r}: {e}")
        chosen[name] = (options, steps)
    runs = [(name, model, fixed, spend) for name, (fixed, spend) in chosen.items()]
    if args.student:
        student, _ = sumi.load(args.student)
        student.eval()
        cfg = student.generation_config
        # its own sampler and truncation (what it set, not transformers' defaults such as top_k=50)
        own = {"sampler": cfg.sampler, **{k: v for k, v in cfg.to_diff_dict().items() if k in NEUTRAL}}
        runs.append((f"student {args.student} ({cfg.sampler}, its config)", student, own, steps))
    rows, started = earlier_rows(args, ap) if args.extend else [], time.time()
    done = {(r["variant"], r["budget"]) for r in rows}
    for name, net, fixed, spend in runs:
        for f in [int(x) for x in args.forwards.split(",")]:
            if (name, f) in done:
                continue
            t0 = time.perf_counter()
            out = net.generate(
                prompt,
                max_new_tokens=args.new_tokens,
                canvas_length=args.canvas,
                seed=[args.seed + i for i in range(args.samples)],
                **{**NEUTRAL, **fixed},
                **spend(f),
            )
            seconds = (time.perf_counter() - t0) / args.samples
            ids = [out.sequences[i, 1 : int(out.lengths[i])].tolist() for i in range(args.samples)]
            texts = [tok.decode(i, skip_special_tokens=True) for i in ids]
            ppl = judge.perplexity([""] * len(texts), texts)["perplexity"]
            rows.append(
                dict(
                    variant=name,
                    budget=f,
                    forwards=float(out.row_forwards.float().mean()),
                    gen_ppl=ppl,
                    entropy=float(np.mean([token_entropy(i) for i in ids])),
                    tokens=float(np.mean([len(i) for i in ids])),
                    seconds=seconds,
                    sample=texts[0][:200],
                )
            )
            print(
                f"{name} @ {f}: {rows[-1]['forwards']:.1f} forwards, PPL {ppl:.1f}, entropy {rows[-1]['entropy']:.2f}",
                file=sys.stderr,
            )
    order = {name: i for i, name in enumerate(dict.fromkeys(r["variant"] for r in rows))}
    rows.sort(key=lambda r: (order[r["variant"]], r["budget"]))  # an extended run's new budgets in place
    ref = next(
        (r for r in rows if r["variant"] == "ancestral" and r["budget"] == max(r["budget"] for r in rows)), rows[0]
    )
    if args.reference:
        ppl, entropy = (float(x) for x in args.reference.split(","))
        ref = dict(variant="given", budget=None, gen_ppl=ppl, entropy=entropy)
    ref_name = "given (--reference)" if args.reference else f"ancestral at {ref['budget']} forwards"
    print(
        f"\n## The sampling frontier of `{args.model}` ({args.samples} unconditional samples of {args.new_tokens} "
        f"tokens on a {args.canvas}-token canvas per row; judge {judge.path})\n"
    )
    print(
        f"Reference: {ref_name}, judge PPL {ref['gen_ppl']:.1f}, entropy "
        f"{ref['entropy']:.2f}. Goal: the same PPL at 8 forwards, entropy within 0.2 nats.\n"
    )
    print(
        "| sampler | forwards (budget) | forwards (used) | judge gen. PPL | entropy (nats) | meets the goal | s / sample |"
    )
    print("|---|---:|---:|---:|---:|:---:|---:|")
    for r in rows:
        meets = r["gen_ppl"] <= ref["gen_ppl"] and abs(r["entropy"] - ref["entropy"]) <= 0.2
        print(
            f"| {r['variant']} | {r['budget']} | {r['forwards']:.1f} | {r['gen_ppl']:.1f} | {r['entropy']:.2f} | "
            f"{'yes' if meets else ''} | {r['seconds']:.2f} |"
        )
    print(f"\n_{machine()}; {time.time() - started:.0f} s._")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(args=vars(args), machine=machine(), reference=ref, rows=rows), f, indent=1)
    if args.plot:
        plot(rows, ref, args.plot)


if __name__ == "__main__":
    main()
