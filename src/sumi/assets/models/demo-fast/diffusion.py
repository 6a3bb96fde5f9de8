"""Uniform discrete diffusion: log-SNR helpers, noise, schedules, the GIDD loss and the NELBO.

Pure tensor functions (torch only), shared by training, sampling and evaluation. This file is
also exported as part of a checkpoint's remote code, so it must not import `sumi`.

Conventions (spec §4): `t` is the noise level, `alpha = 1 - t` the probability that a token is
still clean, `lambda = log(alpha / (1 - alpha))` the log-SNR. The forward process replaces each
token, with probability `t`, by a uniform draw from `[0, V)`, so
`q(z_t = v | x) = alpha * 1[v = x] + (1 - alpha) / V`.
"""

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

MIN_LOG_SNR = -9.0
MAX_LOG_SNR = 9.0
SCHEDULES = ("linear", "cosine")


# ----------------------------------------------------------------------------- log-SNR helpers
def alpha_from_log_snr(log_snr: torch.Tensor) -> torch.Tensor:
    """alpha = sigmoid(lambda)."""
    return torch.sigmoid(log_snr)


def log_snr_from_alpha(alpha: torch.Tensor) -> torch.Tensor:
    """lambda = log(alpha) - log(1 - alpha)."""
    return torch.log(alpha) - torch.log1p(-alpha)


def t_from_log_snr(log_snr: torch.Tensor) -> torch.Tensor:
    """t = 1 - alpha = sigmoid(-lambda)."""
    return torch.sigmoid(-log_snr)


def log_snr_from_t(t: torch.Tensor) -> torch.Tensor:
    """lambda = log(1 - t) - log(t)."""
    return torch.log1p(-t) - torch.log(t)


def t_range(min_log_snr: float = MIN_LOG_SNR, max_log_snr: float = MAX_LOG_SNR) -> tuple[float, float]:
    """The interval of t that the log-SNR range [min, max] maps to: (sigmoid(-max), sigmoid(-min))."""
    if not min_log_snr < max_log_snr:
        raise ValueError(f"min_log_snr ({min_log_snr}) must be below max_log_snr ({max_log_snr})")
    return 1.0 / (1.0 + math.exp(max_log_snr)), 1.0 / (1.0 + math.exp(min_log_snr))


# ----------------------------------------------------------------------------- forward process
def sample_t(
    batch_size: int,
    seq_len: int,
    *,
    per_token_fraction: float = 0.5,
    min_log_snr: float = MIN_LOG_SNR,
    max_log_snr: float = MAX_LOG_SNR,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Training noise levels, `t ~ U[sigmoid(-max), sigmoid(-min)]` (logistic in log-SNR).

    Each row independently gets, with probability `per_token_fraction`, an independent t per
    token, otherwise one t shared by the whole row.

    Returns: t `[batch_size, seq_len]` float32.
    """
    if not 0.0 <= per_token_fraction <= 1.0:
        raise ValueError(f"per_token_fraction must be in [0, 1], got {per_token_fraction}")
    lo, hi = t_range(min_log_snr, max_log_snr)
    u_row = torch.rand(batch_size, 1, generator=generator, device=device)
    u_tok = torch.rand(batch_size, seq_len, generator=generator, device=device)
    per_token = torch.rand(batch_size, 1, generator=generator, device=device) < per_token_fraction
    u = torch.where(per_token, u_tok, u_row.expand(batch_size, seq_len))
    return lo + (hi - lo) * u


def _broadcast_t(t: torch.Tensor | float, shape: torch.Size, device: torch.device) -> torch.Tensor:
    """t given as a float, `[B]`, `[B, 1]` or `[B, S]` -> `[B, S]` float32."""
    t = torch.as_tensor(t, dtype=torch.float32, device=device)
    if t.dim() == 1 and len(shape) == 2:
        t = t[:, None]
    try:
        return t.expand(shape)
    except RuntimeError:
        raise ValueError(
            f"`t` of shape {tuple(t.shape)} does not broadcast to the token shape {tuple(shape)}; "
            "expected a scalar, [B], [B, 1] or [B, S]"
        ) from None


def corrupt(
    x: torch.Tensor, t: torch.Tensor | float, vocab_size: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Uniform forward process: each token is replaced with probability t by a uniform draw.

    Args:
        x: clean ids `[B, S]`.
        t: noise level, scalar, `[B]`, `[B, 1]` or `[B, S]`.
    Returns: z_t `[B, S]` (same dtype as x). A replacement may draw x itself, so the marginal is
    exactly `alpha * 1[v = x] + (1 - alpha) / V`.
    """
    t = _broadcast_t(t, x.shape, x.device)
    replace = torch.rand(x.shape, generator=generator, device=x.device) < t
    noise = torch.randint(0, vocab_size, x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return torch.where(replace, noise, x)


# ----------------------------------------------------------------------------- sampling schedules
def sampling_schedule(
    num_steps: int,
    schedule: str = "linear",
    min_log_snr: float = MIN_LOG_SNR,
    max_log_snr: float = MAX_LOG_SNR,
) -> torch.Tensor:
    """The N+1 ascending log-SNRs of an N-step sampling run (spec §5), float64 on the CPU.

    linear: alpha = linspace(1e-4, 1 - 1e-4, N+1); cosine: t = linspace(1 - 1e-3, 1e-3, N+1),
    alpha = 0.5 + 0.5 cos(pi t). Then alpha is clamped to [1e-6, 1 - 1e-6] and the log-SNR to
    [min_log_snr, max_log_snr]. Step k goes from entry k to entry k + 1.
    """
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_denoising_steps must be a positive integer, got {num_steps!r}")
    if schedule == "linear":
        alpha = torch.linspace(1e-4, 1 - 1e-4, num_steps + 1, dtype=torch.float64)
    elif schedule == "cosine":
        t = torch.linspace(1 - 1e-3, 1e-3, num_steps + 1, dtype=torch.float64)
        alpha = 0.5 + 0.5 * torch.cos(math.pi * t)
    else:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")
    alpha = alpha.clamp(1e-6, 1 - 1e-6)
    return log_snr_from_alpha(alpha).clamp(min_log_snr, max_log_snr)


# ----------------------------------------------------------------------------- GIDD loss
def check_loss_inputs(
    z_t: torch.Tensor, x: torch.Tensor, t: torch.Tensor, vocab_size: int, ignore_index: int = -100
) -> None:
    """ValueError unless z_t and the scored labels x lie in [0, vocab_size) and t in [0, 1] (no NaN).

    Out-of-range ids would otherwise fail deep in a gather (or read another row on a GPU) and a t
    outside [0, 1] would be clamped silently. One host sync for all four extremes; skipped while
    torch.compile traces. Args: z_t / x `[...]` ids, t already broadcast to their shape.
    """
    if torch.compiler.is_compiling() or x.numel() == 0:
        return
    labels = x.masked_fill(x == ignore_index, 0)
    # float64 holds every id exactly; min/max propagate NaN, so a NaN t shows in t_lo / t_hi
    extremes = torch.stack(
        [
            z_t.min().double(),
            z_t.max().double(),
            labels.min().double(),
            labels.max().double(),
            t.min().double(),
            t.max().double(),
        ]
    )
    z_lo, z_hi, x_lo, x_hi, t_lo, t_hi = extremes.tolist()
    if x_lo < 0 or x_hi >= vocab_size:
        raise ValueError(
            f"labels must lie in [0, vocab_size={vocab_size}) or be ignore_index={ignore_index}; "
            f"got values in [{int(x_lo)}, {int(x_hi)}] (ignore_index excluded)"
        )
    if z_lo < 0 or z_hi >= vocab_size:
        raise ValueError(
            f"input_ids (z_t) must lie in [0, vocab_size={vocab_size}); got values in [{int(z_lo)}, {int(z_hi)}]"
        )
    if not (0.0 <= t_lo and t_hi <= 1.0):  # also False for NaN
        raise ValueError(f"t (the noise level) must lie in [0, 1] with no NaN; got values in [{t_lo}, {t_hi}]")


def uniform_gidd_loss(
    logits: torch.Tensor,
    z_t: torch.Tensor,
    x: torch.Tensor,
    t: torch.Tensor | float,
    *,
    vocab_size: int | None = None,
    beta_is: float = 1.0,
    z_loss_strength: float = 1e-5,
    ignore_index: int = -100,
    eps: float = 1e-12,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token uniform GIDD loss (spec §4), computed in fp32.

    `loss = w * KL(q(.|x) || q_hat) + beta_is * w * IS + z_loss * logsumexp(logits)^2` with
    `q_hat(v) = alpha * x_hat_v + u`, `u = (1 - alpha) / V`, `x_hat = softmax(logits[..., :V])`,
    IS the Itakura-Saito term at the observed token and `w` the posterior probability that the
    position was noised (1 when `z_t != x`).

    The KL is evaluated as `(alpha + u) log((alpha + u) / q_hat(x)) + u * sum_{v != x} log(u / q_hat(v))`
    with `log(u / q_hat(v)) = -softplus(log(alpha / u) + log x_hat_v)`: the same quantity as the
    cross-entropy-minus-entropy form, without its cancellation near alpha = 1.

    Args:
        logits: `[B, S, V']` with V' >= V (extra columns are ignored).
        z_t: noised ids `[B, S]`; x: clean ids `[B, S]` (`ignore_index` marks positions to skip).
        t: noise level, scalar, `[B]`, `[B, 1]` or `[B, S]`.
    Returns:
        loss `[B, S]` float32 (0 at ignored positions) and the valid mask `[B, S]` bool.
    Raises ValueError (`check_loss_inputs`) for ids outside [0, V) or t outside [0, 1] / NaN.
    """
    V = logits.shape[-1] if vocab_size is None else vocab_size
    if logits.shape[-1] < V:
        raise ValueError(f"logits have {logits.shape[-1]} columns, fewer than vocab_size={V}")
    if z_t.shape != logits.shape[:-1] or x.shape != z_t.shape:
        raise ValueError(f"shapes disagree: logits {tuple(logits.shape)}, z_t {tuple(z_t.shape)}, x {tuple(x.shape)}")
    t = _broadcast_t(t, x.shape, x.device)
    check_loss_inputs(z_t, x, t, V, ignore_index)
    return _gidd_loss(logits[..., :V], z_t, x, t, V, beta_is, z_loss_strength, ignore_index, eps)


def _gidd_loss(logits, z_t, x, t, V, beta_is, z_loss_strength, ignore_index, eps):
    """`uniform_gidd_loss` on checked inputs: logits `[..., V]`, t broadcast to x's shape."""
    logits = logits.float()
    valid = x != ignore_index
    x = torch.where(valid, x, torch.zeros_like(x))

    # Per-token scalars ([B, S]) in float64, from t directly (u = t/V, not (1 - alpha)/V), so
    # that both ends of the noise range keep their precision; only the [B, S, V] work is fp32.
    t = t.double().clamp(eps, 1.0 - eps)
    alpha, u = 1.0 - t, t / V
    log_alpha, log_u = torch.log1p(-t), torch.log(t) - math.log(V)

    lse = torch.logsumexp(logits, dim=-1)  # [B, S]
    log_xhat = logits - lse[..., None]  # [B, S, V]
    log_xhat_x = log_xhat.gather(-1, x[..., None]).squeeze(-1).double()
    log_xhat_z = log_xhat.gather(-1, z_t[..., None]).squeeze(-1).double()

    # sum_{v != x} softplus(log(alpha/u) + log x_hat_v)
    sp = F.softplus((log_alpha - log_u).float()[..., None] + log_xhat)
    sp_sum = sp.sum(-1).double() - sp.gather(-1, x[..., None]).squeeze(-1).double()
    log_qhat_x = torch.logaddexp(log_alpha + log_xhat_x, log_u)
    kl = (alpha + u) * (torch.log(alpha + u) - log_qhat_x) - u * sp_sum

    same = z_t == x
    log_num = torch.where(same, torch.log(alpha + u), log_u)
    log_r = log_num - torch.logaddexp(log_alpha + log_xhat_z, log_u)
    itakura_saito = torch.expm1(log_r) - log_r

    w = torch.where(same, t / (1.0 + (V - 1) * alpha), torch.ones_like(alpha))
    loss = (w * kl + beta_is * w * itakura_saito).float() + z_loss_strength * lse.square()
    return torch.where(valid, loss, torch.zeros_like(loss)), valid


def default_loss_chunk_tokens(vocab_size: int) -> int:
    """Tokens per chunk of `fused_linear_gidd_loss`: about 16M logits (64 MiB in fp32), at least 128."""
    return max(128, (1 << 24) // max(1, vocab_size))


class _FusedLinearGIDDLoss(torch.autograd.Function):
    """Sum of the per-token GIDD loss of `hidden @ weight.T`, chunk by chunk over tokens.

    The `[N, V]` logits are never held whole: each chunk's logits are built, its loss and the
    gradients w.r.t. that chunk's hidden states and the head weight (those that are needed) are
    computed at once, and the logits are freed. Backward only scales the stored gradients by the
    incoming scalar.
    """

    @staticmethod
    def forward(ctx, hidden, weight, z_t, x, t, vocab_size, beta_is, z_loss_strength, chunk_size):
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_hidden = torch.empty_like(hidden) if need_h else None
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        w = weight.detach().to(hidden.dtype).requires_grad_(need_w)
        for start in range(0, hidden.shape[0], chunk_size):
            end = min(start + chunk_size, hidden.shape[0])
            h = hidden[start:end].detach().requires_grad_(need_h)
            with torch.enable_grad():
                loss, _ = _gidd_loss(
                    F.linear(h, w)[:, :vocab_size],
                    z_t[start:end],
                    x[start:end],
                    t[start:end],
                    vocab_size,
                    beta_is,
                    z_loss_strength,
                    -100,
                    1e-12,
                )
                chunk_total = loss.sum()
                wrt = [p for p, need in ((h, need_h), (w, need_w)) if need]
                grads = list(torch.autograd.grad(chunk_total, wrt)) if wrt else []
            if need_h:
                grad_hidden[start:end] = grads.pop(0)
            if need_w:
                grad_weight += grads.pop(0).float()
            total += chunk_total.detach()
        ctx.save_for_backward(grad_hidden, None if grad_weight is None else grad_weight.to(weight.dtype))
        return total

    @staticmethod
    def backward(ctx, grad_output):
        grad_hidden, grad_weight = ctx.saved_tensors
        scaled = [None if g is None else g * grad_output.to(g.dtype) for g in (grad_hidden, grad_weight)]
        return (*scaled, None, None, None, None, None, None, None)


def fused_linear_gidd_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    z_t: torch.Tensor,
    x: torch.Tensor,
    t: torch.Tensor | float,
    *,
    vocab_size: int | None = None,
    beta_is: float = 1.0,
    z_loss_strength: float = 1e-5,
    ignore_index: int = -100,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`uniform_gidd_loss(hidden @ weight.T, ...)` summed over valid tokens, without ever holding
    the `[tokens, V]` logits (peak memory ~ chunk_size x V instead of tokens x V, several times over).

    Args: hidden `[..., H]` (final-norm output, e.g. `[B, S, H]` or `[N, H]`), weight `[V', H]`
        (the head), z_t / x `[...]` (the token shape of hidden), t scalar, `[B]`, `[B, 1]` or the
        token shape. chunk_size: tokens per chunk (default `default_loss_chunk_tokens(V)`).
    Returns: (sum of the per-token loss over valid positions, float32 scalar; number of valid
        positions); divide for the mean. Gradients equal the unfused loss's to rounding.
    """
    H = hidden.shape[-1]
    V = weight.shape[0] if vocab_size is None else vocab_size
    if weight.shape[0] < V:
        raise ValueError(f"weight has {weight.shape[0]} rows, fewer than vocab_size={V}")
    t = _broadcast_t(t, x.shape, x.device)
    rows = (x != ignore_index).reshape(-1)
    z_t, x, t = z_t.reshape(-1)[rows], x.reshape(-1)[rows], t.reshape(-1)[rows]
    check_loss_inputs(z_t, x, t, V, ignore_index)
    total = _FusedLinearGIDDLoss.apply(
        hidden.reshape(-1, H)[rows],
        weight,
        z_t,
        x,
        t,
        V,
        beta_is,
        z_loss_strength,
        int(chunk_size or default_loss_chunk_tokens(V)),
    )
    return total, rows.sum()


# ----------------------------------------------------------------------------- NELBO
NELBO_METHODS = ("stratified-logsnr", "stratified", "quadrature")


def nelbo_weight(t: torch.Tensor) -> torch.Tensor:
    """1 / (t (1 - t)): the change of variable from t to log-SNR (dlambda = dt / (t (1 - t)))."""
    return 1.0 / (t * (1.0 - t))


def check_nelbo_grid(num_samples: int, method: str) -> None:
    """ValueError unless `nelbo_t_grid` takes these (callers check before any work)."""
    if method not in NELBO_METHODS:
        raise ValueError(f"unknown NELBO method {method!r}; choose one of {NELBO_METHODS}")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")


def nelbo_t_grid(
    num_samples: int,
    method: str = "stratified",
    *,
    min_log_snr: float = MIN_LOG_SNR,
    max_log_snr: float = MAX_LOG_SNR,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise levels and weights for estimating the NELBO, `E_{t ~ U[t_min, t_max]}[loss(t) / (t(1-t))]`
    as `sum_k w_k * loss(t_k) / (t_k (1 - t_k))`.

    method:
      * "stratified": one uniform draw in each of `num_samples` equal strata of [t_min, t_max];
        unbiased, weights `1 / num_samples`.
      * "stratified-logsnr": one uniform draw of the log-SNR lambda in each of K equal strata of
        [min_log_snr, max_log_snr]; importance weights `(max - min) / K * t (1 - t) / (t_max - t_min)`.
        Unbiased, and the weighted integrand is the bounded `loss(lambda)` itself, so no sample can
        explode (uniform-in-t strata divide rare replacements at t ~ 1e-4 by t: a heavy tail that
        makes "stratified" several times noisier, measured in tests/test_evaluation_nelbo.py).
      * "quadrature": Gauss-Legendre nodes in log-SNR over [min, max] (the integrand is smooth
        in lambda); deterministic, slightly biased at small K; weights include the change of variable.
    Returns: t `[K]` float64 and weights `[K]` float64 (sum to ~1).
    """
    check_nelbo_grid(num_samples, method)
    lo, hi = t_range(min_log_snr, max_log_snr)
    strata = torch.arange(num_samples, dtype=torch.float64)
    if method == "stratified":
        u = torch.rand(num_samples, generator=generator, dtype=torch.float64)
        t = lo + (hi - lo) * (strata + u) / num_samples
        return t, torch.full((num_samples,), 1.0 / num_samples, dtype=torch.float64)
    span = max_log_snr - min_log_snr
    if method == "stratified-logsnr":
        u = torch.rand(num_samples, generator=generator, dtype=torch.float64)
        t = t_from_log_snr(min_log_snr + span * (strata + u) / num_samples)
        return t, (span / num_samples) * t * (1 - t) / (hi - lo)
    import numpy as np

    nodes, weights = np.polynomial.legendre.leggauss(num_samples)
    t = t_from_log_snr(torch.tensor(0.5 * span * nodes + 0.5 * (max_log_snr + min_log_snr)))
    # E_U[f(t)/(t(1-t))] = 1/(hi-lo) * integral f dlambda, so each node carries w_lam/(hi-lo)
    # times t(1-t), undone by the caller's 1/(t(1-t)).
    return t, torch.tensor(0.5 * span * weights) * t * (1 - t) / (hi - lo)


def nelbo_terms(
    logits: torch.Tensor,
    z_t: torch.Tensor,
    x: torch.Tensor,
    t: torch.Tensor | float,
    weight: torch.Tensor | float,
    *,
    vocab_size: int,
    beta_is: float = 1.0,
) -> torch.Tensor:
    """One grid point's share of the NELBO per token: `weight * loss(z_t, x, t) / (t (1 - t))`,
    with `loss` the GIDD loss without the z-loss.

    Args: logits `[..., V']`, z_t / x `[...]`, t and weight scalars or tensors broadcastable to
        `[...]` (one per token when a batch mixes grid points).
    Returns: `[...]` float64 (0 where x is ignore_index).
    """
    loss, _ = uniform_gidd_loss(logits, z_t, x, t, vocab_size=vocab_size, beta_is=beta_is, z_loss_strength=0.0)
    return (weight / (t * (1.0 - t))) * loss.double()


def nelbo_on_grid(
    denoise: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    ts: torch.Tensor,
    weights: torch.Tensor,
    noise: Callable[[int, float], torch.Tensor],
    *,
    vocab_size: int,
    beta_is: float = 1.0,
) -> torch.Tensor:
    """The NELBO estimator on a given t grid: per token `sum_k nelbo_terms(denoise(z_k), z_k, x, t_k, w_k)`.

    Args: denoise `z [B, S] -> logits [B, S, V']`; x clean ids `[B, S]`; ts / weights `[K]` (from
        `nelbo_t_grid`); noise `(k, t_k) -> z_k [B, S]`, the corruption of x at grid point k.
    Returns: `[B, S]` float64.
    """
    total = torch.zeros(x.shape, dtype=torch.float64, device=x.device)
    for k, (t, w) in enumerate(zip(ts.tolist(), weights.tolist())):
        z = noise(k, t)
        total += nelbo_terms(denoise(z), z, x, t, w, vocab_size=vocab_size, beta_is=beta_is)
    return total


def estimate_nelbo(
    denoise: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    vocab_size: int,
    num_samples: int = 16,
    method: str = "stratified",
    noise_mask: torch.Tensor | None = None,
    beta_is: float = 1.0,
    min_log_snr: float = MIN_LOG_SNR,
    max_log_snr: float = MAX_LOG_SNR,
    generator: torch.Generator | None = None,
    noise_generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Per-token NELBO in nats (spec §4): `E_t[loss_t / (t (1 - t))]` without the z-loss.

    Args:
        denoise: callable `z [B, S] -> logits [B, S, V']` (e.g. `lambda z: model(z).logits`).
        x: clean ids `[B, S]`.
        noise_mask: `[B, S]` bool, the positions to noise and score (default: all). The other
            positions stay clean, as conditioning context (a prompt), and score 0.
        num_samples / method: the t grid of `nelbo_t_grid` (one forward per sample).
        generator: draws the t grid (a CPU generator) and, unless `noise_generator` (on x's
            device) is given, the corruption too.
    Returns: `[B, S]` float32 per-token NELBO; `.sum(-1)` is a sequence's bound on -log p in nats.
    """
    if noise_mask is None:
        noise_mask = torch.ones_like(x, dtype=torch.bool)
    ts, weights = nelbo_t_grid(
        num_samples, method, min_log_snr=min_log_snr, max_log_snr=max_log_snr, generator=generator
    )
    g = generator if noise_generator is None else noise_generator
    total = nelbo_on_grid(
        denoise,
        x,
        ts,
        weights,
        lambda k, t: torch.where(noise_mask, corrupt(x, t, vocab_size, generator=g), x),
        vocab_size=vocab_size,
        beta_is=beta_is,
    )
    return torch.where(noise_mask, total, torch.zeros_like(total)).float()


__all__ = [
    "MIN_LOG_SNR",
    "MAX_LOG_SNR",
    "SCHEDULES",
    "NELBO_METHODS",
    "alpha_from_log_snr",
    "log_snr_from_alpha",
    "t_from_log_snr",
    "log_snr_from_t",
    "t_range",
    "sample_t",
    "corrupt",
    "sampling_schedule",
    "check_loss_inputs",
    "uniform_gidd_loss",
    "default_loss_chunk_tokens",
    "fused_linear_gidd_loss",
    "nelbo_weight",
    "check_nelbo_grid",
    "nelbo_t_grid",
    "nelbo_terms",
    "nelbo_on_grid",
    "estimate_nelbo",
]
