"""File checksums: what a manifest records so that a file can be recognised again (dataset shards,
checkpoint files, downloaded archives, evaluation data)."""

from __future__ import annotations

import hashlib
import os


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """The hex sha256 of a file's bytes, read `chunk` bytes at a time (constant memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


__all__ = ["sha256_file"]
