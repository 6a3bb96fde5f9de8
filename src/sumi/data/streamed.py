"""A `datasets` dataset streamed, tokenized on the fly and cut into windows (`StreamedDataset`).

Documents become tokens exactly as `prepare_dataset` writes them (its `_Encoder`: ``BOS ids EOS``
per document, special-token strings kept as plain text, documents that tokenize to nothing
skipped), and windows are cut exactly as `PackedDataset` cuts a split: window ``i`` of `seq_len`
tokens is ``stream[i*seq_len : (i+1)*seq_len]`` of ``BOS d1 EOS BOS d2 EOS ...`` (the last
``num_tokens % seq_len`` tokens are never used). So window i of a streamed dataset equals window i
of the dataset ``prepare_dataset(..., val_fraction=0)`` makes of the same documents.

Where the documents come from (`path`):

* ``hf:owner/name``: a Hub dataset (`subset`: its configuration), ``load_dataset(..., streaming=True)``;
  offline (``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE``), a copy prepared earlier in the datasets
  cache, else a one-line error;
* a folder saved by ``save_to_disk``: its split, read as an iterable dataset;
* another folder: ``load_dataset(folder, streaming=True)`` (datasets' file-name conventions give
  the splits: ``train*.jsonl``, ``validation*.jsonl``, ...);
* a data file or a glob of them (``.jsonl``, ``.parquet``, text files; gzipped too): one split,
  "train". As in `prepare_dataset`, a text file is one document and a JSON line / parquet row is one.

The stream is read forward and lazily: asking for window i tokenizes the documents up to its end
(in batches of at most 512 documents), keeping only the documents that hold windows not yet
passed. Its length is unknown until it ends (`num_windows` is None until then). A window behind
the reader re-reads the stream from its start (a new pass). A `StreamPosition` (window, document,
offset, a hash of the window) saved from one reader lets another start at that window without
tokenizing what comes before: the documents before it are read but not tokenized, and the
window's hash is checked (on a mismatch: a warning, and the stream is read from its start).
"""

from __future__ import annotations

import glob
import hashlib
import itertools
import logging
import os
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .prepare import (
    HUB_PREFIX,
    _batches_of,
    _choose_dtype,
    _Encoder,
    _file_kind,
    _import_datasets,
    _is_saved_hf_dataset,
    _iter_hf,
    _resolve_tokenizer,
)

logger = logging.getLogger(__name__)

# prepare's input kinds -> the `datasets` builder that reads them the same way (a text file is one document)
_BUILDERS: dict[str, tuple[str, dict[str, Any]]] = {
    "jsonl": ("json", {}),
    "parquet": ("parquet", {}),
    "text": ("text", {"sample_by": "document"}),
}


def _one_line(e: BaseException, limit: int = 300) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _load_hub(datasets: Any, name: str, subset: str | None, split: str) -> Any:
    where = f"the Hub dataset {name!r}" + (f" (subset {subset!r})" if subset else "")
    try:
        return datasets.load_dataset(name, subset, split=split, streaming=True)
    except Exception as e:  # unknown name, no network, no such split, ...
        streamed = e
    if not datasets.config.HF_HUB_OFFLINE:
        raise ValueError(f"cannot stream split {split!r} of {where}: {_one_line(streamed)}") from None
    try:  # offline: streaming needs the network, but a copy prepared earlier may sit in the datasets cache
        return datasets.load_dataset(name, subset, split=split).to_iterable_dataset()
    except Exception as e:
        raise ValueError(
            f"{where} is not available offline (HF_HUB_OFFLINE is set and the datasets cache holds no "
            f"copy of its split {split!r}): {_one_line(e)}"
        ) from None


def _data_files(path: str) -> list[str]:
    """The files a path or glob names; FileNotFoundError naming it when none exist."""
    if any(c in path for c in "*?["):
        files = sorted(f for f in glob.glob(path, recursive=True) if os.path.isfile(f))
        if not files:
            raise FileNotFoundError(f"{path!r} matches no files")
        return files
    if os.path.isfile(path):
        return [path]
    hint = (
        f" (for a Hugging Face Hub dataset write '{HUB_PREFIX}{path}')"
        if path.count("/") == 1 and not path.startswith((".", "/", "~"))
        else ""
    )
    raise FileNotFoundError(f"{path!r} does not exist{hint}")


def open_stream(path: str, *, split: str = "train", subset: str | None = None) -> Any:
    """The `datasets` iterable dataset of one split of `path` (see the module docstring for the forms
    of `path`). FileNotFoundError / ValueError name the path; ImportError without `datasets`."""
    datasets = _import_datasets(f"the streamed source {path!r}")
    if path.startswith(HUB_PREFIX):
        name, _, in_path = path[len(HUB_PREFIX) :].partition(":")
        if not name or in_path:
            raise ValueError(
                f"write a Hub dataset as '{HUB_PREFIX}owner/name' (its split is a key of its own), got {path!r}"
            )
        return _load_hub(datasets, name, subset, split)
    folder = Path(path)
    if folder.is_dir() and _is_saved_hf_dataset(folder):
        ds = datasets.load_from_disk(path)
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise ValueError(f"the saved dataset {path!r} has no split {split!r} (splits: {sorted(ds)})")
            ds = ds[split]
        elif split != "train":
            raise ValueError(f"the saved dataset {path!r} is one split, 'train'; there is no split {split!r}")
        return ds.to_iterable_dataset()
    if folder.is_dir():
        kinds = {_file_kind(p) for p in folder.rglob("*") if p.is_file()} - {None}
        if not kinds:
            raise ValueError(f"the folder {path!r} holds no data files (.jsonl, .parquet or text files)")
        extra = _BUILDERS["text"][1] if kinds == {"text"} else {}
        try:
            return datasets.load_dataset(path, split=split, streaming=True, **extra)
        except Exception as e:
            raise ValueError(f"cannot stream split {split!r} of the folder {path!r}: {_one_line(e)}") from None
    files = _data_files(path)
    kinds = {_file_kind(Path(f)) for f in files}
    if None in kinds or len(kinds) > 1:
        raise ValueError(
            f"{path!r}: stream files of one kind, .jsonl, .parquet or text files (.txt, .md, ...; gzipped "
            f"too), got {sorted(os.path.basename(f) for f in files)[:5]}"
        )
    if split != "train":
        raise ValueError(f"the data files {path!r} form one split, 'train'; there is no split {split!r}")
    builder, extra = _BUILDERS[kinds.pop() or ""]
    try:
        return datasets.load_dataset(builder, data_files=files, split="train", streaming=True, **extra)
    except StopIteration:  # datasets looks at the first record for the features
        raise ValueError(f"the source is empty: the data files {path!r} hold no records") from None
    except Exception as e:
        raise ValueError(f"cannot stream the data files {path!r}: {_one_line(e)}") from None


def describe_stream(path: str) -> dict[str, Any]:
    """What can be said of a streamed source without reading it: its form (``hub``, ``saved``,
    ``folder``, ``files``), its files and their bytes on disk (None for the Hub). Its tokens and
    documents are unknown until it is read, so they are not here."""
    if path.startswith(HUB_PREFIX):
        return {"path": path, "kind": "streamed", "form": "hub", "files": None, "bytes_on_disk": None}
    folder = Path(path)
    if folder.is_dir():
        saved = _is_saved_hf_dataset(folder)
        files = sorted(str(p) for p in folder.rglob("*") if p.is_file() and (saved or _file_kind(p)))
        if not files:
            raise ValueError(
                f"{path!r} is neither a prepared sumi dataset (no metadata.json) nor a folder of data files "
                "(.jsonl, .parquet, text files) or a saved `datasets` dataset"
            )
        form = "saved" if saved else "folder"
    else:
        files, form = _data_files(path), "files"
    return {
        "path": path,
        "kind": "streamed",
        "form": form,
        "files": len(files),
        "bytes_on_disk": sum(os.path.getsize(f) for f in files),
    }


def window_hash(tokens: np.ndarray) -> str:
    """blake2b (8 bytes, hex) of a window's tokens as little-endian int64."""
    return hashlib.blake2b(np.asarray(tokens, dtype="<i8").tobytes(), digest_size=8).hexdigest()


@dataclass(frozen=True)
class StreamPosition:
    """Where window `window` of `seq_len` tokens starts: token `offset` of document `document` (its
    index among the stream's texts, ``BOS`` = offset 0); `sha` is `window_hash` of the window.
    `num_tokens`: the stream's length, when known."""

    seq_len: int
    window: int
    document: int = 0
    offset: int = 0
    sha: str = ""
    num_tokens: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StreamPosition:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


class _Reader:
    """One forward pass over the stream's tokens, from window `window` (document `document`, whose
    token `offset` starts that window)."""

    def __init__(self, texts: Iterator[str], encode: Callable, seq_len: int, window=0, document=0, offset=0):
        self.batches, self.encode, self.S = _batches_of(texts), encode, seq_len
        self.next_doc = document  # index of the next text to read
        self.docs: deque[tuple[int, int, np.ndarray]] = deque()  # (document, stream offset of its BOS, tokens)
        self.start = window * seq_len  # tokens before this are not needed any more
        self.end = self.start - offset  # stream offset just after the last token read
        self.done = False

    def fill(self, upto: int) -> None:
        """Read documents until the stream's first `upto` tokens are read, or it ends."""
        while self.end < upto and not self.done:
            batch = next(self.batches, None)
            if batch is None:
                self.done = True
                break
            for tokens in self.encode(batch):
                if len(tokens):
                    self.docs.append((self.next_doc, self.end, tokens))
                    self.end += len(tokens)
                self.next_doc += 1

    def window(self, w: int) -> np.ndarray | None:
        """Window `w` (not behind `start`), None past the stream's end; forgets the tokens before it."""
        a, b = w * self.S, (w + 1) * self.S
        if a < self.start:
            raise AssertionError(f"window {w} is behind the reader")
        self.fill(b)
        if self.end < b:
            return None
        self.start = a
        while self.docs and self.docs[0][1] + len(self.docs[0][2]) <= a:
            self.docs.popleft()
        out = np.empty(self.S, dtype=np.int64)
        for _, s, tokens in self.docs:
            if s >= b:
                break
            lo, hi = max(a, s), min(b, s + len(tokens))
            out[lo - a : hi - a] = tokens[lo - s : hi - s]
        return out

    def locate(self, w: int) -> tuple[int, int]:
        """(document, offset) of the first token of window `w` (read, not forgotten)."""
        a = w * self.S
        for doc, s, tokens in self.docs:
            if s <= a < s + len(tokens):
                return doc, a - s
        raise AssertionError(f"window {w} is not held by the reader")


class StreamedDataset:
    """One split of a `datasets` dataset as windows of `seq_len` tokens, tokenized on the fly (see the
    module docstring). ``StreamedDataset(path, tokenizer=..., split="train", text_field="text")``;
    `tokenizer`: a name or path for `sumi.tokenization.load_tokenizer`, a transformers fast tokenizer
    or a ``tokenizers.Tokenizer``. Opening checks the path, the split and the text field; the
    documents are read only when windows are asked for.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        tokenizer: Any,
        split: str = "train",
        text_field: str = "text",
        subset: str | None = None,
    ):
        self.path, self.split, self.text_field = os.fspath(path), split, text_field
        self.where = f"{self.path!r}" + (f" (split {split!r})" if split != "train" else "")
        self._ds = open_stream(self.path, split=split, subset=subset)
        columns = getattr(self._ds, "column_names", None)
        if columns is not None and text_field not in columns:
            raise ValueError(f"{self.where} has no text field {text_field!r} (fields: {columns})")
        if columns is None:  # features unknown until read: look at the first record
            first = next(iter(self._ds), None)
            if first is not None and text_field not in first:
                raise ValueError(f"{self.where} has no text field {text_field!r} (fields: {sorted(first)})")
        tok = _resolve_tokenizer(tokenizer, None, None)
        self.tokenizer_name = tok.name
        self.vocab_size, self.bos_token_id, self.eos_token_id = tok.vocab_size, tok.bos, tok.eos
        dtype = _choose_dtype("auto", tok.vocab_size)
        self._encoder = _Encoder(tok.json, tok.bos, tok.eos, dtype, tok.vocab_size, 0, 0.0)
        self.documents_tokenized = 0  # over all passes (for tests and logs)
        self.num_tokens: int | None = None  # the stream's length, known once it has been read to its end
        self._reader: _Reader | None = None
        self._hint: StreamPosition | None = None

    def __repr__(self) -> str:
        size = "length unknown until read" if self.num_tokens is None else f"{self.num_tokens:,} tokens"
        return f"StreamedDataset({self.where}, text_field={self.text_field!r}: {size})"

    # ------------------------------------------------------------------ reading
    def _texts(self, start: int) -> Iterator[str]:
        """The stream's texts from index `start` (those before it are read, not tokenized)."""
        texts = (text for text, _ in _iter_hf(self._ds, self.text_field, self.where))
        return itertools.islice(texts, start, None)

    def _encode(self, texts: list[str]) -> list[np.ndarray]:
        self.documents_tokenized += len(texts)
        return [tokens.astype(np.int64) for _, tokens in self._encoder(texts)]

    def _new_reader(self, w: int, seq_len: int) -> _Reader:
        """A reader for window `w`: from the restored position when it is not past `w`, else from the start."""
        h = self._hint
        if h is not None and h.seq_len == seq_len and 0 < h.window <= w:
            r = _Reader(self._texts(h.document), self._encode, seq_len, h.window, h.document, h.offset)
            tokens = r.window(h.window)
            if tokens is not None and window_hash(tokens) == h.sha:
                return r
            logger.warning(
                "%s: window %d is not what the checkpoint recorded (the data changed?); reading the stream "
                "from its start",
                self.where,
                h.window,
            )
            self._hint = None
        return _Reader(self._texts(0), self._encode, seq_len)

    def _reader_for(self, w: int, seq_len: int) -> _Reader:
        r = self._reader
        if r is None or r.S != seq_len or w * seq_len < r.start:
            r = self._reader = self._new_reader(w, seq_len)
        return r

    def _learn_end(self, r: _Reader) -> None:
        if r.done:
            self.num_tokens = r.end

    # ------------------------------------------------------------------ windows
    def num_windows(self, seq_len: int) -> int | None:
        """Windows of `seq_len` tokens, once the stream has been read to its end; None before."""
        return None if self.num_tokens is None else self.num_tokens // int(seq_len)

    def has_window(self, w: int, seq_len: int) -> bool:
        """Whether window `w` exists (reads ahead as far as needed; after False, `num_windows` is known)."""
        n = self.num_windows(seq_len)
        if n is not None:
            return w < n
        h = self._hint
        if h is not None and h.seq_len == seq_len and w < h.window:  # passed by the run that saved it
            return True
        r = self._reader
        if r is not None and r.S == seq_len and (w + 1) * seq_len <= r.end:  # read already
            return True
        r = self._reader_for(w, seq_len)
        r.fill((w + 1) * seq_len)
        self._learn_end(r)
        return r.end >= (w + 1) * seq_len

    def get_window(self, w: int, seq_len: int) -> torch.Tensor:
        """Window `w` (0-based): ``stream[w*seq_len : (w+1)*seq_len]`` as a LongTensor [seq_len];
        IndexError past the end."""
        r = self._reader_for(int(w), int(seq_len))
        tokens = r.window(int(w))
        self._learn_end(r)
        if tokens is None:
            raise IndexError(
                f"window {w} out of range: {self.where} has {self.num_windows(seq_len)} windows of {seq_len} tokens"
            )
        return torch.from_numpy(tokens)

    def row(self, k: int, seq_len: int) -> torch.Tensor:
        """Row `k` of endless passes over the stream in its order: window ``k mod N``."""
        if self.has_window(k, seq_len):
            return self.get_window(k, seq_len)
        return self.get_window(k % int(self.num_windows(seq_len) or 1), seq_len)

    def batches(
        self, seq_len: int, batch_size: int, *, seed: int, rank: int = 0, world_size: int = 1, start_step: int = 0
    ) -> Iterator[torch.Tensor]:
        """The `BatchSource` contract over `row` (the stream's order; `seed` is not used): data batch k
        holds rows ``k*batch_size*world_size ..``, rank r its slice ``r*batch_size ..``."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        if not self.has_window(0, seq_len):  # eagerly, as PackedDataset.batches
            raise ValueError(f"{self.where} holds {self.num_tokens} tokens, not one window of {seq_len}")
        per = batch_size * world_size
        return (
            torch.stack([self.row(k * per + rank * batch_size + j, seq_len) for j in range(batch_size)])
            for k in itertools.count(int(start_step))
        )

    # ------------------------------------------------------------------ positions
    def position(self, w: int, seq_len: int) -> StreamPosition:
        """Where window `w` starts (for a checkpoint; reads it if needed). Window 0, or a window past the
        end, is the start of the stream."""
        if w == 0 or not self.has_window(w, seq_len):
            return StreamPosition(seq_len, 0, num_tokens=self.num_tokens)
        r = self._reader_for(w, seq_len)
        tokens = r.window(w)
        assert tokens is not None
        doc, offset = r.locate(w)
        return StreamPosition(seq_len, w, doc, offset, window_hash(tokens), self.num_tokens)

    def restore(self, position: StreamPosition) -> None:
        """Start the next reader at `position` (saved by `position`) when the window asked for is not before it."""
        self._hint = position
        if position.num_tokens is not None:
            self.num_tokens = position.num_tokens
        self._reader = None


__all__ = ["StreamedDataset", "StreamPosition", "describe_stream", "open_stream", "window_hash"]
