"""`DistillSection`: the ``distill:`` section of a recipe with ``task: distill`` (see `sumi.training.distill`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SCORE = ("free", "answer")
# generate() options a teacher run may set (the rest are fixed by the section: one forward per
# schedule step, every row kept to the end, the anchored canvas of data.seq_len tokens)
TEACHER_OPTIONS = (
    "sampler",
    "schedule",
    "min_log_snr",
    "max_log_snr",
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "greedy_tail",
    "tokens_per_step",
    "entropy_bound",
)
# student generate() options that must agree with the teacher's: the student learned its time grid
SHARED_SCHEDULE = ("schedule", "min_log_snr", "max_log_snr")


@dataclass
class DistillSection:
    """Discrete consistency distillation of a many-step teacher into a few-step student.

    `teacher`: a model folder or a bundled name ("demo"; default: `model.path`, the student's
    initialisation). It samples `trajectories` training canvases (and `val_trajectories` held-out
    ones) with `teacher_steps` denoising steps and the generate() options in `teacher_generation`
    (default: ancestral, linear schedule), `new_tokens` answer tokens on the anchored canvas of
    ``data.seq_len`` tokens after each prompt of `prompts` (row i takes prompt ``i mod len``;
    empty: unconditional, the prompt is BOS). From every trajectory the canvases at the time
    points of `student_steps` (each must divide `teacher_steps`) are paired with the teacher's
    final canvas; the student learns, by cross-entropy at the `score`d positions ("free": every
    position the sampler changes, answer and tail; "answer": the answer region only), to predict
    that endpoint from each of those canvases. `gidd_weight` > 0 adds the ordinary GIDD loss on
    forward-noised teacher endpoints, with that weight, as a regulariser (one more row per row).
    `cache_dir`: where the trajectories are kept (default ``{out_dir}/teacher``), one folder per
    fingerprint of the teacher and these settings; `generate_batch`: rows per teacher forward (and
    per cache chunk); `teacher_dtype`: the teacher's compute dtype. `generation`: generate()
    keyword -> value, written to the exported generation_config.json (the student's few-step
    settings).
    """

    teacher: str | None = None
    teacher_steps: int = 128
    teacher_generation: dict[str, Any] = field(default_factory=dict)
    teacher_dtype: str = "float32"
    student_steps: list[int] = field(default_factory=lambda: [8])
    trajectories: int = 256
    val_trajectories: int = 0
    new_tokens: int = 128
    prompts: list[str] = field(default_factory=list)
    score: str = "free"
    gidd_weight: float = 0.0
    cache_dir: str | None = None
    generate_batch: int = 16
    generation: dict[str, Any] = field(default_factory=dict)


def validate_distill(config, need) -> None:
    """Check a ``task: distill`` config (`need(ok, key, message)` raises ConfigError)."""
    from ..generation_sumi import GENERATION_DEFAULTS

    s, d = config.distill, config.data
    need(
        bool(s.teacher or config.model.path),
        "distill.teacher",
        "task: distill needs a teacher: distill.teacher or model.path (a model folder or a bundled name)",
    )
    need(s.teacher_steps >= 1, "distill.teacher_steps", f"must be >= 1, got {s.teacher_steps}")
    need(bool(s.student_steps), "distill.student_steps", "name at least one student step count, e.g. [8]")
    for n in s.student_steps:
        need(
            isinstance(n, int) and 1 <= n <= s.teacher_steps and s.teacher_steps % n == 0,
            "distill.student_steps",
            f"each must divide distill.teacher_steps={s.teacher_steps} (the student's time points are "
            f"points of the teacher's schedule), got {n}",
        )
    unknown = sorted(set(s.teacher_generation) - set(TEACHER_OPTIONS))
    need(
        not unknown,
        "distill.teacher_generation",
        f"options {unknown} cannot be set for the teacher (allowed: {', '.join(TEACHER_OPTIONS)}; "
        "the steps are distill.teacher_steps, the canvas data.seq_len, the answer distill.new_tokens)",
    )
    need(
        s.teacher_generation.get("sampler", "ancestral") != "predictor_corrector",
        "distill.teacher_generation",
        "the teacher must take one forward per schedule step: not sampler predictor_corrector",
    )
    need(s.teacher_dtype in ("float32", "bfloat16"), "distill.teacher_dtype", "must be 'float32' or 'bfloat16'")
    need(s.trajectories >= 1, "distill.trajectories", f"must be >= 1, got {s.trajectories}")
    need(s.val_trajectories >= 0, "distill.val_trajectories", "must be >= 0 (0: no validation)")
    need(
        1 <= s.new_tokens <= d.seq_len - 3,
        "distill.new_tokens",
        f"must be in [1, data.seq_len - 3 = {d.seq_len - 3}] (prompt, answer, EOS and BOS anchors), got {s.new_tokens}",
    )
    need(all(isinstance(p, str) for p in s.prompts), "distill.prompts", "must be a list of strings")
    need(s.score in SCORE, "distill.score", f"must be one of {SCORE}, got {s.score!r}")
    need(s.gidd_weight >= 0, "distill.gidd_weight", f"must be >= 0, got {s.gidd_weight}")
    need(s.generate_batch >= 1, "distill.generate_batch", f"must be >= 1, got {s.generate_batch}")
    unknown = sorted(set(s.generation) - set(GENERATION_DEFAULTS))
    need(not unknown, "distill.generation", f"unknown generate() options {unknown}")
    steps = s.generation.get("num_denoising_steps")
    need(
        steps is None or steps in s.student_steps,
        "distill.generation",
        f"num_denoising_steps={steps} is not one of the distilled step counts {s.student_steps}",
    )
    for key in SHARED_SCHEDULE:
        need(
            key not in s.generation or s.generation[key] == s.teacher_generation.get(key, GENERATION_DEFAULTS[key]),
            "distill.generation",
            f"{key} must be the teacher's ({s.teacher_generation.get(key, GENERATION_DEFAULTS[key])!r}): "
            "the student learned the teacher's time points",
        )
    need(d.prefix_fraction == 0.0, "data.prefix_fraction", "must be 0 with task: distill")


__all__ = ["DistillSection", "SCORE", "TEACHER_OPTIONS", "validate_distill"]
