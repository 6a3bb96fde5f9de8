"""Running generated code (HumanEval, MBPP) — only with an explicit opt-in.

`sumi eval` executes model-written programs only when given `--allow-code-execution` (alias
`--confirm-run-unsafe-code`, like lm-eval's `--confirm_run_unsafe_code`). Each program then runs
in its own Python subprocess (`python -I -B`, isolated mode: no user site, no PYTHON* variables)
in a fresh temporary directory, with a minimal environment and stdin closed, under:

* a wall-clock timeout (the whole process group is killed when it expires);
* resource limits set in the child before the program starts, soft = hard so the program cannot
  raise them: address space (`RLIMIT_AS`, default 2 GiB), CPU seconds (`RLIMIT_CPU`), file size
  (`RLIMIT_FSIZE`, 16 MiB), open files (`RLIMIT_NOFILE`), no core dumps;
* a guard (as in OpenAI's human-eval `reliability_guard`) that disables process creation
  (`os.fork`, `os.system`, `subprocess.Popen`, ...), signals and destructive file-system calls.

Not a security boundary: there is **no network isolation** and no file-system jail (the program
can read what the user can read). Run untrusted evaluations in a container or VM.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MEMORY_MB = 2048

_LAUNCHER = r'''
import json, resource, sys
cfg = json.loads(sys.argv[1])
def _limit(name, value):
    try:
        resource.setrlimit(getattr(resource, name), (value, value))
    except (ValueError, OSError, AttributeError):
        pass
_limit("RLIMIT_AS", cfg["memory"])
_limit("RLIMIT_DATA", cfg["memory"])
_limit("RLIMIT_CPU", cfg["cpu"])
_limit("RLIMIT_FSIZE", cfg["fsize"])
_limit("RLIMIT_CORE", 0)
_limit("RLIMIT_NOFILE", 256)
source = open("program.py", encoding="utf-8").read()
if cfg["guard"]:
    import builtins, os, shutil, subprocess, faulthandler
    faulthandler.disable()
    for _name in ("kill", "killpg", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid",
                  "fork", "forkpty", "rename", "renames", "truncate", "replace", "unlink", "fchmod", "fchown",
                  "chmod", "chown", "chroot", "lchown", "lchmod", "lchflags", "chflags", "execv", "execve",
                  "execvp", "execvpe", "execl", "execle", "execlp", "execlpe", "spawnv", "spawnve", "spawnl",
                  "spawnle", "spawnvp", "spawnvpe", "spawnlp", "spawnlpe", "posix_spawn", "posix_spawnp", "popen"):
        if hasattr(os, _name):
            setattr(os, _name, None)
    shutil.rmtree = shutil.move = shutil.chown = None
    subprocess.Popen = subprocess.run = subprocess.call = subprocess.check_call = subprocess.check_output = None
    builtins.help = None
    for _mod in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
        sys.modules[_mod] = None
code = compile(source, "program.py", "exec")
exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
'''


@dataclass
class ExecutionResult:
    passed: bool
    status: str  # "passed", "failed", "timed out"
    seconds: float
    returncode: int | None
    stderr: str


def run_program(program: str, *, timeout: float = DEFAULT_TIMEOUT_S, memory_mb: int = DEFAULT_MEMORY_MB,
                guard: bool = True, max_output: int = 4096) -> ExecutionResult:
    """Run `program` (Python source) in a sandboxed subprocess; passed = exit status 0 in time."""
    with tempfile.TemporaryDirectory(prefix="sumi-exec-") as tmp:
        with open(os.path.join(tmp, "program.py"), "w", encoding="utf-8") as f:
            f.write(program)
        cfg = dict(memory=int(memory_mb) * 1024 * 1024, cpu=max(1, math.ceil(timeout)) + 1, fsize=16 * 1024 * 1024,
                   guard=bool(guard))
        env = {"PATH": "/usr/bin:/bin", "HOME": tmp, "TMPDIR": tmp, "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
               "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-I", "-B", "-c", _LAUNCHER, json.dumps(cfg)], cwd=tmp, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            _, err = proc.communicate(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            _, err = proc.communicate()
        seconds = time.perf_counter() - start
    err_text = (err or b"")[-max_output:].decode("utf-8", errors="replace")
    if timed_out:
        return ExecutionResult(False, "timed out", seconds, None, err_text)
    ok = proc.returncode == 0
    return ExecutionResult(ok, "passed" if ok else "failed", seconds, proc.returncode, err_text)


def run_programs(programs: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT_S, memory_mb: int = DEFAULT_MEMORY_MB,
                 workers: int | None = None, guard: bool = True, progress=None) -> list[ExecutionResult]:
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


__all__ = ["ExecutionResult", "run_program", "run_programs", "pass_at_k", "DEFAULT_TIMEOUT_S", "DEFAULT_MEMORY_MB"]
