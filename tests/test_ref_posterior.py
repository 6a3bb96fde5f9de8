"""The samplers of spec §5 against brute-force references.

* `dense_posterior` equals Bayes' rule by explicit enumeration over the clean token x and z_s:
  p(z_s = v | z_t, x_hat) ∝ sum_x x_hat(x) q(z_s = v | x) q(z_t | z_s = v) with the uniform-noise
  kernels q(z_s = v | x) = a_s 1[v = x] + (1 - a_s)/V and q(z_t = w | z_s = v) = a_ts 1[w = v] +
  (1 - a_ts)/V, a_ts = a_t / a_s, a = sigmoid(log_snr).
* `ancestral_step` draws from that law (chi-square goodness of fit, fixed seeds).
* `adaptive_step` / `greedy_step` against loops over positions.
"""

import math
from statistics import NormalDist

import pytest
import torch

from sumi.generation_sumi import _Randomness, adaptive_step, ancestral_step, dense_posterior, greedy_step


# ----------------------------------------------------------------------------- references
def sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def softmax64(row, temperature=1.0):
    vals = [float(l) / temperature for l in row]
    m = max(vals)
    e = [math.exp(v - m) for v in vals]
    z = sum(e)
    return [x / z for x in e]


def ref_posterior(x_hat: list, z_t: int, log_snr_t: float, log_snr_s: float) -> list:
    """Bayes' rule by enumeration, float64 (Python floats)."""
    V = len(x_hat)
    a_t, a_s = sigmoid(log_snr_t), sigmoid(log_snr_s)
    a_ts = a_t / a_s

    def q_s_given_x(v, x):
        return a_s * (v == x) + (1 - a_s) / V

    def q_t_given_s(w, v):
        return a_ts * (w == v) + (1 - a_ts) / V

    joint = [sum(x_hat[x] * q_s_given_x(v, x) * q_t_given_s(z_t, v) for x in range(V)) for v in range(V)]
    total = sum(joint)
    return [j / total for j in joint]


def linear_schedule_log_snr(N: int, k: int) -> float:
    """Entry k of the spec §5 linear schedule, from the formula (independent of our code)."""
    alpha = 1e-4 + (1 - 2e-4) * k / N
    alpha = min(max(alpha, 1e-6), 1 - 1e-6)
    return min(max(math.log(alpha) - math.log1p(-alpha), -9.0), 9.0)


def chi2_threshold(df: int, p: float = 1e-6) -> float:
    """Upper p-quantile of chi-square(df), Wilson-Hilferty approximation."""
    z = NormalDist().inv_cdf(1 - p)
    c = 2.0 / (9.0 * df)
    return df * (1 - c + z * math.sqrt(c)) ** 3


def chi2_stat(counts: list, probs: list, min_expected: float = 5.0) -> tuple[float, int]:
    """Pearson's statistic; cells with expected count < min_expected are pooled into one cell.
    Returns (statistic, degrees of freedom)."""
    n = sum(counts)
    cells, pool_o, pool_e = [], 0.0, 0.0
    for o, p in zip(counts, probs):
        e = n * p
        if e < min_expected:
            pool_o, pool_e = pool_o + o, pool_e + e
        else:
            cells.append((o, e))
    if pool_e > 0:
        if pool_e >= 1.0 or not cells:
            cells.append((pool_o, pool_e))
        else:  # a negligible pooled cell: fold it into the smallest cell
            j = min(range(len(cells)), key=lambda i: cells[i][1])
            cells[j] = (cells[j][0] + pool_o, cells[j][1] + pool_e)
    stat = sum((o - e) ** 2 / e for o, e in cells)
    return stat, max(len(cells) - 1, 1)


def rng_for(seed: int, S: int) -> _Randomness:
    return _Randomness([torch.Generator().manual_seed(seed)], [(0, S)], "cpu")


# schedule pairs (log_snr_t, log_snr_s): early, middle and late steps of a 128-step linear schedule,
# a coarse middle step and the whole range in one step
PAIRS = [
    (linear_schedule_log_snr(128, 0), linear_schedule_log_snr(128, 1)),
    (linear_schedule_log_snr(128, 64), linear_schedule_log_snr(128, 65)),
    (linear_schedule_log_snr(128, 127), linear_schedule_log_snr(128, 128)),
    (-1.0, 1.5),
    (-9.0, 9.0),
]


# ----------------------------------------------------------------------------- dense posterior
@pytest.mark.parametrize("pair", PAIRS + [(-3.0, -2.9), (2.0, 6.0)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_dense_posterior_is_bayes(pair, dtype):
    lt, ls = pair
    V, B, S = 7, 3, 5
    g = torch.Generator().manual_seed(0)
    x_hat = torch.softmax(2.0 * torch.randn(B, S, V, generator=g, dtype=torch.float64), -1)
    x_hat[0, 0] = torch.tensor([1.0, 0, 0, 0, 0, 0, 0], dtype=torch.float64)  # a one-hot denoiser
    z_t = torch.randint(0, V, (B, S), generator=g)
    z_t[0, 0] = 3  # ... that disagrees with z_t
    got = dense_posterior(x_hat.to(dtype), z_t, lt, ls)
    assert got.shape == (B, S, V)
    tol = dict(rtol=1e-10, atol=1e-13) if dtype == torch.float64 else dict(rtol=2e-5, atol=1e-7)
    torch.testing.assert_close(got.double().sum(-1), torch.ones(B, S, dtype=torch.float64), **tol)
    for b in range(B):
        for s in range(S):
            ref = ref_posterior(x_hat[b, s].tolist(), int(z_t[b, s]), lt, ls)
            torch.testing.assert_close(got[b, s].double(), torch.tensor(ref, dtype=torch.float64), **tol)


# ----------------------------------------------------------------------------- ancestral step
def _ancestral_setup(V=6, n_per_group=5000, extra=2):
    """4 distinct logits rows, each shared by n_per_group positions of one canvas row, with a z_t
    that is the argmax, the argmin, a middle token and the argmax again."""
    g = torch.Generator().manual_seed(42)
    rows = 1.5 * torch.randn(4, V, generator=g)
    order = rows.argsort(-1)
    z_vals = [int(order[0, -1]), int(order[1, 0]), int(order[2, V // 2]), int(order[3, -1])]
    S = 4 * n_per_group
    logits = torch.empty(1, S, V + extra)
    z_t = torch.empty(1, S, dtype=torch.long)
    for i in range(4):
        sl = slice(i * n_per_group, (i + 1) * n_per_group)
        logits[0, sl, :V] = rows[i]
        z_t[0, sl] = z_vals[i]
    logits[..., V:] = 30.0  # extra columns beyond vocab_size must be ignored
    return rows, z_vals, logits, z_t


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("pair_index", range(len(PAIRS)))
def test_ancestral_step_distribution(pair_index, temperature):
    lt, ls = PAIRS[pair_index]
    V, n = 6, 5000
    rows, z_vals, logits, z_t = _ancestral_setup(V, n)
    S = z_t.shape[1]
    free = torch.ones(1, S, dtype=torch.bool)
    z_s = ancestral_step(
        logits,
        z_t,
        free,
        lt,
        ls,
        rng_for(1000 + 10 * pair_index + int(temperature * 10), S),
        vocab_size=V,
        temperature=temperature,
    )
    assert z_s.shape == z_t.shape and z_s.dtype == z_t.dtype
    assert int(z_s.min()) >= 0 and int(z_s.max()) < V
    for i in range(4):
        counts = torch.bincount(z_s[0, i * n : (i + 1) * n], minlength=V).tolist()
        probs = ref_posterior(softmax64(rows[i].tolist(), temperature), z_vals[i], lt, ls)
        stat, df = chi2_stat(counts, probs)
        assert stat < chi2_threshold(df), (i, stat, df, counts, [round(p * n, 1) for p in probs])


def test_ancestral_chi_square_has_power():
    """The goodness-of-fit test above rejects near-miss laws: the posterior with the temperature
    ignored, and the marginal q(z_s | x_hat) that forgets the observed z_t."""
    V, n = 6, 5000
    lt, ls = -1.0, 1.5
    rows, z_vals, logits, z_t = _ancestral_setup(V, n)
    S = z_t.shape[1]
    z_s = ancestral_step(
        logits, z_t, torch.ones(1, S, dtype=torch.bool), lt, ls, rng_for(7, S), vocab_size=V, temperature=0.7
    )

    def forgets_z_t(i):
        a_s = sigmoid(ls)
        return [a_s * p + (1 - a_s) / V for p in softmax64(rows[i].tolist(), 0.7)]

    wrong_laws = {
        "untempered": lambda i: ref_posterior(softmax64(rows[i].tolist(), 1.0), z_vals[i], lt, ls),
        "forgets z_t": forgets_z_t,
    }
    for name, law in wrong_laws.items():
        total, total_df = 0.0, 0
        for i in range(4):
            counts = torch.bincount(z_s[0, i * n : (i + 1) * n], minlength=V).tolist()
            stat, df = chi2_stat(counts, law(i))
            total, total_df = total + stat, total_df + df
        assert total > chi2_threshold(total_df), name


def test_ancestral_step_respects_free():
    V, B, S = 9, 3, 400
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(B, S, V, generator=g)
    z_t = torch.randint(0, V, (B, S), generator=g)
    free = torch.rand(B, S, generator=g) < 0.5
    for lt, ls in PAIRS:
        z_s = ancestral_step(logits, z_t, free, lt, ls, rng_for(5, S), vocab_size=V, temperature=1.0)
        assert torch.equal(z_s[~free], z_t[~free])
        if ls - lt > 1.0:  # a big step changes many free positions
            assert bool((z_s[free] != z_t[free]).any())
    none_free = torch.zeros(B, S, dtype=torch.bool)
    z_s = ancestral_step(logits, z_t, none_free, -9.0, 9.0, rng_for(6, S), vocab_size=V, temperature=1.0)
    assert torch.equal(z_s, z_t)


# ----------------------------------------------------------------------------- adaptive step
def ref_adaptive_selection(logits, z_t, free, V, k, temperature_for_conf=1.0):
    """Per row: the free positions sorted by p_max - p(z_t) (softmax of logits / T, float64), top k."""
    B, S = z_t.shape
    out = []
    for b in range(B):
        confs = []
        for s in range(S):
            if not bool(free[b, s]):
                continue
            p = softmax64(logits[b, s, :V].tolist(), temperature_for_conf)
            confs.append((max(p) - p[int(z_t[b, s])], s))
        confs.sort(key=lambda c: -c[0])
        out.append([s for _, s in confs[:k]])
    return out


def argmax_list(row):
    row = list(row)
    return max(range(len(row)), key=lambda i: row[i])


def _adaptive_case(seed=0, V=8, B=4, S=12, extra=3):
    g = torch.Generator().manual_seed(seed)
    logits = 2.0 * torch.randn(B, S, V + extra, generator=g)
    logits[..., V:] = 40.0  # must be ignored
    top = logits[..., :V].argmax(-1)
    z_t = (top + torch.randint(1, V, (B, S), generator=g)) % V  # never the argmax: no confidence ties at 0
    free = torch.rand(B, S, generator=g) < 0.7
    free[1] = False
    free[1, 4] = True  # a row with a single free position
    free[2] = False  # a row with none
    # the most confident position of row 0 is made non-free: it must not be chosen
    conf0 = [
        max(softmax64(logits[0, s, :V].tolist())) - softmax64(logits[0, s, :V].tolist())[int(z_t[0, s])]
        for s in range(S)
    ]
    free[0, max(range(S), key=lambda s: conf0[s])] = False
    return logits, z_t, free


@pytest.mark.parametrize("k", [1, 2, 3])
def test_adaptive_step_greedy_matches_reference(k):
    V = 8
    logits, z_t, free = _adaptive_case(V=V)
    B, S = z_t.shape
    z_s, selected = adaptive_step(logits, z_t, free, rng_for(0, S), vocab_size=V, tokens_per_step=k, temperature=0.0)
    ref_sel = ref_adaptive_selection(logits, z_t, free, V, k)
    assert selected.shape == (B, k)
    for b in range(B):
        got = [int(s) for s in selected[b] if int(s) >= 0]
        assert sorted(got) == sorted(ref_sel[b]), (b, got, ref_sel[b])
        assert int((selected[b] == -1).sum()) == k - len(ref_sel[b])
        for s in range(S):
            expected = argmax_list(logits[b, s, :V].tolist()) if s in ref_sel[b] else int(z_t[b, s])
            assert int(z_s[b, s]) == expected, (b, s)


def test_adaptive_confidence_is_gap_not_top_probability():
    """A position whose current token already is the (very likely) argmax has confidence 0 and
    loses to a less certain position whose current token is unlikely."""
    V = 5
    logits = torch.tensor([[[6.0, 0, 0, 0, 0], [1.0, 0.8, 0, 0, -3.0]]])
    z_t = torch.tensor([[0, 4]])
    free = torch.ones(1, 2, dtype=torch.bool)
    z_s, selected = adaptive_step(logits, z_t, free, rng_for(0, 2), vocab_size=V, tokens_per_step=1, temperature=0.0)
    assert selected.tolist() == [[1]]
    assert z_s.tolist() == [[0, 0]]


@pytest.mark.parametrize("temperature", [0.3, 2.0])
def test_adaptive_selection_uses_untempered_softmax(temperature):
    V, k = 8, 2
    for seed in range(50):  # the first deterministic case where tempering would change the choice
        logits, z_t, free = _adaptive_case(seed=seed, V=V)
        untempered = ref_adaptive_selection(logits, z_t, free, V, k)
        tempered = ref_adaptive_selection(logits, z_t, free, V, k, temperature)
        if any(sorted(a) != sorted(b) for a, b in zip(untempered, tempered)):
            break
    else:
        pytest.fail("no discriminating case found")
    S = z_t.shape[1]
    z_s, selected = adaptive_step(
        logits, z_t, free, rng_for(1, S), vocab_size=V, tokens_per_step=k, temperature=temperature
    )
    for b in range(z_t.shape[0]):
        got = sorted(int(s) for s in selected[b] if int(s) >= 0)
        assert got == sorted(untempered[b])
        unselected = [s for s in range(S) if s not in untempered[b]]
        assert torch.equal(z_s[b, unselected], z_t[b, unselected])


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_adaptive_sample_distribution(temperature):
    """Many rows with one clearly selected position each: the written token ~ softmax(logits / T)."""
    V, B = 6, 6000
    row = torch.tensor([1.2, -0.3, 0.4, 0.0, -1.0, 0.9])
    logits = torch.zeros(B, 2, V + 1)
    logits[:, :, :V] = row
    logits[:, :, V] = 25.0
    z_t = torch.empty(B, 2, dtype=torch.long)
    z_t[:, 0] = int(row.argmax())  # confidence 0
    z_t[:, 1] = int(row.argmin())  # confidence > 0: always the one selected
    free = torch.ones(B, 2, dtype=torch.bool)
    z_s, selected = adaptive_step(
        logits, z_t, free, rng_for(11, 2), vocab_size=V, tokens_per_step=1, temperature=temperature
    )
    assert bool((selected[:, 0] == 1).all())
    assert torch.equal(z_s[:, 0], z_t[:, 0])
    counts = torch.bincount(z_s[:, 1], minlength=V).tolist()
    assert len(counts) == V  # nothing drawn from the extra column
    stat, df = chi2_stat(counts, softmax64(row.tolist(), temperature))
    assert stat < chi2_threshold(df), (stat, df, counts)


# ----------------------------------------------------------------------------- greedy step
def test_greedy_step_matches_reference():
    V, B, S = 10, 3, 15
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(B, S, V + 4, generator=g)
    logits[..., V:] = 9.0  # larger than any real logit: must be ignored
    z_t = torch.randint(0, V, (B, S), generator=g)
    free = torch.rand(B, S, generator=g) < 0.6
    z_s = greedy_step(logits, z_t, free, vocab_size=V)
    for b in range(B):
        for s in range(S):
            expected = argmax_list(logits[b, s, :V].tolist()) if bool(free[b, s]) else int(z_t[b, s])
            assert int(z_s[b, s]) == expected


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_softmax_summary_matches_float64_softmax(dtype, temperature):
    # V large enough that the CPU path works in several row blocks (2^20 // V = 20 rows each,
    # 66 rows in all: three full blocks and a partial one)
    from sumi.generation_sumi import softmax_summary

    g = torch.Generator().manual_seed(7)
    B, S, V = 2, 33, 50000
    logits = (torch.randn(B, S, V, generator=g) * 3).to(dtype)
    z = torch.randint(0, V, (B, S), generator=g)
    z[0, :5] = logits[0, :5].float().argmax(-1)  # some positions already hold their argmax
    got = softmax_summary(logits, z, temperature, top1=True, entropy=True)
    x = logits.double() / temperature
    p = torch.exp(x - x.max(-1, keepdim=True).values)
    p = p / p.sum(-1, keepdim=True)
    want_at_z = p.gather(-1, z[..., None]).squeeze(-1)
    want_max, want_arg = p.max(-1)
    want_entropy = -(p * torch.log(p)).sum(-1)
    assert torch.allclose(got["at_z"].double(), want_at_z, rtol=1e-5, atol=1e-12)
    assert torch.allclose(got["max"].double(), want_max, rtol=1e-5, atol=1e-12)
    assert torch.equal(got["argmax"], want_arg)
    assert torch.allclose(got["entropy"].double(), want_entropy, rtol=1e-5, atol=1e-6)
    assert torch.equal(got["at_z"][0, :5], got["max"][0, :5])  # gap exactly 0 where z is the argmax
