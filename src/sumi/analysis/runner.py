"""`run_analysis`: generate (or load) trajectories, compute the metrics, write JSON + PNGs + a
markdown report. The engine behind `sumi analyze`."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..atomic import write_text_atomic
from .budget import revision_budget_study
from .metrics import _clean, analyze_trajectory
from .trajectory_io import TrajectoryRecord, concat_records, load_trajectory, record_generation, save_trajectory

logger = logging.getLogger(__name__)

DEFAULT_PROMPTS = ("The capital of France is",)


def _pad_id(cfg) -> int:
    if cfg.pad_token_id is not None:
        return cfg.pad_token_id
    return cfg.eos_token_id if cfg.eos_token_id is not None else 0


def text_tokenizer(model, tokenizer=None):
    """The model's tokenizer, or the byte-level fallback for tokenizer-less models (vocab >= 256)."""
    if tokenizer is not None:
        return tokenizer
    from ..tokenization import ByteTokenizer

    cfg = model.config
    if cfg.vocab_size < 256:
        return None
    return ByteTokenizer(max(cfg.vocab_size, 256), cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id)


def encode_prompts(
    model, prompts: Sequence[str | Sequence[int]], tokenizer=None, *, add_bos: bool = True, num_samples: int = 1
) -> tuple[torch.Tensor, torch.Tensor, list[list[int]]]:
    """Text prompts (with the tokenizer or the byte fallback) or id lists -> a left-padded batch.

    Each prompt starts with BOS (`add_bos`) and appears `num_samples` times in a row.
    Returns `(input_ids [B, P], attention_mask [B, P], rows)`.
    """
    cfg = model.config
    tok = text_tokenizer(model, tokenizer)
    rows: list[list[int]] = []
    for p in prompts:
        if isinstance(p, str):
            if tok is None:
                raise ValueError(
                    f"the model has no tokenizer and its vocabulary ({cfg.vocab_size} ids) is too small "
                    "for the byte-level fallback: pass token ids"
                )
            ids = list(tok(p, add_special_tokens=False).input_ids) if callable(tok) else list(tok.encode(p))
        else:
            ids = [int(i) for i in p]
        bad = [i for i in ids if not 0 <= i < cfg.vocab_size]
        if bad:
            raise ValueError(f"prompt {p!r} has token id {bad[0]} outside the vocabulary [0, {cfg.vocab_size})")
        row = ([cfg.bos_token_id] if add_bos and cfg.bos_token_id is not None else []) + ids
        rows += [row] * num_samples
    if not rows:
        rows = [[cfg.bos_token_id] if cfg.bos_token_id is not None else []] * num_samples
    P = max(len(r) for r in rows)
    pad = _pad_id(cfg)
    input_ids = torch.tensor([[pad] * (P - len(r)) + r for r in rows], dtype=torch.long).reshape(len(rows), P)
    mask = torch.tensor([[0] * (P - len(r)) + [1] * len(r) for r in rows], dtype=torch.long).reshape(len(rows), P)
    return input_ids, mask, rows


def _as_record(item) -> TrajectoryRecord:
    if isinstance(item, TrajectoryRecord):
        return item
    if isinstance(item, (str, os.PathLike)):
        return load_trajectory(item)
    if hasattr(item, "changes") and hasattr(item, "initial"):
        return TrajectoryRecord(item, {})
    raise TypeError(f"expected a trajectory file, a TrajectoryRecord or a Trajectory, got {type(item).__name__}")


def sharded_recorder(peers):
    """A `record_generation` for a data-parallel run: each rank records its contiguous block of the
    batch's rows (the same padded prompt width; seeds are per row), rank 0 gets the rows of all
    blocks as one record, the other ranks `(None, None)`."""
    from ..distributed_inference import shard_bounds

    def record(model, input_ids, attention_mask, *, seed, **kwargs):
        a, b = shard_bounds(input_ids.shape[0], peers.rank, peers.world_size)
        part = None
        if b > a:
            rows_seed = seed[a:b] if isinstance(seed, list) else seed
            _, rec = record_generation(model, input_ids[a:b], attention_mask[a:b], seed=rows_seed, **kwargs)
            part = (rec.trajectory, rec.metadata)
        parts = peers.gather(part)
        if parts is None:
            return None, None
        return None, concat_records([TrajectoryRecord(t, m) for t, m in (p for p in parts if p is not None)])

    return record


def run_analysis(
    out_dir: str | os.PathLike,
    *,
    trajectories: Sequence[Any] | None = None,
    model=None,
    tokenizer=None,
    model_name: str | None = None,
    prompts: Sequence[str | Sequence[int]] | None = None,
    num_samples: int = 1,
    seed: int = 0,
    budgets: Sequence[float] = (1, 2, 4),
    region: str = "generated",
    judge=None,
    nelbo_samples: int = 16,
    add_bos: bool = True,
    save_trajectories: bool = True,
    plots: bool = True,
    device: str | torch.device | None = None,
    dtype: str | None = None,
    peers=None,
    **generate_kwargs,
) -> dict[str, Any] | None:
    """Analyse how a uniform diffusion model writes; writes `metrics.json`, PNG plots and `report.md`
    under `out_dir` and returns the metrics dict.

    Either `trajectories` (trajectory files, `TrajectoryRecord`s or `Trajectory`s) are analysed as
    they are, or a run: `model` (a loaded model, else `model_name` / `sumi.loading.DEFAULT_MODEL` is
    loaded) generates after `prompts` (text or id lists; each `num_samples` times, row r seeded
    `seed + r`) with `generate_kwargs` (max_new_tokens, num_denoising_steps, sampler, temperature,
    ...), and the revision-budget study runs the sampler at `budgets` x its nominal steps. The main
    analysis is the run with the largest budget, its revision window being the steps after the
    nominal N. `judge`: an `ARJudge` or a path to a transformers causal-LM folder (None = skip).

    `peers` (`sumi.distributed_inference.Peers` of a launched run): the rows are split across the
    ranks (`sharded_recorder`); rank 0 analyses and writes, the others return None.
    """
    parallel = peers is not None and peers.world_size > 1
    if parallel and not peers.is_main:
        judge = None  # only rank 0 measures quality
    out = Path(out_dir)
    if not parallel or peers.is_main:
        out.mkdir(parents=True, exist_ok=True)
    from .. import __version__

    result: dict[str, Any] = dict(sumi_version=__version__, region=region, analyses=[], budget_study=None, files={})
    study = None
    if trajectories is not None:
        records = [_as_record(t) for t in trajectories]
        if not records:
            raise ValueError("no trajectories to analyse")
        result["kind"] = "files"
        items, seen = [], set()
        for i, rec in enumerate(records):
            label = Path(rec.path).stem if rec.path else f"trajectory{i}"
            if label in seen:
                label = f"{label}-{i}"
            seen.add(label)
            w = rec.metadata.get("nominal_steps")
            window = int(w) if w is not None and int(w) < rec.trajectory.num_steps else None
            items.append((label, rec, window))
    else:
        if model is None:
            from ..loading import DEFAULT_MODEL, load

            model_name = model_name or DEFAULT_MODEL
            model, loaded_tok = load(model_name, dtype=dtype, device=device)
            tokenizer = tokenizer if tokenizer is not None else loaded_tok
        tok = text_tokenizer(model, tokenizer)
        if isinstance(judge, (str, os.PathLike)):
            from .quality import ARJudge

            judge = ARJudge(judge, device=next(model.parameters()).device)
        prompts = list(prompts) if prompts is not None else list(DEFAULT_PROMPTS)
        input_ids, attention_mask, rows = encode_prompts(model, prompts, tok, add_bos=add_bos, num_samples=num_samples)
        generate_kwargs.setdefault("max_new_tokens", 64)
        seeds = [int(seed) + r for r in range(len(rows))]
        study, records_by_label = revision_budget_study(
            model,
            input_ids,
            attention_mask,
            tokenizer=tok,
            model_name=model_name,
            budgets=budgets,
            region=region,
            nelbo_samples=nelbo_samples,
            judge=judge,
            seed=seeds if len(seeds) > 1 else seeds[0],
            recorder=sharded_recorder(peers) if parallel else None,
            **generate_kwargs,
        )
        if study is None:  # a rank other than 0: its rows are with rank 0
            return None
        result["kind"] = "run"
        result["budget_study"] = study
        N = study["nominal_steps"]
        label = list(records_by_label)[-1]
        rec = records_by_label[label]
        items = [(label, rec, N if rec.trajectory.num_steps > N else None)]
        if save_trajectories:
            tdir = out / "trajectories"
            result["files"]["trajectories"] = [
                str(save_trajectory(tdir / f"{lab}.pt", r.trajectory, r.metadata))
                for lab, r in records_by_label.items()
            ]
            for lab, r in records_by_label.items():
                r.path = str(tdir / f"{lab}.pt")
    many = len(items) > 1
    for label, rec, window in items:
        analysis = analyze_trajectory(rec.trajectory, rec.metadata, region=region, window_start=window)
        analysis["label"] = label
        analysis["trajectory_file"] = rec.path
        if plots:
            analysis["plots"] = write_plots(
                analysis, out, study=study if not many else None, prefix=f"{label}." if many else ""
            )
        result["analyses"].append(analysis)
    result = _clean(result)
    metrics_path = out / "metrics.json"
    result["files"]["metrics"] = str(metrics_path)
    result["files"]["report"] = str(out / "report.md")
    write_text_atomic(metrics_path, json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    write_text_atomic(out / "report.md", render_report(result, out))
    return result


def write_plots(analysis, out, *, study=None, prefix=""):
    from .plots import write_plots as _write

    return _write(analysis, out, study=study, prefix=prefix)


# ----------------------------------------------------------------------------- report
def _p(x, digits: int = 3) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}g} %"


def _f(x, digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:.{digits}g}"


def render_report(result: dict, out_dir: str | Path | None = None) -> str:
    """A short markdown report of `run_analysis`'s result (plots linked relative to `out_dir`)."""
    lines = ["# How the model wrote: trajectory analysis", ""]
    first = result["analyses"][0] if result["analyses"] else {}
    meta = first.get("metadata") or {}
    lines += [
        f"- sumi {result.get('sumi_version')}; model `{meta.get('model')}`; sampler `{meta.get('sampler')}`"
        f" (schedule {meta.get('schedule')}, temperature {meta.get('temperature')}, tokens/step "
        f"{meta.get('tokens_per_step')}); seed {meta.get('seed')}",
        f"- analysed region: **{result.get('region')}** (see docs/analysis.md for every definition)",
        "",
    ]
    if meta.get("model") and str(meta.get("model")).startswith("sumi-") and "/" not in str(meta.get("model")):
        lines += [
            "> Note: a preset name means RANDOM weights: these numbers describe an untrained network and "
            "only show that the pipeline runs.",
            "",
        ]
    study = result.get("budget_study")
    if study:
        lines += [
            "## Revision budget",
            "",
            f"Sampler `{study['sampler']}`, nominal {study['nominal_steps']} steps; {study['mode']}. "
            "Quality: the model's own NELBO of the returned text (nats/token, lower = better)"
            + (f" and the perplexity under the judge `{study['judge']}`" if study.get("judge") else "")
            + ".",
            "",
        ]
        lines += [f"- {r['claim']}" for r in study["runs"]]
        lines += [
            "",
            "| steps | x nominal | revision steps overwriting | net change (window) | overwrites/position "
            "(window) | round trips (window) | whole-run net change | self-NELBO | judge PPL |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in study["runs"]:
            w = r.get("window") or {}
            q = r.get("quality") or {}
            lines.append(
                f"| {r['steps']} | {r['multiplier']:.3g} | {_p(w.get('edit_step_share'))} | "
                f"{_p(w.get('net_change'))} | {_f(w.get('gross_change'))} | "
                f"{(w.get('round_trips') or {}).get('count', 'n/a')} | {_p(r['whole_run']['net_change'])} | "
                f"{_f(q.get('self_nelbo'))} | {_f(q.get('judge_perplexity'))} |"
            )
        check = study.get("ancestral_constant_level")
        if check:
            lines += [
                "",
                f"Ancestral extra steps at the final noise level (log-SNR {check['log_snr']}) are no-ops: "
                f"{check['steps']} such steps changed {check['tokens_changed']} of "
                f"{check['free_positions']} free tokens, and the posterior deviates from a point mass on "
                f"the current token by at most {check['posterior_max_deviation_from_point_mass']:.3g} "
                f"(a_t / a_s = 1 keeps every token). Extra ancestral budget therefore means more steps in "
                "total, as above.",
            ]
        lines.append("")
    for a in result["analyses"]:
        s = a["summary"]
        rt = s["round_trips"]
        o = s["order"]
        lines += [
            f"## Trajectory `{a.get('label')}`",
            "",
            f"{s['num_rows']} row(s), {s['num_positions']} analysed positions, {s['num_steps']} steps.",
            "",
            f"- {_p(s['edit_step_share'])} of (row, step) pairs overwrote at least one token; mean overwrite "
            f"rate {_p(s['overwrite_rate_mean'])} of positions per step; {_f(s['gross_change'])} overwrites per "
            f"position in all; net change from the random canvas {_p(s['net_change'])}.",
            f"- round trips: {rt['count']} ({_f(rt['rate_per_position'])} per position, "
            f"{_p(rt['share_of_changes'])} of all changes); A->B->A {rt['aba']}, A->B->C->A {rt['abca']}, "
            f"longer {rt['longer_cycles']}; mean length {_f(rt['mean_length'])} steps.",
            f"- commitment: mean commit step {_f(s['commit']['mean_step'])} of {s['num_steps']}; never changed "
            f"{_p(s['commit']['never_changed_share'])}; Spearman(commit step, position) {_f(o.get('position'), 3)}, "
            f"(, distance from prompt) {_f(o.get('distance_from_prompt'), 3)}, (, distance from anchors) "
            f"{_f(o.get('distance_from_anchors'), 3)}, (, distance from context) "
            f"{_f(o.get('distance_from_context'), 3)}.",
        ]
        if s.get("confidence"):
            lines.append(
                f"- denoiser: mean top-1 probability {_f(s['confidence']['first'], 3)} at the first step -> "
                f"{_f(s['confidence']['last'], 3)} at the last; entropy {_f(s['entropy']['first'], 3)} -> "
                f"{_f(s['entropy']['last'], 3)} nats."
            )
        w = s.get("window")
        if w:
            lines.append(
                f"- revision window (steps {w['start'] + 1}..{w['end']}): {_p(w['edit_step_share'])} of edit "
                f"steps overwrote tokens, net change {_p(w['net_change'])}, {w['round_trips']['count']} "
                "round trips."
            )
        texts = (a.get("metadata") or {}).get("completion_texts")
        if texts:
            lines += ["", "Final text (row 0): `" + " ".join(texts[0].split())[:200].replace("`", "'") + "`"]
        if a.get("plots"):
            lines += [""] + [f"![{name}]({Path(p).name})" for name, p in a["plots"].items()]
        lines.append("")
    return "\n".join(lines)


__all__ = ["DEFAULT_PROMPTS", "text_tokenizer", "encode_prompts", "sharded_recorder", "run_analysis", "render_report"]
