"""Forward process, schedules and NELBO grids (spec §4, §5) against independent references:
the math module in float64, exact integrals, and chi-square goodness of fit with fixed seeds."""

import math
from statistics import NormalDist

import pytest
import torch

from sumi.diffusion import corrupt, nelbo_t_grid, nelbo_weight, sample_t, sampling_schedule


def sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


T_LO, T_HI = sigmoid(-9.0), sigmoid(9.0)


def chi2_threshold(df: int, p: float = 1e-6) -> float:
    """Upper p-quantile of chi-square(df), Wilson-Hilferty approximation."""
    z = NormalDist().inv_cdf(1 - p)
    c = 2.0 / (9.0 * df)
    return df * (1 - c + z * math.sqrt(c)) ** 3


def chi2_stat(counts, probs) -> float:
    n = sum(counts)
    return sum((o - n * p) ** 2 / (n * p) for o, p in zip(counts, probs))


# ----------------------------------------------------------------------------- sampling schedule
def ref_schedule(N: int, kind: str, lo: float, hi: float) -> list:
    out = []
    for k in range(N + 1):
        if kind == "linear":
            alpha = 1e-4 + ((1 - 1e-4) - 1e-4) * k / N
        else:
            t = (1 - 1e-3) + (1e-3 - (1 - 1e-3)) * k / N
            alpha = 0.5 + 0.5 * math.cos(math.pi * t)
        alpha = min(max(alpha, 1e-6), 1 - 1e-6)
        lam = math.log(alpha) - math.log1p(-alpha)
        out.append(min(max(lam, lo), hi))
    return out


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("N", [1, 2, 7, 128, 1000])
@pytest.mark.parametrize("bounds", [(-9.0, 9.0), (-4.0, 6.5)])
def test_sampling_schedule(kind, N, bounds):
    got = sampling_schedule(N, kind, *bounds)
    ref = ref_schedule(N, kind, *bounds)
    assert got.dtype == torch.float64 and got.shape == (N + 1,)
    # linspace rounding (~1e-16 in alpha) is magnified by dlambda/dalpha = 1/(alpha(1-alpha)) <= ~4e5
    torch.testing.assert_close(got, torch.tensor(ref, dtype=torch.float64), rtol=0, atol=1e-9)
    assert bool((got[1:] >= got[:-1]).all()), "ascending"
    assert float(got.min()) >= bounds[0] and float(got.max()) <= bounds[1]


def test_sampling_schedule_endpoints():
    # linear: alpha from 1e-4 to 1 - 1e-4, i.e. lambda = -+9.21, clamped to -+9
    lin = sampling_schedule(10, "linear")
    assert float(lin[0]) == -9.0 and float(lin[-1]) == 9.0
    # cosine: t = 1 - 1e-3 gives alpha = sin^2(pi * 1e-3 / 2) ~ 2.5e-6, lambda ~ -12.9 -> -9
    cos = sampling_schedule(10, "cosine")
    assert float(cos[0]) == -9.0 and float(cos[-1]) == 9.0
    # a midpoint of the linear schedule is alpha = 1/2, lambda = 0
    assert abs(float(sampling_schedule(2, "linear")[1])) < 1e-12
    assert abs(float(sampling_schedule(2, "cosine")[1])) < 1e-12


# ----------------------------------------------------------------------------- corrupt
def _check_marginal(x, z, t_of, V):
    """Group tokens by (t, x); each group's z histogram vs alpha 1[v = x] + (1 - alpha)/V."""
    groups = {}
    for key in set(zip(t_of.flatten().tolist(), x.flatten().tolist())):
        groups[key] = None
    tx = torch.stack([t_of.flatten().double(), x.flatten().double()], -1)
    checked = 0
    for t_val, x_val in groups:
        sel = (tx[:, 0] == t_val) & (tx[:, 1] == x_val)
        n = int(sel.sum())
        if n < 200:
            continue
        counts = torch.bincount(z.flatten()[sel], minlength=V).tolist()
        alpha = 1.0 - t_val
        probs = [alpha * (v == x_val) + (1 - alpha) / V for v in range(V)]
        stat = chi2_stat(counts, probs)
        assert stat < chi2_threshold(V - 1), (t_val, x_val, n, counts, stat)
        checked += 1
    return checked


def test_corrupt_scalar_t():
    V, B, S = 5, 4, 5000
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, V, (B, S), generator=g)
    for t in (0.05, 0.5, 0.93):
        z = corrupt(x, t, V, generator=torch.Generator().manual_seed(int(t * 100)))
        assert z.shape == x.shape and z.dtype == x.dtype
        t32 = float(torch.tensor(t, dtype=torch.float32))
        assert _check_marginal(x, z, torch.full(x.shape, t32, dtype=torch.float64), V) == V


@pytest.mark.parametrize("shape", ["B", "B1"])
def test_corrupt_per_row_t(shape):
    V, S = 4, 6000
    t_rows = torch.tensor([0.02, 0.3, 0.75, 0.999])
    x = torch.randint(0, V, (4, S), generator=torch.Generator().manual_seed(1))
    t = t_rows if shape == "B" else t_rows[:, None]
    z = corrupt(x, t, V, generator=torch.Generator().manual_seed(2))
    assert _check_marginal(x, z, t_rows[:, None].expand(4, S).double(), V) == 4 * V


def test_corrupt_per_token_t():
    V, B, S = 6, 2, 30000
    levels = torch.tensor([0.1, 0.45, 0.8])
    g = torch.Generator().manual_seed(3)
    t = levels[torch.randint(0, 3, (B, S), generator=g)]
    x = torch.randint(0, V, (B, S), generator=g)
    z = corrupt(x, t, V, generator=torch.Generator().manual_seed(4))
    assert _check_marginal(x, z, t.double(), V) == 3 * V


def test_corrupt_extremes_and_int32():
    V = 7
    x = torch.randint(0, V, (3, 2000), generator=torch.Generator().manual_seed(5), dtype=torch.int32)
    assert torch.equal(corrupt(x, 0.0, V, generator=torch.Generator().manual_seed(0)), x)
    z = corrupt(x, 1.0, V, generator=torch.Generator().manual_seed(1))
    assert z.dtype == torch.int32
    counts = torch.bincount(z.flatten().long(), minlength=V).tolist()
    assert chi2_stat(counts, [1.0 / V] * V) < chi2_threshold(V - 1)  # x forgotten entirely
    # independent of x: the fraction of z == x is 1/V
    frac = float((z == x).double().mean())
    assert abs(frac - 1 / V) < 4.5 * math.sqrt((1 / V) * (1 - 1 / V) / x.numel())


# ----------------------------------------------------------------------------- sample_t
def test_sample_t_range_and_uniformity():
    B, S = 8, 5000
    t = sample_t(B, S, per_token_fraction=1.0, generator=torch.Generator().manual_seed(0))
    assert t.shape == (B, S) and t.dtype == torch.float32
    lo32, hi32 = float(torch.tensor(T_LO, dtype=torch.float32)), float(torch.tensor(T_HI, dtype=torch.float32))
    assert float(t.min()) >= lo32 and float(t.max()) <= hi32
    # uniform on [T_LO, T_HI]: 20 equal bins
    bins = 20
    idx = ((t.double() - T_LO) / (T_HI - T_LO) * bins).floor().clamp(0, bins - 1).long()
    counts = torch.bincount(idx.flatten(), minlength=bins).tolist()
    assert chi2_stat(counts, [1 / bins] * bins) < chi2_threshold(bins - 1), counts
    # and the mean / variance of U[lo, hi]
    n = t.numel()
    mean = (T_LO + T_HI) / 2
    var = (T_HI - T_LO) ** 2 / 12
    assert abs(float(t.double().mean()) - mean) < 5 * math.sqrt(var / n)
    assert abs(float(t.double().var()) / var - 1) < 0.03


def test_sample_t_per_row_and_mixture():
    B, S = 400, 16
    per_row = sample_t(B, S, per_token_fraction=0.0, generator=torch.Generator().manual_seed(1))
    assert bool((per_row == per_row[:, :1]).all()), "per-row mode: one t per row"
    bins = 10
    idx = ((per_row[:, 0].double() - T_LO) / (T_HI - T_LO) * bins).floor().clamp(0, bins - 1).long()
    assert chi2_stat(torch.bincount(idx, minlength=bins).tolist(), [1 / bins] * bins) < chi2_threshold(bins - 1)

    mixed = sample_t(B, S, per_token_fraction=0.5, generator=torch.Generator().manual_seed(2))
    n_per_token = int((mixed != mixed[:, :1]).any(-1).sum())
    assert abs(n_per_token - B / 2) < 4.5 * math.sqrt(B / 4), n_per_token
    assert float(mixed.min()) >= float(torch.tensor(T_LO, dtype=torch.float32))
    assert float(mixed.max()) <= float(torch.tensor(T_HI, dtype=torch.float32))


def test_sample_t_custom_range():
    t = sample_t(
        4, 1000, per_token_fraction=1.0, min_log_snr=-2.0, max_log_snr=3.0, generator=torch.Generator().manual_seed(3)
    )
    lo, hi = sigmoid(-3.0), sigmoid(2.0)  # t = sigmoid(-lambda)
    assert float(t.min()) >= lo - 1e-7 and float(t.max()) <= hi + 1e-7
    assert float(t.min()) < lo + 0.01 and float(t.max()) > hi - 0.01


# ----------------------------------------------------------------------------- NELBO grids
def test_nelbo_weight():
    t = torch.tensor([1e-4, 0.25, 0.5, 0.9], dtype=torch.float64)
    ref = torch.tensor([1 / (v * (1 - v)) for v in t.tolist()], dtype=torch.float64)
    torch.testing.assert_close(nelbo_weight(t), ref, rtol=1e-14, atol=0)


@pytest.mark.parametrize("K", [1, 7, 64])
def test_nelbo_stratified_one_draw_per_stratum(K):
    t, w = nelbo_t_grid(K, method="stratified", generator=torch.Generator().manual_seed(K))
    assert t.dtype == torch.float64 and w.dtype == torch.float64 and t.shape == w.shape == (K,)
    width = (T_HI - T_LO) / K
    for k in range(K):
        assert T_LO + k * width - 1e-15 <= float(t[k]) <= T_LO + (k + 1) * width + 1e-15
    torch.testing.assert_close(w, torch.full((K,), 1.0 / K, dtype=torch.float64))


def test_nelbo_stratified_uniform_within_strata_and_unbiased():
    K, reps = 8, 1500
    offsets, estimates = [], []
    width = (T_HI - T_LO) / K
    g = torch.Generator().manual_seed(123)
    for _ in range(reps):
        t, w = nelbo_t_grid(K, method="stratified", generator=g)
        offsets += [(float(t[k]) - (T_LO + k * width)) / width for k in range(K)]
        estimates.append(float((w * t**2).sum()))
    bins = 10
    counts = [0] * bins
    for o in offsets:
        counts[min(int(o * bins), bins - 1)] += 1
    assert chi2_stat(counts, [1 / bins] * bins) < chi2_threshold(bins - 1), counts
    # E[sum_k w_k h(t_k)] = (1/(hi-lo)) * integral of h over [lo, hi], h(t) = t^2
    exact = (T_HI**3 - T_LO**3) / (3 * (T_HI - T_LO))
    mean = sum(estimates) / reps
    sd = math.sqrt(sum((e - mean) ** 2 for e in estimates) / (reps - 1))
    assert abs(mean - exact) < 5 * sd / math.sqrt(reps) + 1e-12


def _simpson(f, a, b, n=20000):
    h = (b - a) / n
    s = f(a) + f(b) + sum((4 if i % 2 else 2) * f(a + i * h) for i in range(1, n))
    return s * h / 3


# f as a function of t; exact value of (1/(t_max - t_min)) * integral_{-9}^{9} f(t(lambda)) dlambda,
# t(lambda) = sigmoid(-lambda)
QUADRATURE_CASES = {
    # t(1-t) dlambda = -dt: the integral is t_max - t_min, the average 1
    "t(1-t)": (lambda t: t * (1 - t), lambda: 1.0),
    # alpha = 1 - t = sigmoid(lambda): integral of sigmoid over [-9, 9] = softplus(9) - softplus(-9) = 9
    "alpha": (lambda t: 1 - t, lambda: 9.0 / (T_HI - T_LO)),
    # t^2 (1-t) dlambda = -t dt: (t_max^2 - t_min^2) / 2
    "t^2(1-t)": (lambda t: t * t * (1 - t), lambda: (T_HI**2 - T_LO**2) / 2 / (T_HI - T_LO)),
    # a loss-like smooth function, exact value by composite Simpson in lambda
    "log1p(t)*sqrt(t)": (
        lambda t: math.log1p(t) * math.sqrt(t),
        lambda: _simpson(lambda lam: math.log1p(sigmoid(-lam)) * math.sqrt(sigmoid(-lam)), -9.0, 9.0) / (T_HI - T_LO),
    ),
}


@pytest.mark.parametrize("case", sorted(QUADRATURE_CASES))
def test_nelbo_quadrature_integrates(case):
    f, exact = QUADRATURE_CASES[case]
    t, w = nelbo_t_grid(48, method="quadrature")
    assert t.dtype == torch.float64 and w.dtype == torch.float64
    assert float(t.min()) >= T_LO and float(t.max()) <= T_HI
    est = sum(float(wk) * f(float(tk)) / (float(tk) * (1 - float(tk))) for tk, wk in zip(t, w))
    ex = exact()
    assert abs(est - ex) <= 1e-7 * abs(ex), (est, ex)


def test_nelbo_quadrature_weights_sum_to_one():
    """sum_k w_k = the "t(1-t)" case above: exact only as K grows (Gauss-Legendre over [-9, 9] on
    sigmoid-shaped integrands, poles at +-i*pi: measured error 6.6e-2 at K=8, 5.4e-4 at K=16,
    1.9e-8 at K=32)."""
    for K, tol in ((16, 1e-3), (32, 1e-7), (64, 1e-12)):
        _, w = nelbo_t_grid(K, method="quadrature")
        assert abs(float(w.sum()) - 1.0) < tol, (K, float(w.sum()))


@pytest.mark.parametrize("bounds", [(-4.0, 6.0), (-9.0, 2.5)])
def test_nelbo_grids_custom_log_snr_range(bounds):
    lo_lam, hi_lam = bounds
    t_lo, t_hi = sigmoid(-hi_lam), sigmoid(-lo_lam)
    softplus = lambda v: math.log1p(math.exp(v))
    # (1/(t_hi - t_lo)) * integral_{lo}^{hi} sigmoid(lambda) dlambda
    exact = (softplus(hi_lam) - softplus(lo_lam)) / (t_hi - t_lo)
    t, w = nelbo_t_grid(64, method="quadrature", min_log_snr=lo_lam, max_log_snr=hi_lam)
    assert float(t.min()) >= t_lo and float(t.max()) <= t_hi
    est = sum(float(wk) * (1 - float(tk)) / (float(tk) * (1 - float(tk))) for tk, wk in zip(t, w))
    assert abs(est - exact) <= 1e-9 * exact, (est, exact)
    t, w = nelbo_t_grid(
        10, method="stratified", min_log_snr=lo_lam, max_log_snr=hi_lam, generator=torch.Generator().manual_seed(0)
    )
    width = (t_hi - t_lo) / 10
    for k in range(10):
        assert t_lo + k * width - 1e-15 <= float(t[k]) <= t_lo + (k + 1) * width + 1e-15
