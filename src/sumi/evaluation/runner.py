"""The offline benchmark runner, results files and the canvas-length study.

`evaluate_task` runs one task of `sumi.evaluation.tasks.TASKS` (or "nelbo": rolling NELBO of a
text/JSONL file) with a `SumiEvaluator`; `run_offline` runs several and returns a results dict
(config, versions, data-file hashes, per-task metrics with standard errors and time per item);
`canvas_study` repeats tasks at several canvas lengths (spec §10) and `plot_canvas_study` draws
metric vs canvas length (matplotlib, Agg backend).

With `chat=True` the generation tasks are asked as conversations (`GenItem.messages`, rendered by
`SumiEvaluator.chat_prompt`) and answered with the model's generation config
(`SumiEvaluator.generate_chat`); the answers are graded as the task grades completions (code from
the answer's fenced block).

`max_gen_toks="auto"`: the canvases of the generation tasks size themselves (a probe forward sizes
each answer to where the model puts EOS, up to the budget the task would have had); with the
evaluator's `grow` / `shrink` options they also follow the answer while it denoises. Every
generation sample records its final `budget` and the canvas `positions` it fed to the forwards,
and the task's settings their sum (`positions`), so that the cost of runs can be compared.

Multiple-choice scoring (lm-eval's conventions): every choice's continuation gets its NELBO
log-likelihood given the clean context; `acc` = the argmax is the gold choice; `acc_norm` = the
argmax of log-likelihood / UTF-8 bytes of the choice text is gold.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..atomic import write_text_atomic
from ..checksums import sha256_file
from ..distributed_inference import LaunchEnv, Peers, ShardFiles, sharded_map
from .core import SIZING_OPTIONS
from .execution import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_S, check_limits, run_programs
from .tasks import (
    TASKS,
    GenItem,
    MCItem,
    extract_gsm8k_answer,
    gsm8k_correct,
    humaneval_chat_program,
    humaneval_program,
    load_task,
    mbpp_chat_program,
    mbpp_program,
    select,
)

RESULTS_FORMAT = "sumi-eval/1"
LOWER_IS_BETTER = {"nats_per_token", "bits_per_byte", "perplexity"}


def _mean_stderr(values: Sequence[float]) -> tuple[float, float | None]:
    n = len(values)
    if n == 0:
        return float("nan"), None
    mean = sum(values) / n
    if n < 2:
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def _argmax(xs: Sequence[float]) -> int:
    return max(range(len(xs)), key=lambda i: (xs[i], -i))


# ----------------------------------------------------------------------------- tasks
# Each task kind in two halves: `*_records` scores a list of items (one JSON-able record each: the
# samples of --log-samples), `*_metrics` turns the records of the whole task into metrics. Records
# of one item never depend on the other items, so the items may be split across processes
# (`sumi.distributed_inference.sharded_map`) and finished shards reused (--resume).
def mc_records(evaluator, items: Sequence[MCItem], task: str = "mc") -> list[dict]:
    pairs: list[tuple[str, str]] = []
    spans: list[tuple[int, int]] = []
    keys: list[tuple[str, str]] = []
    for it in items:
        p = it.pairs()
        spans.append((len(pairs), len(p)))
        pairs += p
        keys += [(task, repr(it.id))] * len(p)  # the choices of an item share their random numbers
    lls = [ll for ll, _ in evaluator.loglikelihood(pairs, keys)] if pairs else []
    samples = []
    for it, (a, n) in zip(items, spans):
        scores = lls[a : a + n]
        norm = [s / max(1, len(c.encode("utf-8"))) for s, c in zip(scores, it.choices)]
        samples.append(
            dict(id=it.id, gold=it.gold, pred=_argmax(scores), pred_norm=_argmax(norm), loglikelihoods=scores)
        )
    return samples


def mc_metrics(samples: Sequence[dict]) -> dict:
    m, se = _mean_stderr([float(s["pred"] == s["gold"]) for s in samples])
    mn, sen = _mean_stderr([float(s["pred_norm"] == s["gold"]) for s in samples])
    return {"acc": m, "acc_stderr": se, "acc_norm": mn, "acc_norm_stderr": sen}


def evaluate_mc(evaluator, items: Sequence[MCItem], task: str = "mc") -> tuple[dict, list[dict]]:
    samples = mc_records(evaluator, items, task)
    return mc_metrics(samples), samples


def _generate(
    evaluator, items: Sequence[GenItem], max_gen_toks: int, desc: str, chat: bool = False, auto: bool = False
) -> tuple[list[str], list[dict[str, int]]]:
    """Completions of the items' prompts, or with `chat` the answers to their conversations, and what
    each cost (`budget`, `positions`, with `auto` also `auto_budget`: `sumi.chat_template.answer_cost`).
    `max_gen_toks`: the answer budget, with `auto` the probe's largest."""
    costs: list[dict[str, int]] = []
    if not items:
        return [], costs
    if chat:
        until = items[0].until if items[0].chat_until is None else items[0].chat_until
        prompts = [evaluator.chat_prompt(it.messages()) for it in items]
        texts = evaluator.generate_chat(
            prompts, until=until, max_gen_toks=max_gen_toks, auto=auto, desc=desc, costs=costs
        )
    else:
        prompts_text = [it.prompt for it in items]
        until = items[0].until
        texts = evaluator.generate(
            prompts_text, until=until, max_gen_toks=max_gen_toks, auto=auto, desc=desc, costs=costs
        )
    return texts, costs


def gsm8k_records(
    evaluator, items: Sequence[GenItem], max_gen_toks: int, chat: bool = False, auto: bool = False
) -> list[dict]:
    samples = []
    outs, costs = _generate(evaluator, items, max_gen_toks, "gsm8k", chat, auto)
    for it, out, cost in zip(items, outs, costs):
        s, f = extract_gsm8k_answer(out)
        samples.append(dict(id=it.id, gold=it.gold, completion=out, answer_flexible=f, answer_strict=s, **cost))
    return samples


def gsm8k_metrics(samples: Sequence[dict]) -> dict:
    m, se = _mean_stderr([float(gsm8k_correct(s["answer_flexible"], s["gold"])) for s in samples])
    ms, ses = _mean_stderr([float(gsm8k_correct(s["answer_strict"], s["gold"])) for s in samples])
    return {"exact_match": m, "exact_match_stderr": se, "exact_match_strict": ms, "exact_match_strict_stderr": ses}


def evaluate_gsm8k(evaluator, items: Sequence[GenItem], max_gen_toks: int) -> tuple[dict, list[dict]]:
    samples = gsm8k_records(evaluator, items, max_gen_toks)
    return gsm8k_metrics(samples), samples


def code_records(
    evaluator,
    name: str,
    items: Sequence[GenItem],
    max_gen_toks: int,
    *,
    allow_code_execution: bool,
    code_timeout: float,
    code_memory_mb: int,
    progress: bool,
    chat: bool = False,
    auto: bool = False,
) -> list[dict]:
    """Completions (with `chat`: answers) and what each cost, and with `allow_code_execution` whether
    each program passed (and how it ended)."""
    outs, costs = _generate(evaluator, items, max_gen_toks, name, chat, auto)
    samples = [dict(id=it.id, completion=out, **cost) for it, out, cost in zip(items, outs, costs)]
    if not allow_code_execution:
        return samples
    from tqdm.auto import tqdm

    if chat:
        build = humaneval_chat_program if name == "humaneval" else mbpp_chat_program
    else:
        build = humaneval_program if name == "humaneval" else mbpp_program
    programs = [build(it.meta, out) for it, out in zip(items, outs)]
    with tqdm(
        total=len(programs), desc=f"{name}: executing", disable=not progress, file=sys.stderr, leave=False
    ) as bar:
        results = run_programs(programs, timeout=code_timeout, memory_mb=code_memory_mb, progress=bar.update)
    for s, r in zip(samples, results):
        s.update(passed=r.passed, status=r.status)
    return samples


def code_metrics(samples: Sequence[dict], executed: bool) -> dict:
    if not executed:
        return {"pass@1": None, "note": "generated code not executed (pass --allow-code-execution)"}
    m, se = _mean_stderr([float(s["passed"]) for s in samples])
    return {"pass@1": m, "pass@1_stderr": se}


def evaluate_code(
    evaluator,
    name: str,
    items: Sequence[GenItem],
    max_gen_toks: int,
    *,
    allow_code_execution: bool,
    code_timeout: float,
    code_memory_mb: int,
    progress: bool,
) -> tuple[dict, list[dict]]:
    samples = code_records(
        evaluator,
        name,
        items,
        max_gen_toks,
        allow_code_execution=allow_code_execution,
        code_timeout=code_timeout,
        code_memory_mb=code_memory_mb,
        progress=progress,
    )
    return code_metrics(samples, allow_code_execution), samples


def _item_keys(items: Sequence[Any]) -> list[str]:
    """Names of the items for shard files: their ids, or their positions where ids repeat."""
    keys = [repr(it.id) for it in items]
    return keys if len(set(keys)) == len(keys) else [str(i) for i in range(len(items))]


def _task_shards(evaluator, name: str, shard_dir, settings: dict) -> ShardFiles | None:
    """The shard files of a task under `shard_dir`, named by everything that decides its records
    (the device aside: a rank on cuda:3 reuses what cuda:0 wrote)."""
    if shard_dir is None:
        return None
    info = {k: v for k, v in evaluator.info().items() if k != "device"}
    return ShardFiles(shard_dir, name, dict(task=name, model=info, **settings))


def evaluate_task(
    evaluator,
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    limit: int | None = None,
    limit_gen: int | None = None,
    num_fewshot: int | None = None,
    max_gen_toks: int | str | None = None,
    allow_code_execution: bool = False,
    code_timeout: float = DEFAULT_TIMEOUT_S,
    code_memory_mb: int = DEFAULT_MEMORY_MB,
    nelbo_file: str | os.PathLike | None = None,
    nelbo_split: str = "auto",
    nelbo_field: str = "text",
    progress: bool = False,
    peers: Peers | None = None,
    shard_dir: str | os.PathLike | None = None,
    resume: bool = False,
    shard_size: int | None = None,
    chat: bool = False,
) -> dict | None:
    """Run one offline task; returns {metrics, primary, n, seconds, seconds_per_item, settings, samples}.

    `limit`: at most this many items (spread evenly); `limit_gen`: the same for the generation tasks
    (GSM8K, HumanEval, MBPP), which cost 10-100x more per item (default: `limit`).

    `chat` (generation tasks only): each item asked as a conversation through the model's chat
    template (zero-shot by default: one user turn; `num_fewshot` exemplars as earlier
    user/assistant turns) and answered with the model's generation config
    (`SumiEvaluator.generate_chat`); `max_gen_toks`, when given, is the answer budget.

    `max_gen_toks="auto"` (or None with the evaluator's `max_gen_toks` option "auto"): the canvases
    of the generation tasks size themselves; the probe's largest budget is the evaluator's
    `auto_max_new_tokens`, else the budget the task would have had (the task's; with `chat` the
    generation config's, else the task's). Each generation sample records its `budget` and
    `positions` (the canvas positions fed to the forwards), the task's settings their sum.

    `peers` (a launched run): the items are split across the ranks; rank 0 gets the result, the
    other ranks None. `shard_dir`: each block of at most `shard_size` items is written there as a
    shard file; with `resume`, finished shards there are reused."""
    peers = peers or Peers(LaunchEnv())
    start = time.perf_counter()
    if chat and (name == "nelbo" or TASKS[name].kind == "mc"):
        raise ValueError(f"task {name!r} has no chat format: chat formatting applies to the generation tasks")
    if name == "nelbo":
        from .perplexity import perplexity_report, read_documents

        if nelbo_file is None:
            raise ValueError("task 'nelbo' needs a text or JSONL file (--nelbo-file)")
        docs = select(read_documents(nelbo_file, field=nelbo_field, split=nelbo_split), limit)
        shards = _task_shards(
            evaluator,
            name,
            shard_dir,
            dict(file=sha256_file(nelbo_file), split=nelbo_split, field=nelbo_field, limit=limit),
        )
        report = perplexity_report(
            evaluator,
            docs,
            seed=evaluator.options["seed"],
            peers=peers,
            shards=shards,
            resume=resume,
            shard_size=shard_size,
        )
        if report is None:
            return None
        seconds = time.perf_counter() - start
        metrics = {
            k: report[k]
            for k in (
                "nats_per_token",
                "nats_per_token_ci95",
                "bits_per_byte",
                "bits_per_byte_ci95",
                "perplexity",
                "perplexity_ci95",
            )
        }
        return dict(
            metrics=metrics,
            primary="bits_per_byte",
            n=len(docs),
            seconds=seconds,
            seconds_per_item=seconds / max(1, len(docs)),
            settings=dict(
                file=str(nelbo_file),
                canvas_length=evaluator.max_length,
                num_tokens=report["num_tokens"],
                num_windows=report["num_windows"],
                ci_units=report["ci_units"],
                resumed_items=report["resumed_items"],
            ),
            samples=[],
        )
    spec = TASKS[name]
    if data_dir is None:
        raise ValueError("no benchmark data directory (--data-dir)")
    # the preset's shots; a chat is asked zero-shot (one user turn) unless shots are asked for
    shots = (0 if chat else spec.num_fewshot) if num_fewshot is None else num_fewshot
    items = select(load_task(name, data_dir, shots), limit if spec.kind == "mc" or limit_gen is None else limit_gen)
    # canvases that size themselves: the probe's largest budget is the one the task would have had
    auto = max_gen_toks == "auto" or (max_gen_toks is None and evaluator.options.get("max_gen_toks") == "auto")
    budget = None if max_gen_toks == "auto" else max_gen_toks
    gen_toks = int(budget or spec.max_gen_toks)
    if auto:
        gen_toks = int(evaluator.options.get("auto_max_new_tokens") or gen_toks)
    chat_settings = None
    if chat:  # the answer budget: max_gen_toks given, else the generation config's, else the task's
        options = evaluator.chat_options(budget, spec.max_gen_toks, auto)
        gen_toks = options["auto_max_new_tokens"] if auto else options["max_new_tokens"]
        chat_settings = dict(
            template=evaluator.chat_template_source,
            generation=_resolved_chat_generation(evaluator, options),
        )

    def score(block: list) -> tuple[list[dict], dict[str, int]]:
        truncated_before = dict(evaluator.truncated)
        if spec.kind == "mc":
            samples = mc_records(evaluator, block, name)
        elif spec.kind == "gen":
            samples = gsm8k_records(evaluator, block, gen_toks, chat, auto)
        else:
            samples = code_records(
                evaluator,
                name,
                block,
                gen_toks,
                allow_code_execution=allow_code_execution,
                code_timeout=code_timeout,
                code_memory_mb=code_memory_mb,
                progress=progress,
                chat=chat,
                auto=auto,
            )
        # contexts (scored) or prompts (generated) left-truncated to fit the canvas
        cut = sum(v - truncated_before.get(k, 0) for k, v in evaluator.truncated.items())
        return samples, {"truncated_inputs": cut}

    shards = _task_shards(
        evaluator,
        name,
        shard_dir,
        dict(
            data=data_file_hashes([name], data_dir),
            shots=shots,
            max_gen_toks=["auto", gen_toks] if auto else gen_toks,
            code=[allow_code_execution, code_timeout, code_memory_mb] if spec.kind == "code" else None,
            chat=chat_settings,
        ),
    )
    done = sharded_map(score, items, _item_keys(items), peers, shards=shards, resume=resume, shard_size=shard_size)
    if done is None:
        return None
    samples = done.records
    if spec.kind == "mc":
        metrics = mc_metrics(samples)
        if spec.metrics == ("acc",):
            metrics = {k: v for k, v in metrics.items() if not k.startswith("acc_norm")}
    elif spec.kind == "gen":
        metrics = gsm8k_metrics(samples)
    else:
        metrics = code_metrics(samples, allow_code_execution)
    seconds = time.perf_counter() - start
    settings = dict(
        num_fewshot=shots,
        canvas_length=evaluator.max_length,
        description=spec.description,
        truncated_inputs=done.counts.get("truncated_inputs", 0),
        resumed_items=done.resumed,
    )
    if spec.kind != "mc":
        until = items[0].until if items else None
        if chat and items and items[0].chat_until is not None:
            until = items[0].chat_until
        settings.update(max_gen_toks="auto" if auto else gen_toks, until=until)
        if auto:
            settings.update(auto_max_new_tokens=gen_toks)
        settings.update(_cost_settings(evaluator, samples))
    if chat_settings is not None:
        settings.update(chat=chat_settings)
    return dict(
        metrics=metrics,
        primary=spec.primary,
        n=len(items),
        seconds=seconds,
        seconds_per_item=seconds / max(1, len(items)),
        settings=settings,
        samples=samples,
    )


def _cost_settings(evaluator, samples: Sequence[dict]) -> dict:
    """What a generation task paid, for the results file: the canvas-sizing options set (`sizing`,
    only when some are) and the canvas positions fed to the forwards in all (`positions`, the sum of
    the samples' `row_positions`; None when a resumed shard predates the record) and per item."""
    out: dict[str, Any] = {}
    sizing = {k: evaluator.options[k] for k in SIZING_OPTIONS if evaluator.options.get(k) is not None}
    if sizing:
        out["sizing"] = sizing
    costs = [s.get("positions") for s in samples]
    total = None if None in costs else sum(int(c) for c in costs if c is not None)
    out.update(positions=total, positions_per_item=None if total is None else total / max(1, len(samples)))
    return out


def _resolved_chat_generation(evaluator, options: dict) -> dict:
    """The generate() settings a chat answer runs with (given options over the generation config),
    for the results file."""
    o = evaluator.model.resolve_generation_options(options)
    keys = ("sampler", "num_denoising_steps", "temperature", "tokens_per_step", "canvas_length", "max_new_tokens")
    keys += ("schedule", "top_k", "top_p", "min_p", "early_stop_patience", "stop_on_cycle")
    if o["max_new_tokens"] == "auto" or o["grow"] or o["shrink"]:
        keys += ("auto_max_new_tokens", "auto_probe_steps", "grow", "grow_max", "shrink", "shrink_patience")
    return {k: o[k] for k in keys}


# ----------------------------------------------------------------------------- provenance
def environment_versions() -> dict:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in ("sumi", "torch", "transformers", "tokenizers", "numpy", "lm_eval"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    try:
        import torch

        out["cuda"] = torch.version.cuda
        out["device_name"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    except Exception:  # pragma: no cover
        pass
    try:
        here = Path(__file__).resolve().parent
        out["git_commit"] = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        out["git_commit"] = None
    return out


def data_file_hashes(names: Sequence[str], data_dir: str | os.PathLike) -> dict:
    out = {}
    for name in names:
        if name not in TASKS:
            continue
        for f in TASKS[name].files:
            p = Path(data_dir) / f
            if p.is_file() and f not in out:
                out[f] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    return out


def _check_task_kwargs(task_kwargs: dict) -> None:
    """Options that would spoil a task, rejected before the first task runs."""
    if task_kwargs.get("allow_code_execution"):
        check_limits(
            task_kwargs.get("code_timeout", DEFAULT_TIMEOUT_S), task_kwargs.get("code_memory_mb", DEFAULT_MEMORY_MB)
        )


def _is_main(task_kwargs: dict) -> bool:
    peers = task_kwargs.get("peers")
    return peers is None or peers.is_main


def run_offline(
    evaluator,
    names: Sequence[str],
    data_dir=None,
    *,
    config: dict | None = None,
    log: Callable[[str], None] | None = None,
    **task_kwargs: Any,
) -> dict | None:
    """Run offline tasks in order; returns the results dict (see the module docstring). With
    `peers` (a launched run) every rank takes part and only rank 0 gets the results (others None)."""
    _check_task_kwargs(task_kwargs)
    log = log if _is_main(task_kwargs) else None
    results = {}
    for name in names:
        if log:
            log(f"running {name} ...")
        r = evaluate_task(evaluator, name, data_dir, **task_kwargs)
        if r is None:
            continue
        results[name] = r
        if log:
            log(
                f"{name}: {format_metric(r['metrics'].get(r['primary']))} {r['primary']} "
                f"({r['n']} items, {r['seconds_per_item']:.3f} s/item)"
            )
    if not _is_main(task_kwargs):
        return None
    hidden = ("progress", "peers")
    return dict(
        format=RESULTS_FORMAT,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        config=dict(
            config or {},
            tasks=list(names),
            data_dir=str(data_dir) if data_dir else None,
            **{k: (str(v) if isinstance(v, Path) else v) for k, v in task_kwargs.items() if k not in hidden},
        ),
        model=evaluator.info(),
        versions=environment_versions(),
        data_files=data_file_hashes(names, data_dir) if data_dir else {},
        results=results,
    )


# ----------------------------------------------------------------------------- canvas-length study
def canvas_study(
    evaluator,
    names: Sequence[str],
    lengths: Sequence[int],
    data_dir=None,
    *,
    log: Callable[[str], None] | None = None,
    **task_kwargs: Any,
) -> dict | None:
    """Each task at each canvas length (the generation canvas, the scoring canvas cap and the
    rolling window). Returns {canvas_lengths, effective: {str(L): capped L}, tasks: {name: {str(L): result}}}
    (None on the ranks other than 0 of a launched run)."""
    _check_task_kwargs(task_kwargs)
    log = log if _is_main(task_kwargs) else None
    old = evaluator.options["canvas_length"]
    per_task: dict[str, dict[str, dict]] = {n: {} for n in names}
    effective = {}
    try:
        for L in lengths:
            evaluator.set(canvas_length=int(L))
            effective[str(L)] = evaluator.max_length
            for name in names:
                if log:
                    log(f"canvas {L}: running {name} ...")
                per_task[name][str(L)] = evaluate_task(evaluator, name, data_dir, **task_kwargs)
    finally:
        evaluator.set(canvas_length=old)
    if not _is_main(task_kwargs):
        return None
    return dict(canvas_lengths=[int(x) for x in lengths], effective=effective, tasks=per_task)


def canvas_study_markdown(study: dict) -> str:
    names = list(study["tasks"])
    head = ["canvas length"]
    for n in names:
        first = next(iter(study["tasks"][n].values()))
        head.append(f"{n} {first['primary']}")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for L in study["canvas_lengths"]:
        eff = study["effective"][str(L)]
        cells = [f"{L}" + (f" (capped at {eff})" if eff != L else "")]
        for n in names:
            r = study["tasks"][n][str(L)]
            cells.append(format_metric(r["metrics"].get(r["primary"])))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_canvas_study(study: dict, path: str | os.PathLike, title: str | None = None) -> Path:
    """Metric vs canvas length, one panel per task (PNG, matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    names = list(study["tasks"])
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False)
    xs = study["canvas_lengths"]
    for ax, name in zip(axes[0], names):
        rows = study["tasks"][name]
        primary = next(iter(rows.values()))["primary"]
        ys = [rows[str(L)]["metrics"].get(primary) for L in xs]
        ys = [float("nan") if y is None else y for y in ys]
        ax.plot(xs, ys, marker="o")
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs)
        ax.set_xticklabels([str(x) for x in xs])
        ax.set_xlabel("canvas length (tokens)")
        ax.set_ylabel(primary + (" (lower is better)" if primary in LOWER_IS_BETTER else ""))
        ax.set_title(name)
        ax.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- reporting
def format_metric(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.4f}"
    return str(value)


def results_markdown(results: dict) -> str:
    """One row per task and metric: value, stderr, items, time per item, inputs truncated to fit."""
    lines = ["| task | metric | value | stderr | n | s/item | truncated |", "|---|---|---|---|---|---|---|"]
    for name, r in results["results"].items():
        m = r["metrics"]
        keys = [k for k in m if not k.endswith(("_stderr", "_ci95")) and k != "note"]
        for k in keys:
            err = m.get(f"{k}_stderr")
            if err is None and f"{k}_ci95" in m:
                lo, hi = m[f"{k}_ci95"]
                err_text = f"95% CI [{lo:.4f}, {hi:.4f}]"
            else:
                err_text = format_metric(err) if err is not None else ""
            cut = r.get("settings", {}).get("truncated_inputs", "")
            lines.append(
                f"| {name} | {k} | {format_metric(m[k])} | {err_text} | {r['n']} | "
                f"{r['seconds_per_item']:.3f} | {cut} |"
            )
        if "note" in m:
            lines.append(f"| {name} | note | {m['note']} | | {r['n']} | {r['seconds_per_item']:.3f} | |")
    return "\n".join(lines) + "\n"


def write_results(results: dict, out_dir: str | os.PathLike, *, log_samples: bool = False) -> dict[str, Path]:
    """results.json (samples stripped), results.md and, with log_samples, samples_<task>.jsonl."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    slim = json.loads(json.dumps(results, default=str))
    for name, r in slim.get("results", {}).items():
        samples = r.pop("samples", [])
        if log_samples:
            p = out / f"samples_{name}.jsonl"
            write_text_atomic(p, "".join(json.dumps(s, ensure_ascii=False, default=str) + "\n" for s in samples))
            paths[f"samples_{name}"] = p
    study = slim.get("canvas_study")
    if study:
        for rows in study["tasks"].values():
            for r in rows.values():
                r.pop("samples", None)
    paths["json"] = out / "results.json"
    write_text_atomic(paths["json"], json.dumps(slim, indent=2, ensure_ascii=False) + "\n")
    md = results_markdown(slim) if slim.get("results") else ""
    if study:
        md += "\n## Canvas-length study\n\n" + canvas_study_markdown(study)
    paths["md"] = out / "results.md"
    write_text_atomic(paths["md"], md)
    return paths


__all__ = [
    "evaluate_task",
    "evaluate_mc",
    "mc_records",
    "mc_metrics",
    "gsm8k_records",
    "gsm8k_metrics",
    "code_records",
    "code_metrics",
    "run_offline",
    "canvas_study",
    "canvas_study_markdown",
    "plot_canvas_study",
    "results_markdown",
    "write_results",
    "environment_versions",
    "format_metric",
    "RESULTS_FORMAT",
]
