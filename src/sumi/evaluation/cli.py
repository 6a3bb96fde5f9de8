"""`sumi eval` and `sumi perplexity` (registered in `sumi.cli.COMMANDS`)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ..atomic import write_text_atomic
from ..cli.common import (
    CLIError,
    DefaultRule,
    add_model_arg,
    add_runtime_args,
    add_sampling_args,
    add_sizing_args,
    launch_peers,
    load_model,
    model_source,
    nonneg_float,
    nonneg_int,
    note,
    positive_budget_or_auto,
    positive_int,
    resolve_device,
    sampling_kwargs,
)
from .core import EVAL_DEFAULTS
from .execution import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_S
from .nelbo import NELBO_METHODS

DEFAULT_SHARD_SIZE = 200  # items per shard file: what an interrupted evaluation loses at most per process

EVAL_DESCRIPTION = """\
Evaluate a Sumi model on benchmarks, with the paper's protocol (spec §9): multiple-choice answers
are ranked by their NELBO log-likelihood given the clean context; generation tasks fill an anchored
2048-token canvas with the adaptive sampler and cut the output at the first EOS / stop string.

Two back ends:
  --offline TASKS   sumi's own implementation over the JSONL benchmark copies in --data-dir
                    (default: $SUMI_EVAL_DATA_DIR or ../shared/data/benchmarks). TASKS: all, or a
                    comma-separated list of mmlu, hellaswag, piqa, arc_easy, arc_challenge,
                    winogrande, gsm8k, humaneval, mbpp, nelbo (the latter needs --nelbo-file).
  --tasks TASKS     lm-evaluation-harness tasks by name (needs `pip install sumi[eval]`; lm-eval
                    downloads its data sets, so this is the online path; --include-path adds
                    local task YAMLs).

--chat scores a chat model the way people query it: each generation prompt becomes a conversation
(offline: zero-shot by default, one user turn; --num-fewshot k: k exemplars as earlier
user/assistant turns) rendered by the tokenizer's chat template with the generation prompt,
answered with the model's generation config (the sampling options given override it), graded as
the task grades answers.
"""

EVAL_EPILOG = """\
presets (offline; the paper's settings where the spec states them):
  mmlu 5-shot acc | hellaswag, piqa, arc_easy, arc_challenge 0-shot acc/acc_norm | winogrande 0-shot acc
  gsm8k 5-shot CoT exact match (max 256 new tokens) | humaneval 0-shot pass@1, mbpp 3-shot pass@1 (512)

generated code runs only with --allow-code-execution: each program in a bubblewrap sandbox (no
network, no other processes, read-only system, throw-away work folder, empty environment) with a
timeout and memory/CPU/file-size/process limits; without bubblewrap (`apt install bubblewrap`) only
the limits apply, with a warning: then it is no security boundary (use a container or VM).

examples:
  sumi eval --offline all --model PATH --limit 50 --output-dir results/ --allow-code-execution
  sumi eval --offline gsm8k --model PATH --limit 100 --canvas-lengths 256,512,1024,2048 --output-dir study/
  sumi eval --offline nelbo --nelbo-file docs.jsonl --canvas-lengths 256,512,1024,2048 --output-dir study/
  sumi eval --tasks hellaswag,arc_easy --model PATH --limit 100
  sumi eval --offline all --chat --model demo-instruct --limit-gen 50 -o chat/   # zero-shot chat prompts
  sumi eval --offline gsm8k --chat --num-fewshot 3 --model PATH -o chat3/       # 3 exemplar turn pairs
  sumi eval --offline gsm8k --chat --model demo-instruct --max-gen-toks auto --shrink -o auto/  # sized canvases
  torchrun --nproc_per_node=8 -m sumi.cli eval --offline all --model PATH --output-dir results/   # 8 GPUs
  (a launched run splits the items by rank, rank 0 writes the results; rerun with --resume after an
  interruption; see src/sumi/evaluation/README.md)
"""

PPL_EPILOG = """\
The NELBO bounds the negative log-likelihood from above, so the perplexity printed is an upper
bound. Each document is scored as [BOS] + text in windows of --canvas-length tokens; the 95%
confidence interval is a bootstrap over documents (or over windows when there are fewer than 10
documents).

examples:
  sumi perplexity notes.txt --model PATH
  sumi perplexity corpus.jsonl --field text --limit 200 --num-samples 32 --json
"""


# The sampler options of the generation tasks, with the evaluation's defaults (EVAL_DEFAULTS). They
# stay unset unless given (the evaluator applies the defaults), so that --chat knows what was given.
_CHAT = "; with --chat: the model's generation config"
_GENERATION_DEFAULTS = dict(
    sampler=DefaultRule(EVAL_DEFAULTS["sampler"] + _CHAT),
    num_denoising_steps=DefaultRule(f"{EVAL_DEFAULTS['num_denoising_steps']}{_CHAT}"),
    temperature=DefaultRule(f"{EVAL_DEFAULTS['temperature']:g}{_CHAT}"),
    tokens_per_step=DefaultRule("ceil(canvas_length / steps)" + _CHAT),
    early_stop_patience=DefaultRule(
        "off; adaptive and greedy at temperature 0 stop once their canvas cycles, which never changes the result"
    ),
)


def _int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated integers, got {text!r}") from None
    if not values or any(v < 4 for v in values):
        raise argparse.ArgumentTypeError(f"must be comma-separated canvas lengths >= 4, got {text!r}")
    return values


def _add_model_args(p: argparse.ArgumentParser) -> None:
    add_model_arg(p)
    add_runtime_args(p)
    s = p.add_argument_group("likelihood (NELBO)")
    s.add_argument(
        "--num-samples",
        type=positive_int,
        metavar="K",
        help=f"t samples per scored continuation / window, one forward each (default: {EVAL_DEFAULTS['num_samples']})",
    )
    s.add_argument(
        "--nelbo-method",
        choices=NELBO_METHODS,
        help=f"t grid (default: {EVAL_DEFAULTS['nelbo_method']}, unbiased, low variance)",
    )
    s.add_argument(
        "--batch-size",
        type=positive_int,
        metavar="N",
        help=f"canvases per forward (default: {EVAL_DEFAULTS['batch_size']})",
    )
    s.add_argument("--seed", type=nonneg_int, help=f"base seed of all randomness (default: {EVAL_DEFAULTS['seed']})")
    s.add_argument(
        "--canvas-length",
        type=positive_int,
        metavar="N",
        help="generation canvas, longest scoring canvas and rolling window (default: 2048, capped at "
        "the model's max_position_embeddings; --chat generation: the model's generation config)",
    )
    s.add_argument(
        "--rolling-context",
        type=nonneg_int,
        metavar="N",
        help="clean context tokens carried into each rolling window (default: 0)",
    )
    s.add_argument("--no-bos", action="store_true", help="do not start canvases with BOS")
    s.add_argument(
        "--score-canvas",
        choices=("exact", "anchored"),
        help="multiple-choice canvas: exact = [BOS] context continuation (default); anchored = "
        "then EOS, BOS and random tokens up to --canvas-length, like a generation canvas",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")


def _evaluator_options(args: argparse.Namespace) -> dict[str, Any]:
    opts = dict(
        num_samples=args.num_samples,
        nelbo_method=args.nelbo_method,
        batch_size=args.batch_size,
        seed=args.seed,
        canvas_length=args.canvas_length,
        rolling_context=args.rolling_context,
        score_canvas=args.score_canvas,
    )
    if args.no_bos:
        opts["add_bos"] = False
    opts |= sampling_kwargs(args)
    for name in ("max_gen_toks", "gen_batch_size", "greedy_check"):
        if hasattr(args, name):
            opts[name] = getattr(args, name)
    return {k: v for k, v in opts.items() if v is not None}


def _load_evaluator(args: argparse.Namespace, peers=None):
    from .core import SumiEvaluator

    device = resolve_device(args.device)
    if peers is not None and not peers.is_main:
        args.no_progress = True  # one set of progress bars: rank 0's
    if model_source(args.model) == "preset":
        note(
            f"note: '{args.model}' is a preset with RANDOM weights (seed 0), not a trained model: its scores "
            "are chance-level by construction. Pass --model PATH for a trained checkpoint."
        )
    model, tok = load_model(args.model, dtype=args.dtype, device=device, attn_implementation=args.attn_implementation)
    if tok is None:
        note("note: the model has no tokenizer: using a byte-level fallback (UTF-8 bytes as ids).")
    try:
        return SumiEvaluator(model, tok, progress=not args.no_progress, name=args.model, **_evaluator_options(args))
    except ValueError as e:
        raise CLIError(str(e)) from None


# ----------------------------------------------------------------------------- sumi eval
def add_eval_parser(sub) -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "eval",
        formatter_class=fmt,
        description=EVAL_DESCRIPTION,
        epilog=EVAL_EPILOG,
        help="evaluate on benchmarks (offline JSONL copies or lm-evaluation-harness tasks)",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--offline", metavar="TASKS", help="offline tasks: all, or a comma-separated list")
    which.add_argument("--tasks", metavar="TASKS", help="lm-evaluation-harness task names (comma-separated)")
    p.add_argument("--data-dir", metavar="DIR", help="folder with the benchmark JSONL files (offline)")
    p.add_argument(
        "--limit",
        type=positive_int,
        metavar="N",
        help="at most N items per task (offline: spread evenly over the task; lm-eval: the first N)",
    )
    p.add_argument(
        "--limit-gen",
        type=positive_int,
        metavar="N",
        help="offline: at most N items per generation task (gsm8k, humaneval, mbpp), which cost far "
        "more per item (default: --limit)",
    )
    p.add_argument(
        "--num-fewshot", type=nonneg_int, metavar="N", help="override the preset's number of shots (offline --chat: 0)"
    )
    p.add_argument(
        "--output-dir",
        "-o",
        metavar="DIR",
        help="write results.json, results.md (and samples, plots) here; default: print the table only",
    )
    p.add_argument("--log-samples", action="store_true", help="also write per-item predictions (samples_<task>.jsonl)")
    p.add_argument("--include-path", metavar="DIR", help="extra lm-eval task YAMLs (with --tasks)")
    _add_sharding_args(p)
    _add_model_args(p)
    g = p.add_argument_group("generation (GSM8K, HumanEval, MBPP)")
    add_sampling_args(g, _GENERATION_DEFAULTS, only=tuple(_GENERATION_DEFAULTS))
    g.add_argument(
        "--max-gen-toks",
        type=positive_budget_or_auto,
        metavar="N|auto",
        help="answer budget (default: the task's: GSM8K 256, code 512; with --chat the generation "
        "config's max_new_tokens, else the task's); 'auto': a probe forward sizes each answer to where the "
        "model puts EOS, plus room (at least 16 in all), up to that budget (or --auto-max-new-tokens)",
    )
    g.add_argument(
        "--chat",
        action="store_true",
        help="chat-formatted generation: each prompt as a conversation through the tokenizer's chat "
        "template (sumi's default where it has none), zero-shot unless --num-fewshot k puts k "
        "exemplars as earlier user/assistant turns, answered with the model's generation config; "
        "offline: gsm8k, humaneval, mbpp (all = these); --tasks: lm-eval's apply_chat_template",
    )
    g.add_argument(
        "--gen-batch-size", type=positive_int, metavar="N", help="prompts per generate() call (default: --batch-size)"
    )
    add_sizing_args(
        p,
        {"auto_max_new_tokens": DefaultRule("the answer budget --max-gen-toks would have without auto")},
        "Generation canvases follow the answers (all off by default; --max-gen-toks auto turns the probe on). "
        "results.json records the options and the canvas positions each task paid (settings.positions).",
    )
    x = p.add_argument_group("code execution")
    x.add_argument(
        "--allow-code-execution",
        "--confirm-run-unsafe-code",
        "--confirm_run_unsafe_code",
        dest="allow_code_execution",
        action="store_true",
        help="run model-generated code (HumanEval, MBPP) in a bubblewrap sandbox, or with "
        "resource limits only (a warning, no boundary) where bubblewrap is missing",
    )
    x.add_argument(
        "--code-timeout",
        type=nonneg_float,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help=f"seconds per program (default: {DEFAULT_TIMEOUT_S:g})",
    )
    x.add_argument(
        "--code-memory-mb",
        type=positive_int,
        default=DEFAULT_MEMORY_MB,
        metavar="MB",
        help=f"address-space limit per program (default: {DEFAULT_MEMORY_MB})",
    )
    s = p.add_argument_group("canvas-length study and NELBO task")
    s.add_argument(
        "--canvas-lengths",
        type=_int_list,
        metavar="L1,L2,...",
        help="run every task at each canvas length; writes a table and canvas_length.png",
    )
    s.add_argument("--nelbo-file", metavar="FILE", help="text or JSONL file for the 'nelbo' task")
    s.add_argument("--nelbo-field", default="text", metavar="NAME", help="JSONL field of the documents (default: text)")
    s.add_argument(
        "--nelbo-split",
        default="auto",
        choices=("auto", "jsonl", "none", "paragraphs", "lines"),
        help="how a text file splits into documents (default: auto = the whole file, or JSONL)",
    )
    p.set_defaults(func=cmd_eval)
    return p


def _add_sharding_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--resume",
        action="store_true",
        help="offline: keep the finished shards of an interrupted run in --output-dir/shards (same "
        "settings) and compute only the rest, with any number of processes",
    )
    p.add_argument(
        "--shard-size",
        type=positive_int,
        default=DEFAULT_SHARD_SIZE,
        metavar="N",
        help="offline, with --output-dir: each process writes a shard file after every N items it "
        f"scores, the unit --resume keeps (default: {DEFAULT_SHARD_SIZE})",
    )


def _shard_dir(args: argparse.Namespace) -> Path | None:
    if args.resume and not args.output_dir:
        raise CLIError("argument --resume: needs --output-dir (the finished shards are kept there)")
    return Path(args.output_dir) / "shards" if args.output_dir else None


def _log(args):
    return None if args.no_progress else note


def cmd_eval(args: argparse.Namespace) -> int:
    from .tasks import default_data_dir, resolve_task_names

    if args.offline is not None:
        try:
            names = resolve_task_names(args.offline, chat=args.chat)
        except ValueError as e:
            raise CLIError(f"argument --offline: {e}" + (" (--chat)" if args.chat else "")) from None
        if "nelbo" in names and not args.nelbo_file:
            raise CLIError("argument --offline: task 'nelbo' needs --nelbo-file FILE")
        data_dir = None
        if any(n != "nelbo" for n in names):
            data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
            if data_dir is None or not data_dir.is_dir():
                why = (
                    "no benchmark folder found (set --data-dir or $SUMI_EVAL_DATA_DIR)"
                    if data_dir is None
                    else f"{str(data_dir)!r} is not a folder"
                )
                raise CLIError(f"argument --data-dir: {why}")
        if args.nelbo_file and not Path(args.nelbo_file).is_file():
            raise CLIError(f"argument --nelbo-file: {args.nelbo_file!r} is not a file")
    else:
        try:
            import lm_eval  # noqa: F401
        except ImportError:
            raise CLIError("--tasks needs lm-evaluation-harness: pip install 'sumi[eval]' (lm-eval==0.4.13)") from None
        names = [t.strip() for t in args.tasks.split(",") if t.strip()]
        data_dir = None
    if args.canvas_lengths and not args.output_dir:
        args.output_dir = "sumi-eval-results"
        note(f"note: the canvas-length study writes its table and plot to {args.output_dir}/")

    shard_dir = _shard_dir(args) if args.offline is not None else None
    if args.resume and args.offline is None:
        raise CLIError("argument --resume: applies to --offline tasks")
    with launch_peers() as peers:
        evaluator = _load_evaluator(args, peers)
        if args.chat:
            _check_chat(evaluator, args, peers)
        config = dict(
            model=args.model,
            dtype=args.dtype,
            device=str(evaluator.device),
            backend="offline" if args.offline is not None else "lm-eval",
            command=" ".join(sys.argv),
            processes=peers.world_size,
        )
        log = _log(args)
        if args.offline is not None:
            results = _run_offline(evaluator, names, data_dir, args, config, log, peers, shard_dir)
        else:
            if args.limit_gen is not None:
                raise CLIError("--limit-gen applies to --offline tasks; with --tasks use --limit")
            results = _run_lm_eval(evaluator, names, args, config, log, peers)
        if results is not None:  # rank 0 of a launched run, or the only process
            _finish(results, args)
    return 0


def _check_chat(evaluator, args: argparse.Namespace, peers) -> None:
    """--chat needs a tokenizer; one without a chat template renders with sumi's default (a note)."""
    if evaluator.chat_template_source is None:
        raise CLIError(
            f"argument --chat: {args.model!r} has no tokenizer, so no chat template to render the prompts with"
        )
    if evaluator.chat_template_source == "default" and peers.is_main:
        note(
            f"note: {args.model!r} has no chat template: --chat renders the prompts with sumi's default "
            "(sumi.chat_template.DEFAULT_CHAT_TEMPLATE), the one `sumi chat` uses"
        )


def _run_offline(evaluator, names, data_dir, args, config, log, peers, shard_dir) -> dict | None:
    from .runner import canvas_study, data_file_hashes, run_offline

    kwargs = dict(
        limit=args.limit,
        limit_gen=args.limit_gen,
        num_fewshot=args.num_fewshot,
        max_gen_toks=args.max_gen_toks,
        allow_code_execution=args.allow_code_execution,
        code_timeout=args.code_timeout,
        code_memory_mb=args.code_memory_mb,
        nelbo_file=args.nelbo_file,
        nelbo_split=args.nelbo_split,
        nelbo_field=args.nelbo_field,
        progress=not args.no_progress,
        peers=peers,
        shard_dir=shard_dir,
        resume=args.resume,
        shard_size=args.shard_size,
        chat=args.chat,
    )
    try:
        if not args.canvas_lengths:
            return run_offline(evaluator, names, data_dir, config=config, log=log, **kwargs)
        study = canvas_study(evaluator, names, args.canvas_lengths, data_dir, log=log, **kwargs)
        results = run_offline(evaluator, [], data_dir, config=config, **kwargs)
    except (KeyError, ValueError) as e:
        raise CLIError(str(e)) from None
    if results is None:
        return None
    results["config"]["tasks"] = names
    results["data_files"] = data_file_hashes(names, data_dir) if data_dir else {}
    results["canvas_study"] = study
    return results


def _run_lm_eval(evaluator, names, args, config, log, peers) -> dict | None:
    """lm-eval tasks through `simple_evaluate`, converted to sumi's results format. In a launched run
    lm-eval splits the documents by `SumiLM.rank` / `world_size` and gathers on rank 0 (the others
    return None)."""
    import lm_eval

    from .harness import SumiLM, task_manager_for
    from .runner import RESULTS_FORMAT, environment_versions

    task_manager = task_manager_for(names, args.include_path)
    lm = SumiLM(evaluator, peers=peers, chat=args.chat)
    log = log if peers.is_main else None

    def one_run() -> dict:
        start = time.perf_counter()
        out = lm_eval.simple_evaluate(
            model=lm,
            tasks=names,
            num_fewshot=args.num_fewshot,
            limit=args.limit,
            task_manager=task_manager,
            log_samples=False,
            confirm_run_unsafe_code=args.allow_code_execution,
            apply_chat_template=args.chat,  # few-shot exemplars as turns: lm-eval's fewshot_as_multiturn
        )
        seconds = time.perf_counter() - start
        if out is None:
            if peers.is_main:
                raise CLIError("lm-eval returned no results")
            return {}
        return _convert_lm_eval(out, seconds)

    if args.canvas_lengths:
        old = evaluator.options["canvas_length"]
        study: dict[str, Any] = dict(canvas_lengths=list(args.canvas_lengths), effective={}, tasks={})
        try:
            for L in args.canvas_lengths:
                evaluator.set(canvas_length=L)
                study["effective"][str(L)] = evaluator.max_length
                if log:
                    log(f"canvas {L}: running {', '.join(names)} ...")
                for name, r in one_run().items():
                    study["tasks"].setdefault(name, {})[str(L)] = r
        finally:
            evaluator.set(canvas_length=old)
        results: dict = {}
    else:
        study, results = None, one_run()
    if not peers.is_main:
        return None
    import datetime as _dt

    out = dict(
        format=RESULTS_FORMAT,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        config=dict(
            config,
            tasks=names,
            limit=args.limit,
            num_fewshot=args.num_fewshot,
            include_path=args.include_path,
            chat=args.chat,
        ),
        model=evaluator.info(),
        versions=environment_versions(),
        data_files={},
        results=results,
    )
    if study is not None:
        out["canvas_study"] = study
    return out


def _convert_lm_eval(out: dict, seconds: float) -> dict:
    results = {}
    total_items = sum(int(v.get("effective", 0)) for v in out.get("n-samples", {}).values()) or 1
    for task, metrics in out.get("results", {}).items():
        clean: dict[str, Any] = {}
        for key, value in metrics.items():
            if "," not in key or not isinstance(value, (int, float)):  # "metric,filter" entries only
                continue
            name, _, _filter = key.partition(",")
            clean[name if _filter in ("none", "") else f"{name}[{_filter}]"] = value
        values = [k for k in clean if "_stderr" not in k]
        n = int(out.get("n-samples", {}).get(task, {}).get("effective", metrics.get("sample_len", 0)))
        results[task] = dict(
            metrics=clean,
            primary=values[0] if values else None,
            n=n,
            seconds=seconds * n / total_items,
            seconds_per_item=seconds / total_items,
            settings=dict(num_fewshot=out.get("n-shot", {}).get(task)),
            samples=[],
        )
    return results


def _finish(results: dict, args: argparse.Namespace) -> None:
    from .runner import canvas_study_markdown, plot_canvas_study, results_markdown, write_results

    md = results_markdown(results) if results.get("results") else ""
    if results.get("canvas_study"):
        md += ("\n" if md else "") + canvas_study_markdown(results["canvas_study"])
    if args.output_dir:
        paths = write_results(results, args.output_dir, log_samples=args.log_samples)
        if results.get("canvas_study"):
            png = plot_canvas_study(
                results["canvas_study"],
                Path(args.output_dir) / "canvas_length.png",
                title=f"{args.model}: metric vs canvas length",
            )
            note(f"wrote {png}")
        note(f"wrote {paths['json']} and {paths['md']}")
    sys.stdout.write(md)
    sys.stdout.flush()


# ----------------------------------------------------------------------------- sumi perplexity
def add_perplexity_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "perplexity",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=PPL_EPILOG,
        help="NELBO perplexity of a text or JSONL file (nats/token, bits/byte, 95%% CI)",
        description="Score a text or JSONL file with the NELBO (spec §4): nats/token, bits/byte "
        "and perplexity,\nwith a bootstrap 95% confidence interval.",
    )
    p.add_argument("file", metavar="FILE", help="a text file (the whole file is one document) or JSONL (one per line)")
    p.add_argument("--field", default="text", metavar="NAME", help="JSONL field holding the text (default: text)")
    p.add_argument(
        "--split",
        default="auto",
        choices=("auto", "jsonl", "none", "paragraphs", "lines"),
        help="how the file splits into documents (default: auto)",
    )
    p.add_argument("--limit", type=positive_int, metavar="N", help="score at most N documents (spread evenly)")
    _add_model_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--output", metavar="FILE", help="also write the JSON report to FILE")
    p.set_defaults(func=cmd_perplexity)
    return p


def cmd_perplexity(args: argparse.Namespace) -> int:
    from .perplexity import perplexity_report, read_documents
    from .runner import environment_versions
    from .tasks import select

    if not Path(args.file).is_file():
        raise CLIError(f"argument FILE: {args.file!r} is not a file")
    try:
        docs = select(read_documents(args.file, field=args.field, split=args.split), args.limit)
    except (ValueError, UnicodeDecodeError) as e:
        raise CLIError(f"argument FILE: {e}") from None
    with launch_peers() as peers:
        evaluator = _load_evaluator(args, peers)
        report = perplexity_report(evaluator, docs, seed=evaluator.options["seed"], peers=peers)
    if report is None:  # a rank other than 0 of a launched run: rank 0 reports
        return 0
    report = dict(
        file=args.file,
        model=args.model,
        canvas_length=evaluator.max_length,
        num_samples=evaluator.options["num_samples"],
        nelbo_method=evaluator.options["nelbo_method"],
        seed=evaluator.options["seed"],
        **report,
        versions=environment_versions(),
    )
    if args.output:
        write_text_atomic(args.output, json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    r = report
    lo, hi = r["nats_per_token_ci95"]
    blo, bhi = r["bits_per_byte_ci95"]
    plo, phi = r["perplexity_ci95"]
    print(
        "\n".join(
            [
                f"file        {r['file']}",
                f"model       {r['model']}",
                f"documents   {r['num_documents']} ({r['num_windows']} windows of <= {r['canvas_length']} tokens, "
                f"{r['num_tokens']} tokens, {r['num_bytes']} bytes)",
                f"estimator   {r['num_samples']} t samples per window ({r['nelbo_method']}), seed {r['seed']}",
                f"NELBO       {r['nats_per_token']:.4f} nats/token   95% CI [{lo:.4f}, {hi:.4f}] "
                f"(bootstrap over {r['num_units']} {r['ci_units']})",
                f"bits/byte   {r['bits_per_byte']:.4f}   95% CI [{blo:.4f}, {bhi:.4f}]",
                f"perplexity  {r['perplexity']:.3f} (an upper bound)   95% CI [{plo:.3f}, {phi:.3f}]",
                f"time        {r['seconds']:.2f} s"
                + (f" ({r['tokens_per_second']:.0f} tokens/s)" if r["tokens_per_second"] else ""),
            ]
        )
    )
    return 0


def add_parser(subparsers) -> None:
    """Add `sumi eval` and `sumi perplexity` to the `sumi` command's subparsers."""
    add_eval_parser(subparsers)
    add_perplexity_parser(subparsers)


__all__ = ["add_parser", "cmd_eval", "cmd_perplexity"]
