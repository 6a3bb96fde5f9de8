"""Canvas-length sensitivity of our models (issue 16 §4): the paper's finding that the training
length is the sweet spot (spec §10), measured on the bundled models.

    python benchmarks/bench_canvas_length.py --data runs/demo/data \\
        [--json benchmarks/results/bench_canvas_length_cpu2.json] \\
        [--md benchmarks/results/bench_canvas_length_cpu2.md] [--plot docs/canvas-length.png]

Three parts, in one run:

1. Base model (`--base`, trained on 256-token canvases), NELBO against canvas length L: the same
   held-out tokens at every L (`--nelbo-chunks` pieces of lcm(L...) tokens spread evenly over the
   validation stream of `--data`: the split `benchmarks/demo_quality.py` scores), cut into windows of
   L tokens, every window a whole canvas scored by `sumi.evaluation.nelbo.nelbo_scores` (seeded, each
   window its own random numbers; `--nelbo-samples` t per window at the training length, in
   proportion to L elsewhere, at least 2: every L gets about the same number of noised canvases, so
   about the same Monte Carlo noise). Reported in nats/token and bits/byte, with the mean paired
   difference to the training length over the chunks (± its standard error).
2. Base model, generation quality against canvas length: `--gen-samples` unconditional samples
   (prompt = BOS) with a fixed answer budget (`--new-tokens`) on canvases of L positions: the EOS/BOS
   anchors follow the budget, and the L - budget - 3 positions after them are the tail the model
   denoises as free context (none at L = budget + 3). Ancestral, `--gen-steps` steps, row i seeded
   with seed + i; judged by the external judge of `benchmarks/bench_sampling.py` (generative
   perplexity, lower is better, with a 95 % bootstrap interval over the samples; sample entropy in
   nats, low = repetitive), with held-out text of the same length as a reference.
3. Instruct model (`--instruct`, fine-tuned on 160-token canvases), exact match against canvas length
   on the held-out split of the synthetic suite (`sumi.sft_tasks`, `--per-task` instances per task),
   prompts rendered by the chat template and answered by `sumi.chat_template.answer_prompts` with the
   model's generation config and only `canvas_length` overridden (row i seeded with seed + i, as
   `sft_tasks.score_suite`: at its own canvas the accuracy equals `score_suite`'s). The `edits scale`
   variant also scales the adaptive sampler's edits per step with the canvas (tokens_per_step x L /
   the training length), so that the same number of steps can reach every position, as the
   evaluation default (canvas / 256 per step) does. A prompt that leaves no answer position on the
   canvas counts as wrong ("fit" = how many fit). Cost: forwards and forwards x canvas positions per
   answer (`row_forwards`, `row_positions` of the generate output).

Every part is seeded and deterministic. `--parts` runs some of them; `--merge PATH` keeps the other
parts of an earlier `--json` (e.g. part 3 again on retrained weights; the report names the command,
date and machine of each part, and the sha256 of the weights). `--quick` is a smoke run (tiny counts;
`--data` may then be a text file instead of prepared data).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from bench_sampling import machine  # noqa: E402

import sumi  # noqa: E402
from sumi.analysis.quality import ARJudge, token_entropy  # noqa: E402
from sumi.atomic import write_text_atomic  # noqa: E402
from sumi.chat_template import answer_prompts, chat_prompt_ids, ensure_chat_template  # noqa: E402
from sumi.checksums import sha256_file  # noqa: E402
from sumi.evaluation.nelbo import ScoreRequest, nelbo_scores  # noqa: E402
from sumi.evaluation.perplexity import bootstrap_ratio  # noqa: E402
from sumi.loading import BUNDLED_DIR, model_source  # noqa: E402
from sumi.sft_tasks import TASKS, exact_match, generate_suite  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def weights_info(name: str) -> dict:
    """Which weights were measured: the folder, the sha256 of its safetensors files and the last commit
    that changed them (whether the files differ from it)."""
    folder = BUNDLED_DIR / name if model_source(name) == "bundled" else Path(name)
    files = sorted(folder.glob("*.safetensors"))
    info = dict(name=name, folder=str(folder), sha256={f.name: sha256_file(f) for f in files})
    try:
        rel = [str(f.resolve().relative_to(ROOT)) for f in files]
    except ValueError:  # a folder outside the repository
        return info
    git = ["git", "-C", str(ROOT)]
    log = subprocess.run(git + ["log", "-1", "--format=%h %cs", "--", *rel], capture_output=True, text=True)
    info["last_commit"] = log.stdout.strip()
    dirty = subprocess.run(git + ["status", "--porcelain", "--", *rel], capture_output=True, text=True).stdout
    info["uncommitted_changes"] = bool(dirty.strip())
    return info


def describe_weights(info: dict) -> str:
    sha = ", ".join(f"{k} sha256 {v[:12]}" for k, v in info["sha256"].items())
    where = f"weights of commit {info['last_commit']}" if info.get("last_commit") else info["folder"]
    dirty = ", changed since" if info.get("uncommitted_changes") else ""
    return f"`{info['name']}` ({sha}; {where}{dirty})"


# ----------------------------------------------------------------------------- held-out tokens
def held_out_stream(data: str, tok, bos: int, eos: int) -> tuple[np.ndarray, str]:
    """The held-out token stream: the validation split of prepared data, or (smoke runs) a text
    file encoded as one BOS doc EOS document."""
    path = Path(data)
    if path.is_dir():
        from sumi.data import PackedDataset

        val = PackedDataset(path, split="validation")
        return np.asarray(val.tokens(), dtype=np.int64), f"the validation split of `{data}` ({len(val):,} tokens)"
    if path.is_file():
        ids = [bos] + tok(path.read_text(encoding="utf-8"), add_special_tokens=False).input_ids + [eos]
        return np.asarray(ids, dtype=np.int64), f"the text file `{data}` ({len(ids):,} tokens)"
    raise SystemExit(
        f"--data {data!r}: no prepared data there. Make it with the two commands at the top of recipes/demo.yaml "
        "(`sumi data prepare -o runs/demo/data --tokenizer src/sumi/assets/models/demo ...`)"
    )


# ----------------------------------------------------------------------------- part 1
def nelbo_vs_length(model, tok, stream: np.ndarray, lengths: list[int], args) -> dict:
    span = math.lcm(*lengths)
    n_chunks = min(args.nelbo_chunks, len(stream) // span)
    if n_chunks < 1:
        raise SystemExit(f"the held-out stream ({len(stream)} tokens) is shorter than lcm(lengths) = {span}")
    last = len(stream) - span
    starts = [round(i * last / max(n_chunks - 1, 1)) for i in range(n_chunks)]
    chunks = [stream[s : s + span] for s in starts]
    chunk_bytes = [len(tok.decode(c.tolist()).encode("utf-8")) for c in chunks]
    rows = []
    for L in lengths:
        t0 = time.perf_counter()
        requests, owner = [], []
        for c, chunk in enumerate(chunks):
            for j in range(0, span, L):
                window = tuple(int(x) for x in chunk[j : j + L])
                requests.append(ScoreRequest(window, 0, L, key=("canvas-length", L, starts[c] + j)))
                owner.append(c)
        # t samples per window in proportion to L: every length gets the same number of noised
        # canvases (windows x t samples), hence about the same Monte Carlo noise per token
        k = max(2, round(args.nelbo_samples * L / args.base_train_length))
        scores = nelbo_scores(model, requests, num_samples=k, seed=args.seed, batch_size=k)
        per_chunk = np.zeros(n_chunks)
        for c, s in zip(owner, scores):
            per_chunk[c] += s
        nats = float(per_chunk.sum())
        tokens = n_chunks * span
        rows.append(
            dict(
                canvas=L,
                windows=len(requests),
                t_samples=k,
                tokens=tokens,
                nats_per_token=nats / tokens,
                bits_per_byte=nats / sum(chunk_bytes) / math.log(2),
                chunk_nats_per_token=(per_chunk / span).tolist(),
                seconds=time.perf_counter() - t0,
            )
        )
        log(
            f"NELBO at canvas {L}: {nats / tokens:.4f} nats/token ({len(requests)} windows x {k} t, {rows[-1]['seconds']:.0f} s)"
        )
    ref = next((r for r in rows if r["canvas"] == args.base_train_length), None)
    for r in rows:
        if ref is not None:
            d = np.asarray(r["chunk_nats_per_token"]) - np.asarray(ref["chunk_nats_per_token"])
            r["diff_vs_train"] = float(d.mean())
            r["diff_vs_train_se"] = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else None
    return dict(chunks=n_chunks, chunk_tokens=span, chunk_starts=starts, bytes=sum(chunk_bytes), rows=rows)


# ----------------------------------------------------------------------------- part 2
def judge_samples(judge, texts: list[str], seed: int) -> dict:
    """The judge's token-pooled perplexity of the texts (as `judge.perplexity` of them all), with a
    95 % bootstrap interval over the samples (`sumi.evaluation.perplexity.bootstrap_ratio`)."""
    per_row = [judge.perplexity([""], [t]) for t in texts]  # each row alone: its NLL and token count
    nll = [r["nll_per_token"] * r["tokens"] for r in per_row if r["tokens"]]
    count = [r["tokens"] for r in per_row if r["tokens"]]
    lo, hi = bootstrap_ratio(nll, count, seed=seed)
    return dict(perplexity=math.exp(sum(nll) / sum(count)), ci95=[math.exp(lo), math.exp(hi)])


def generation_vs_length(model, tok, judge, stream: np.ndarray, lengths: list[int], args) -> dict:
    bos, eos = model.config.bos_token_id, model.config.eos_token_id
    n = args.gen_samples
    prompt = torch.tensor([[bos]]).expand(n, 1)
    rows = []
    for L in lengths:
        t0 = time.perf_counter()
        out = model.generate(
            prompt,
            max_new_tokens=args.new_tokens,
            canvas_length=L,
            sampler="ancestral",
            num_denoising_steps=args.gen_steps,
            seed=[args.seed + i for i in range(n)],
        )
        seconds = time.perf_counter() - t0
        ids = [out.sequences[i, 1 : int(out.lengths[i])].tolist() for i in range(n)]
        texts = [tok.decode(i, skip_special_tokens=True) for i in ids]
        judged = judge_samples(judge, texts, args.seed)
        rows.append(
            dict(
                canvas=L,
                tail=L - 1 - int(out.budgets[0]) - 2,
                gen_ppl=judged["perplexity"],
                gen_ppl_ci95=judged["ci95"],
                entropy=float(np.mean([token_entropy(i) for i in ids])),
                tokens=float(np.mean([len(i) for i in ids])),
                forwards=float(out.row_forwards.float().mean()),
                forward_positions=float(out.row_positions.float().mean()),
                seconds_per_sample=seconds / n,
                sample=texts[0][:300],
            )
        )
        log(f"samples at canvas {L}: judge PPL {judged['perplexity']:.1f}, entropy {rows[-1]['entropy']:.2f}")
    # reference: held-out text cut to the budget, from n evenly spaced places (no BOS/EOS)
    clean = stream[(stream != bos) & (stream != eos)]
    step = max(1, (len(clean) - args.new_tokens) // n)
    real = [clean[i * step : i * step + args.new_tokens].tolist() for i in range(n)]
    ref = judge_samples(judge, [tok.decode(r, skip_special_tokens=True) for r in real], args.seed)
    reference = dict(gen_ppl=ref["perplexity"], entropy=float(np.mean([token_entropy(r) for r in real])))
    return dict(rows=rows, held_out_text=reference, judge=judge.path)


# ----------------------------------------------------------------------------- part 3
class Recorder:
    """The model, with `generate()` recording each row's forwards and forward positions."""

    def __init__(self, model):
        self.model = model
        self.forwards: list[int] = []
        self.positions: list[int] = []

    def __getattr__(self, name):
        return getattr(self.model, name)

    def generate(self, *args, **kwargs):
        out = self.model.generate(*args, **kwargs)
        self.forwards += out.row_forwards.tolist()
        self.positions += out.row_positions.tolist()
        return out


def instruct_vs_length(model, tok, lengths: list[int], args) -> dict:
    tok = ensure_chat_template(tok)
    gen = model.generation_config
    instances = generate_suite("heldout", args.per_task, seed=args.seed)
    prompts = [chat_prompt_ids(tok, inst.messages(with_answer=False)) for inst in instances]
    base_tps = int(getattr(gen, "tokens_per_step", 1) or 1)
    steps = {} if args.sft_steps is None else dict(num_denoising_steps=args.sft_steps)
    variants = {"config": lambda L: dict(steps)}
    if "edits-scale" in args.sft_variants and getattr(gen, "sampler", None) == "adaptive":
        variants["edits scale"] = lambda L: dict(
            steps, tokens_per_step=max(1, round(base_tps * L / args.instruct_train_length))
        )
    rows = []
    for name, extra in variants.items():
        for L in lengths:
            kw = extra(L)
            if name != "config" and L == args.instruct_train_length:  # the same run as "config"
                rows.append(dict(next(r for r in rows if r["canvas"] == L), variant=name))
                continue
            fit = [i for i, p in enumerate(prompts) if len(p) + 3 <= min(L, model.config.max_position_embeddings)]
            rec = Recorder(model)
            t0 = time.perf_counter()
            answers = answer_prompts(
                rec,
                tok,
                [prompts[i] for i in fit],
                seeds=[args.seed + i for i in fit],
                batch_size=args.batch_size,
                canvas_length=L,
                **kw,
            )
            seconds = time.perf_counter() - t0
            got = dict(zip(fit, answers))
            hits = {t: [] for t in TASKS}
            for i, inst in enumerate(instances):
                hits[inst.task].append(i in got and exact_match(got[i], inst.answer))
            n_hits = sum(sum(h) for h in hits.values())
            rows.append(
                dict(
                    variant=name,
                    canvas=L,
                    tokens_per_step=kw.get("tokens_per_step", base_tps),
                    fit=len(fit),
                    n=len(instances),
                    accuracy=n_hits / len(instances),
                    per_task={t: sum(h) / len(h) for t, h in hits.items() if h},
                    forwards=float(np.mean(rec.forwards)) if fit else 0.0,
                    forward_positions=float(np.mean(rec.positions)) if fit else 0.0,
                    seconds_per_answer=seconds / max(len(fit), 1),
                    answers={instances[i].user: got.get(i) for i in range(min(len(instances), len(TASKS)))},
                )
            )
            log(
                f"instruct ({name}) at canvas {L}: {n_hits}/{len(instances)} exact ({len(fit)} fit), "
                f"{rows[-1]['forwards']:.1f} forwards, {seconds:.0f} s"
            )
    settings = {
        k: getattr(gen, k, None)
        for k in ("canvas_length", "max_new_tokens", "sampler", "temperature", "tokens_per_step", "num_denoising_steps")
    }
    settings["stop_on_cycle"] = getattr(gen, "stop_on_cycle", None)
    return dict(rows=rows, generation_config=settings, per_task=args.per_task)


# ----------------------------------------------------------------------------- report
def part_args(res: dict, part: str) -> dict:
    """The arguments of the run that measured `part`."""
    return next(r["args"] for r in reversed(res["runs"]) if part in r["parts"])


def markdown(res: dict) -> str:
    out = ["## Canvas-length sensitivity of the bundled models\n"]
    for run in res["runs"]:
        out += [
            f"Parts {', '.join(run['parts'])}: `{run['command']}` ({run['date']}; {run['machine']}; "
            f"{run.get('seconds', 0):.0f} s).\n"
        ]
    if "nelbo" in res:
        p, a = res["nelbo"], part_args(res, "nelbo")
        out += [
            f"### 1. Base model {describe_weights(res['weights']['base'])}: held-out NELBO against canvas length\n",
            f"Held-out text: {res['held_out']}; {p['chunks']} chunks of {p['chunk_tokens']} tokens spread evenly over it "
            f"({p['chunks'] * p['chunk_tokens']:,} tokens, {p['bytes']:,} bytes, the same at every length), cut into "
            f"windows of L tokens, each a whole canvas, scored by `nelbo_scores` (stratified-logsnr, seed {a['seed']}; "
            f"t samples per window {a['nelbo_samples']} × L / {a['base_train_length']}, at least 2, so that every length "
            f"gets about the same number of noised canvases). Training length {a['base_train_length']}. Δ: mean over "
            f"the chunks of (nats/token at L − at {a['base_train_length']}), ± its standard error (text and Monte Carlo "
            "noise).\n",
            "| canvas L | windows × t samples | NELBO nats/token | bits/byte | Δ vs training length (nats/token) | s |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for r in p["rows"]:
            mark = " **(training)**" if r["canvas"] == a["base_train_length"] else ""
            diff = ""
            if r.get("diff_vs_train") is not None and not mark:
                se = f" ± {r['diff_vs_train_se']:.4f}" if r.get("diff_vs_train_se") is not None else ""
                diff = f"{r['diff_vs_train']:+.4f}{se}"
            out.append(
                f"| {r['canvas']}{mark} | {r['windows']} × {r.get('t_samples', a['nelbo_samples'])} | {r['nats_per_token']:.4f} | {r['bits_per_byte']:.4f} | "
                f"{diff} | {r['seconds']:.0f} |"
            )
        out.append("")
    if "generation" in res:
        g, a = res["generation"], part_args(res, "generation")
        h = g["held_out_text"]
        out += [
            "### 2. Base model: unconditional samples against canvas length\n",
            f"{a['gen_samples']} samples per row (prompt = BOS), {a['new_tokens']}-token answer budget, EOS/BOS anchors "
            f"after it, the tail after them denoised as free context; ancestral, {a['gen_steps']} steps, seeds "
            f"{a['seed']}..{a['seed'] + a['gen_samples'] - 1}. Judge: `{g['judge']}` (generative perplexity, token-pooled; "
            f"entropy of each sample's own tokens). Held-out text, {a['new_tokens']}-token pieces: judge PPL "
            f"{h['gen_ppl']:.1f}, entropy {h['entropy']:.2f}.\n",
            "| canvas L | tail | judge gen. PPL ↓ (95 % CI over samples) | entropy (nats) | tokens | "
            "forwards × positions | s / sample |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in g["rows"]:
            mark = " **(training)**" if r["canvas"] == a["base_train_length"] else ""
            ci = "{:.0f}-{:.0f}".format(*r["gen_ppl_ci95"]) if r.get("gen_ppl_ci95") else ""
            out.append(
                f"| {r['canvas']}{mark} | {r['tail']} | {r['gen_ppl']:.1f} ({ci}) | {r['entropy']:.2f} | {r['tokens']:.1f} | "
                f"{r['forward_positions']:,.0f} | {r['seconds_per_sample']:.2f} |"
            )
        out.append("")
    if "instruct" in res:
        s, a = res["instruct"], part_args(res, "instruct")
        cfg = ", ".join(f"{k}={v}" for k, v in s["generation_config"].items())
        out += [
            f"### 3. Instruct model {describe_weights(res['weights']['instruct'])}: exact match against canvas length\n",
            f"Held-out split of `sumi.sft_tasks`, {s['per_task']} instances per task ({s['per_task'] * len(TASKS)} in "
            f"all), seed {a['seed']}; its generation config ({cfg}) with `canvas_length` = L; `edits scale` also sets "
            f"tokens_per_step = {s['generation_config']['tokens_per_step']} × L / {a['instruct_train_length']}. "
            f"fit: prompts that leave at least one answer position (the others count as wrong). Cost: mean per answer "
            f"that fit. Training length {a['instruct_train_length']}.\n",
            "| variant | canvas L | edits/step | fit | exact match | " + " | ".join(TASKS) + " | forwards | "
            "forwards × positions |",
            "|---|---:|---:|---:|---:|" + "---:|" * len(TASKS) + "---:|---:|",
        ]
        for r in s["rows"]:
            mark = " **(training)**" if r["canvas"] == a["instruct_train_length"] else ""
            tasks = " | ".join(f"{100 * r['per_task'][t]:.0f} %" if t in r["per_task"] else "" for t in TASKS)
            out.append(
                f"| {r['variant']} | {r['canvas']}{mark} | {r['tokens_per_step']} | {r['fit']}/{r['n']} | "
                f"**{100 * r['accuracy']:.1f} %** | {tasks} | {r['forwards']:.1f} | {r['forward_positions']:,.0f} |"
            )
        out.append("")
    return "\n".join(out)


def plot(res: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    panels = [k for k in ("nelbo", "generation", "instruct") if k in res]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.9), squeeze=False)
    for ax, part in zip(axes[0], panels):
        a = part_args(res, part)
        if part == "nelbo":
            rows = res["nelbo"]["rows"]
            xs = [r["canvas"] for r in rows]
            errors = [r.get("diff_vs_train_se") or 0.0 for r in rows]
            ax.errorbar(xs, [r["nats_per_token"] for r in rows], yerr=errors, marker="o", color="C0", capsize=3)
            ax.set_ylabel("held-out NELBO (nats/token, lower is better)")
            ax.set_title("base: NELBO (bars: s.e. of Δ vs training)", fontsize=9)
            train = a["base_train_length"]
        elif part == "generation":
            g = res["generation"]
            xs = [r["canvas"] for r in g["rows"]]
            ax.plot(xs, [r["gen_ppl"] for r in g["rows"]], marker="o", color="C1", label="judge PPL")
            if all(r.get("gen_ppl_ci95") for r in g["rows"]):
                lo, hi = zip(*(r["gen_ppl_ci95"] for r in g["rows"]))
                ax.fill_between(xs, lo, hi, color="C1", alpha=0.15, lw=0, label="95 % CI")
            ax.axhline(g["held_out_text"]["gen_ppl"], color="k", ls="--", lw=0.8, label="held-out text")
            ax.set_yscale("log")
            ax.set_ylabel("judge gen. perplexity (lower is better)")
            ax.set_title(f"base: {a['new_tokens']}-token samples")
            values = [v for r in g["rows"] for v in [r["gen_ppl"], *r.get("gen_ppl_ci95", [])]]
            values.append(g["held_out_text"]["gen_ppl"])
            low, high = 0.8 * min(values), 2.5 * max(values)  # room for the legend at the top
            ax.set_ylim(low, high)
            ax.set_yticks([y for y in (20, 50, 100, 200, 500, 1000, 2000, 5000, 10000) if low <= y <= high])
            ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
            ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            twin = ax.twinx()
            twin.plot(xs, [r["entropy"] for r in g["rows"]], marker=".", ls=":", color="C2", label="entropy (right)")
            twin.set_ylabel("sample entropy (nats)", color="C2")
            lines = ax.get_legend_handles_labels()
            more = twin.get_legend_handles_labels()
            ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=7, loc="upper left", ncol=3)
            train = a["base_train_length"]
        else:
            rows = res["instruct"]["rows"]
            xs = []
            for name in dict.fromkeys(r["variant"] for r in rows):
                rs = [r for r in rows if r["variant"] == name]
                xs = [r["canvas"] for r in rs]
                ax.plot(xs, [100 * r["accuracy"] for r in rs], marker="o", label=name)
            ax.set_ylabel("exact match, held-out (%)")
            ax.set_title("instruct: synthetic suite")
            ax.legend(fontsize=7)
            train = a["instruct_train_length"]
        ax.axvline(train, color="grey", ls=":", lw=1.2)
        ax.text(train, 0.02, f" training\n length {train}", transform=ax.get_xaxis_transform(), va="bottom", fontsize=7)
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs)
        ax.set_xticklabels([str(x) for x in xs], fontsize=7)
        ax.minorticks_off()
        ax.set_xlabel("canvas length (tokens)")
        ax.grid(alpha=0.3)
    fig.suptitle("Canvas-length sensitivity of the bundled models")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="demo")
    ap.add_argument("--instruct", default="demo-instruct")
    ap.add_argument("--data", default="runs/demo/data", help="prepared data (its validation split is held out)")
    ap.add_argument("--parts", default="nelbo,generation,instruct")
    ap.add_argument("--base-train-length", type=int, default=256, help="recipes/demo-gpu.yaml data.seq_len")
    ap.add_argument(
        "--instruct-train-length", type=int, default=160, help="recipes/demo-instruct-stage3.yaml data.seq_len"
    )
    ap.add_argument("--nelbo-lengths", default="32,64,128,192,256,384,512")
    ap.add_argument("--nelbo-chunks", type=int, default=8, help="held-out chunks of lcm(lengths) tokens")
    ap.add_argument(
        "--nelbo-samples", type=int, default=8, help="t samples per window at the training length (in proportion to L)"
    )
    ap.add_argument("--gen-lengths", default="67,96,128,192,256,384,512")
    ap.add_argument("--gen-samples", type=int, default=16)
    ap.add_argument("--gen-steps", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--judge", default="smollm2")
    ap.add_argument("--sft-lengths", default="32,48,64,96,128,256")
    ap.add_argument("--sft-variants", default="config,edits-scale")
    ap.add_argument("--sft-steps", type=int, default=None, help="denoising steps (default: the generation config's)")
    ap.add_argument("--per-task", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--md", default=None, help="also write the markdown report here")
    ap.add_argument("--plot", default=None)
    ap.add_argument("--merge", default=None, help="an earlier --json: keep its parts that --parts does not rerun")
    ap.add_argument("--quick", action="store_true", help="a smoke run: tiny counts")
    args = ap.parse_args()
    if args.quick:
        args.nelbo_lengths, args.nelbo_chunks, args.nelbo_samples = "32,64", 1, 2
        args.gen_lengths, args.gen_samples, args.gen_steps, args.new_tokens = "19,32", 2, 4, 16
        args.sft_lengths, args.per_task, args.sft_steps = "96,160", 1, 8
    if args.threads:
        torch.set_num_threads(args.threads)
    parts = set(args.parts.split(","))
    started = time.time()
    run = dict(
        parts=[k for k in ("nelbo", "generation", "instruct") if k in parts],
        command="python " + " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]),
        date=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        machine=f"{machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start, "
        f"Python {platform.python_version()}",
        args=vars(args),
    )
    res: dict = dict(runs=[], weights={})
    if args.merge:  # keep the parts of an earlier run that this one does not measure again
        res = json.loads(Path(args.merge).read_text(encoding="utf-8"))
        for r in res["runs"]:
            r["parts"] = [k for k in r["parts"] if k not in parts]
        res["runs"] = [r for r in res["runs"] if r["parts"]]
    if run["parts"]:  # (none: only the report and the plot are written again, from --merge)
        res["runs"].append(run)

    def save() -> None:  # after each part, so that a long run that dies keeps what it measured
        if args.json:
            run["seconds"] = time.time() - started
            write_text_atomic(args.json, json.dumps(res, indent=1))

    if parts & {"nelbo", "generation"}:
        model, tok = sumi.load(args.base)
        model.eval()
        res["weights"]["base"] = weights_info(args.base)
        stream, res["held_out"] = held_out_stream(args.data, tok, model.config.bos_token_id, model.config.eos_token_id)
        if "nelbo" in parts:
            res["nelbo"] = nelbo_vs_length(model, tok, stream, ints(args.nelbo_lengths), args)
            save()
        if "generation" in parts:
            judge = ARJudge(args.judge)
            res["generation"] = generation_vs_length(model, tok, judge, stream, ints(args.gen_lengths), args)
            save()
            del judge
        del model
    if "instruct" in parts:
        model, tok = sumi.load(args.instruct)
        model.eval()
        res["weights"]["instruct"] = weights_info(args.instruct)
        res["instruct"] = instruct_vs_length(model, tok, ints(args.sft_lengths), args)
    run["seconds"] = time.time() - started
    report = markdown(res)
    print(report)
    if args.md:
        write_text_atomic(args.md, report + "\n")
    save()
    if args.plot:
        plot(res, args.plot)


if __name__ == "__main__":
    main()
