"""The server's limits and identity (`sumi serve` flags), one typed config."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServeSettings:
    """What one server accepts. Every bound is checked before a request reaches the engine.

    model_name: the id served under /v1/models (requests naming another model get 404).
    api_key: when set, /v1/* needs `Authorization: Bearer <api_key>` (401 otherwise).
    max_batch_rows: canvas rows denoised together in one forward (a request's `n` rows count).
    max_queue: requests waiting for a free row; past it 429 with Retry-After.
    max_canvas: the largest canvas_length a request may ask for (None: the model's positions).
    max_prompt_tokens: longest prompt in tokens (None: whatever fits the canvas).
    max_steps: most denoising steps per request.
    max_body_bytes: largest request body (413 past it).
    retry_after_s: the Retry-After a 429 suggests.
    batch_invariant: run the projections in GEMM calls of sizes this machine keeps exact, so a
        seeded request gets the same answer alone or batched
        (`sumi.batch_invariance.make_batch_invariant`, probed at start-up); False: plain calls.
    """

    model_name: str = "demo"
    api_key: str | None = None
    max_batch_rows: int = 16
    max_queue: int = 64
    max_canvas: int | None = None
    max_prompt_tokens: int | None = None
    max_steps: int = 1024
    max_body_bytes: int = 1 << 20
    retry_after_s: int = 1
    batch_invariant: bool = True

    def __post_init__(self) -> None:
        for name in ("max_batch_rows", "max_queue", "max_steps", "max_body_bytes", "retry_after_s"):
            _check_positive(name, getattr(self, name))
        for name in ("max_canvas", "max_prompt_tokens"):
            if getattr(self, name) is not None:
                _check_positive(name, getattr(self, name))
        if self.api_key is not None and not self.api_key:
            raise ValueError("api_key must be a non-empty string (or None for no key)")


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
