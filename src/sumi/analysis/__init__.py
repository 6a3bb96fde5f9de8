"""`sumi.analysis`: how a uniform diffusion model writes.

Record a generation (`record_generation`, or `generate(..., record_trajectory=True)`), save and
reload it (`save_trajectory` / `load_trajectory`), measure it (overwrite rate, edit steps, net
change, round trips, commit steps and commitment order, denoiser confidence and entropy: the
functions of `sumi.analysis.metrics`, all at once with `analyze_trajectory`), run the
revision-budget study (`revision_budget_study`), and write everything as JSON, PNG plots and a
markdown report (`run_analysis`, the engine of `sumi analyze`). Definitions: docs/analysis.md.

```python
from sumi.analysis import run_analysis
result = run_analysis("out/", model_name="sumi-tiny", prompts=["Hello"], sampler="greedy",
                      num_denoising_steps=16, max_new_tokens=24, budgets=(1, 2, 4))
print(result["budget_study"]["runs"][-1]["claim"])
```
"""

from .budget import PREFIX_SAMPLERS, ancestral_constant_level_check, budget_steps, claim, revision_budget_study
from .metrics import (
    REGIONS,
    RoundTrips,
    analysed_mask,
    analyze_trajectory,
    change_counts,
    commit_steps,
    commitment_order,
    confidence_entropy,
    edit_step_share,
    events,
    gross_change,
    net_change,
    net_change_to_final,
    overwrite_rates,
    position_features,
    region_mask,
    return_rates,
    round_trips,
    rows_changed,
    settled_share,
    spearman,
    truncate,
)
from .quality import ARJudge, self_nelbo
from .runner import encode_prompts, render_report, run_analysis
from .trajectory_io import TrajectoryRecord, canvas_layout, load_trajectory, record_generation, save_trajectory


def write_plots(analysis, out_dir, *, study=None, prefix=""):
    """Write the PNG plots of an analysis (needs matplotlib); see `sumi.analysis.plots`."""
    from .plots import write_plots as _write

    return _write(analysis, out_dir, study=study, prefix=prefix)


__all__ = [
    "TrajectoryRecord",
    "save_trajectory",
    "load_trajectory",
    "record_generation",
    "canvas_layout",
    "REGIONS",
    "RoundTrips",
    "analysed_mask",
    "analyze_trajectory",
    "change_counts",
    "commit_steps",
    "commitment_order",
    "confidence_entropy",
    "edit_step_share",
    "events",
    "gross_change",
    "net_change",
    "net_change_to_final",
    "overwrite_rates",
    "position_features",
    "region_mask",
    "return_rates",
    "round_trips",
    "rows_changed",
    "settled_share",
    "spearman",
    "truncate",
    "PREFIX_SAMPLERS",
    "ancestral_constant_level_check",
    "budget_steps",
    "claim",
    "revision_budget_study",
    "ARJudge",
    "self_nelbo",
    "encode_prompts",
    "render_report",
    "run_analysis",
    "write_plots",
]
