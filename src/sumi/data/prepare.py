"""Tokenize a text corpus into packed, sharded token files (`prepare_dataset`).

See `sumi.data.format` for the on-disk layout. In short: per split (``train``, ``validation``) a
stream ``BOS d1 EOS BOS d2 EOS ... BOS dn EOS`` (it starts with BOS: every document is preceded by
BOS and followed by EOS), cut at document boundaries into ``<split>-NNNNN.bin`` memmap shards, each
with a ``<split>-NNNNN.docs.npy`` of document start offsets, described by ``metadata.json``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import multiprocessing as mp
import os
import sys
import warnings
import zlib
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_folder, check_target
from .format import DTYPES, FORMAT_NAME, FORMAT_VERSION, METADATA_FILE, SPLITS, read_metadata, shard_names
from .jsonl import iter_json_lines

# whole-file documents (optionally gzipped)
TEXT_SUFFIXES = (".txt", ".text", ".md", ".rst", ".py")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
PARQUET_SUFFIXES = (".parquet",)
DEFAULT_SHARD_TOKENS = 1 << 28  # 256 Mi tokens: 512 MiB (uint16) / 1 GiB (uint32) per shard
HUB_PREFIX = "hf:"

_BATCH_DOCS = 512  # documents per worker task ...
_BATCH_CHARS = 8 << 20  # ... or this many characters, whichever comes first


def default_num_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


# ----------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class _Source:
    kind: str  # "text" | "jsonl" | "parquet" | "hf_disk" | "hf_hub"
    path: str  # as given (a file, a folder, or a Hub name)
    bytes: int | None  # size on disk (None for the Hub)

    def describe(self) -> dict[str, Any]:
        return {"path": self.path, "kind": self.kind, "bytes": self.bytes}


def _strip_gz(name: str) -> tuple[str, bool]:
    return (name[:-3], True) if name.endswith(".gz") else (name, False)


def _file_kind(path: Path) -> str | None:
    name, _ = _strip_gz(path.name.lower())
    if name.endswith(TEXT_SUFFIXES):
        return "text"
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(PARQUET_SUFFIXES) and not path.name.lower().endswith(".gz"):
        return "parquet"
    return None


def _is_saved_hf_dataset(folder: Path) -> bool:
    return (folder / "dataset_dict.json").is_file() or (
        (folder / "state.json").is_file() and (folder / "dataset_info.json").is_file()
    )


def _supported() -> str:
    text = ", ".join(TEXT_SUFFIXES)
    return (
        f"{text} (one document per file), {', '.join(JSONL_SUFFIXES)} (one JSON object per line), "
        f".parquet (needs pyarrow), any of these gzipped (.gz, not parquet), a folder saved with "
        f"datasets' save_to_disk, a folder of such files, or '{HUB_PREFIX}owner/name[:split]' for a Hub dataset"
    )


def _expand_inputs(inputs: str | os.PathLike | Sequence[str | os.PathLike]) -> list[_Source]:
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    inputs = list(inputs)
    if not inputs:
        raise ValueError("no inputs given: pass at least one file, folder or Hub dataset")
    sources: list[_Source] = []
    for item in inputs:
        name = os.fspath(item)
        if isinstance(name, bytes):
            name = os.fsdecode(name)
        if name.startswith(HUB_PREFIX):
            sources.append(_Source("hf_hub", name, None))
            continue
        path = Path(name)
        if path.is_dir():
            if _is_saved_hf_dataset(path):
                size = sum(p.stat().st_size for p in sorted(path.rglob("*")) if p.is_file())
                sources.append(_Source("hf_disk", name, size))
                continue
            found = sorted((p for p in path.rglob("*") if p.is_file() and _file_kind(p)), key=lambda p: p.as_posix())
            if not found:
                raise ValueError(f"the folder {name!r} holds no supported input files; supported: {_supported()}")
            sources.extend(_Source(_file_kind(p), os.fspath(p), p.stat().st_size) for p in found)
        elif path.is_file():
            kind = _file_kind(path)
            if kind is None:
                raise ValueError(
                    f"unsupported input file {name!r} (unknown extension {path.suffix!r}); supported: {_supported()}"
                )
            sources.append(_Source(kind, name, path.stat().st_size))
        else:
            hint = (
                f" (for a Hugging Face Hub dataset write '{HUB_PREFIX}{name}')"
                if name.count("/") == 1 and not name.startswith((".", "/", "~"))
                else ""
            )
            raise FileNotFoundError(f"input {name!r} does not exist{hint}")
    return sources


def _open_text(path: str):
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def _decode(data: bytes) -> str:
    # bytes -> str exactly (CRLF kept); invalid UTF-8 becomes U+FFFD rather than failing the run
    return data.decode("utf-8", errors="replace")


def _import_datasets(what: str):
    try:
        import datasets  # noqa: F401
    except ImportError:
        raise ImportError(
            f"reading {what} needs the `datasets` package, which is not installed: pip install datasets"
        ) from None
    return datasets


def _pick_split(datasets, ds, where: str):
    if isinstance(ds, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        splits = sorted(ds.keys())
        if "train" in ds:
            return ds["train"]
        if len(splits) == 1:
            return ds[splits[0]]
        raise ValueError(f"{where} has several splits {splits} and none is 'train'; save the one you want alone")
    return ds


def _iter_hf(ds, text_field: str, where: str, fields: Sequence[str] = ()) -> Iterator[tuple[str, dict[str, Any]]]:
    cols = getattr(ds, "column_names", None)
    if cols is not None and text_field not in cols:
        raise ValueError(f"{where} has no column {text_field!r} (columns: {cols}); pass text_field=")
    for row in ds:
        text = row.get(text_field)
        if text is None:
            continue
        if not isinstance(text, str):
            raise ValueError(f"{where}: field {text_field!r} is a {type(text).__name__}, expected a string")
        yield text, {f: row.get(f) for f in fields}


def _iter_source(src: _Source, text_field: str, fields: Sequence[str] = ()) -> Iterator[tuple[str, dict[str, Any]]]:
    """(text, the record's `fields`) of each document of one input; a file that cannot be read (a
    truncated .gz, an I/O error) is a ValueError naming it."""
    try:
        yield from _read_source(src, text_field, fields)
    except (OSError, EOFError, zlib.error) as e:
        what = "truncated or corrupt compressed file" if src.path.endswith(".gz") else "cannot read the file"
        raise ValueError(f"{src.path}: {what} ({e})") from None


def _read_source(src: _Source, text_field: str, fields: Sequence[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    if src.kind == "text":
        with _open_text(src.path) as f:
            yield _decode(f.read()), {}
    elif src.kind == "jsonl":
        with _open_text(src.path) as f:
            for lineno, obj in iter_json_lines(f, str(src.path)):
                if not isinstance(obj, dict) or text_field not in obj:
                    raise ValueError(
                        f"{src.path}:{lineno}: no field {text_field!r} in the JSON object "
                        "(pass text_field= to name the text field)"
                    )
                text = obj[text_field]
                if text is None:
                    continue
                if not isinstance(text, str):
                    raise ValueError(
                        f"{src.path}:{lineno}: field {text_field!r} is a {type(text).__name__}, expected a string"
                    )
                yield text, {f: obj.get(f) for f in fields}
    elif src.kind == "parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise ImportError(
                f"reading the parquet file {src.path!r} needs pyarrow, which is not installed: pip install pyarrow"
            ) from None
        pf = pq.ParquetFile(src.path)
        if text_field not in pf.schema_arrow.names:
            raise ValueError(
                f"{src.path}: no column {text_field!r} (columns: {pf.schema_arrow.names}); pass text_field="
            )
        extra = [f for f in fields if f in pf.schema_arrow.names and f != text_field]
        for batch in pf.iter_batches(columns=[text_field, *extra], batch_size=1024):
            for row in batch.to_pylist():
                text = row[text_field]
                if text is None:
                    continue
                if not isinstance(text, str):
                    raise ValueError(f"{src.path}: column {text_field!r} holds {type(text).__name__}, expected strings")
                yield text, {f: row.get(f) for f in fields}
    elif src.kind == "hf_disk":
        datasets = _import_datasets(f"the saved dataset {src.path!r}")
        ds = _pick_split(datasets, datasets.load_from_disk(src.path), repr(src.path))
        yield from _iter_hf(ds, text_field, repr(src.path), fields)
    elif src.kind == "hf_hub":
        spec = src.path[len(HUB_PREFIX) :]
        name, _, split = spec.partition(":")
        if not name:
            raise ValueError(f"empty Hub dataset name in {src.path!r}; write '{HUB_PREFIX}owner/name[:split]'")
        datasets = _import_datasets(f"the Hub dataset {name!r}")
        try:
            ds = datasets.load_dataset(name, split=split or "train", streaming=True)
        except Exception as e:  # offline, unknown name, ...: re-raise with the input named
            raise ValueError(f"cannot load the Hub dataset {name!r} (split {split or 'train'!r}): {e}") from e
        yield from _iter_hf(ds, text_field, f"the Hub dataset {name!r}", fields)
    else:  # pragma: no cover
        raise AssertionError(src.kind)


def iter_documents(
    inputs: str | os.PathLike | Sequence[str | os.PathLike], *, text_field: str = "text"
) -> Iterator[str]:
    """The documents of `inputs`, in order, as `prepare_dataset` reads them (empty texts included)."""
    for src in _expand_inputs(inputs):
        yield from (text for text, _ in _iter_source(src, text_field))


# ----------------------------------------------------------------------------- tokenizer
@dataclass
class _TokInfo:
    json: str
    name: str | None
    sha256: str
    vocab_size: int
    bos: int
    eos: int
    pad: int | None


def _resolve_tokenizer(tokenizer: Any, bos_token_id: int | None, eos_token_id: int | None) -> _TokInfo:
    from tokenizers import Tokenizer

    name: str | None
    if isinstance(tokenizer, (str, os.PathLike)):
        from ..tokenization import load_tokenizer

        name = os.fspath(tokenizer)
        tok = load_tokenizer(name)
    else:
        tok = tokenizer
        name = getattr(tok, "name_or_path", None) or None
    if isinstance(tok, Tokenizer):
        backend, bos, eos, pad = tok, None, None, None
        vocab_size = backend.get_vocab_size(with_added_tokens=True)
    else:
        backend = getattr(tok, "backend_tokenizer", None)
        if not isinstance(backend, Tokenizer):
            raise TypeError(
                "prepare_dataset needs a fast tokenizer (a transformers PreTrainedTokenizerFast or a "
                f"tokenizers.Tokenizer, or a path/name to load one); got {type(tok).__name__}"
            )
        bos, eos, pad = tok.bos_token_id, tok.eos_token_id, tok.pad_token_id
        vocab_size = max(len(tok), backend.get_vocab_size(with_added_tokens=True))
    bos = bos_token_id if bos_token_id is not None else bos
    eos = eos_token_id if eos_token_id is not None else eos
    if bos is None or eos is None:
        raise ValueError(
            f"the tokenizer {name or type(tok).__name__!r} has no "
            f"{'BOS' if bos is None else 'EOS'} token; pass bos_token_id= and eos_token_id="
        )
    for what, i in (("bos_token_id", bos), ("eos_token_id", eos)):
        if not 0 <= int(i) < vocab_size:
            raise ValueError(f"{what}={i} is outside the tokenizer's vocabulary of {vocab_size} ids")
    text = backend.to_str()
    return _TokInfo(
        text,
        name,
        hashlib.sha256(text.encode("utf-8")).hexdigest(),
        int(vocab_size),
        int(bos),
        int(eos),
        None if pad is None else int(pad),
    )


def _choose_dtype(dtype: str, vocab_size: int) -> str:
    if dtype == "auto":
        return "uint16" if vocab_size <= 1 << 16 else "uint32"
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be 'auto', 'uint16' or 'uint32', got {dtype!r}")
    if dtype == "uint16" and vocab_size > 1 << 16:
        raise ValueError(f"dtype uint16 cannot hold a vocabulary of {vocab_size} ids (max 65536); use uint32 or auto")
    return dtype


# ----------------------------------------------------------------------------- workers
class _Encoder:
    """Tokenizes a batch of texts into ``(is_validation, BOS ids EOS)`` pairs (one per worker)."""

    def __init__(self, tok_json: str, bos: int, eos: int, dtype: str, vocab_size: int, seed: int, val_fraction: float):
        from tokenizers import Tokenizer

        backend = Tokenizer.from_str(tok_json)
        backend.no_truncation()
        backend.no_padding()
        if hasattr(backend, "encode_special_tokens"):
            # special-token strings inside a document ("<|endoftext|>" in a code file) are plain text,
            # so the only BOS/EOS ids in the stream are the delimiters
            backend.encode_special_tokens = True
        self.backend, self.bos, self.eos, self.dtype = backend, bos, eos, DTYPES[dtype]
        self.vocab_size, self.key, self.val_fraction = vocab_size, f"sumi-split:{seed}".encode(), val_fraction

    def __call__(self, texts: list[str]) -> list[tuple[bool, np.ndarray]]:
        encode = getattr(self.backend, "encode_batch_fast", self.backend.encode_batch)
        out = []
        for text, e in zip(texts, encode(texts, add_special_tokens=False)):
            ids = e.ids
            if not ids:  # a text of only characters the tokenizer drops: nothing to store
                out.append((False, np.empty(0, dtype=self.dtype)))
                continue
            arr = np.empty(len(ids) + 2, dtype=np.int64)
            arr[0], arr[1:-1], arr[-1] = self.bos, ids, self.eos
            if int(arr.max()) >= self.vocab_size or int(arr.min()) < 0:
                raise ValueError(
                    f"the tokenizer produced id {int(arr.max())} outside its vocabulary of {self.vocab_size}"
                )
            is_val = _is_val(text.encode("utf-8", "surrogatepass"), self.key, self.val_fraction)
            out.append((is_val, arr.astype(self.dtype)))
        return out


_WORKER_ENCODER: _Encoder | None = None


def _init_worker(*args: Any) -> None:
    global _WORKER_ENCODER
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one process per core already: no rayon threads on top
    _WORKER_ENCODER = _Encoder(*args)


def _encode_in_worker(texts: list[str]) -> list[tuple[bool, np.ndarray]]:
    assert _WORKER_ENCODER is not None
    return _WORKER_ENCODER(texts)


def split_of(text: str, seed: int, val_fraction: float) -> str:
    """The split a document goes to: ``validation`` iff
    ``int.from_bytes(blake2b(utf8(text), digest_size=8, key=b"sumi-split:<seed>"), "big") / 2**64 < val_fraction``.
    Content-based, so identical documents always land in the same split."""
    return (
        "validation"
        if _is_val(text.encode("utf-8", "surrogatepass"), f"sumi-split:{seed}".encode(), val_fraction)
        else "train"
    )


def _is_val(data: bytes, key: bytes, val_fraction: float) -> bool:
    if val_fraction <= 0:
        return False
    h = hashlib.blake2b(data, digest_size=8, key=key).digest()
    return int.from_bytes(h, "big") / 2.0**64 < val_fraction


def _batches_of(docs: Iterable[str]) -> Iterator[list[str]]:
    batch: list[str] = []
    chars = 0
    for d in docs:
        batch.append(d)
        chars += len(d)
        if len(batch) >= _BATCH_DOCS or chars >= _BATCH_CHARS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def _encoded_batches(batches: Iterable[list[str]], num_workers: int, encoder_args: tuple) -> Iterator:
    """`_Encoder(*encoder_args)` over `batches`, results in order, in this process (num_workers <= 1)
    or on `num_workers` processes with at most 2*num_workers batches in flight. (Pool.imap would
    read the whole task iterator ahead on its feeder thread, i.e. hold the corpus in RAM; this
    bounds the read-ahead and keeps the order.)"""
    if num_workers <= 1:
        encoder = _Encoder(*encoder_args)
        for batch in batches:
            yield encoder(batch)
        return
    methods = mp.get_all_start_methods()
    ctx = mp.get_context("fork" if "fork" in methods and sys.platform != "darwin" else "spawn")
    with ctx.Pool(num_workers, initializer=_init_worker, initargs=encoder_args) as pool:
        pending: deque = deque()
        for batch in batches:
            pending.append(pool.apply_async(_encode_in_worker, (batch,)))
            while len(pending) >= 2 * num_workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


# ----------------------------------------------------------------------------- writer
class _SplitWriter:
    """Writes one split's stream into shards, incrementally (only the open shard's document offsets
    are held in memory)."""

    def __init__(self, folder: Path, split: str, dtype: str, shard_tokens: int):
        self.folder, self.split, self.dtype, self.shard_tokens = folder, split, dtype, shard_tokens
        self.shards: list[dict[str, Any]] = []
        self._f = None
        self.num_tokens = 0
        self.num_documents = 0

    def _open(self) -> None:
        name, docs = shard_names(self.split, len(self.shards))
        self._f = open(self.folder / name, "wb")
        self._name, self._docs_name = name, docs
        self._sha = hashlib.sha256()
        self._offsets: list[int] = []
        self._n = 0

    def add(self, doc: np.ndarray) -> None:
        if self._f is None:
            self._open()
        self._offsets.append(self._n)
        data = doc.astype(np.dtype(DTYPES[self.dtype]).newbyteorder("<"), copy=False).tobytes()
        self._f.write(data)
        self._sha.update(data)
        self._n += len(doc)
        self.num_tokens += len(doc)
        self.num_documents += 1
        if self._n >= self.shard_tokens:
            self.close()

    def close(self) -> None:
        if self._f is None:
            return
        self._f.close()
        self._f = None
        buf = io.BytesIO()
        np.save(buf, np.asarray(self._offsets, dtype="<i8"), allow_pickle=False)
        docs_bytes = buf.getvalue()
        (self.folder / self._docs_name).write_bytes(docs_bytes)
        self.shards.append(
            {
                "file": self._name,
                "docs_file": self._docs_name,
                "num_tokens": self._n,
                "num_documents": len(self._offsets),
                "sha256": self._sha.hexdigest(),
                "docs_sha256": hashlib.sha256(docs_bytes).hexdigest(),
            }
        )

    def abort(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def summary(self) -> dict[str, Any]:
        return {"num_tokens": self.num_tokens, "num_documents": self.num_documents, "shards": self.shards}


def why_not_replaceable(out: Path) -> str | None:
    """Why `overwrite=True` may not replace the folder `out` (None: it is a prepared sumi dataset
    holding only its own files: metadata.json and the shards it lists)."""
    try:
        meta = read_metadata(out)
        own = {METADATA_FILE} | {
            shard[key]
            for split in meta["splits"].values()
            for shard in split["shards"]
            for key in ("file", "docs_file")
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return f"it is not a prepared sumi dataset (no readable {FORMAT_NAME} {METADATA_FILE})"
    foreign = sorted(p.name for p in out.iterdir() if p.name not in own)
    if foreign:
        more = ", ..." if len(foreign) > 5 else ""
        return f"it holds files that are not part of the dataset ({', '.join(foreign[:5])}{more})"
    return None


def _check_not_an_input(out: Path, sources: Sequence[_Source]) -> None:
    """Refuse an output folder that is, or contains, one of the inputs."""
    target = out.resolve()
    for src in sources:
        if src.kind == "hf_hub":
            continue
        path = Path(src.path).resolve()
        if path == target or target in path.parents:
            raise ValueError(
                f"the output folder {str(out)!r} holds the input {src.path!r}: write the dataset "
                "somewhere else (it would replace its own input)"
            )


_WHAT = f"a prepared sumi dataset (a folder with a {FORMAT_NAME} {METADATA_FILE} and its shards only)"


# ----------------------------------------------------------------------------- prepare
def prepare_dataset(
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    tokenizer: Any = "dolma2",
    *,
    val_fraction: float = 0.01,
    num_workers: int | None = None,
    seed: int = 0,
    dtype: str = "auto",
    text_field: str = "text",
    shard_tokens: int = DEFAULT_SHARD_TOKENS,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    extra_metadata: dict[str, Any] | None = None,
    filters: Any = None,
) -> dict[str, Any]:
    """Tokenize `inputs` into a packed dataset in `out_dir`; returns the metadata (also written to
    `out_dir/metadata.json`).

    inputs: one or a list of
      * ``.txt``/``.text``/``.md``/``.rst``/``.py`` files: the whole file is one document (bytes decoded
        as UTF-8, invalid bytes -> U+FFFD, line ends kept);
      * ``.jsonl``/``.ndjson``: one document per non-blank line, the string field `text_field`;
      * ``.parquet`` (needs pyarrow): one document per row of column `text_field`;
      * any of the above gzipped (``.txt.gz``, ``.jsonl.gz``), except parquet;
      * a folder saved by ``datasets``' ``save_to_disk`` (needs datasets; a DatasetDict uses ``train``);
      * ``"hf:owner/name[:split]"``: a Hub dataset, streamed (needs datasets and the network);
      * a plain folder: all the supported files under it, in sorted path order.
      Documents are read in the given order. Empty documents (and texts that tokenize to nothing)
      are skipped and counted in ``metadata["skipped_empty_documents"]``.
    filters: a `sumi.data.filters.FilterSpec` (score, length, language, exact/near duplicates), applied
      in order before the split; its counts go to ``metadata["filters"]``.
    tokenizer: a path or name for `sumi.tokenization.load_tokenizer` (``"dolma2"``, a folder with HF
      tokenizer files, a ``tokenizer.json``, a Hub id), a transformers fast tokenizer or a
      ``tokenizers.Tokenizer`` (then pass `bos_token_id`/`eos_token_id`). Documents are encoded
      without added special tokens and with special-token strings treated as plain text, so
      BOS/EOS ids appear in the stream only as the delimiters.

    Layout: each split's token stream **starts with BOS**: ``BOS d1 EOS BOS d2 EOS ... BOS dn EOS``
    (every document preceded by BOS and followed by EOS, so documents are joined by ``EOS,BOS``;
    Sumi packs without document masking). It is cut at document boundaries into shards
    ``<split>-NNNNN.bin`` (raw little-endian uint16 if the vocabulary has <= 65536 ids, else uint32;
    `dtype` overrides "auto") closed once they hold >= `shard_tokens` tokens, each with
    ``<split>-NNNNN.docs.npy`` (int64 offsets of its documents' BOS tokens, local to the shard).

    Split: a document goes to ``validation`` iff a keyed hash of its content,
    ``blake2b(utf8(text), digest_size=8, key=b"sumi-split:<seed>")`` read as a big-endian integer
    / 2**64, is < `val_fraction` (see `split_of`): deterministic, and duplicates share a split.
    With few documents the validation split may be empty (a warning is given).

    Deterministic: the same inputs, tokenizer, seed and options give byte-identical files for any
    `num_workers` (the metadata holds no times or absolute temporary paths). Streaming: documents
    are read, tokenized on `num_workers` processes (in order) and appended to the open shard; only
    a bounded number of document batches is in memory. Atomic: everything is written to a hidden
    temporary folder next to `out_dir`, which is renamed into place at the end (an existing
    `out_dir` needs ``overwrite=True``); an interrupted run leaves no `metadata.json` at `out_dir`.
    """

    if not 0.0 <= float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if int(shard_tokens) < 1:
        raise ValueError(f"shard_tokens must be >= 1, got {shard_tokens}")
    num_workers = default_num_workers() if num_workers is None else int(num_workers)
    out = Path(out_dir)
    sources = _expand_inputs(inputs)
    _check_not_an_input(out, sources)
    check_target(out, overwrite=overwrite, may_replace=why_not_replaceable, what=_WHAT)
    tok = _resolve_tokenizer(tokenizer, bos_token_id, eos_token_id)
    dtype = _choose_dtype(dtype, tok.vocab_size)

    with atomic_folder(out, overwrite=overwrite, may_replace=why_not_replaceable, what=_WHAT) as tmp:
        return _write_dataset(
            tmp,
            out,
            sources,
            tok,
            dtype,
            text_field=text_field,
            val_fraction=val_fraction,
            seed=seed,
            shard_tokens=shard_tokens,
            num_workers=num_workers,
            progress=progress,
            extra_metadata=extra_metadata,
            filters=filters,
        )


def _write_dataset(
    tmp: Path,
    out: Path,
    sources: Sequence[_Source],
    tok: _TokInfo,
    dtype: str,
    *,
    text_field: str,
    val_fraction: float,
    seed: int,
    shard_tokens: int,
    num_workers: int,
    progress: bool,
    extra_metadata: dict[str, Any] | None,
    filters: Any = None,
) -> dict[str, Any]:
    """Tokenize `sources` into shards and metadata.json in the staging folder `tmp`."""
    from .. import __version__
    from .filters import DocumentFilter

    doc_filter = DocumentFilter(filters) if filters is not None else None
    writers = {s: _SplitWriter(tmp, s, dtype, int(shard_tokens)) for s in SPLITS}
    try:
        skipped = 0

        def documents() -> Iterator[str]:
            nonlocal skipped
            for src in sources:
                for text, fields in _iter_source(src, text_field, doc_filter.spec.fields if doc_filter else ()):
                    if not text:
                        skipped += 1
                    elif doc_filter is None or doc_filter.keep(text, fields):
                        yield text

        from tqdm.auto import tqdm

        encoder_args = (tok.json, tok.bos, tok.eos, dtype, tok.vocab_size, int(seed), float(val_fraction))
        with tqdm(desc=f"tokenizing -> {out.name}", unit="doc", disable=not progress, dynamic_ncols=True) as bar:
            for results in _encoded_batches(_batches_of(documents()), num_workers, encoder_args):
                for is_val, arr in results:
                    if len(arr) == 0:
                        skipped += 1
                        continue
                    writers["validation" if is_val else "train"].add(arr)
                bar.update(len(results))
                bar.set_postfix(tokens=f"{sum(w.num_tokens for w in writers.values()):,}", refresh=False)
        for w in writers.values():
            w.close()
        total_docs = sum(w.num_documents for w in writers.values())
        if total_docs == 0:
            raise ValueError(f"empty corpus: the inputs {[s.path for s in sources]} hold no non-empty documents")
        if writers["train"].num_documents == 0:
            raise ValueError(
                f"all {total_docs} documents went to the validation split (val_fraction={val_fraction}); "
                "lower val_fraction"
            )
        if val_fraction > 0 and writers["validation"].num_documents == 0:
            warnings.warn(
                f"the validation split is empty: none of the {total_docs} documents hashed into "
                f"val_fraction={val_fraction}; use more documents or a larger val_fraction",
                stacklevel=2,
            )

        meta: dict[str, Any] = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "sumi_version": __version__,
            "layout": "per split, one stream 'BOS d1 EOS BOS d2 EOS ... BOS dn EOS' (starts with BOS) cut at "
            "document boundaries into shards; .bin = raw little-endian tokens, .docs.npy = int64 "
            "offsets of each document's BOS within its shard",
            "tokenizer": {
                "name_or_path": tok.name,
                "sha256": tok.sha256,
                "sha256_of": "the backend tokenizer's JSON serialization (tokenizers.Tokenizer.to_str())",
            },
            "vocab_size": tok.vocab_size,
            "bos_token_id": tok.bos,
            "eos_token_id": tok.eos,
            "pad_token_id": tok.pad,
            "dtype": dtype,
            "seed": int(seed),
            "val_fraction": float(val_fraction),
            "split_rule": "validation iff int.from_bytes(blake2b(utf8(text), digest_size=8, "
            "key=b'sumi-split:<seed>').digest(), 'big') / 2**64 < val_fraction",
            "text_field": text_field,
            "shard_tokens": int(shard_tokens),
            "inputs": [s.describe() for s in sources],
            "skipped_empty_documents": skipped,
            "splits": {s: w.summary() for s, w in writers.items()},
        }
        if doc_filter is not None:
            meta["filters"] = doc_filter.metadata()
        if extra_metadata:
            meta["extra"] = extra_metadata
        # written last: a folder with metadata.json is complete
        (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    finally:
        for w in writers.values():
            w.abort()
    return meta
