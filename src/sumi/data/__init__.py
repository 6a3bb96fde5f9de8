"""Data pipeline for training Sumi-style uniform diffusion LMs.

* `prepare_dataset`: text files / JSONL / parquet / `datasets` -> packed token shards
  (``BOS d1 EOS BOS d2 EOS ...``, uint16/uint32 memmaps + metadata.json), deterministic, streaming,
  multi-process, atomic.
* `PackedDataset`: memory-mapped windows and deterministic, rank-sharded, resumable batches.
* `StreamedDataset`: a `datasets` dataset streamed, tokenized on the fly and cut into the same windows.
* `stats` / `format_stats`: counts, document lengths, sha256 verification.
* `train_tokenizer`: a small deterministic byte-level BPE (pad=0, eos=1, bos=2).
* `sumi.data.corpora`: offline demo corpora (CPython stdlib, Shakespeare).
* `sumi.data.cli.add_parser`: the ``data prepare``/``data stats``/``tokenizer train`` commands.
"""

from . import corpora  # noqa: F401 (sumi.data.corpora, the offline corpora)
from .format import FORMAT_VERSION, METADATA_FILE, CorruptShardError
from .packed import PackedDataset, WindowPermutation, split_documents
from .prepare import iter_documents, prepare_dataset, split_of
from .stats import format_stats, print_stats, stats
from .streamed import StreamedDataset
from .tokenizer_train import DEFAULT_SPECIAL_TOKENS, train_tokenizer

__all__ = [
    "prepare_dataset",
    "iter_documents",
    "split_of",
    "PackedDataset",
    "StreamedDataset",
    "WindowPermutation",
    "split_documents",
    "stats",
    "format_stats",
    "print_stats",
    "train_tokenizer",
    "DEFAULT_SPECIAL_TOKENS",
    "CorruptShardError",
    "FORMAT_VERSION",
    "METADATA_FILE",
]
