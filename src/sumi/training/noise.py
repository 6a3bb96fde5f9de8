"""Training noise over the *global* batch, as a pure function of (seed, step).

Every rank draws the noise of the whole global batch of an optimizer step from generators seeded by
``(seed, step)`` and keeps its own rows. So the noise a sequence receives does not depend on the
number of processes, the micro-batch size or the accumulation steps (only on the global batch and
the data order), 1 process and N processes follow the same loss curve, and a resumed run needs no
saved RNG state. The number of scored tokens of the global batch is known to every rank in advance,
which lets each rank scale its loss so that the gradient is the mean over the global batch.

Noise (spec §4): ``t ~ U[sigmoid(-9), sigmoid(9)]`` from `sample_t` (a row gets an independent t
per token with probability `per_token_fraction`, else one t), then `corrupt` (each token replaced
with probability t by a uniform draw). Rows of the global step batch are ordered as the data
sources order them: micro-step m, rank r, row i is global row ``m * micro * world + r * micro + i``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..diffusion import corrupt, nelbo_t_grid, sample_t
from ..seeding import derive_seed


@dataclass
class StepNoise:
    t: torch.Tensor  # [G, S] float32
    replaced: torch.Tensor  # [G, S] int64: the uniform draw where a token is replaced, -1 where it is kept
    prefix_len: torch.Tensor  # [G] int64: clean, unscored prefix length (0 = none)

    @property
    def num_scored(self) -> int:
        """Tokens of the global batch that enter the loss."""
        G, S = self.t.shape
        return int(G * S - int(self.prefix_len.sum()))

    def apply(self, x: torch.Tensor, rows: slice) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Noise the clean local rows `x` ([b, S], global rows `rows`): (z_t, labels, t) with
        labels = x except -100 on the clean prefix (where z_t = x)."""
        if hasattr(x, "noised"):  # an SFT batch: it knows which positions may be noised and scored
            return x.noised(self.replaced[rows], self.t[rows])
        rep, t, plen = self.replaced[rows], self.t[rows], self.prefix_len[rows]
        if rep.shape != x.shape:
            raise ValueError(f"batch of shape {tuple(x.shape)} does not match the noise rows {tuple(rep.shape)}")
        z = torch.where(rep >= 0, rep, x)
        if bool((plen > 0).any()):
            prefix = torch.arange(x.shape[1], device=x.device)[None, :] < plen[:, None]
            z = torch.where(prefix, x, z)
            labels = torch.where(prefix, torch.full_like(x, -100), x)
        else:
            labels = x
        return z, labels, t


def draw_step_noise(
    step: int,
    global_rows: int,
    seq_len: int,
    vocab_size: int,
    data,
    seed: int,
    device: torch.device | str = "cpu",
    tag: str = "train",
) -> StepNoise:
    """The noise of optimizer step `step` for all `global_rows` rows (see the module docstring).

    `corrupt` is applied to a sentinel batch of -1s: where it returns a value >= 0 the token is
    replaced by that value, exactly as `corrupt(x, t, V)` would replace it for any x with the same
    generator state; the rank then applies it to its own clean rows.
    """
    device = torch.device(device)
    g = torch.Generator(device=device).manual_seed(derive_seed(tag, "noise", seed, step))
    t = sample_t(
        global_rows,
        seq_len,
        per_token_fraction=data.per_token_fraction,
        min_log_snr=data.min_log_snr,
        max_log_snr=data.max_log_snr,
        generator=g,
        device=device,
    )
    sentinel = torch.full((global_rows, seq_len), -1, dtype=torch.long, device=device)
    replaced = corrupt(sentinel, t, vocab_size, generator=g)
    prefix_len = torch.zeros(global_rows, dtype=torch.long, device=device)
    if data.prefix_fraction > 0 and data.prefix_len > 0:
        gp = torch.Generator().manual_seed(derive_seed(tag, "prefix", seed, step))
        has = torch.rand(global_rows, generator=gp) < data.prefix_fraction
        length = torch.randint(1, data.prefix_len + 1, (global_rows,), generator=gp)
        prefix_len = torch.where(has, length, torch.zeros_like(length)).to(device)
    return StepNoise(t=t, replaced=replaced, prefix_len=prefix_len)


def eval_t_grid(config) -> tuple[torch.Tensor, torch.Tensor]:
    """The validation NELBO's noise levels and weights (`nelbo_t_grid` of `eval.nelbo_samples`
    points), drawn from the run's seed: the same grid for every world size and for SFT runs."""
    return nelbo_t_grid(
        config.eval.nelbo_samples,
        method=config.eval.nelbo_method,
        min_log_snr=config.data.min_log_snr,
        max_log_snr=config.data.max_log_snr,
        generator=torch.Generator().manual_seed(derive_seed("eval-grid", config.seed)),
    )


__all__ = ["StepNoise", "draw_step_noise", "eval_t_grid"]
