"""Atomic output folders: write into a hidden sibling, rename into place at the end.

Used by every command that writes a folder (``data prepare``, ``tokenizer train``, ``export``), so
that a killed or failed run never leaves a half-written output, and ``overwrite`` only ever replaces
what the caller recognises as its own kind of output.

A staging folder is named ``.<out>.tmp-<pid>-<hex>`` next to ``<out>`` (same filesystem, so the
final ``os.replace`` is atomic). One left behind by a process that no longer exists (SIGKILL, power
loss) is removed by the next run into the same output.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

# why `path` may not be replaced (None: it may)
ReplaceCheck = Callable[[Path], str | None]

_STAGING = re.compile(r"^\.(?P<name>.+)\.(?:tmp|old)-(?P<pid>\d+)-[0-9a-f]{8}$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_staging(out: Path) -> list[Path]:
    """Remove staging folders of `out` left by dead processes of this user; returns them."""
    removed: list[Path] = []
    parent = out.parent
    if not parent.is_dir():
        return removed
    for p in parent.iterdir():
        m = _STAGING.match(p.name)
        if not m or m["name"] != out.name or _pid_alive(int(m["pid"])):
            continue
        try:
            st = p.lstat()
        except FileNotFoundError:
            continue
        if st.st_uid != os.getuid():
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def _staging_name(out: Path, kind: str) -> Path:
    return out.parent / f".{out.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}"


def check_target(out: Path, *, overwrite: bool, may_replace: ReplaceCheck | None, what: str) -> None:
    """Raise FileExistsError unless `out` is absent, an empty folder, or (with `overwrite`) a
    folder that `may_replace` accepts. `what` names the kind of output in the message."""
    if not os.path.lexists(out):
        return
    if out.is_dir() and not out.is_symlink() and not any(out.iterdir()):
        return
    if not overwrite:
        raise FileExistsError(
            f"{str(out)!r} already exists; pass overwrite=True (--overwrite) to replace it "
            f"(only {what} is ever replaced)"
        )
    if out.is_symlink():
        reason = "it is a symbolic link"
    elif not out.is_dir():
        reason = "it is not a folder"
    else:
        reason = may_replace(out) if may_replace is not None else "it is not an output of this command"
    if reason:
        raise FileExistsError(
            f"refusing to replace {str(out)!r}: {reason}; overwrite only replaces {what}, "
            "never an input or anything else (choose another output folder)"
        )


def install_folder(tmp: Path, out: Path, *, overwrite: bool, may_replace: ReplaceCheck | None, what: str) -> None:
    """Move the finished staging folder `tmp` to `out` (checked again with `check_target`)."""
    check_target(out, overwrite=overwrite, may_replace=may_replace, what=what)
    if out.is_dir() and not out.is_symlink() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        os.replace(tmp, out)
        return
    old = _staging_name(out, "old")
    os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_folder(
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
    may_replace: ReplaceCheck | None = None,
    what: str = "an output of this command",
) -> Iterator[Path]:
    """Yield a fresh staging folder for `out`; on a normal exit it replaces `out` (see
    `check_target`), on an exception it is removed. Stale staging folders of dead runs go first."""
    out = Path(out)
    check_target(out, overwrite=overwrite, may_replace=may_replace, what=what)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(out)
    tmp = _staging_name(out, "tmp")
    tmp.mkdir()
    try:
        yield tmp
        install_folder(tmp, out, overwrite=overwrite, may_replace=may_replace, what=what)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write a text file so that readers see the old file or the whole new one, never a part:
    a hidden sibling is written and flushed to disk, then renamed over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _staging_name(path, "tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
