"""Duplicate removal at prepare time: exact (a hash of the whitespace-normalised text) and near
(MinHash signatures of word shingles, looked up in a locality-sensitive hash index, `datasketch`).

The first occurrence of a document is kept and later copies are dropped, so the result depends on
the input order (which `prepare_dataset` fixes). A near duplicate is a document whose estimated
Jaccard similarity of word `shingle`-grams with an earlier kept document reaches `threshold`
(LSH finds candidates above it with high probability; `num_perm` permutations, seeded). The index
lives in memory: about ``num_perm * 8`` bytes per kept document (1 KiB at 128), so tens of millions
of documents need a sharded or external pass.
"""

from __future__ import annotations

import hashlib
import re

_WORDS = re.compile(r"\w+", re.UNICODE)


def normalise(text: str) -> str:
    """Lower-case, whitespace runs collapsed: what "exact" duplicates must share."""
    return " ".join(text.lower().split())


def shingles(text: str, n: int) -> set[bytes]:
    """The set of word n-grams of `text` (lower-cased), as UTF-8 bytes; a text shorter than n words is one shingle."""
    words = _WORDS.findall(text.lower())
    if len(words) <= n:
        return {" ".join(words).encode("utf-8")}
    return {" ".join(words[i : i + n]).encode("utf-8") for i in range(len(words) - n + 1)}


class Deduplicator:
    """``is_duplicate(text)`` -> None (new: remembered), "exact" or "near" (a copy of an earlier text)."""

    def __init__(
        self, near: bool = True, *, threshold: float = 0.8, num_perm: int = 128, shingle: int = 5, seed: int = 0
    ):
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"near-duplicate threshold must be in (0, 1], got {threshold}")
        if num_perm < 2 or shingle < 1:
            raise ValueError(f"num_perm must be >= 2 and shingle >= 1, got {num_perm}, {shingle}")
        self.seen: set[bytes] = set()
        self.near, self.threshold, self.num_perm, self.shingle, self.seed = near, threshold, num_perm, shingle, seed
        self.lsh = None
        self.kept = 0
        if near:
            from datasketch import MinHash, MinHashLSH

            self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
            self._empty = MinHash(num_perm=num_perm, seed=seed)  # its permutations are drawn once, then copied

    def is_duplicate(self, text: str) -> str | None:
        digest = hashlib.blake2b(normalise(text).encode("utf-8"), digest_size=16).digest()
        if digest in self.seen:
            return "exact"
        if self.lsh is not None:
            sig = self._minhash(text)
            if self.lsh.query(sig):
                return "near"
            self.lsh.insert(str(self.kept), sig)
        self.seen.add(digest)
        self.kept += 1
        return None

    def _minhash(self, text: str):
        m = self._empty.copy()
        m.update_batch(sorted(shingles(text, self.shingle)))
        return m


__all__ = ["Deduplicator", "normalise", "shingles"]
