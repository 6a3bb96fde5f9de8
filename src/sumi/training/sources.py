"""Batch sources: where the trainer's clean token windows come from.

The trainer only needs the `BatchSource` protocol, which `sumi.data.PackedDataset` implements:

    batches(seq_len, batch_size, *, seed, rank=0, world_size=1, start_step=0) -> Iterator[LongTensor]

yields rank `rank`'s ``[batch_size, seq_len]`` rows of consecutive global batches; the global batch
of index k has ``batch_size * world_size`` rows, rank r gets rows ``r*batch_size:(r+1)*batch_size``
(so all ranks together see what one process with ``batch_size * world_size`` sees), and
``start_step=k`` starts at global batch k. The trainer asks for micro-batches: optimizer step s,
micro-step m reads global batch ``s * accum + m``.

`SyntheticSource` is an in-memory source with the same contract, for tests, benchmarks and the
tiny CPU recipe. A mixture's named sources may also be `sumi.data.StreamedDataset`s (`open_source`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import torch

from ..seeding import derive_seed


@runtime_checkable
class BatchSource(Protocol):
    def batches(
        self, seq_len: int, batch_size: int, *, seed: int, rank: int = 0, world_size: int = 1, start_step: int = 0
    ) -> Iterator[torch.Tensor]: ...


class SyntheticSource:
    """Rows that are a pure function of (seed, split, global row index).

    kind "pattern": a Markov chain over the vocabulary: each token is followed by its successor
    under a fixed random permutation (the same for every split, seeded by `seed`) with probability
    0.9, else by a uniform draw; a denoiser learns it quickly from neighbouring tokens, so the loss
    falls fast (a toy "language"). The permutation depends only on `grammar_seed`, so the train and
    validation splits (and any stream seed) share the same "language".
    kind "random": uniform random tokens (the loss cannot fall below the entropy).
    `num_sequences > 0` restricts the stream to a pool of that many rows, cycled (a fixed batch
    when it equals the global batch size: for overfitting tests).
    """

    def __init__(
        self,
        vocab_size: int,
        *,
        kind: str = "pattern",
        num_sequences: int = 0,
        split: str = "train",
        grammar_seed: int = 0,
    ):
        if kind not in ("pattern", "random"):
            raise ValueError(f"unknown synthetic kind {kind!r}; choose 'pattern' or 'random'")
        self.vocab_size = int(vocab_size)
        self.kind = kind
        self.num_sequences = int(num_sequences)
        self.split = split
        self.grammar_seed = int(grammar_seed)
        self._succ: list[int] | None = None

    def row(self, index: int, seq_len: int, seed: int) -> torch.Tensor:
        if self.num_sequences:
            index %= self.num_sequences
        g = torch.Generator().manual_seed(derive_seed("synthetic", self.split, seed, index))
        if self.kind == "random":
            return torch.randint(0, self.vocab_size, (seq_len,), generator=g)
        succ = self._successor()
        jump = torch.rand(seq_len, generator=g) < 0.1
        draws = torch.randint(0, self.vocab_size, (seq_len,), generator=g).tolist()
        row = [draws[0]]
        for i in range(1, seq_len):
            row.append(draws[i] if jump[i] else succ[row[-1]])
        return torch.tensor(row, dtype=torch.long)

    def _successor(self) -> list[int]:
        if self._succ is None:
            g = torch.Generator().manual_seed(derive_seed("synthetic-successor", self.grammar_seed))
            self._succ = torch.randperm(self.vocab_size, generator=g).tolist()
        return self._succ

    def get_batch(
        self, step: int, seq_len: int, batch_size: int, *, seed: int, rank: int = 0, world_size: int = 1
    ) -> torch.Tensor:
        first = step * batch_size * world_size + rank * batch_size
        return torch.stack([self.row(first + i, seq_len, seed) for i in range(batch_size)])

    def batches(
        self, seq_len: int, batch_size: int, *, seed: int, rank: int = 0, world_size: int = 1, start_step: int = 0
    ) -> Iterator[torch.Tensor]:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        return (
            self.get_batch(k, seq_len, batch_size, seed=seed, rank=rank, world_size=world_size)
            for k in itertools.count(int(start_step))
        )


def make_source(data, split: str, vocab_size: int) -> BatchSource:
    """The source a `DataSection` describes (one dataset), for split "train" or "validation"."""
    from .config import SourceSection

    section = SourceSection(
        name="data",
        kind=data.source,
        path=data.path,
        train_split=data.train_split,
        val_split=data.val_split,
        synthetic_kind=data.synthetic_kind,
        synthetic_sequences=data.synthetic_sequences,
    )
    return open_source(section, split, vocab_size)


def open_source(section, split: str, vocab_size: int, *, model_path: str | None = None) -> BatchSource:
    """The split ("train" or "validation") of one `SourceSection`: a `PackedDataset`, a
    `StreamedDataset` (tokenized with the section's tokenizer, else the one in `model_path`) or a
    `SyntheticSource`."""
    if section.kind == "synthetic":
        return SyntheticSource(
            vocab_size,
            kind=section.synthetic_kind,
            num_sequences=section.synthetic_sequences,
            split=split,
            grammar_seed=section.grammar_seed,
        )
    from ..data import PackedDataset, StreamedDataset

    name = section.train_split if split == "train" else section.val_split
    ds: PackedDataset | StreamedDataset
    if section.kind == "stream":
        tokenizer = section.tokenizer or model_path
        if not tokenizer:
            raise ValueError("a streamed source needs a tokenizer: set its key tokenizer, or model.path")
        ds = StreamedDataset(
            section.path, tokenizer=tokenizer, split=name, text_field=section.text_field, subset=section.subset
        )
        what = f"the tokenizer {tokenizer!r} has"
    else:
        ds = PackedDataset(section.path, split=name)
        what = f"dataset {section.path!r} was tokenized with"
    if ds.vocab_size > vocab_size:
        raise ValueError(f"{what} vocab_size={ds.vocab_size}, larger than the model's vocab_size={vocab_size}")
    return ds


__all__ = ["BatchSource", "SyntheticSource", "make_source", "open_source"]
