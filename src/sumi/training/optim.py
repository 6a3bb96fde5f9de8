"""AdamW parameter groups and the learning-rate schedules (WSD and cosine, with linear warm-up).

The schedule is a pure function of the step, so a resumed run needs no scheduler state.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import OptimSection


def lr_at(step: int, total_steps: int, optim: OptimSection) -> float:
    """Learning rate of optimizer step `step` (0-based) of `total_steps`.

    Warm-up: ``lr * (step + 1) / warmup_steps`` for ``step < warmup_steps``.
    "wsd": then constant ``lr`` until the decay phase, the last ``round(decay_fraction * total_steps)``
    steps, during which it falls linearly to ``min_lr`` (reached at the last step).
    "cosine": then ``min_lr + (lr - min_lr) * 0.5 * (1 + cos(pi * p))`` with ``p`` going from 0 (first
    step after warm-up) to 1 (last step).
    """
    peak, floor, warm = optim.lr, optim.min_lr, optim.warmup_steps
    if step < warm:
        return peak * (step + 1) / warm
    if optim.schedule == "wsd":
        decay = int(round(optim.decay_fraction * total_steps))
        start = total_steps - decay
        if decay <= 0 or step < start:
            return peak
        if decay == 1:
            return floor
        p = (step - start) / (decay - 1)
        return peak + (floor - peak) * min(1.0, p)
    if optim.schedule == "cosine":
        span = total_steps - warm
        p = 1.0 if span <= 1 else min(1.0, (step - warm) / (span - 1))
        return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * p))
    raise ValueError(f"unknown schedule {optim.schedule!r}")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: weight decay on parameters with ``ndim >= 2`` (every linear weight, the
    token embedding and the untied lm_head), none on 1-D ones (the RMSNorm weights; Sumi has no
    biases). Parameter order follows `model.named_parameters()`."""
    decay: list = []
    no_decay: list = []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay, "name": "decay"}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "name": "no_decay"})
    return groups


def build_optimizer(model: nn.Module, optim: OptimSection) -> torch.optim.AdamW:
    """AdamW (decoupled weight decay) over `param_groups`; `lr` is set each step from `lr_at`.
    `foreach=True`: PyTorch would otherwise fall back to the per-tensor loop for FSDP's DTensors."""
    return torch.optim.AdamW(
        param_groups(model, optim.weight_decay),
        lr=optim.lr,
        betas=tuple(optim.betas),
        eps=optim.eps,
        weight_decay=optim.weight_decay,
        foreach=True,
    )


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


__all__ = ["lr_at", "param_groups", "build_optimizer", "set_lr"]
