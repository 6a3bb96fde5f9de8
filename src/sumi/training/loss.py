"""The training objective as a module: the FSDP root of a run.

`DiffusionTrainingModule` wraps a `SumiForMaskGeneration`; `forward(z_t, labels, t)` returns the
**sum** of the per-token uniform GIDD loss (spec §4, `sumi.diffusion.uniform_gidd_loss`, z-loss
included) over the scored tokens. The trainer scales it by ``world_size / global_scored_tokens``,
so that, with FSDP's gradient averaging over ranks and the sum over micro-steps, the gradient is
that of the mean over all scored tokens of the global batch. Called without labels it returns the
logits (for evaluation).

The fused path (default) never materialises the ``[tokens, V]`` logits for the whole micro-batch:
`sumi.diffusion.fused_linear_gidd_loss` runs the head and the loss chunk by chunk and takes each
chunk's gradient (with respect to the hidden states and the head weight) right away, during the
forward; only those gradients are kept for the backward, scaled by the incoming gradient there. Same
values as the unfused `model(input_ids=z, labels=x, t=t)` up to float summation order; peak memory of
the loss drops from several fp32 ``[tokens, V]`` tensors to one chunk's worth.
"""

from __future__ import annotations

import torch
from torch import nn

from ..diffusion import fused_linear_gidd_loss


def fused_head_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    z: torch.Tensor,
    labels: torch.Tensor,
    t: torch.Tensor,
    *,
    vocab_size: int,
    beta_is: float = 1.0,
    z_loss_strength: float = 1e-5,
    chunk_tokens: int = 0,
) -> torch.Tensor:
    """Sum over scored tokens of `uniform_gidd_loss(hidden @ weight.T, z, labels, t)`, chunked
    (`fused_linear_gidd_loss`; chunk_tokens 0 = `default_loss_chunk_tokens`).

    hidden `[N, H]`, weight `[V', H]` (the lm_head), z/labels `[N]` long (-100 = unscored), t `[N]`.
    Returns a float32 scalar whose backward gives the same gradients as the unfused computation.
    """
    total, _ = fused_linear_gidd_loss(
        hidden,
        weight,
        z,
        labels,
        t,
        vocab_size=vocab_size,
        beta_is=beta_is,
        z_loss_strength=z_loss_strength,
        chunk_size=chunk_tokens or None,
    )
    return total


class DiffusionTrainingModule(nn.Module):
    """The FSDP root of a run: `forward(z, labels, t)` -> loss sum; `forward(z)` -> logits."""

    def __init__(self, model: nn.Module, *, fused_loss: bool = True, chunk_tokens: int = 0):
        super().__init__()
        self.model = model
        self.fused_loss = fused_loss
        self.chunk_tokens = chunk_tokens

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None, t: torch.Tensor | None = None):
        if labels is None:
            return self.model(input_ids=z).logits
        cfg = self.model.config
        if not self.fused_loss:
            loss = self.model(input_ids=z, labels=labels, t=t).loss  # mean over scored tokens
            return loss.float() * (labels != -100).sum()
        hidden = self.model.model(input_ids=z).last_hidden_state.flatten(0, 1)
        z, labels, t = z.flatten(), labels.flatten(), t.expand(z.shape).flatten()
        scored = labels != -100
        if not bool(scored.all()):  # unscored positions add nothing: skip the head there (SFT prompts)
            hidden, z, labels, t = hidden[scored], z[scored], labels[scored], t[scored]
        return fused_head_loss(
            hidden,
            self.model.lm_head.weight,
            z,
            labels,
            t,
            vocab_size=cfg.vocab_size,
            beta_is=cfg.uniform_diffusion_beta_is,
            z_loss_strength=cfg.uniform_diffusion_z_loss_strength,
            chunk_tokens=self.chunk_tokens,
        )


__all__ = ["DiffusionTrainingModule", "fused_head_loss"]
