"""The chunked (fused linear + GIDD) loss equals the unfused loss, value and gradients."""

import pytest
import torch

from sumi import SumiConfig, SumiForMaskGeneration
from sumi.diffusion import corrupt, fused_linear_gidd_loss, sample_t, uniform_gidd_loss


@pytest.mark.parametrize("chunk", [1, 7, 64, 10_000])
def test_fused_matches_unfused_loss_and_gradients(chunk):
    g = torch.Generator().manual_seed(0)
    B, S, H, V = 3, 11, 16, 37
    hidden = torch.randn(B, S, H, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(V, H, generator=g, dtype=torch.float64, requires_grad=True)
    x = torch.randint(0, V, (B, S), generator=g)
    x[0, :3] = -100  # ignored positions
    t = sample_t(B, S, generator=g).double()
    z = corrupt(x.clamp(min=0), t, V, generator=g)

    per_token, valid = uniform_gidd_loss(hidden @ weight.T, z, x, t, vocab_size=V)
    ref = per_token.sum() / valid.sum()
    ref.backward()
    ref_gh, ref_gw = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None

    total, count = fused_linear_gidd_loss(hidden, weight, z, x, t, vocab_size=V, chunk_size=chunk)
    loss = total / count
    loss.backward()
    assert count == valid.sum()
    torch.testing.assert_close(loss.double(), ref.double(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(hidden.grad, ref_gh, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(weight.grad, ref_gw, rtol=1e-4, atol=1e-7)


def test_model_forward_with_loss_chunk_size():
    torch.manual_seed(0)
    model = SumiForMaskGeneration(SumiConfig.from_preset("sumi-tiny"))
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (2, 24), generator=g)
    t = torch.rand(2, generator=g)
    z = corrupt(x, t, 256, generator=g)
    full = model(input_ids=z, labels=x, t=t)
    full.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    fused = model(input_ids=z, labels=x, t=t, loss_chunk_size=5)
    fused.loss.backward()
    assert fused.logits is None
    torch.testing.assert_close(fused.loss, full.loss, rtol=1e-5, atol=1e-6)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], rtol=1e-3, atol=1e-6, msg=n)
