"""Read a prepared dataset: fixed-length windows and deterministic, rank-sharded, resumable batches.

Windows: the split's shards are read as one concatenated token stream of `num_tokens` tokens;
window `i` of length `seq_len` is ``stream[i*seq_len : (i+1)*seq_len]`` (non-overlapping; the last
``num_tokens % seq_len`` tokens are never used). Windows cross document (and shard) boundaries:
Sumi packs without document masking.

Order (`PackedDataset.batches`): with ``N = num_tokens // seq_len`` windows and a global batch of
``G = batch_size * world_size`` windows, an epoch has ``N // G`` steps (the last ``N % G`` windows
of each epoch's order are dropped). Step ``k`` is step ``j = k % (N // G)`` of epoch
``e = k // (N // G)``; its global batch is windows ``perm_e[j*G : (j+1)*G]``, where ``perm_e`` is a
pseudo-random permutation of ``range(N)`` seeded by ``(seed, e)`` (`WindowPermutation`: a keyed
Feistel network with cycle walking, computed per index, so it needs no O(N) memory and does not
depend on numpy's RNG). Rank ``r`` gets rows ``r*batch_size : (r+1)*batch_size`` of the global
batch, so the union over ranks of step k equals the batch of one process with
``batch_size * world_size``, and ``start_step=k`` continues exactly where step k-1 ended.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .format import DTYPES, canonical_split, read_metadata, verify_shard

_U64 = np.uint64


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer on a uint64 array (wrapping arithmetic)."""
    x = x ^ (x >> _U64(30))
    x = x * _U64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> _U64(27))
    x = x * _U64(0x94D049BB133111EB)
    return x ^ (x >> _U64(31))


class WindowPermutation:
    """A seeded pseudo-random permutation of ``range(n)``, evaluated per index.

    A 6-round balanced Feistel network on ``2*h`` bits (``4**h >= n``; round keys from
    ``blake2b(f"sumi-perm:{seed}:{epoch}")``, round function splitmix64) restricted to ``[0, n)``
    by cycle walking. ``perm(np.arange(n))`` is a permutation of ``range(n)``.
    """

    ROUNDS = 6

    def __init__(self, n: int, seed: int, epoch: int = 0):
        if n < 1:
            raise ValueError(f"cannot permute {n} items")
        self.n = int(n)
        bits = max(2, (self.n - 1).bit_length())
        self.half = (bits + 1) // 2
        self.mask = _U64((1 << self.half) - 1)
        digest = hashlib.blake2b(f"sumi-perm:{int(seed)}:{int(epoch)}".encode(), digest_size=8 * self.ROUNDS).digest()
        self.keys = [_U64(int.from_bytes(digest[8 * i : 8 * i + 8], "little")) for i in range(self.ROUNDS)]

    def _feistel(self, x: np.ndarray) -> np.ndarray:
        h = _U64(self.half)
        left, right = x >> h, x & self.mask
        for k in self.keys:
            left, right = right, left ^ (_mix64(right ^ k) & self.mask)
        return (left << h) | right

    def __call__(self, index: Any) -> np.ndarray:
        idx = np.asarray(index, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n):
            raise IndexError(f"index out of range for a permutation of {self.n}")
        with np.errstate(over="ignore"):
            y = self._feistel(idx.astype(np.uint64))
            bad = y >= _U64(self.n)
            while bad.any():  # cycle walking: at most a few rounds, the domain is < 4n
                y[bad] = self._feistel(y[bad])
                bad = y >= _U64(self.n)
        return y.astype(np.int64)


def split_documents(stream: np.ndarray, bos_token_id: int, eos_token_id: int) -> list[np.ndarray]:
    """Split a packed stream ``BOS d1 EOS BOS d2 EOS ... BOS dn EOS`` at its ``EOS,BOS`` delimiters;
    returns the documents' tokens without BOS/EOS. Raises ValueError if the stream does not start
    with BOS and end with EOS."""
    s = np.asarray(stream)
    if s.size == 0:
        return []
    if s[0] != bos_token_id or s[-1] != eos_token_id:
        raise ValueError(
            f"not a packed stream: it should start with BOS ({bos_token_id}) and end with EOS "
            f"({eos_token_id}), got {int(s[0])} ... {int(s[-1])}"
        )
    cuts = np.flatnonzero((s[:-1] == eos_token_id) & (s[1:] == bos_token_id)) + 1  # index of each later BOS
    starts = np.concatenate(([0], cuts))
    ends = np.concatenate((cuts, [s.size]))
    return [s[a + 1 : b - 1] for a, b in zip(starts.tolist(), ends.tolist())]


class PackedDataset:
    """One split of a prepared dataset (see `sumi.data.prepare_dataset`), memory-mapped.

    ``PackedDataset(path, split="train")``; ``split`` is ``"train"`` or ``"validation"`` (``"val"``).
    ``verify=True`` recomputes every shard's sha256 first (`CorruptShardError` names a bad shard);
    sizes are always checked. Picklable (the memmaps are reopened in the new process).
    """

    def __init__(self, path: str | os.PathLike, split: str = "train", *, verify: bool = False):
        self.path = Path(path)
        self.split = canonical_split(split)
        self.metadata = read_metadata(self.path)
        info = self.metadata["splits"].get(self.split)
        if info is None:
            raise ValueError(f"{str(self.path)!r} has no split {self.split!r}")
        self.dtype = self.metadata["dtype"]
        self.shard_info: list[dict[str, Any]] = info["shards"]
        for shard in self.shard_info:
            verify_shard(self.path, shard, self.dtype, checksum=verify)
        self.bos_token_id: int = self.metadata["bos_token_id"]
        self.eos_token_id: int = self.metadata["eos_token_id"]
        self.vocab_size: int = self.metadata["vocab_size"]
        self.num_tokens: int = int(info["num_tokens"])
        self.num_documents: int = int(info["num_documents"])
        sizes = [int(s["num_tokens"]) for s in self.shard_info]
        self._starts = np.concatenate(([0], np.cumsum(sizes, dtype=np.int64)))  # shard i = [starts[i], starts[i+1])
        self._maps: list[np.memmap] | None = None

    # ------------------------------------------------------------------ raw access
    def _shards(self) -> list[np.memmap]:
        if self._maps is None:
            dt = np.dtype(DTYPES[self.dtype]).newbyteorder("<")
            self._maps = [
                np.memmap(self.path / s["file"], dtype=dt, mode="r", shape=(int(s["num_tokens"]),))
                for s in self.shard_info
            ]
        return self._maps

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_maps"] = None
        return state

    def __len__(self) -> int:
        """Number of tokens in the split's stream."""
        return self.num_tokens

    def __repr__(self) -> str:
        return (
            f"PackedDataset({str(self.path)!r}, split={self.split!r}: {self.num_tokens:,} {self.dtype} tokens, "
            f"{self.num_documents:,} documents, {len(self.shard_info)} shards)"
        )

    def read(self, start: int, length: int) -> np.ndarray:
        """Tokens ``stream[start : start+length]`` of the concatenated stream, as int64."""
        start, length = int(start), int(length)
        if start < 0 or length < 0 or start + length > self.num_tokens:
            raise IndexError(f"tokens [{start}, {start + length}) are outside the split's {self.num_tokens} tokens")
        out = np.empty(length, dtype=np.int64)
        maps = self._shards()
        i = int(np.searchsorted(self._starts, start, side="right")) - 1
        pos = 0
        while pos < length:
            off = start + pos - int(self._starts[i])
            take = min(length - pos, int(self._starts[i + 1]) - start - pos)
            out[pos : pos + take] = maps[i][off : off + take]
            pos += take
            i += 1
        return out

    def tokens(self) -> np.ndarray:
        """The whole split's stream as one int64 array (loads it into memory: for inspection/tests)."""
        return self.read(0, self.num_tokens)

    def document_starts(self) -> np.ndarray:
        """Offsets in the concatenated stream of every document's BOS (from the .docs.npy files)."""
        parts = [
            np.load(self.path / s["docs_file"], allow_pickle=False).astype(np.int64) + self._starts[i]
            for i, s in enumerate(self.shard_info)
        ]
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)

    def decode_documents(self, tokenizer: Any = None) -> list[np.ndarray] | list[str]:
        """Split the stream back into documents at its ``EOS,BOS`` delimiters (`split_documents`):
        token arrays without BOS/EOS, or texts if a `tokenizer` (with ``.decode``) is given. Loads
        the split into memory."""
        docs = split_documents(self.tokens(), self.bos_token_id, self.eos_token_id)
        if tokenizer is None:
            return docs
        return [
            tokenizer.decode(d.tolist(), skip_special_tokens=False, clean_up_tokenization_spaces=False) for d in docs
        ]

    # ------------------------------------------------------------------ windows
    def num_windows(self, seq_len: int) -> int:
        """Number of non-overlapping windows of `seq_len` tokens: ``num_tokens // seq_len``."""
        if int(seq_len) < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        return self.num_tokens // int(seq_len)

    def get_window(self, index: int, seq_len: int) -> torch.Tensor:
        """Window `index` (0-based) of `seq_len` tokens, ``stream[index*seq_len:(index+1)*seq_len]``,
        as a LongTensor of shape [seq_len]."""
        n = self.num_windows(seq_len)
        if not 0 <= int(index) < n:
            raise IndexError(f"window {index} out of range: the split has {n} windows of {seq_len} tokens")
        return torch.from_numpy(self.read(int(index) * int(seq_len), int(seq_len)))

    def steps_per_epoch(self, seq_len: int, batch_size: int, world_size: int = 1) -> int:
        """Optimizer steps per pass over the windows: ``num_windows // (batch_size * world_size)``."""
        return self.num_windows(seq_len) // (int(batch_size) * int(world_size))

    def window_indices(
        self, step: int, seq_len: int, batch_size: int, *, seed: int, rank: int = 0, world_size: int = 1
    ) -> np.ndarray:
        """The window indices of rank `rank`'s rows at global step `step` (see the module docstring)."""
        if batch_size < 1 or world_size < 1:
            raise ValueError(f"batch_size and world_size must be >= 1, got {batch_size}, {world_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        n = self.num_windows(seq_len)
        global_batch = batch_size * world_size
        spe = n // global_batch
        if spe == 0:
            raise ValueError(
                f"split {self.split!r} of {str(self.path)!r} has {self.num_tokens} tokens = {n} windows "
                f"of {seq_len}, fewer than one global batch of {batch_size} x {world_size} ranks"
            )
        epoch, j = divmod(int(step), spe)
        first = j * global_batch + rank * batch_size
        return WindowPermutation(n, seed, epoch)(np.arange(first, first + batch_size))

    def get_batch(
        self, step: int, seq_len: int, batch_size: int, *, seed: int, rank: int = 0, world_size: int = 1
    ) -> torch.Tensor:
        """Rank `rank`'s LongTensor [batch_size, seq_len] at global step `step`."""
        idx = self.window_indices(step, seq_len, batch_size, seed=seed, rank=rank, world_size=world_size)
        out = np.empty((len(idx), int(seq_len)), dtype=np.int64)
        for row, w in enumerate(idx.tolist()):
            out[row] = self.read(w * int(seq_len), int(seq_len))
        return torch.from_numpy(out)

    def batches(
        self,
        seq_len: int,
        batch_size: int,
        *,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        start_step: int = 0,
        num_steps: int | None = None,
    ) -> Iterator[torch.Tensor]:
        """Yield rank `rank`'s LongTensor [batch_size, seq_len] for global steps ``start_step,
        start_step+1, ...`` (forever, across epochs, or `num_steps` batches). Deterministic in
        (seed, step); rank r gets rows ``r*batch_size:(r+1)*batch_size`` of the global batch of
        ``batch_size*world_size`` windows, so all ranks together see exactly what one process with
        ``batch_size*world_size`` sees. Resuming with ``start_step=k`` continues exactly at step k."""
        # validate eagerly (a generator would only fail at the first next())
        self.window_indices(start_step, seq_len, batch_size, seed=seed, rank=rank, world_size=world_size)
        steps = (
            itertools.count(int(start_step))
            if num_steps is None
            else range(int(start_step), int(start_step) + int(num_steps))
        )
        return (self.get_batch(k, seq_len, batch_size, seed=seed, rank=rank, world_size=world_size) for k in steps)
