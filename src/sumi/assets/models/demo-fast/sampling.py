"""The samplers of uniform diffusion: one denoising step each, from the network's logits.

* ancestral (default): draw z_s ~ p(z_s | z_t, x_hat) at every position (spec §5);
* adaptive: overwrite the `tokens_per_step` positions whose top-1 probability most exceeds the
  probability of their current token;
* greedy: every free position becomes the argmax;
* predictor-corrector: an ancestral step, then `corrector_steps` corrector steps at the level it
  reached: re-noise the canvas one schedule step back (`renoise`, the forward process) and take the
  ancestral step again, one forward each;
* entropy-bounded: positions whose predicted entropy is under a bound take their argmax, the rest
  are redrawn from the prediction; a row ends once every position is accepted and stays put.

Any of the ancestral-type samplers may end with a greedy tail (`greedy_tail` final argmax steps).

Each step function takes logits `[B, S, V']`, the canvas z_t `[B, S]` and the positions it may change
`free` `[B, S]`, and returns the next canvas. `_Randomness` holds a run's random streams (one for the
batch, or one per row so that a row draws the same whether alone or in a batch).

Exported verbatim as a checkpoint's remote code: imports only torch and siblings.
"""

import torch

from .diffusion import alpha_from_log_snr

SAMPLERS = ("ancestral", "adaptive", "greedy", "predictor_corrector", "entropy_bounded")


# ----------------------------------------------------------------------------- random draws
class _Randomness:
    """The random draws of one run: one generator for the whole batch (the official way), or one
    per row, each drawing only over its row's own span of columns, so that a row of a batch draws
    exactly what it would draw alone."""

    def __init__(self, generators: list[torch.Generator | None], spans: list[tuple[int, int]], device):
        self.generators, self.spans, self.device = generators, spans, device
        self.per_row = len(generators) > 1

    def select(self, rows: torch.Tensor) -> "_Randomness":
        """The randomness of a subset of rows (the rows still denoised after others stopped)."""
        if not self.per_row:
            return self
        keep = rows.tolist()
        sub = _Randomness([self.generators[i] for i in keep], [self.spans[i] for i in keep], self.device)
        sub.per_row = True  # even a single remaining row keeps drawing from its own generator
        return sub

    def _per_row(self, shape, fill, draw) -> torch.Tensor:
        out = torch.full(
            shape, fill, device=self.device, dtype=torch.float32 if isinstance(fill, float) else torch.long
        )
        for i, ((a, b), g) in enumerate(zip(self.spans, self.generators)):
            out[i, a:b] = draw(b - a, g)
        return out

    def rand(self, B: int, S: int) -> torch.Tensor:
        if not self.per_row:
            return torch.rand(B, S, generator=self.generators[0], device=self.device)
        return self._per_row((B, S), 1.0, lambda n, g: torch.rand(n, generator=g, device=self.device))

    def randint(self, high: int, B: int, S: int) -> torch.Tensor:
        if not self.per_row:
            return torch.randint(0, high, (B, S), generator=self.generators[0], device=self.device)
        return self._per_row((B, S), 0, lambda n, g: torch.randint(0, high, (n,), generator=g, device=self.device))

    def row_randint(self, row: int, high: int, n: int) -> torch.Tensor:
        """`n` tokens from `[0, high)` drawn for batch row `row` alone (from its own generator, or from
        the batch's): the fresh positions a growing row gains."""
        g = self.generators[row if self.per_row else 0]
        return torch.randint(0, high, (n,), generator=g, device=self.device)

    def categorical(self, probs: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """One draw per row of `probs` `[n, V]` (unnormalised is fine); `rows` `[n]` says which batch
        row each belongs to. Inverse-CDF sampling: one uniform per draw, where CPU `multinomial`
        draws an exponential per vocabulary entry (~8x slower at V = 32000)."""
        if not self.per_row:
            u = torch.rand(probs.shape[0], generator=self.generators[0], device=probs.device)
        else:
            u = torch.empty(probs.shape[0], device=probs.device)
            for i, g in enumerate(self.generators):
                sel = (rows == i).nonzero().squeeze(-1)
                if sel.numel():
                    u[sel] = torch.rand(sel.numel(), generator=g, device=probs.device)
        cdf = probs.float().cumsum(-1)
        # side="right" never lands on a zero-probability entry
        idx = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None], side="right").squeeze(-1)
        return idx.clamp_(max=probs.shape[-1] - 1)


# ----------------------------------------------------------------------------- distributions
def filter_probs(
    probs: torch.Tensor, top_k: int | None = None, top_p: float | None = None, min_p: float | None = None
) -> torch.Tensor:
    """Truncate a categorical `[..., V]` to its top-k / nucleus (top-p) / min-p support and renormalise.

    min-p keeps tokens with probability >= min_p * p_max. The most likely token always survives.
    """
    if top_k is None and top_p is None and min_p is None:
        return probs
    keep = torch.ones_like(probs, dtype=torch.bool)
    if top_k is not None and top_k < probs.shape[-1]:
        kth = probs.topk(top_k, dim=-1).values[..., -1:]
        keep &= probs >= kth
    if min_p is not None:
        keep &= probs >= min_p * probs.amax(-1, keepdim=True)
    if top_p is not None and top_p < 1.0:
        sorted_p, order = probs.sort(-1, descending=True)
        # keep a token if the mass strictly before it is < top_p (so the top token is always kept)
        before = sorted_p.cumsum(-1) - sorted_p
        keep_sorted = before < top_p
        keep &= torch.zeros_like(keep).scatter(-1, order, keep_sorted)
    probs = probs * keep
    return probs / probs.sum(-1, keepdim=True)


def denoiser_probs(logits: torch.Tensor, temperature: float, top_k=None, top_p=None, min_p=None) -> torch.Tensor:
    """x_hat = softmax(logits / T) in fp32, filtered; T = 0 gives the one-hot argmax."""
    logits = logits.float()
    if temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float()
    return filter_probs(torch.softmax(logits / temperature, dim=-1), top_k, top_p, min_p)


def dense_posterior(x_hat: torch.Tensor, z_t: torch.Tensor, log_snr_t: float, log_snr_s: float) -> torch.Tensor:
    """The ancestral posterior p(z_s = v | z_t) `[..., V]`, written out densely (spec §5).

    `p(v) ∝ (a_s x_hat_v + u_s) (a_ts 1[v = z_t] + u_ts)`, `u_* = (1 - a_*) / V`. This is the
    official implementation's computation; `ancestral_step` samples the same law without it.
    """
    V = x_hat.shape[-1]
    a_t = float(alpha_from_log_snr(torch.tensor(log_snr_t, dtype=torch.float64)))
    a_s = float(alpha_from_log_snr(torch.tensor(log_snr_s, dtype=torch.float64)))
    a_ts = a_t / a_s
    q_s = a_s * x_hat + (1 - a_s) / V
    q_ts = torch.full_like(x_hat, (1 - a_ts) / V)
    q_ts.scatter_add_(-1, z_t[..., None], torch.full_like(q_ts[..., :1], a_ts))
    p = q_s * q_ts
    return p / p.sum(-1, keepdim=True)


def softmax_summary(
    logits: torch.Tensor, z: torch.Tensor, temperature: float = 1.0, *, top1: bool = False, entropy: bool = False
) -> dict[str, torch.Tensor]:
    """What the samplers read of `softmax(logits / T)` over the vocabulary, never the whole of it.

    logits `[B, S, V]`, z `[B, S]` -> dict of fp32 `[B, S]` tensors: "at_z" (the probability of z),
    with `top1` also "max" (the top-1 probability) and "argmax" (int64), with `entropy` also
    "entropy" (nats). On CPU in row blocks of ~4 MiB: an fp32 copy of all the logits at once
    (262 MB at S = 2048, V = 32000) costs more in fresh-page faults than the arithmetic, while a
    small block is reused from the cache. Each row's values are computed exactly as without blocks.
    """
    B, S, V = logits.shape
    flat, z_flat = logits.reshape(B * S, V), z.reshape(B * S, 1)
    n = B * S if logits.device.type != "cpu" else max(1, (1 << 20) // V)
    out = {"at_z": torch.empty(B * S, dtype=torch.float32, device=logits.device)}
    if top1:
        out["max"] = torch.empty_like(out["at_z"])
        out["argmax"] = torch.empty(B * S, dtype=torch.long, device=logits.device)
    if entropy:
        out["entropy"] = torch.empty_like(out["at_z"])
    for a in range(0, B * S, n):
        block = flat[a : a + n].float()
        if temperature != 1.0:
            block = block / temperature
        lse = torch.logsumexp(block, dim=-1)
        out["at_z"][a : a + n] = torch.exp(block.gather(-1, z_flat[a : a + n]).squeeze(-1) - lse)
        if top1:
            top, arg = block.max(-1)
            out["max"][a : a + n] = torch.exp(top - lse)
            out["argmax"][a : a + n] = arg
        if entropy:  # H = lse - sum_v p_v l_v
            out["entropy"][a : a + n] = lse - (torch.exp(block - lse[:, None]) * block).sum(-1)
    return {k: v.view(B, S) for k, v in out.items()}


def ancestral_step(
    logits: torch.Tensor,
    z_t: torch.Tensor,
    free: torch.Tensor,
    log_snr_t: float,
    log_snr_s: float,
    rng: _Randomness,
    *,
    vocab_size: int,
    temperature: float = 1.0,
    top_k=None,
    top_p=None,
    min_p=None,
) -> torch.Tensor:
    """One ancestral step, exactly distributed as `dense_posterior` but without building it.

    With `q_s = a_s x_hat + (1 - a_s)/V` (a distribution), the posterior is the mixture: keep z_t
    with probability `a_ts q_s(z_t) / Z`, `Z = (1 - a_ts)/V + a_ts q_s(z_t)`; otherwise draw from q_s,
    i.e. from x_hat with probability a_s, else uniformly. Only x_hat(z_t) is needed everywhere;
    a categorical draw from x_hat only where that branch is taken.

    Args: logits `[B, S, V']`, z_t `[B, S]`, free `[B, S]` bool (positions to update).
    Returns: z_s `[B, S]`.
    """
    B, S = z_t.shape
    V = vocab_size
    logits = logits[..., :V]
    a_t = float(alpha_from_log_snr(torch.tensor(log_snr_t, dtype=torch.float64)))
    a_s = float(alpha_from_log_snr(torch.tensor(log_snr_s, dtype=torch.float64)))
    a_ts = a_t / a_s
    filtered = temperature == 0 or any(v is not None for v in (top_k, top_p, min_p))
    if filtered:
        x_hat = denoiser_probs(logits, temperature, top_k, top_p, min_p)
        xhat_z = x_hat.gather(-1, z_t[..., None]).squeeze(-1)
    else:
        xhat_z = softmax_summary(logits, z_t, temperature)["at_z"]
    q_s_z = a_s * xhat_z + (1 - a_s) / V
    keep_prob = a_ts * q_s_z / ((1 - a_ts) / V + a_ts * q_s_z)

    u_keep, u_branch = rng.rand(B, S), rng.rand(B, S)
    uniform_tokens = rng.randint(V, B, S)
    keep = u_keep < keep_prob
    from_xhat = ~keep & (u_branch < a_s) & free
    z_s = torch.where(keep, z_t, uniform_tokens)
    rows, cols = from_xhat.nonzero(as_tuple=True)
    if rows.numel():
        if filtered:
            p = x_hat[rows, cols]
        else:
            p = torch.softmax(logits[rows, cols].float() / temperature, dim=-1)
        z_s[rows, cols] = rng.categorical(p, rows)
    return torch.where(free, z_s, z_t)


def adaptive_step(
    logits: torch.Tensor,
    z_t: torch.Tensor,
    free: torch.Tensor,
    rng: _Randomness,
    *,
    vocab_size: int,
    tokens_per_step: int = 1,
    temperature: float = 1.0,
    top_k=None,
    top_p=None,
    min_p=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Overwrite the `tokens_per_step` free positions per row with the largest confidence
    `p_max - p(z_t)` (untempered softmax) with the argmax (T = 0) or a tempered sample.

    Returns: z_s `[B, S]` and the selected positions `[B, k]` (-1 where a row had too few free ones).
    """
    logits = logits[..., :vocab_size]
    summary = softmax_summary(logits, z_t, top1=True)
    top1 = summary["argmax"]
    conf = (summary["max"] - summary["at_z"]).masked_fill(~free, float("-inf"))
    k = min(tokens_per_step, z_t.shape[1])
    conf_k, selected = conf.topk(k, dim=-1)
    valid = conf_k > float("-inf")
    rows = torch.arange(z_t.shape[0], device=z_t.device)[:, None].expand_as(selected)
    rows, cols = rows[valid], selected[valid]
    if temperature == 0:
        new = top1[rows, cols]
    else:
        p = denoiser_probs(logits[rows, cols], temperature, top_k, top_p, min_p)
        new = rng.categorical(p, rows)
    z_s = z_t.clone()
    z_s[rows, cols] = new
    return z_s, selected.masked_fill(~valid, -1)


def renoise(
    z_s: torch.Tensor, free: torch.Tensor, log_snr_s: float, log_snr_t: float, rng: _Randomness, *, vocab_size: int
) -> torch.Tensor:
    """The forward process from the cleaner level s to the noisier level t < s: each free token is
    kept with probability a_t / a_s, else replaced by a uniform draw from `[0, V)` (so that
    q(z_t | x) = a_t 1[z_t = x] + (1 - a_t) / V whenever z_s ~ q(z_s | x)).

    Args: z_s `[B, S]`, free `[B, S]` bool. Returns: z_t `[B, S]`.
    """
    a_t = float(alpha_from_log_snr(torch.tensor(log_snr_t, dtype=torch.float64)))
    a_s = float(alpha_from_log_snr(torch.tensor(log_snr_s, dtype=torch.float64)))
    B, S = z_s.shape
    keep = rng.rand(B, S) < a_t / a_s
    noise = rng.randint(vocab_size, B, S)
    return torch.where(free & ~keep, noise, z_s)


def entropy_bounded_step(
    logits: torch.Tensor,
    z_t: torch.Tensor,
    free: torch.Tensor,
    rng: _Randomness,
    *,
    vocab_size: int,
    entropy_bound: float,
    temperature: float = 1.0,
    top_k=None,
    top_p=None,
    min_p=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Accept the free positions whose predicted entropy (untempered, nats) is under `entropy_bound`:
    they take the argmax; redraw every other free position from the (tempered, filtered) prediction.

    Returns: z_s `[B, S]` and the accepted positions `[B, S]` bool.
    """
    logits = logits[..., :vocab_size]
    summary = softmax_summary(logits, z_t, top1=True, entropy=True)
    accepted = free & (summary["entropy"] < entropy_bound)
    z_s = torch.where(accepted, summary["argmax"], z_t)
    rows, cols = (free & ~accepted).nonzero(as_tuple=True)
    if rows.numel():
        if temperature == 0:
            z_s[rows, cols] = summary["argmax"][rows, cols]
        else:
            p = denoiser_probs(logits[rows, cols], temperature, top_k, top_p, min_p)
            z_s[rows, cols] = rng.categorical(p, rows)
    return z_s, accepted


def is_deterministic(sampler: str, temperature: float) -> bool:
    """Whether a step is a function of the canvas alone (no random draws): greedy, and adaptive or
    entropy-bounded at T = 0. Only then does a repeated canvas repeat its future (`stop_on_cycle`)."""
    return sampler == "greedy" or (sampler in ("adaptive", "entropy_bounded") and float(temperature) == 0)


def greedy_step(logits: torch.Tensor, z_t: torch.Tensor, free: torch.Tensor, *, vocab_size: int) -> torch.Tensor:
    """Every free position becomes the argmax of the denoiser."""
    return torch.where(free, logits[..., :vocab_size].argmax(-1), z_t)


__all__ = [
    "SAMPLERS",
    "filter_probs",
    "denoiser_probs",
    "dense_posterior",
    "softmax_summary",
    "ancestral_step",
    "adaptive_step",
    "is_deterministic",
    "greedy_step",
    "renoise",
    "entropy_bounded_step",
]
