"""The on-disk format of a prepared (packed) sumi dataset, shared by the writer and the readers.

A prepared dataset is a folder::

    metadata.json                 written last: its presence marks a complete dataset
    train-00000.bin               raw token ids (numpy memmap: little-endian uint16 or uint32, no header)
    train-00000.docs.npy          int64 array: the offset (in tokens, local to the shard) of each document's BOS
    train-00001.bin ...
    validation-00000.bin ...

Each split is one token stream cut into shards at document boundaries. The stream **starts with
BOS** and every document is stored as ``BOS tokens EOS``, so the stream reads
``BOS d1 EOS BOS d2 EOS ... BOS dn EOS``: documents are joined by the ``EOS,BOS`` delimiter pair
(Sumi's packing, spec §8: no document masking). Every shard also starts with BOS and ends with EOS;
a shard is closed once it holds at least ``shard_tokens`` tokens (so all shards but the last of a
split hold ``>= shard_tokens`` tokens; a single long document is never cut).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..checksums import sha256_file

FORMAT_NAME = "sumi-packed"
FORMAT_VERSION = 1
METADATA_FILE = "metadata.json"
SPLITS = ("train", "validation")
SPLIT_ALIASES = {"train": "train", "validation": "validation", "val": "validation", "valid": "validation"}
DTYPES = {"uint16": np.uint16, "uint32": np.uint32}


class CorruptShardError(ValueError):
    """A shard (or its document-offset file) does not match the checksum or size in metadata.json."""


def shard_names(split: str, index: int) -> tuple[str, str]:
    """File names of shard `index` of `split`: (token file, document-offset file)."""
    return f"{split}-{index:05d}.bin", f"{split}-{index:05d}.docs.npy"


def canonical_split(split: str) -> str:
    try:
        return SPLIT_ALIASES[split]
    except KeyError:
        raise ValueError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)} (or 'val')") from None


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Load and sanity-check `metadata.json` of a prepared dataset folder."""
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"no prepared dataset at {str(folder)!r}: not a folder")
    meta_path = folder / METADATA_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"{str(folder)!r} is not a prepared sumi dataset: it has no {METADATA_FILE} (an interrupted "
            "`prepare_dataset` never leaves one; run it again)"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{str(meta_path)!r} is not valid JSON: {e}") from e
    if meta.get("format") != FORMAT_NAME:
        raise ValueError(f"{str(meta_path)!r} is not a {FORMAT_NAME} metadata file (format={meta.get('format')!r})")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(
            f"{str(meta_path)!r} has format_version {meta['format_version']}; this sumi reads "
            f"up to {FORMAT_VERSION}: upgrade sumi"
        )
    if meta.get("dtype") not in DTYPES:
        raise ValueError(f"{str(meta_path)!r}: unsupported dtype {meta.get('dtype')!r}")
    return meta


def verify_shard(folder: str | os.PathLike, shard: dict[str, Any], dtype: str, *, checksum: bool = True) -> None:
    """Check one shard entry of metadata.json against the files: existence, size, and (if
    `checksum`) the sha256 of the token file and of the offset file. Raises FileNotFoundError or
    CorruptShardError naming the file."""
    folder = Path(folder)
    for key, sha_key in (("file", "sha256"), ("docs_file", "docs_sha256")):
        p = folder / shard[key]
        if not p.is_file():
            raise FileNotFoundError(
                f"shard file {shard[key]!r} listed in metadata.json is missing from {str(folder)!r}"
            )
        if key == "file":
            expected = shard["num_tokens"] * np.dtype(DTYPES[dtype]).itemsize
            size = p.stat().st_size
            if size != expected:
                raise CorruptShardError(
                    f"shard {shard[key]!r} in {str(folder)!r} is corrupt: {size} bytes, "
                    f"expected {expected} ({shard['num_tokens']} {dtype} tokens)"
                )
        if checksum:
            got = sha256_file(p)
            if got != shard[sha_key]:
                raise CorruptShardError(
                    f"shard {shard[key]!r} in {str(folder)!r} is corrupt: sha256 {got} does "
                    f"not match {shard[sha_key]} recorded in metadata.json"
                )
