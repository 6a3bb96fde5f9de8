"""PNG plots of an analysis (the dict `analyze_trajectory` returns, also read back from the JSON).

Matplotlib with the Agg backend (no display needed): `pip install sumi[analysis]`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

PLOT_NAMES = ("commit_heatmap", "overwrite_rate", "round_trip_lengths", "net_change", "confidence_entropy")


def _plt():
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError("the analysis plots need matplotlib: pip install 'sumi[analysis]' (or matplotlib)") from e
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _arr(x) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in (x or [])], dtype=np.float64)


def _title(analysis: dict, what: str) -> str:
    m = analysis.get("metadata") or {}
    bits = [m.get("model"), m.get("sampler")]
    if m.get("num_denoising_steps"):
        bits.append(f"{m['num_denoising_steps']} steps")
    sub = ", ".join(str(b) for b in bits if b)
    return f"{what}\n{sub} (region: {analysis.get('region')})" if sub else what


def _nominal_line(ax, analysis: dict) -> None:
    w = (analysis.get("summary") or {}).get("window")
    if w:
        ax.axvline(w["start"] + 0.5, color="gray", ls="--", lw=1, label=f"nominal end (step {w['start']})")


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def plot_commit_heatmap(analysis: dict, path: str | Path) -> Path:
    """Commit step (last step that changed the position; 0 = never) over canvas positions x rows."""
    plt = _plt()
    cs = analysis["commit_steps"]
    rows = cs["rows"]
    data = (
        np.array([[np.nan if v is None else v for v in r] for r in rows], dtype=np.float64)
        if rows and rows[0]
        else np.full((1, 1), np.nan)
    )
    N = (analysis.get("summary") or {}).get("num_steps") or 1
    fig, ax = plt.subplots(figsize=(9, max(2.4, min(8.0, 0.9 + 0.35 * data.shape[0]))))
    cmap = plt.get_cmap("viridis").with_extremes(bad="#dddddd")
    im = ax.imshow(
        np.ma.masked_invalid(data),
        aspect="auto",
        interpolation="nearest",
        cmap=cmap,
        vmin=0,
        vmax=N,
        extent=(cs["first_column"] - 0.5, cs["first_column"] + data.shape[1] - 0.5, data.shape[0] - 0.5, -0.5),
    )
    fig.colorbar(im, ax=ax, label="commit step (0 = never changed)")
    ax.set_xlabel("canvas position (column)")
    ax.set_ylabel("row / sample")
    if data.shape[0] <= 20:
        ax.set_yticks(range(data.shape[0]))
    order = (analysis.get("summary") or {}).get("order") or {}
    rho = order.get("position")
    ax.set_title(
        _title(analysis, "Commitment order" + (f" (Spearman vs position {rho:+.2f})" if rho is not None else ""))
    )
    return _save(fig, Path(path))


def plot_overwrite_rate(analysis: dict, path: str | Path) -> Path:
    """Per-step overwrite rate, share of rows with any change, and the round-trip (return) rate."""
    plt = _plt()
    ps = analysis["per_step"]
    r = _arr(ps["overwrite_rate"])
    steps = np.arange(1, r.size + 1)
    fig, ax = plt.subplots(figsize=(8, 4.2))
    ax.plot(steps, r, label="overwrite rate (share of positions changed)", lw=1.5)
    ax.plot(steps, _arr(ps.get("return_rate")), label="return rate (round trips completed)", lw=1.2)
    ax.plot(steps, _arr(ps.get("rows_changed_share")), label="share of rows with any change", lw=1, ls=":")
    _nominal_line(ax, analysis)
    ax.set_xlabel("step")
    ax.set_ylabel("share")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8)
    ax.set_title(_title(analysis, "Overwrites per step"))
    return _save(fig, Path(path))


def plot_round_trip_lengths(analysis: dict, path: str | Path) -> Path:
    """Histogram of round-trip lengths (steps spent away from the value before returning to it)."""
    plt = _plt()
    hist = {int(k): int(v) for k, v in (analysis.get("round_trip_length_histogram") or {}).items()}
    fig, ax = plt.subplots(figsize=(7, 4))
    if hist:
        ks = sorted(hist)
        ax.bar(ks, [hist[k] for k in ks], width=0.8, color="C1")
        rt = (analysis.get("summary") or {}).get("round_trips") or {}
        ax.text(
            0.98,
            0.95,
            f"{rt.get('count', 0)} round trips\nA->B->A: {rt.get('aba', 0)}\n"
            f"A->B->C->A: {rt.get('abca', 0)}\nlonger: {rt.get('longer_cycles', 0)}",
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=9,
        )
    else:
        ax.text(0.5, 0.5, "no round trips", transform=ax.transAxes, ha="center", va="center", fontsize=12)
    ax.set_xlabel("round-trip length (steps away from the value)")
    ax.set_ylabel("count")
    ax.set_title(_title(analysis, "Round trips (a position returns to an earlier value)"))
    return _save(fig, Path(path))


def plot_net_change(analysis: dict, path: str | Path) -> Path:
    """Net change to the final canvas and the settled share, per canvas index."""
    plt = _plt()
    pc = analysis["per_canvas"]
    d = _arr(pc["net_change_to_final"])
    s = _arr(pc.get("settled_share"))
    j = np.arange(d.size)
    fig, ax = plt.subplots(figsize=(8, 4.2))
    ax.plot(j, d, label="net change to final (share of positions != final token)", lw=1.5)
    if s.size:
        ax.plot(j, 1 - s, label="not yet settled (will still change)", lw=1.2, ls="--")
    _nominal_line(ax, analysis)
    ax.set_xlabel("canvas index (after step j; 0 = initial random canvas)")
    ax.set_ylabel("share of positions")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8)
    ax.set_title(_title(analysis, "Net change vs step"))
    return _save(fig, Path(path))


def plot_confidence_entropy(analysis: dict, path: str | Path) -> Path:
    """Mean top-1 probability and entropy of the denoiser per step: all / committed / uncommitted."""
    plt = _plt()
    ps = analysis["per_step"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, q, label in (
        (axes[0], "confidence", "mean top-1 probability"),
        (axes[1], "entropy", "mean entropy (nats)"),
    ):
        if f"{q}_all" not in ps:
            ax.text(0.5, 0.5, "not recorded", transform=ax.transAxes, ha="center", va="center")
        else:
            for g, style in (("all", "-"), ("committed", "--"), ("uncommitted", ":")):
                v = _arr(ps[f"{q}_{g}"])
                ax.plot(np.arange(1, v.size + 1), v, ls=style, label=g, lw=1.4)
            _nominal_line(ax, analysis)
            ax.legend(fontsize=8)
        ax.set_xlabel("step")
        ax.set_ylabel(label)
    fig.suptitle(_title(analysis, "Denoiser confidence and entropy").replace("\n", " - "), fontsize=10)
    return _save(fig, Path(path))


def plot_quality_vs_budget(study: dict, path: str | Path) -> Path:
    """Self-NELBO (and judge perplexity) vs budget, with the revision-window net change and
    edit-step share on a second axis."""
    plt = _plt()
    runs = study["runs"]
    b = np.array([r["steps"] for r in runs], dtype=np.float64)
    nelbo = _arr([(r.get("quality") or {}).get("self_nelbo") for r in runs])
    fig, ax = plt.subplots(figsize=(8, 4.4))
    ax.plot(b, nelbo, "o-", color="C0", label="self-NELBO (nats/token, lower = better)")
    ppl = [(r.get("quality") or {}).get("judge_perplexity") for r in runs]
    if any(p is not None for p in ppl):
        ax.plot(b, np.log(_arr(ppl)), "s-", color="C3", label="log judge perplexity")
    ax.set_xlabel(f"denoising steps (budget; nominal = {study['nominal_steps']})")
    ax.set_ylabel("quality")
    ax2 = ax.twinx()
    net = _arr([(r.get("window") or {}).get("net_change") for r in runs])
    edit = _arr([(r.get("window") or {}).get("edit_step_share") for r in runs])
    ax2.plot(b, net, "^--", color="C2", label="net change in revision window")
    ax2.plot(b, edit, "v:", color="C1", label="revision steps that overwrote")
    ax2.set_ylabel("share")
    ax2.set_ylim(-0.02, 1.02)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, loc="best")
    if len(b) > 1 and b.max() / max(b.min(), 1) >= 4:
        ax.set_xscale("log", base=2)
    ax.set_title(f"Quality vs revision budget ({study['sampler']}; {study['mode']})", fontsize=10)
    return _save(fig, Path(path))


PLOTTERS = dict(
    commit_heatmap=plot_commit_heatmap,
    overwrite_rate=plot_overwrite_rate,
    round_trip_lengths=plot_round_trip_lengths,
    net_change=plot_net_change,
    confidence_entropy=plot_confidence_entropy,
)


def write_plots(analysis: dict, out_dir: str | Path, *, study: dict | None = None, prefix: str = "") -> dict[str, str]:
    """Write every plot of `analysis` (and `quality_vs_budget` with a `study`) as `out_dir/{prefix}{name}.png`;
    returns name -> path."""
    out_dir = Path(out_dir)
    paths: dict[str, Any] = {}
    for name, fn in PLOTTERS.items():
        paths[name] = str(fn(analysis, out_dir / f"{prefix}{name}.png"))
    if study is not None and study.get("runs"):
        paths["quality_vs_budget"] = str(plot_quality_vs_budget(study, out_dir / f"{prefix}quality_vs_budget.png"))
    return paths


__all__ = [
    "PLOT_NAMES",
    "plot_commit_heatmap",
    "plot_overwrite_rate",
    "plot_round_trip_lengths",
    "plot_net_change",
    "plot_confidence_entropy",
    "plot_quality_vs_budget",
    "write_plots",
]
