"""Training phases: consecutive stretches of a run, each with its data mixture and learning-rate segment.

A recipe's ``phases`` (e.g. pre-training on filtered web text, then mid-training with more code and
math) become a `PhasePlan`: phase i covers global optimizer steps ``[start_i, start_i + steps_i)``.
Everything that depends on the phase is a pure function of the global step (which phase, which
mixture, which learning rate), so ``--resume`` lands in the right phase at the right place with no
extra state. A recipe without phases is one phase, "run", of `steps` steps on `data.mixture`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .config import ConfigError, LrSegment, OptimSection, SourceSection, TrainConfig
from .optim import lr_at

SCHEDULES = ("run", "constant", "linear", "cosine")
WEIGHT_TOLERANCE = 1e-6  # |sum of weights - 1| allowed (0.325 + 0.297 + 0.21 + 0.168 in floats)


@dataclass(frozen=True)
class Phase:
    """One phase of a plan: global steps ``[start, start + steps)``; `weights` holds every source
    of ``data.sources`` in order (0 for those the phase does not use; empty without sources)."""

    index: int
    name: str
    start: int
    steps: int
    weights: tuple[float, ...]
    lr: LrSegment

    @property
    def end(self) -> int:
        return self.start + self.steps


@dataclass(frozen=True)
class PhasePlan:
    phases: tuple[Phase, ...]
    source_names: tuple[str, ...]

    @property
    def total_steps(self) -> int:
        return self.phases[-1].end

    def at(self, step: int) -> Phase:
        """The phase of global step `step` (0-based; the last phase for ``step >= total_steps``)."""
        for phase in self.phases:
            if step < phase.end:
                return phase
        return self.phases[-1]

    def lr_at(self, step: int, optim: OptimSection) -> float:
        """Learning rate of global step `step`: the phase's segment (see `LrSegment`)."""
        phase = self.at(step)
        seg = phase.lr
        if seg.schedule == "run":
            return lr_at(step, self.total_steps, optim)
        start = optim.lr if seg.start is None else seg.start
        end = optim.min_lr if seg.end is None else seg.end
        i, n, warm = step - phase.start, phase.steps, seg.warmup_steps
        if i < warm:
            return start * (i + 1) / warm
        if seg.schedule == "constant":
            return start
        span = n - warm
        p = 1.0 if span <= 1 else min(1.0, (i - warm) / (span - 1))
        if seg.schedule == "linear":
            return start + (end - start) * p
        return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * p))


def phase_mixture(config: TrainConfig, mixture: dict[str, float]) -> dict[str, float]:
    """A phase's mixture: its own, else ``data.mixture``, else all of a single source."""
    if mixture:
        return dict(mixture)
    if config.data.mixture:
        return dict(config.data.mixture)
    if len(config.data.sources) == 1:
        return {config.data.sources[0].name: 1.0}
    return {}


def check_mixture(mixture: dict[str, float], names: list[str], key: str) -> None:
    """ConfigError unless `mixture` maps known source names to weights >= 0 that sum to 1."""
    if not mixture:
        raise ConfigError(
            f"config key {key!r}: no mixture; give source weights (by tokens) over data.sources {names}, summing to 1"
        )
    for name, w in mixture.items():
        if name not in names:
            raise ConfigError(f"config key '{key}.{name}': unknown source {name!r}; data.sources are {names}")
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise ConfigError(f"config key '{key}.{name}': a weight must be a number >= 0, got {w!r}")
    total = sum(float(w) for w in mixture.values())
    if abs(total - 1.0) > WEIGHT_TOLERANCE:
        raise ConfigError(
            f"config key {key!r}: the weights sum to {total:.6g}, not 1 "
            f"({', '.join(f'{k} {v:g}' for k, v in mixture.items())})"
        )


def check_phases(config: TrainConfig) -> None:
    """The data-mixture and phase keys of `config` (names, kinds, weights, lr segments): ConfigError naming
    the key. Opening the sources (do they exist, are they big enough) is `sumi.training.mixture`'s job."""
    d = config.data
    names = [s.name for s in d.sources]
    for i, s in enumerate(d.sources):
        key = f"data.sources.{i}"
        if not s.name or not s.name.replace("-", "_").replace(".", "_").isidentifier():
            raise ConfigError(
                f"config key '{key}.name': a source needs a name of letters, digits, '_', '-', '.', got {s.name!r}"
            )
        if names.count(s.name) > 1:
            raise ConfigError(f"config key '{key}.name': the source name {s.name!r} is used twice")
        if s.kind not in ("packed", "stream", "synthetic"):
            raise ConfigError(f"config key '{key}.kind': must be 'packed', 'stream' or 'synthetic', got {s.kind!r}")
        if s.kind == "packed" and not s.path:
            raise ConfigError(f"config key '{key}.path': source {s.name!r} (kind packed) needs a prepared dataset")
        if s.kind == "stream":
            _check_streamed(s, key, config)
        if s.synthetic_kind not in ("pattern", "random"):
            raise ConfigError(
                f"config key '{key}.synthetic_kind': must be 'pattern' or 'random', got {s.synthetic_kind!r}"
            )
        if s.synthetic_sequences < 0:
            raise ConfigError(f"config key '{key}.synthetic_sequences': must be >= 0")
    if d.on_exhausted not in ("epoch", "stop"):
        raise ConfigError(f"config key 'data.on_exhausted': must be 'epoch' or 'stop', got {d.on_exhausted!r}")
    if d.sources and d.path:
        raise ConfigError("config key 'data.path': a recipe with data.sources names its data there; remove data.path")
    if not d.sources:
        mixtures = [("data.mixture", d.mixture)] + [
            (f"phases.{i}.mixture", p.mixture) for i, p in enumerate(config.phases)
        ]
        for key, mixture in mixtures:
            if mixture:
                raise ConfigError(
                    f"config key {key!r}: a mixture needs named data.sources (this recipe reads one dataset, data.path)"
                )
    elif not config.phases:
        check_mixture(phase_mixture(config, {}), names, "data.mixture")
    for i, p in enumerate(config.phases):
        if d.sources:
            check_mixture(phase_mixture(config, p.mixture), names, f"phases.{i}.mixture")
        _check_segment(p.lr, f"phases.{i}.lr")
        if p.steps < 0 or p.tokens < 0:
            raise ConfigError(f"config key 'phases.{i}': steps and tokens must be >= 0")
    phase_names = [p.name or f"phase{i}" for i, p in enumerate(config.phases)]
    if len(set(phase_names)) != len(phase_names):
        raise ConfigError(f"config key 'phases': phase names must differ, got {phase_names}")


def _check_streamed(s: SourceSection, key: str, config: TrainConfig) -> None:
    if not s.path:
        raise ConfigError(
            f"config key '{key}.path': source {s.name!r} (kind stream) needs data files, a folder or 'hf:owner/name'"
        )
    if not s.text_field:
        raise ConfigError(f"config key '{key}.text_field': source {s.name!r} needs the name of its text field")
    if not (s.tokenizer or config.model.path):
        raise ConfigError(
            f"config key '{key}.tokenizer': source {s.name!r} (kind stream) is tokenized on the fly; name "
            "its tokenizer (a folder, a tokenizer.json or 'dolma2'), or train from model.path (its folder's)"
        )


def _check_segment(seg: LrSegment, key: str) -> None:
    if seg.schedule not in SCHEDULES:
        raise ConfigError(f"config key '{key}.schedule': must be one of {', '.join(SCHEDULES)}, got {seg.schedule!r}")
    for name in ("start", "end"):
        v = getattr(seg, name)
        if v is not None and not (v >= 0 and math.isfinite(v)):
            raise ConfigError(f"config key '{key}.{name}': must be a learning rate >= 0, got {v}")
    if seg.warmup_steps < 0:
        raise ConfigError(f"config key '{key}.warmup_steps': must be >= 0")
    if seg.schedule == "run" and (seg.start is not None or seg.end is not None or seg.warmup_steps):
        raise ConfigError(
            f"config key '{key}': schedule 'run' follows the optim section; start, end and "
            "warmup_steps need schedule constant, linear or cosine"
        )


def build_plan(config: TrainConfig) -> PhasePlan:
    """The `PhasePlan` of a validated config."""
    names = tuple(s.name for s in config.data.sources)

    def weights(mixture: dict[str, float]) -> tuple[float, ...]:
        mix = phase_mixture(config, mixture)
        return tuple(float(mix.get(n, 0.0)) for n in names)

    if not config.phases:
        return PhasePlan((Phase(0, "run", 0, config.steps, weights({}), LrSegment()),), names)
    tokens_per_step = config.batch.global_batch_size * config.data.seq_len
    phases, start = [], 0
    for i, p in enumerate(config.phases):
        n = p.num_steps(tokens_per_step)
        phases.append(Phase(i, p.name or f"phase{i}", start, n, weights(p.mixture), p.lr))
        start += n
    return PhasePlan(tuple(phases), names)


__all__ = ["Phase", "PhasePlan", "build_plan", "check_phases", "check_mixture", "phase_mixture"]
