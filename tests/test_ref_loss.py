"""The uniform GIDD loss (spec §4) against an independent float64 reference.

The reference below is written from the spec's formulas, literally and position by position:
explicit softmax, H_ce, H_q, KL = H_ce - H_q, the Itakura-Saito term from log r, the weight w
and the z-loss with logsumexp^2. It works on float64 torch scalars so that the same code also
gives float64 autograd gradients.
"""

import math

import pytest
import torch

import sumi
from sumi.diffusion import uniform_gidd_loss

EPS = 1e-12


# ----------------------------------------------------------------------------- reference
def ref_token_terms(logits_row: torch.Tensor, z: int, x: int, t: float, V: int) -> dict:
    """Spec §4 for one position. `logits_row` 1-D float64 (only the first V entries are used)."""
    lg = [logits_row[v] for v in range(V)]  # extra columns beyond V never enter
    m = max(float(l.detach()) for l in lg)  # a constant shift: exact, any value works
    sum_exp = sum(torch.exp(l - m) for l in lg)
    lse = m + torch.log(sum_exp)
    x_hat = [torch.exp(l - lse) for l in lg]

    alpha = min(max(1.0 - t, EPS), 1.0 - EPS)
    u = (1.0 - alpha) / V
    q_hat = [alpha * x_hat[v] + u for v in range(V)]

    h_ce = -alpha * torch.log(q_hat[x]) - u * sum(torch.log(q_hat[v]) for v in range(V))
    h_q = -((alpha + u) * math.log(alpha + u) + (V - 1) * u * math.log(u))
    kl = h_ce - h_q

    num = alpha * (1.0 if z == x else 0.0) + u
    log_r = math.log(num) - torch.log(alpha * x_hat[z] + u)
    itakura_saito = torch.exp(log_r) - log_r - 1.0

    w = 1.0 if z != x else (1.0 - alpha) / (1.0 + (V - 1) * alpha)
    return dict(kl=kl, is_=itakura_saito, w=w, lse=lse)


def ref_loss(logits, z_t, x, t_full, V, beta_is=1.0, z_loss=1e-5, ignore_index=-100):
    """Per-token loss `[B, S]` float64 (0 where ignored) and the valid mask, by explicit loops.

    `t_full` is `[B, S]` (any float dtype; its values are taken as given, in float64)."""
    logits = logits.double()
    B, S = z_t.shape
    rows, valid = [], torch.zeros(B, S, dtype=torch.bool)
    for b in range(B):
        row = []
        for s in range(S):
            xi = int(x[b, s])
            if xi == ignore_index:
                row.append(torch.zeros((), dtype=torch.float64))
                continue
            valid[b, s] = True
            r = ref_token_terms(logits[b, s], int(z_t[b, s]), xi, float(t_full[b, s]), V)
            row.append(r["w"] * r["kl"] + beta_is * r["w"] * r["is_"] + z_loss * r["lse"] ** 2)
        rows.append(torch.stack(row))
    return torch.stack(rows), valid


def make_batch(B, S, V, extra_cols=0, seed=0, scale=3.0, same_frac=0.5):
    """Random logits, clean x and a z_t equal to x on about `same_frac` of positions."""
    g = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(B, S, V + extra_cols, generator=g)
    if extra_cols:
        logits[..., V:] = 50.0  # would dominate any softmax that wrongly includes them
    x = torch.randint(0, V, (B, S), generator=g)
    other = (x + torch.randint(1, V, (B, S), generator=g)) % V  # guaranteed != x
    same = torch.rand(B, S, generator=g) < same_frac
    z = torch.where(same, x, other)
    return logits, z, x


def f32(v: float) -> float:
    """The float32 value nearest to v, as a Python float (what our fp32 code actually receives)."""
    return float(torch.tensor(v, dtype=torch.float32))


# ----------------------------------------------------------------------------- tests
@pytest.mark.parametrize("V", [7, 23, 50])
def test_loss_matches_reference_per_token_t(V):
    B, S = 3, 8
    logits, z, x = make_batch(B, S, V, seed=V)
    g = torch.Generator().manual_seed(100 + V)
    t = 0.02 + 0.96 * torch.rand(B, S, generator=g)
    loss, valid = uniform_gidd_loss(logits, z, x, t, vocab_size=V, beta_is=1.0, z_loss_strength=1e-5)
    ref, ref_valid = ref_loss(logits, z, x, t, V)
    assert loss.shape == (B, S) and loss.dtype == torch.float32
    assert torch.equal(valid, ref_valid) and bool(valid.all())
    assert bool((z == x).any()) and bool((z != x).any())
    torch.testing.assert_close(loss.double(), ref, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("t_shape", ["scalar", "B", "B1", "BS"])
def test_loss_t_shapes(t_shape):
    V, B, S = 11, 4, 6
    logits, z, x = make_batch(B, S, V, seed=1)
    t_rows = torch.tensor([0.1, 0.35, 0.6, 0.9])
    if t_shape == "scalar":
        t, t_full = 0.4, torch.full((B, S), f32(0.4), dtype=torch.float64)
    elif t_shape == "B":
        t, t_full = t_rows, t_rows[:, None].expand(B, S)
    elif t_shape == "B1":
        t, t_full = t_rows[:, None], t_rows[:, None].expand(B, S)
    else:
        t = torch.rand(B, S, generator=torch.Generator().manual_seed(5)) * 0.9 + 0.05
        t_full = t
    loss, valid = uniform_gidd_loss(logits, z, x, t, vocab_size=V)
    ref, _ = ref_loss(logits, z, x, t_full, V)
    torch.testing.assert_close(loss.double(), ref, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("t_value", [1e-4, 1e-3, 0.5, 0.999, 0.9999])
@pytest.mark.parametrize("peaked", [False, True])
def test_loss_terms_at_both_ends(t_value, peaked):
    """w*KL and w*IS separately (z-loss off) near t = 0 and t = 1, plus the full loss.

    Tolerances are those of an fp32 computation (spec §4 computes the loss in fp32):
    * small t: our code receives t as fp32 and forms alpha = 1 - t in fp32, so u = (1 - alpha)/V
      carries up to ~3e-4 relative error at t = 1e-4 (half an fp32 ulp of 1 over 1e-4); w and the
      IS term inherit it;
    * large t: the KL is O(alpha^2) (1e-7 at t = 0.9999) but is assembled from O(1/V)-sized log
      differences, so it is only good to an absolute ~2e-8 (measured 1.8e-8).
    Either way a formula mistake (wrong weight, sign, missing term) shows up orders above these.
    """
    V, B, S = 13, 2, 10
    logits, z, x = make_batch(B, S, V, seed=7)
    if peaked:  # a confident, correct denoiser: the KL is then small and cancellation-prone
        logits.scatter_(-1, x[..., None], 12.0)
    t = torch.full((B,), t_value)
    t_full = t[:, None].expand(B, S).double()  # the fp32 t our code sees, exactly, in float64
    if t_value < 1e-2:
        rtol, atol = 5e-4, (lambda scale: 1e-4 * scale)
    elif t_value <= 0.5:
        rtol, atol = 1e-4, (lambda scale: 5e-7)
    else:
        rtol, atol = 1e-4, (lambda scale: 5e-8)

    kl_only, _ = uniform_gidd_loss(logits, z, x, t, vocab_size=V, beta_is=0.0, z_loss_strength=0.0)
    with_is, _ = uniform_gidd_loss(logits, z, x, t, vocab_size=V, beta_is=1.0, z_loss_strength=0.0)
    full, _ = uniform_gidd_loss(logits, z, x, t, vocab_size=V, beta_is=1.0, z_loss_strength=1e-5)

    ref_wkl, _ = ref_loss(logits, z, x, t_full, V, beta_is=0.0, z_loss=0.0)
    ref_wkl_wis, _ = ref_loss(logits, z, x, t_full, V, beta_is=1.0, z_loss=0.0)
    ref_full, _ = ref_loss(logits, z, x, t_full, V, beta_is=1.0, z_loss=1e-5)
    ref_wis = ref_wkl_wis - ref_wkl

    for ours, ref in ((kl_only, ref_wkl), (with_is - kl_only, ref_wis), (full, ref_full)):
        torch.testing.assert_close(ours.double(), ref, rtol=rtol, atol=atol(float(ref.abs().max())))
    assert bool((kl_only >= -atol(float(ref_wkl.abs().max()))).all()), "a KL must not be negative"
    assert bool((ref_wkl >= -1e-12).all())


def test_loss_ignore_index_and_extra_columns():
    V, extra, B, S = 9, 5, 3, 7
    logits, z, x = make_batch(B, S, V, extra_cols=extra, seed=3)
    x = x.clone()
    x[0, 0] = x[1, 3] = x[2, 6] = x[2, 5] = -100
    t = torch.tensor([0.2, 0.5, 0.8])
    loss, valid = uniform_gidd_loss(logits, z, x, t, vocab_size=V, ignore_index=-100)
    ref, ref_valid = ref_loss(logits, z, x, t[:, None].expand(B, S), V)
    assert torch.equal(valid, ref_valid)
    assert int((~valid).sum()) == 4
    assert bool((loss[~valid] == 0).all())
    torch.testing.assert_close(loss.double(), ref, rtol=2e-5, atol=1e-6)
    # the extra columns carry no information: changing them leaves the loss unchanged
    logits2 = logits.clone()
    logits2[..., V:] = torch.randn(B, S, extra, generator=torch.Generator().manual_seed(0)) * 100
    loss2, _ = uniform_gidd_loss(logits2, z, x, t, vocab_size=V)
    assert torch.equal(loss, loss2)


@pytest.mark.parametrize("beta_is,z_loss", [(1.0, 1e-5), (0.3, 1e-2), (0.0, 0.0)])
def test_loss_beta_and_zloss(beta_is, z_loss):
    V, B, S = 17, 2, 9
    logits, z, x = make_batch(B, S, V, seed=11, scale=5.0)
    logits = logits + 4.0  # a sizeable logsumexp, so the z-loss is visible
    t = torch.tensor([0.15, 0.7])
    loss, _ = uniform_gidd_loss(logits, z, x, t, vocab_size=V, beta_is=beta_is, z_loss_strength=z_loss)
    ref, _ = ref_loss(logits, z, x, t[:, None].expand(B, S), V, beta_is=beta_is, z_loss=z_loss)
    torch.testing.assert_close(loss.double(), ref, rtol=2e-5, atol=1e-6)


def test_loss_gradient_matches_float64_autograd():
    V, extra, B, S = 11, 2, 2, 6
    logits, z, x = make_batch(B, S, V, extra_cols=extra, seed=21)
    x = x.clone()
    x[1, 2] = -100
    t = torch.rand(B, S, generator=torch.Generator().manual_seed(22)) * 0.9 + 0.05
    cot = torch.randn(B, S, generator=torch.Generator().manual_seed(23))  # a random cotangent

    lg32 = logits.clone().requires_grad_(True)
    loss, _ = uniform_gidd_loss(lg32, z, x, t, vocab_size=V, beta_is=1.0, z_loss_strength=1e-2)
    (loss * cot).sum().backward()

    lg64 = logits.double().clone().requires_grad_(True)
    ref, _ = ref_loss(lg64, z, x, t.double(), V, beta_is=1.0, z_loss=1e-2)
    (ref * cot.double()).sum().backward()

    assert bool((lg32.grad[..., V:] == 0).all()), "extra columns must get no gradient"
    assert bool((lg32.grad[1, 2] == 0).all()), "ignored positions must get no gradient"
    torch.testing.assert_close(lg32.grad.double(), lg64.grad, rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------- model-level loss
def _tiny_model(**overrides):
    torch.manual_seed(0)
    config = sumi.SumiConfig.from_preset("sumi-tiny", vocab_size=40, num_hidden_layers=1, **overrides)
    model = sumi.SumiForMaskGeneration(config).eval()
    with torch.no_grad():  # larger weights than the init, so the logits are far from uniform
        g = torch.Generator().manual_seed(1)
        model.lm_head.weight.copy_(torch.randn(model.lm_head.weight.shape, generator=g) * 0.5)
    return model


@pytest.mark.parametrize("t_kind", ["B", "B1", "BS"])
@pytest.mark.parametrize("overrides", [{}, dict(uniform_diffusion_beta_is=0.4, uniform_diffusion_z_loss_strength=3e-3)])
def test_model_loss_is_mean_of_reference(t_kind, overrides):
    model = _tiny_model(**overrides)
    V, B, S = model.config.vocab_size, 3, 10
    g = torch.Generator().manual_seed(2)
    x = torch.randint(0, V, (B, S), generator=g)
    noise = torch.randint(0, V, (B, S), generator=g)
    z = torch.where(torch.rand(B, S, generator=g) < 0.5, noise, x)
    labels = x.clone()
    labels[0, :3] = -100
    labels[2, 9] = -100
    t_rows = torch.tensor([0.1, 0.5, 0.95])
    t = {"B": t_rows, "B1": t_rows[:, None], "BS": torch.rand(B, S, generator=g) * 0.9 + 0.05}[t_kind]
    t_full = t if t_kind == "BS" else t_rows[:, None].expand(B, S)

    with torch.no_grad():
        out = model(input_ids=z, labels=labels, t=t)
        plain = model(input_ids=z).logits
    torch.testing.assert_close(out.logits, plain)
    beta = model.config.uniform_diffusion_beta_is
    zl = model.config.uniform_diffusion_z_loss_strength
    ref, valid = ref_loss(out.logits, z, labels, t_full, V, beta_is=beta, z_loss=zl)
    expected = ref[valid].sum() / valid.sum()
    assert out.loss.dim() == 0
    torch.testing.assert_close(out.loss.double(), expected, rtol=2e-5, atol=1e-7)


def test_model_labels_without_t_raises():
    model = _tiny_model()
    z = torch.randint(0, model.config.vocab_size, (2, 5), generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError):
        model(input_ids=z, labels=z)


def test_loss_from_bf16_logits_is_computed_in_fp32():
    """bf16 logits (a bf16 model's output) are upcast before any arithmetic: the loss equals the
    reference evaluated on the bf16 values themselves, to fp32 accuracy."""
    V, B, S = 19, 2, 8
    logits, z, x = make_batch(B, S, V, extra_cols=1, seed=31)
    logits = logits.to(torch.bfloat16)
    t = torch.tensor([0.25, 0.8])
    loss, _ = uniform_gidd_loss(logits, z, x, t, vocab_size=V, z_loss_strength=1e-3)
    assert loss.dtype == torch.float32
    ref, _ = ref_loss(logits, z, x, t[:, None].expand(B, S), V, z_loss=1e-3)
    torch.testing.assert_close(loss.double(), ref, rtol=2e-5, atol=1e-6)
