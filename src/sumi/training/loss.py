"""The training objective as a module: the FSDP root of a run.

`DiffusionTrainingModule` wraps a `SumiForMaskGeneration`; `forward(z_t, labels, t)` returns the
**sum** of the per-token uniform GIDD loss (spec §4, `sumi.diffusion.uniform_gidd_loss`, z-loss
included) over the scored tokens. The trainer scales it by ``world_size / global_scored_tokens``,
so that, with FSDP's gradient averaging over ranks and the sum over micro-steps, the gradient is
that of the mean over all scored tokens of the global batch. Called without labels it returns the
logits (for evaluation).

The fused path (default) never materialises the ``[tokens, V]`` logits for the whole micro-batch:
`fused_head_loss` runs the head and the loss chunk by chunk and takes each chunk's gradient (with
respect to the hidden states and the head weight) right away, during the forward; only those
gradients are kept for the backward, scaled by the incoming gradient there. Same values as the
unfused `model(input_ids=z, labels=x, t=t)` up to float summation order; peak memory of the loss
drops from several fp32 ``[tokens, V]`` tensors to one chunk's worth.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..diffusion import uniform_gidd_loss


def default_chunk_tokens(vocab_size: int) -> int:
    """About 16M logits (64 MiB in fp32) per chunk, at least 128 tokens."""
    return max(128, (1 << 24) // max(1, vocab_size))


class _FusedHeadLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, z, labels, t, chunk, vocab_size, beta_is, z_loss):
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        n = hidden.shape[0]
        for s in range(0, n, chunk):
            e = min(n, s + chunk)
            with torch.enable_grad():
                h = hidden[s:e].detach().requires_grad_(need_h)
                w = weight.detach().requires_grad_(need_w)
                logits = F.linear(h, w)
                loss, _ = uniform_gidd_loss(logits, z[s:e], labels[s:e], t[s:e], vocab_size=vocab_size,
                                            beta_is=beta_is, z_loss_strength=z_loss)
                loss = loss.sum()
                wrt = [x for x, need in ((h, need_h), (w, need_w)) if need]
                grads = torch.autograd.grad(loss, wrt) if wrt else ()
            grads = list(grads)
            if need_h:
                grad_h[s:e] = grads.pop(0)
            if need_w:
                grad_w += grads.pop(0)
            total += loss.detach()
        ctx.save_for_backward(grad_h if need_h else None, grad_w.to(weight.dtype) if need_w else None)
        return total

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w = ctx.saved_tensors
        gh = grad_h * grad_out.to(grad_h.dtype) if grad_h is not None else None
        gw = grad_w * grad_out.to(grad_w.dtype) if grad_w is not None else None
        return gh, gw, None, None, None, None, None, None, None


def fused_head_loss(hidden: torch.Tensor, weight: torch.Tensor, z: torch.Tensor, labels: torch.Tensor,
                    t: torch.Tensor, *, vocab_size: int, beta_is: float = 1.0, z_loss_strength: float = 1e-5,
                    chunk_tokens: int = 0) -> torch.Tensor:
    """Sum over tokens of `uniform_gidd_loss(hidden @ weight.T, z, labels, t)`, chunked.

    hidden `[N, H]`, weight `[V', H]` (the lm_head), z/labels `[N]` long (-100 = unscored), t `[N]`.
    Returns a float32 scalar whose backward gives the same gradients as the unfused computation.
    """
    chunk = chunk_tokens or default_chunk_tokens(weight.shape[0])
    return _FusedHeadLoss.apply(hidden, weight, z, labels, t.float(), int(chunk), int(vocab_size),
                                float(beta_is), float(z_loss_strength))


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
        hidden = self.model.model(input_ids=z).last_hidden_state
        return fused_head_loss(hidden.flatten(0, 1), self.model.lm_head.weight, z.flatten(), labels.flatten(),
                               t.expand(z.shape).flatten(), vocab_size=cfg.vocab_size,
                               beta_is=cfg.uniform_diffusion_beta_is,
                               z_loss_strength=cfg.uniform_diffusion_z_loss_strength,
                               chunk_tokens=self.chunk_tokens)


__all__ = ["DiffusionTrainingModule", "fused_head_loss", "default_chunk_tokens"]
