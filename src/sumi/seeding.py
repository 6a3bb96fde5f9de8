"""Seeds derived from names and numbers: one independent stream of random numbers per purpose.

Training (initialisation, data, noise of each step, validation draws) and evaluation (the draws of
each scored request) seed their generators with `derive_seed(purpose, ...)`, so a number depends
only on what it is for, never on the order in which things ran, the batch layout or the process.
"""

from __future__ import annotations

import hashlib


def derive_seed(*parts) -> int:
    """A 63-bit seed from any parts (ints, strings, tuples of them), stable across processes,
    machines and Python versions (unlike `hash`): blake2b of their `str`s joined by "/"."""
    digest = hashlib.blake2b("/".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


__all__ = ["derive_seed"]
