"""The NELBO estimator of sumi.evaluation: unbiased against an exact computation, variance, seeding."""

import itertools
import math

import numpy as np
import pytest
import torch

from sumi import SumiConfig, SumiForMaskGeneration
from sumi.diffusion import estimate_nelbo, t_range, uniform_gidd_loss
from sumi.evaluation.nelbo import NELBO_METHODS, ScoreRequest, nelbo_scores, rolling_windows, t_grid

V = 4
CANVAS = (1, 3, 0, 2, 1)  # position 0 and 4 stay clean (context); [1, 4) is scored
SPAN = (1, 4)


@pytest.fixture(scope="module")
def toy():
    """A sumi-tiny-shaped model with V = 4 and a sharpened head, so the loss depends strongly on z."""
    torch.manual_seed(0)
    cfg = SumiConfig.from_preset(
        "sumi-tiny", vocab_size=V, max_position_embeddings=16, bos_token_id=1, eos_token_id=2, pad_token_id=0
    )
    model = SumiForMaskGeneration(cfg).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(60.0)
    return model


def exact_nelbo(model, canvas, span, nodes: int = 200) -> float:
    """E_{t~U[t_min,t_max]} E_z [sum_span loss / (t(1-t))] with E_z by enumeration over all V^L
    noisings of the span and the t integral as Gauss-Legendre in lambda (dt / (t(1-t)) = dlambda)."""
    a, b = span
    x = torch.tensor(canvas)
    zs = torch.tensor(list(itertools.product(range(V), repeat=b - a)))
    Z = x.repeat(len(zs), 1)
    Z[:, a:b] = zs
    with torch.no_grad():
        logits = model(Z).logits
    lo, hi = t_range()
    lam_nodes, lam_weights = np.polynomial.legendre.leggauss(nodes)
    total = 0.0
    for node, weight in zip(9.0 * lam_nodes, 9.0 * lam_weights):
        t = 1.0 / (1.0 + math.exp(node))
        loss, _ = uniform_gidd_loss(logits, Z, x.expand_as(Z), t, vocab_size=V, z_loss_strength=0.0)
        q = torch.where(zs == x[a:b], (1 - t) + t / V, t / V).double().prod(-1)  # q(z | x, t)
        total += weight * float((q * loss[:, a:b].double().sum(-1)).sum())
    return total / (hi - lo)


def estimates(model, method, K, M, seed=0):
    reqs = [ScoreRequest(CANVAS, *SPAN, key=("rep", r)) for r in range(M)]
    return np.array(nelbo_scores(model, reqs, num_samples=K, method=method, seed=seed, batch_size=1024))


def test_exact_reference_is_converged_and_matches_the_library_definition(toy):
    e200, e400 = exact_nelbo(toy, CANVAS, SPAN, 200), exact_nelbo(toy, CANVAS, SPAN, 400)
    assert abs(e200 - e400) < 1e-6 * abs(e400)
    # sumi.diffusion.estimate_nelbo agrees with the exact value. It shares one t grid across the
    # batch, so use its (near-exact in t) quadrature grid; the rows then average out the noise in z.
    x = torch.tensor([CANVAS] * 400)
    mask = torch.zeros_like(x, dtype=torch.bool)
    mask[:, SPAN[0] : SPAN[1]] = True
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        per_row = (
            estimate_nelbo(
                lambda z: toy(z).logits,
                x,
                vocab_size=V,
                num_samples=64,
                method="quadrature",
                noise_mask=mask,
                generator=g,
            )
            .double()
            .sum(-1)
        )
    se = float(per_row.std()) / math.sqrt(len(per_row))
    assert abs(float(per_row.mean()) - e400) < 4 * se


@pytest.mark.parametrize("method", ["stratified-logsnr", "stratified"])
def test_stratified_estimators_are_unbiased(toy, method):
    exact = exact_nelbo(toy, CANVAS, SPAN)
    est = estimates(toy, method, K=4, M=600)
    se = est.std(ddof=1) / math.sqrt(len(est))
    assert abs(est.mean() - exact) < 4 * se, (method, est.mean(), exact, se)
    if method == "stratified-logsnr":
        assert se < 0.05 * exact  # the test has power: the standard error is small against the value


def test_variance_shrinks_with_more_samples(toy):
    sds = {K: estimates(toy, "stratified-logsnr", K=K, M=200, seed=1).std(ddof=1) for K in (2, 8, 32)}
    assert sds[2] > sds[8] > sds[32]
    assert sds[32] < 0.5 * sds[2]  # ~1/sqrt(K): 4x fewer samples -> ~2x the standard deviation
    # the default method is much less noisy than stratifying uniformly in t (heavy tail at small t)
    assert sds[8] < estimates(toy, "stratified", K=8, M=200, seed=1).std(ddof=1)


def test_t_grids_estimate_a_known_integral():
    lo, hi = t_range()
    target = (hi + lo) / 2  # E_{t~U[lo,hi]}[t] = E[f / (t(1-t))] for f = t^2 (1-t)
    for method in NELBO_METHODS:
        vals = []
        for s in range(400 if method != "quadrature" else 1):
            t, w = t_grid(32, method, generator=torch.Generator().manual_seed(s))
            assert t.shape == w.shape == (32,) and bool(((t > 0) & (t < 1)).all())
            vals.append(float((w * t).sum()))
        assert abs(np.mean(vals) - target) < 0.01, method


def test_results_do_not_depend_on_batching_or_order(toy):
    reqs = [ScoreRequest((1, 3, 0, 2, 1, 0)[:n], 1, n) for n in (3, 4, 5, 6)]
    a = nelbo_scores(toy, reqs, num_samples=4, seed=3, batch_size=1)
    b = nelbo_scores(toy, reqs, num_samples=4, seed=3, batch_size=16)
    c = nelbo_scores(toy, reqs[::-1], num_samples=4, seed=3, batch_size=5)[::-1]
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # padding may change the last float bits
    np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-6)
    assert nelbo_scores(toy, reqs, num_samples=4, seed=4)[0] != a[0]  # the seed matters
    # an empty span scores 0 and costs nothing
    assert nelbo_scores(toy, [ScoreRequest((1, 2), 1, 1)], num_samples=4) == [0.0]


def test_a_requests_score_is_bit_identical_whatever_else_is_scored_with_it():
    """Batches never mix random keys, so a data-parallel shard (any whole items, any order) gives
    the very same floats as the whole set: here items of two choices and of different lengths,
    whose canvases would otherwise share padded batches (which moved the last bits)."""
    torch.manual_seed(0)
    model = SumiForMaskGeneration(SumiConfig.from_preset("sumi-tiny")).eval()
    text = torch.randint(0, model.config.vocab_size, (64,), generator=torch.Generator().manual_seed(1)).tolist()
    reqs = [ScoreRequest(tuple(text[:n]), n // 2, n - m, key=("item", n)) for n in (17, 23, 40, 64) for m in (0, 3)]
    whole = nelbo_scores(model, reqs, num_samples=4, seed=3, batch_size=3)
    for part in (reqs[:4], reqs[6:], reqs[::-1], [reqs[i] for i in (7, 2, 6, 3)]):
        alone = nelbo_scores(model, part, num_samples=4, seed=3, batch_size=3)
        assert alone == [whole[reqs.index(r)] for r in part]


def test_choices_sharing_a_context_share_random_numbers(toy):
    same = [ScoreRequest((1, 3, 0, 2), 2, 4), ScoreRequest((1, 3, 0, 2), 2, 4)]
    s = nelbo_scores(toy, same, num_samples=2, seed=0)
    assert s[0] == s[1]
    keyed = [ScoreRequest((1, 3, 0, 2), 2, 4, key=(0,)), ScoreRequest((1, 3, 0, 2), 2, 4, key=(1,))]
    s = nelbo_scores(toy, keyed, num_samples=2, seed=0)
    assert s[0] != s[1]


def test_invalid_requests_are_rejected(toy):
    with pytest.raises(ValueError):
        ScoreRequest((1, 2), 1, 3)
    with pytest.raises(ValueError):
        nelbo_scores(toy, [ScoreRequest((1, 9), 1, 2)])  # id >= V
    with pytest.raises(ValueError):
        nelbo_scores(toy, [ScoreRequest((1, 2), 1, 2)], method="simpson")


@pytest.mark.parametrize(
    "n,window,bos,context",
    [
        (0, 8, True, 0),
        (5, 8, True, 0),
        (7, 8, True, 0),
        (30, 8, True, 0),
        (30, 8, False, 0),
        (30, 8, True, 3),
        (100, 16, True, 15),
    ],
)
def test_rolling_windows_score_every_token_once(n, window, bos, context):
    wins = rolling_windows(n, window, bos=bos, context=context)
    first = 1 if bos else 0
    scored = [p for _, a, b in wins for p in range(a, b)]
    assert scored == list(range(first, n + first))
    for c0, a, b in wins:
        assert 0 <= c0 <= a < b and b - c0 <= window
    if n + first >= window and wins:
        assert all(b - c0 == window for c0, _, b in wins)  # full canvases (the last one gets left context)


def test_common_random_numbers_make_choice_differences_precise():
    """Two one-letter answers to the same question: with shared random numbers (the default key is
    the context) the difference of their NELBOs is far less noisy than with independent draws."""
    from sumi.loading import build_preset

    model = build_preset("sumi-tiny")
    ctx = [1] + list(b"Question: which letter?\nAnswer:")
    a, b = tuple(ctx + list(b" A")), tuple(ctx + list(b" B"))
    n = len(ctx)
    shared, independent = [], []
    for rep in range(30):
        x, y = nelbo_scores(
            model, [ScoreRequest(a, n, n + 2, key=(rep,)), ScoreRequest(b, n, n + 2, key=(rep,))], num_samples=8
        )
        shared.append(x - y)
        x, y = nelbo_scores(
            model, [ScoreRequest(a, n, n + 2, key=(rep, 0)), ScoreRequest(b, n, n + 2, key=(rep, 1))], num_samples=8
        )
        independent.append(x - y)
    assert np.std(shared) < 0.1 * np.std(independent)
