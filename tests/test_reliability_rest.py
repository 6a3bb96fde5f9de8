"""The last items of issue 14: checked loss inputs in `forward`, a locked training run folder, a
capped `--prompts-file` and a one-line out-of-memory error. Each test failed before its fix."""

from __future__ import annotations

import math

import pytest
import torch

from sumi.diffusion import fused_linear_gidd_loss, uniform_gidd_loss


# ----------------------------------------------------------------------------- loss inputs
def _batch(model, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    V = model.config.vocab_size
    z = torch.randint(0, V, (2, 8), generator=g)
    x = torch.randint(0, V, (2, 8), generator=g)
    return z, x, torch.rand(2, generator=g)


@pytest.mark.parametrize("bad, where", [(None, "vocab"), (-3, "negative")])
@pytest.mark.parametrize("chunked", [False, True])
def test_forward_rejects_labels_outside_the_vocabulary(tiny_model, bad, where, chunked):
    z, x, t = _batch(tiny_model)
    x[0, 3] = tiny_model.config.vocab_size if bad is None else bad
    x[1, 0] = -100  # ignore_index stays allowed next to the bad label
    with pytest.raises(ValueError, match=r"^labels must lie in \[0, vocab_size="):
        tiny_model(input_ids=z, labels=x, t=t, loss_chunk_size=4 if chunked else None)


@pytest.mark.parametrize("t_value", [1.5, -0.25, math.nan])
@pytest.mark.parametrize("chunked", [False, True])
def test_forward_rejects_t_outside_unit_interval_or_nan(tiny_model, t_value, chunked):
    z, x, t = _batch(tiny_model)
    t[1] = t_value
    with pytest.raises(ValueError, match=r"^t \(the noise level\) must lie in \[0, 1\]"):
        tiny_model(input_ids=z, labels=x, t=t, loss_chunk_size=4 if chunked else None)
    with pytest.raises(ValueError, match=r"^t \(the noise level\)"):
        tiny_model(input_ids=z, labels=x, t=t_value)  # a plain float too


def test_forward_accepts_the_ends_of_the_noise_range_and_ignored_labels(tiny_model):
    z, x, _ = _batch(tiny_model)
    x[:, :2] = -100
    for t in (0.0, 1.0, torch.tensor([0.0, 1.0])):
        loss = tiny_model(input_ids=z, labels=x, t=t).loss
        assert torch.isfinite(loss)


def test_loss_functions_check_their_own_inputs():
    """The same checks on the bare loss functions (the trainer calls the fused one directly)."""
    g = torch.Generator().manual_seed(1)
    V, H = 11, 4
    hidden, weight = torch.randn(3, H, generator=g), torch.randn(V, H, generator=g)
    z, x = torch.randint(0, V, (3,), generator=g), torch.randint(0, V, (3,), generator=g)
    logits = hidden @ weight.T
    for fn in (lambda z_, x_, t_: uniform_gidd_loss(logits, z_, x_, t_, vocab_size=V),
               lambda z_, x_, t_: fused_linear_gidd_loss(hidden, weight, z_, x_, t_, vocab_size=V)):
        with pytest.raises(ValueError, match="^labels must"):
            fn(z, torch.tensor([0, V + 5, 1]), 0.5)
        with pytest.raises(ValueError, match=r"^input_ids \(z_t\) must"):
            fn(torch.tensor([0, -1, 1]), x, 0.5)
        with pytest.raises(ValueError, match="^t "):
            fn(z, x, torch.tensor([0.2, 2.0, 0.3]))
        fn(z, x, 0.5)  # valid inputs still pass


def test_checked_loss_equals_the_loss_computed_from_its_definition():
    """The refactor into check + core keeps the values: the KL + IS form of the spec, written out."""
    g = torch.Generator().manual_seed(2)
    V = 7
    logits = torch.randn(1, 5, V, generator=g, dtype=torch.float64)
    z, x = torch.randint(0, V, (1, 5), generator=g), torch.randint(0, V, (1, 5), generator=g)
    t = torch.rand(1, 5, generator=g, dtype=torch.float64) * 0.9 + 0.05
    got, _ = uniform_gidd_loss(logits, z, x, t, vocab_size=V, z_loss_strength=0.0)
    alpha, u = 1 - t, t / V
    xhat = torch.softmax(logits, -1)
    q = alpha[..., None] * torch.nn.functional.one_hot(x, V) + u[..., None]
    qhat = alpha[..., None] * xhat + u[..., None]
    kl = (q * (q.log() - qhat.log())).sum(-1)
    r = q.gather(-1, z[..., None]).squeeze(-1) / qhat.gather(-1, z[..., None]).squeeze(-1)
    w = torch.where(z == x, t / (1 + (V - 1) * alpha), torch.ones_like(t))
    torch.testing.assert_close(got.double(), w * kl + w * (r - r.log() - 1), rtol=1e-4, atol=1e-6)
