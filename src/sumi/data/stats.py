"""Summaries and integrity checks of a prepared dataset (`stats`, `format_stats`); of a source that is
streamed instead (data files, a folder of them, ``hf:owner/name``), what is known without reading it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .format import DTYPES, METADATA_FILE, read_metadata, verify_shard


def _doc_lengths(folder: Path, shard: dict[str, Any]) -> np.ndarray:
    starts = np.load(folder / shard["docs_file"], allow_pickle=False).astype(np.int64)
    bounds = np.append(starts, int(shard["num_tokens"]))
    return np.diff(bounds) - 2  # without the BOS/EOS delimiters


def stats(path: str | os.PathLike, *, verify: bool = False) -> dict[str, Any]:
    """Statistics of the prepared dataset at `path` (from metadata.json and the .docs.npy files).

    Returns a dict: ``path``, ``dtype``, ``vocab_size``, ``bos_token_id``, ``eos_token_id``,
    ``tokenizer``, ``seed``, ``val_fraction``, ``sumi_version``, ``num_inputs``, ``bytes_on_disk``,
    ``verified``, ``filters`` (the prepare-time filter spec and counts, or None) and ``splits``: per split ``num_tokens``, ``num_documents``, ``num_shards``,
    ``doc_len_mean``, ``doc_len_median``, ``doc_len_min``, ``doc_len_max`` (document lengths in
    tokens, without the BOS/EOS delimiters; None for an empty split).

    Shard files are always checked to exist with the recorded size; ``verify=True`` also recomputes
    every shard's sha256 and raises `CorruptShardError` (a ValueError) naming the first bad shard.

    A path that is not a prepared dataset but a streamed source (``hf:owner/name``, data files, a
    folder of them: what a mixture's kind "stream" reads) gets `describe_stream`'s dict: ``kind``
    "streamed", its files and bytes; its tokens are unknown until it is read, and not guessed.
    """
    folder = Path(path)
    if str(path).startswith("hf:") or (folder.exists() and not (folder / METADATA_FILE).is_file()):
        from .streamed import describe_stream

        return describe_stream(str(path))
    meta = read_metadata(folder)
    dtype = meta["dtype"]
    itemsize = np.dtype(DTYPES[dtype]).itemsize
    out: dict[str, Any] = {
        "path": str(folder),
        "dtype": dtype,
        "vocab_size": meta["vocab_size"],
        "bos_token_id": meta["bos_token_id"],
        "eos_token_id": meta["eos_token_id"],
        "tokenizer": meta["tokenizer"].get("name_or_path"),
        "seed": meta["seed"],
        "val_fraction": meta["val_fraction"],
        "sumi_version": meta.get("sumi_version"),
        "num_inputs": len(meta.get("inputs", [])),
        "splits": {},
        "verified": bool(verify),
        "filters": meta.get("filters"),
    }
    total_bytes = 0
    for split, info in meta["splits"].items():
        lengths = []
        for shard in info["shards"]:
            verify_shard(folder, shard, dtype, checksum=verify)
            lengths.append(_doc_lengths(folder, shard))
            total_bytes += int(shard["num_tokens"]) * itemsize + (folder / shard["docs_file"]).stat().st_size
        lens = np.concatenate(lengths) if lengths else np.empty(0, dtype=np.int64)
        if len(lens) != info["num_documents"]:
            raise ValueError(
                f"split {split!r}: the .docs.npy files list {len(lens)} documents, metadata.json "
                f"says {info['num_documents']}"
            )
        out["splits"][split] = {
            "num_tokens": int(info["num_tokens"]),
            "num_documents": int(info["num_documents"]),
            "num_shards": len(info["shards"]),
            "doc_len_mean": float(lens.mean()) if lens.size else None,
            "doc_len_median": float(np.median(lens)) if lens.size else None,
            "doc_len_min": int(lens.min()) if lens.size else None,
            "doc_len_max": int(lens.max()) if lens.size else None,
        }
    out["bytes_on_disk"] = total_bytes
    return out


def format_stats(s: dict[str, Any]) -> str:
    """A human-readable table of `stats(...)`."""
    if s.get("kind") == "streamed":
        n = s["files"]
        where = "a Hub dataset" if n is None else f"{n:,} file{'s' * (n != 1)}, {s['bytes_on_disk'] / 2**20:,.1f} MiB"
        return "\n".join(
            [
                f"dataset     {s['path']}",
                f"streamed    {where}; not a prepared dataset: tokenized on the fly by a training run",
                "tokens      unknown until it is read (a run logs source_tokens as it goes; "
                "`sumi data prepare` counts them)",
            ]
        )
    lines = [
        f"dataset     {s['path']}",
        f"tokenizer   {s['tokenizer']}  (vocab {s['vocab_size']:,}, bos {s['bos_token_id']}, eos {s['eos_token_id']})",
        f"dtype       {s['dtype']}   on disk {s['bytes_on_disk'] / 2**20:,.1f} MiB   inputs {s['num_inputs']:,}   "
        f"seed {s['seed']}   val_fraction {s['val_fraction']}",
        "checksums   "
        + ("verified (sha256 of every shard)" if s["verified"] else "not verified (pass verify=True / --verify)"),
        "",
        f"{'split':<12}{'tokens':>16}{'documents':>12}{'shards':>8}{'mean len':>11}{'median len':>12}"
        f"{'min':>8}{'max':>10}",
    ]
    fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    for split, d in s["splits"].items():
        lines.append(
            f"{split:<12}{d['num_tokens']:>16,}{d['num_documents']:>12,}{d['num_shards']:>8}"
            f"{fmt(d['doc_len_mean'], ',.1f'):>11}{fmt(d['doc_len_median'], ',.1f'):>12}"
            f"{fmt(d['doc_len_min'], ','):>8}{fmt(d['doc_len_max'], ','):>10}"
        )
    lines.append("(document lengths in tokens, without the BOS/EOS delimiters)")
    f = s.get("filters")
    if f:
        dropped = ", ".join(f"{k} {v:,}" for k, v in f["dropped"].items()) or "none"
        lines.append(f"filters     kept {f['kept']:,} of {f['documents_seen']:,} documents; dropped: {dropped}")
    return "\n".join(lines)


def print_stats(path: str | os.PathLike, *, verify: bool = False) -> dict[str, Any]:
    """`stats` and print `format_stats` of it; returns the dict."""
    s = stats(path, verify=verify)
    print(format_stats(s))
    return s
