"""One training run per run folder: an exclusive `flock` on a lock file, held for the run's life.

Two runs writing one `out_dir` (or one checkpoint folder) would interleave checkpoints, logs and
the retention of old checkpoints. The kernel drops an `flock` when its holder exits, however it
exits (SIGKILL included), so a crashed run never leaves a stale lock behind and `--resume` right
after a crash just works. The lock file itself stays (removing it would let a third run lock a
fresh inode while the second still holds the old one); it records who holds it, for the message.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from .config import ConfigError

try:
    import fcntl
except ImportError:  # not POSIX: no flock; the run goes ahead unlocked
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".sumi-train.lock"


class RunFolderInUse(ConfigError):
    """Another live training run holds the lock of this run folder."""


@contextlib.contextmanager
def run_folder_lock(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold the lock of `folder` (created if missing) until the block ends; yields the lock file.

    Raises RunFolderInUse at once, naming the folder and the holder, when another process holds it.
    A folder this call created is removed again when the block fails before writing anything else
    into it (a run rejected during set-up leaves nothing behind).
    """
    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    if fcntl is None:
        yield path
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunFolderInUse(
                f"{folder} is in use by another training run ({_holder(fd)}); wait for it to end, stop it, or "
                "set out_dir (and checkpoint.dir) to another folder"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        try:
            yield path
        except BaseException:
            if created and os.listdir(folder) == [LOCK_NAME]:
                _remove_quietly(path, folder)
            raise
    finally:
        os.close(fd)  # releases the lock


def _remove_quietly(lock: Path, folder: Path) -> None:
    with contextlib.suppress(OSError):
        lock.unlink()
        folder.rmdir()


def _holder(fd: int) -> str:
    """What the holder wrote into the lock file ("pid N on HOST"), or a placeholder."""
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "holder unknown"


__all__ = ["LOCK_NAME", "RunFolderInUse", "run_folder_lock"]
