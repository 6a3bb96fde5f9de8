"""The revision-budget study: give the sampler more denoising steps than its nominal schedule and
measure how much of the extra work changes the text, and whether quality moves.

* greedy / adaptive: a step depends only on the canvas (and, for adaptive at T > 0, on the next
  draws of the same generator), never on the total number of steps. So one run of the largest
  budget B_max contains every smaller budget b as its first b steps (`truncate`), and the
  *revision window* of budget b is exactly "the b - N extra steps after the nominal canvas z^(N)".
* ancestral: the schedule is spread over all the steps, so each budget b is its own run of b
  steps (same seed); its revision window is its last b - N steps (the low-noise end). Extra steps
  *at the final noise level* would do nothing: at a constant log-SNR, `a_ts = a_t / a_s = 1`, the
  posterior is `p(v) ∝ q_s(v) 1[v = z_t]`, a point mass on the current token
  (`ancestral_constant_level_check` verifies this on the model).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..diffusion import MAX_LOG_SNR
from ..generation_sumi import dense_posterior, trim_sequences
from .metrics import analyze_trajectory, truncate
from .quality import self_nelbo
from .trajectory_io import TrajectoryRecord, record_generation

PREFIX_SAMPLERS = ("greedy", "adaptive")


def budget_steps(nominal: int, multipliers: Sequence[float]) -> list[int]:
    """Total steps of each budget, `max(1, round(m * nominal))`, sorted, without duplicates."""
    if not multipliers:
        raise ValueError("give at least one budget multiplier")
    for m in multipliers:
        if not m > 0:
            raise ValueError(f"budget multipliers must be > 0, got {m!r}")
    return sorted({max(1, int(round(float(m) * nominal))) for m in multipliers})


def _completions_at(record: TrajectoryRecord, num_steps: int) -> list[list[int]]:
    """The completion ids the run would have returned after `num_steps` steps."""
    meta = record.metadata
    canvas = record.trajectory.canvas(num_steps - 1)
    P = int(meta["prompt_len"])
    pad = 0
    seqs, lengths = trim_sequences(
        canvas, P, meta["budgets"], meta.get("eos_token_id"), pad, bool(meta.get("trim_at_eos", True))
    )
    return [seqs[b, P : int(lengths[b])].tolist() for b in range(seqs.shape[0])]


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.3g} %"


def claim(run: dict) -> str:
    """The paper's sentence for one budget: "X % of edit steps overwrote tokens, net change Y %,
    quality Z"."""
    q = run.get("quality") or {}
    z = q.get("self_nelbo")
    quality = "n/a" if z is None else f"self-NELBO {z:.4g} nats/token"
    if q.get("judge_perplexity") is not None:
        quality += f", judge PPL {q['judge_perplexity']:.4g}"
    head = f"budget {run['steps']} steps ({run['multiplier']:.3g}x nominal)"
    w = run.get("window")
    if w:
        return (
            f"{head}: {_pct(w['edit_step_share'])} of the {w['steps']} revision steps overwrote tokens "
            f"({w['gross_change']:.3g} overwrites per position), net change {_pct(w['net_change'])}, "
            f"{w['round_trips']['count']} round trips; quality {quality}"
        )
    s = run["whole_run"]
    return (
        f"{head}: {_pct(s['edit_step_share'])} of the steps overwrote tokens, net change from the random canvas "
        f"{_pct(s['net_change'])}; quality {quality}"
    )


@torch.no_grad()
def ancestral_constant_level_check(
    model,
    input_ids,
    attention_mask=None,
    *,
    log_snr: float = MAX_LOG_SNR,
    steps: int = 4,
    canvas: torch.Tensor | None = None,
    max_positions: int = 64,
    **generate_kwargs,
) -> dict[str, Any]:
    """Check that ancestral steps at a constant log-SNR keep every token.

    1. `generate(sampler="ancestral", min_log_snr = max_log_snr = log_snr, num_denoising_steps=steps)`:
       counts the tokens its steps changed (expected 0);
    2. on `canvas` (e.g. a finished run's final canvas; default: that run's initial canvas), the
       dense posterior `p(z_s | z_t)` with lambda_s = lambda_t = log_snr at up to `max_positions`
       free positions: its largest distance from the point mass on z_t (expected 0).
    """
    kwargs = {
        k: v
        for k, v in generate_kwargs.items()
        if k not in ("sampler", "min_log_snr", "max_log_snr", "num_denoising_steps", "schedule")
    }
    out = model.generate(
        torch.as_tensor(input_ids).to(next(model.parameters()).device),
        attention_mask=None
        if attention_mask is None
        else torch.as_tensor(attention_mask).to(next(model.parameters()).device),
        sampler="ancestral",
        min_log_snr=log_snr,
        max_log_snr=log_snr,
        num_denoising_steps=steps,
        record_trajectory=True,
        **kwargs,
    )
    traj = out.trajectory
    changed = sum(int(torch.as_tensor(r).numel()) for r, _, _ in traj.changes)
    z = (traj.initial if canvas is None else torch.as_tensor(canvas).cpu()).to(next(model.parameters()).device)
    logits = model(input_ids=z).logits[..., : model.config.vocab_size].float()
    rows, cols = traj.free.nonzero(as_tuple=True)
    rows, cols = rows[:max_positions].to(z.device), cols[:max_positions].to(z.device)
    x_hat = torch.softmax(logits[rows, cols], -1)
    zt = z[rows, cols]
    p = dense_posterior(x_hat, zt, log_snr, log_snr)
    point = torch.nn.functional.one_hot(zt, p.shape[-1]).to(p.dtype)
    deviation = float((p - point).abs().max()) if rows.numel() else 0.0
    return dict(
        log_snr=log_snr,
        steps=steps,
        free_positions=int(traj.free.sum()),
        tokens_changed=changed,
        posterior_positions_checked=int(rows.numel()),
        posterior_max_deviation_from_point_mass=deviation,
        keeps_every_token=changed == 0 and deviation < 1e-6,
    )


def revision_budget_study(
    model,
    input_ids=None,
    attention_mask=None,
    *,
    tokenizer=None,
    model_name: str | None = None,
    budgets: Sequence[float] = (1, 2, 4),
    region: str = "generated",
    nelbo_samples: int = 16,
    nelbo_seed: int = 0,
    judge=None,
    check_ancestral: bool = True,
    recorder=None,
    **generate_kwargs,
) -> tuple[dict[str, Any], dict[str, TrajectoryRecord]] | tuple[None, None]:
    """Run the sampler with `budgets` x its nominal steps and measure, per budget b (N = nominal):
    the whole-run metrics, the revision-window `(N, b]` metrics (b > N), and the quality of the text
    the run returns (self-NELBO; judge perplexity with an `ARJudge`).

    `generate_kwargs` are `generate()` options (max_new_tokens, num_denoising_steps = N, sampler, seed,
    ...); early stopping is disabled. Returns `(study, records)`: the JSON-ready study (one entry per
    budget under "runs", each with its `claim` sentence) and the recorded trajectories by label.

    `recorder`: how a run is recorded (default `record_generation`); a data-parallel one
    (`sumi.analysis.runner.sharded_recorder`) returns `(None, None)` on the ranks other than 0,
    which then take part in every run and return `(None, None)`.
    """
    recorder = recorder or record_generation
    if input_ids is None:
        input_ids = torch.tensor([[model.config.bos_token_id]])
    generate_kwargs = dict(generate_kwargs, early_stop_patience=0, stop_on_cycle=False)
    generate_kwargs.pop("record_trajectory", None)
    explicit = {k: v for k, v in generate_kwargs.items() if v is not None}
    options = model.resolve_generation_options(explicit, generate_kwargs.get("generation_config"))
    N = int(options["num_denoising_steps"])
    sampler = options["sampler"]
    steps = budget_steps(N, budgets)
    records: dict[str, TrajectoryRecord] = {}
    runs: list[dict[str, Any]] = []
    prefix = sampler in PREFIX_SAMPLERS

    def evaluate(record: TrajectoryRecord, b: int, traj) -> dict[str, Any]:
        meta = dict(record.metadata)
        completions = _completions_at(record, b) if prefix else meta["completion_ids"]
        meta["completion_ids"] = completions
        analysis = analyze_trajectory(traj, meta, region=region, window_start=N if b > N else None)
        s = analysis["summary"]
        quality = dict(
            self_nelbo_detail=self_nelbo(
                model, meta["prompt_ids"], completions, num_samples=nelbo_samples, seed=nelbo_seed
            ),
            mean_completion_tokens=sum(map(len, completions)) / max(len(completions), 1),
        )
        quality["self_nelbo"] = quality["self_nelbo_detail"]["mean"]
        if judge is not None and tokenizer is not None:
            decode = lambda ids: tokenizer.decode(ids, skip_special_tokens=True)
            prompts = [decode(p) for p in meta["prompt_ids"]]
            texts = [decode(c) for c in completions]
            quality["judge"] = judge.perplexity(prompts, texts)
            quality["judge_perplexity"] = quality["judge"]["perplexity"]
        run = dict(
            steps=b,
            multiplier=b / N,
            trajectory=None,
            whole_run={
                k: s[k]
                for k in (
                    "edit_step_share",
                    "overwrite_rate_mean",
                    "gross_change",
                    "net_change",
                    "round_trips",
                    "commit",
                    "order",
                )
            },
            window=s.get("window"),
            quality=quality,
            completion_texts=[tokenizer.decode(c, skip_special_tokens=True) for c in completions]
            if tokenizer is not None
            else None,
        )
        run["claim"] = claim(run)
        return run

    if prefix:
        label = f"{sampler}-{steps[-1]}steps"
        _, record = recorder(
            model,
            input_ids,
            attention_mask,
            tokenizer=tokenizer,
            model_name=model_name,
            num_denoising_steps=steps[-1],
            extra_metadata=dict(nominal_steps=N, budget_steps=steps, label=label),
            **{k: v for k, v in generate_kwargs.items() if k != "num_denoising_steps"},
        )
        if record is None:
            return None, None
        records[label] = record
        for b in steps:
            run = evaluate(record, b, truncate(record.trajectory, b))
            run["trajectory"] = label
            runs.append(run)
    else:
        for b in steps:
            label = f"{sampler}-{b}steps"
            _, record = recorder(
                model,
                input_ids,
                attention_mask,
                tokenizer=tokenizer,
                model_name=model_name,
                num_denoising_steps=b,
                extra_metadata=dict(nominal_steps=N, budget_steps=steps, label=label),
                **{k: v for k, v in generate_kwargs.items() if k != "num_denoising_steps"},
            )
            if record is None:
                continue
            records[label] = record
            run = evaluate(record, b, record.trajectory)
            run["trajectory"] = label
            runs.append(run)
    if not records:
        return None, None
    study: dict[str, Any] = dict(
        sampler=sampler,
        nominal_steps=N,
        budget_steps=steps,
        mode="prefix of one run (a step does not depend on the total)"
        if prefix
        else "one run per budget (the schedule spans all steps)",
        region=region,
        nelbo_samples=nelbo_samples,
        judge=getattr(judge, "path", None),
        runs=runs,
    )
    if sampler == "ancestral" and check_ancestral:
        nominal = records[f"{sampler}-{steps[0]}steps"] if steps[0] == N else next(iter(records.values()))
        final = nominal.trajectory.canvas(nominal.trajectory.num_steps - 1)
        study["ancestral_constant_level"] = ancestral_constant_level_check(
            model,
            input_ids,
            attention_mask,
            log_snr=float(options["max_log_snr"]),
            steps=4,
            canvas=final,
            **{k: v for k, v in generate_kwargs.items() if k not in ("generation_config",)},
        )
    return study, records


__all__ = ["PREFIX_SAMPLERS", "budget_steps", "claim", "ancestral_constant_level_check", "revision_budget_study"]
