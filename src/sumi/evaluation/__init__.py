"""Evaluation of Sumi models (spec §4, §9, §10).

* `SumiEvaluator` (core): NELBO log-likelihoods of continuations, rolling NELBO of documents and
  anchored-canvas generation, on text or ids; shared by both back ends below.
* `sumi.evaluation.harness`: the "sumi" model for lm-evaluation-harness 0.4.x (import it to
  register; run lm-eval's CLI as `sumi-lm-eval ...` or `python -m sumi.evaluation.harness ...`).
* offline benchmarks (`tasks`, `runner`): MMLU, HellaSwag, PIQA, ARC-E/C, WinoGrande, GSM8K,
  HumanEval, MBPP over JSONL copies; `sumi eval --offline ...`.
* `perplexity`: nats/token and bits/byte with bootstrap CIs; `sumi perplexity FILE`.
* `execution`: sandboxed execution of generated code (opt-in), pass@k.
* the canvas-length study: `runner.canvas_study` / `sumi eval ... --canvas-lengths 256,512,...`.

See README.md in this folder for the protocol, the defaults and the commands.
"""

from .core import EVAL_DEFAULTS, RollingScore, SumiEvaluator, cut_at_stop
from .execution import ExecutionResult, pass_at_k, run_program, run_programs
from .nelbo import DEFAULT_NELBO_METHOD, NELBO_METHODS, ScoreRequest, derive_seed, nelbo_scores, rolling_windows, t_grid
from .perplexity import bootstrap_ratio, perplexity_report, read_documents
from .runner import canvas_study, evaluate_task, plot_canvas_study, results_markdown, run_offline, write_results
from .tasks import TASKS, extract_gsm8k_answer, load_task

__all__ = [
    "EVAL_DEFAULTS",
    "SumiEvaluator",
    "RollingScore",
    "cut_at_stop",
    "ExecutionResult",
    "pass_at_k",
    "run_program",
    "run_programs",
    "DEFAULT_NELBO_METHOD",
    "NELBO_METHODS",
    "ScoreRequest",
    "derive_seed",
    "nelbo_scores",
    "rolling_windows",
    "t_grid",
    "bootstrap_ratio",
    "perplexity_report",
    "read_documents",
    "canvas_study",
    "evaluate_task",
    "plot_canvas_study",
    "results_markdown",
    "run_offline",
    "write_results",
    "TASKS",
    "extract_gsm8k_answer",
    "load_task",
]
