"""Running generated code (HumanEval, MBPP) — only with an explicit opt-in.

`sumi eval` executes model-written programs only when given `--allow-code-execution` (alias
`--confirm-run-unsafe-code`, like lm-eval's `--confirm_run_unsafe_code`). Each program runs in its
own Python process (`python -I -B`), the source fed on stdin, stdout discarded, stderr kept in a
file (so no pipe can hold the runner), inside the strongest sandbox this machine offers:

* **bubblewrap** (`bwrap`, Linux), when present and working: new user, PID, network, IPC, UTS and
  mount namespaces (no network at all, no other process visible, not even the runner's
  `/proc/<pid>/environ`); a read-only view of the system folders and of the Python installation
  only (no home or project folders); a throw-away 64 MiB tmpfs as the working folder; an empty
  environment plus a few fixed variables; all capabilities dropped; a seccomp filter that lets
  threads start but not processes (`fork`, `vfork`, `clone` without `CLONE_THREAD`; x86-64 and
  arm64). When the program exits or times out, the namespace's init dies and the kernel kills
  every process left in it.
* otherwise a **fallback** with a warning: a fresh temporary folder, a minimal environment and
  `RLIMIT_NPROC` of 1 (no new process or thread; not enforced for root), but no jail: the program
  can read and write what the user can, and reach the network. Install bubblewrap
  (`apt install bubblewrap`) or run untrusted evaluations in a container or VM.

In both: a fresh session and process group, killed as a whole on the wall-clock timeout (without
waiting on any pipe); resource limits set before the program starts, soft = hard so it cannot
raise them: address space (`RLIMIT_AS`, default 2 GiB), CPU seconds (`RLIMIT_CPU`), file size
(`RLIMIT_FSIZE`, 16 MiB), open files, processes (`RLIMIT_NPROC`), no core dumps; and a guard (as in
OpenAI's human-eval `reliability_guard`) that disables process creation and destructive file
calls in `os`, `posix`, `shutil` and `subprocess`, so that ordinary misbehaviour fails fast. The
guard is a convenience, not the boundary: a program can undo it; the namespaces and limits hold.
"""

from __future__ import annotations

import functools
import json
import math
import os
import platform
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MEMORY_MB = 2048
FILE_SIZE_MB = 16  # largest file (and stderr) a program may write
WORK_FOLDER_MB = 64  # size of the sandbox's tmpfs working folder (it lives in RAM)
OPEN_FILES = 256
SANDBOX_TASKS = 16  # RLIMIT_NPROC inside bubblewrap: threads (processes are blocked by seccomp)
BWRAP_PATHS = ("/usr/bin/bwrap",)  # looked at when bwrap is not on PATH
SYSTEM_FOLDERS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime", "/etc/alternatives")
SANDBOX_ENV = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/tmp",
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "PYTHONHASHSEED": "0",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}

_LAUNCHER = r"""
import json, os, resource, sys
cfg = json.loads(sys.argv[1])
source = sys.stdin.buffer.read().decode("utf-8", "replace")
_null = os.open(os.devnull, os.O_RDONLY)
os.dup2(_null, 0)
os.close(_null)
def _limit(name, value):
    try:
        resource.setrlimit(getattr(resource, name), (value, value))
    except (ValueError, OSError, AttributeError):
        pass
for _name, _value in cfg["limits"].items():
    _limit(_name, _value)
if cfg["guard"]:
    import builtins, posix, shutil, subprocess, faulthandler
    faulthandler.disable()
    for _mod in (os, posix):
        for _name in ("kill", "killpg", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid",
                      "setsid", "fork", "forkpty", "rename", "renames", "truncate", "replace", "unlink", "fchmod",
                      "fchown", "chmod", "chown", "chroot", "lchown", "lchmod", "lchflags", "chflags", "execv",
                      "execve", "execvp", "execvpe", "execl", "execle", "execlp", "execlpe", "spawnv", "spawnve",
                      "spawnl", "spawnle", "spawnvp", "spawnvpe", "spawnlp", "spawnlpe", "posix_spawn",
                      "posix_spawnp", "popen", "register_at_fork"):
            if hasattr(_mod, _name):
                setattr(_mod, _name, None)
    shutil.rmtree = shutil.move = shutil.chown = None
    subprocess.Popen = subprocess.run = subprocess.call = subprocess.check_call = subprocess.check_output = None
    builtins.help = None
    for _mod in ("ipdb", "joblib", "resource", "psutil", "tkinter", "_posixsubprocess", "multiprocessing"):
        sys.modules[_mod] = None
del cfg
code = compile(source, "program.py", "exec")
exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
"""


@dataclass
class ExecutionResult:
    passed: bool
    status: str  # "passed", "failed", "timed out"
    seconds: float
    returncode: int | None
    stderr: str
    sandbox: str = ""  # "bubblewrap" or "rlimits" (the fallback)


# ----------------------------------------------------------------------------- seccomp
# classic BPF over struct seccomp_data {int nr; u32 arch; u64 ip; u64 args[6]}
_LD_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW, _KILL, _ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
_EAGAIN, _ENOSYS, _CLONE_THREAD = 11, 38, 0x00010000
# arch: (AUDIT_ARCH_*, process-creating syscalls refused with EAGAIN, clone, clone3)
_SYSCALLS = {"x86_64": (0xC000003E, (57, 58), 56, 435), "aarch64": (0xC00000B7, (), 220, 435)}


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def seccomp_no_processes(machine: str | None = None) -> bytes | None:
    """A seccomp BPF program (for `bwrap --seccomp`) that refuses new processes but allows
    threads: fork/vfork -> EAGAIN, clone3 -> ENOSYS (libc falls back to clone), clone without
    CLONE_THREAD -> EAGAIN; syscalls of another ABI (i386, x32) kill the process. None where
    this machine's syscall numbers are not known."""
    arch = _SYSCALLS.get(machine or platform.machine())
    if arch is None:
        return None
    audit_arch, forks, clone, clone3 = arch
    eagain, enosys = _ERRNO | _EAGAIN, _ERRNO | _ENOSYS
    prog = [
        _insn(_LD_ABS, 4),
        _insn(_JEQ, audit_arch, 1, 0),
        _insn(_RET, _KILL),
        _insn(_LD_ABS, 0),
        _insn(_JGE, 0x40000000, 0, 1),
        _insn(_RET, _KILL),
    ]  # x32 syscalls carry bit 30
    for nr in forks:
        prog += [_insn(_JEQ, nr, 0, 1), _insn(_RET, eagain)]
    prog += [
        _insn(_JEQ, clone3, 0, 1),
        _insn(_RET, enosys),
        _insn(_JEQ, clone, 1, 0),
        _insn(_RET, _ALLOW),
        _insn(_LD_ABS, 16),  # low 32 bits of args[0] (clone flags)
        _insn(_JSET, _CLONE_THREAD, 0, 1),
        _insn(_RET, _ALLOW),
        _insn(_RET, eagain),
    ]
    return b"".join(prog)


# ----------------------------------------------------------------------------- bubblewrap
def _python_folders() -> list[str]:
    """The folders the interpreter needs (venv and base installation), resolved."""
    found: list[str] = []
    for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix):
        for q in (os.path.abspath(p), os.path.realpath(p)):
            if q not in found and q != "/":
                found.append(q)
    return found


def _bwrap_args(bwrap: str, seccomp_fd: int | None) -> list[str]:
    args = [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--clearenv",
    ]
    for folder in SYSTEM_FOLDERS:
        if os.path.islink(folder):
            args += ["--symlink", os.readlink(folder), folder]
        elif os.path.isdir(folder):
            args += ["--ro-bind", folder, folder]
    for file in SYSTEM_FILES:
        args += ["--ro-bind-try", file, file]
    # the work folder first: a Python installed under /tmp (a CI venv) is then bound over it, not hidden
    args += ["--size", str(WORK_FOLDER_MB << 20), "--tmpfs", "/tmp"]
    for folder in _python_folders():
        args += ["--ro-bind", folder, folder]
    args += ["--proc", "/proc", "--dev", "/dev", "--remount-ro", "/", "--chdir", "/tmp"]
    for key, value in SANDBOX_ENV.items():
        args += ["--setenv", key, value]
    if seccomp_fd is not None:
        args += ["--seccomp", str(seccomp_fd)]
    return args


@functools.lru_cache(maxsize=1)
def find_bubblewrap() -> str | None:
    """The path of a working `bwrap` (probed once per process), or None with a warning saying why."""
    bwrap = shutil.which("bwrap") or next((p for p in BWRAP_PATHS if os.path.exists(p)), None)
    why = "bubblewrap (bwrap) is not installed"
    if bwrap is not None:
        try:
            probe = subprocess.run(
                _bwrap_args(bwrap, None) + ["--", sys.executable, "-I", "-c", "pass"],
                env={},
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=60,
            )
            if probe.returncode == 0:
                return bwrap
            said = probe.stderr.decode(errors="replace").strip()[:200]
            why = f"bwrap does not work here ({said or f'exit status {probe.returncode}'})"
        except (OSError, subprocess.TimeoutExpired) as e:
            why = f"bwrap does not work here ({e})"
    warnings.warn(
        f"{why}: generated code runs WITHOUT a sandbox boundary (rlimits and a guard only; it can read "
        "and write your files and use the network). Install bubblewrap or use a container.",
        stacklevel=2,
    )
    return None


# ----------------------------------------------------------------------------- running
def _limits(timeout: float, memory_mb: int, sandboxed: bool) -> dict[str, int]:
    return {
        "RLIMIT_AS": int(memory_mb) << 20,
        "RLIMIT_DATA": int(memory_mb) << 20,
        "RLIMIT_CPU": max(1, math.ceil(timeout)) + 1,
        "RLIMIT_FSIZE": FILE_SIZE_MB << 20,
        "RLIMIT_CORE": 0,
        "RLIMIT_NOFILE": OPEN_FILES,
        "RLIMIT_NPROC": SANDBOX_TASKS if sandboxed else 1,
    }


def _temp_file(data: bytes = b"") -> IO[bytes]:
    f = tempfile.TemporaryFile()
    f.write(data)
    f.seek(0)
    return f


def _tail(f: IO[bytes], n: int) -> str:
    size = f.seek(0, os.SEEK_END)
    f.seek(max(0, size - n))
    return f.read(n).decode("utf-8", errors="replace")


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _spawn(
    cmd: list[str], *, bwrap: str | None, stdin: IO[bytes], stderr: IO[bytes], cwd: str, seccomp: IO[bytes] | None
) -> subprocess.Popen:
    if bwrap is not None:
        fds = () if seccomp is None else (seccomp.fileno(),)
        cmd = _bwrap_args(bwrap, None if seccomp is None else seccomp.fileno()) + ["--"] + cmd
        env: dict[str, str] = {}
    else:
        fds, env = (), dict(SANDBOX_ENV, HOME=cwd, TMPDIR=cwd)
    return subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdin=stdin,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        pass_fds=fds,
        start_new_session=True,
    )


def check_limits(timeout: float, memory_mb: int) -> None:
    """Reject limits under which every program would fail (a zero timeout marks all as timed out)."""
    if not timeout > 0 or math.isinf(timeout):
        raise ValueError(f"the code timeout must be a finite number of seconds > 0, got {timeout}")
    if int(memory_mb) < 1:
        raise ValueError(f"the code memory limit must be >= 1 MB, got {memory_mb}")


def run_program(
    program: str,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
    guard: bool = True,
    max_output: int = 4096,
) -> ExecutionResult:
    """Run `program` (Python source) in the sandbox (see the module docstring); passed = exit
    status 0 within `timeout` seconds. The process group is killed when it ends either way."""
    check_limits(timeout, memory_mb)
    bwrap = find_bubblewrap()
    filt = seccomp_no_processes() if bwrap else None
    cfg = {"limits": _limits(timeout, memory_mb, bwrap is not None), "guard": bool(guard)}
    cmd = [sys.executable, "-I", "-B", "-c", _LAUNCHER, json.dumps(cfg)]
    with (
        tempfile.TemporaryDirectory(prefix="sumi-exec-") as tmp,
        _temp_file(program.encode("utf-8")) as src,
        _temp_file() as err,
        _temp_file(filt or b"") as seccomp,
    ):
        start = time.perf_counter()
        proc = _spawn(cmd, bwrap=bwrap, stdin=src, stderr=err, cwd=tmp, seccomp=seccomp if filt else None)
        try:
            proc.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        _kill_group(proc.pid)  # whatever is left in the group, passed or not
        proc.wait()
        seconds = time.perf_counter() - start
        err_text = _tail(err, max_output)
    kind = "bubblewrap" if bwrap else "rlimits"
    if timed_out:
        return ExecutionResult(False, "timed out", seconds, None, err_text, kind)
    ok = proc.returncode == 0
    return ExecutionResult(ok, "passed" if ok else "failed", seconds, proc.returncode, err_text, kind)


def run_programs(
    programs: Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
    workers: int | None = None,
    guard: bool = True,
    progress=None,
) -> list[ExecutionResult]:
    """`run_program` over many programs, `workers` at a time (default: min(4, CPUs))."""
    workers = workers or min(4, os.cpu_count() or 1)
    results: list[ExecutionResult | None] = [None] * len(programs)

    def one(i: int) -> None:
        results[i] = run_program(programs[i], timeout=timeout, memory_mb=memory_mb, guard=guard)
        if progress is not None:
            progress(1)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, range(len(programs))))
    return results  # type: ignore[return-value]


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k estimator (Chen et al., 2021): 1 - C(n-c, k) / C(n, k)."""
    if not 0 <= c <= n or k < 1 or n < 1:
        raise ValueError(f"need 0 <= c <= n, n >= 1, k >= 1; got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


__all__ = [
    "ExecutionResult",
    "check_limits",
    "find_bubblewrap",
    "seccomp_no_processes",
    "run_program",
    "run_programs",
    "pass_at_k",
    "DEFAULT_TIMEOUT_S",
    "DEFAULT_MEMORY_MB",
]
