"""The code-execution sandbox holds against every escape of issue 14 (each program below reports an
escape by exiting 0, so `passed` means the sandbox failed). Escapes are tried with the guard off:
the boundary is the namespaces, seccomp and rlimits, not the guard."""

import os
import socket
import struct
import subprocess
import sys
import time
import warnings

import psutil
import pytest

from sumi.evaluation import execution
from sumi.evaluation.execution import find_bubblewrap, run_program, seccomp_no_processes


@pytest.fixture(scope="module")
def bwrap():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = find_bubblewrap()
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("bubblewrap (bwrap) is missing or broken in CI: the sandbox tests must run there")
        pytest.skip("bubblewrap (bwrap) is not installed or user namespaces are off")
    return path


@pytest.fixture
def no_bwrap(monkeypatch):
    """The fallback: no bubblewrap on this machine."""
    monkeypatch.setattr(execution.shutil, "which", lambda name: None)
    monkeypatch.setattr(execution, "BWRAP_PATHS", ())
    find_bubblewrap.cache_clear()
    yield
    find_bubblewrap.cache_clear()


def _sandboxed_leftovers(since: float) -> list[psutil.Process]:
    """Sandboxed interpreters (our launcher's command line) started after `since` still alive."""
    left = []
    for p in psutil.process_iter(["cmdline", "create_time"]):
        cmd = p.info["cmdline"] or []
        if p.info["create_time"] >= since - 1 and cmd[1:4] == ["-I", "-B", "-c"] and "RLIMIT_NPROC" in cmd[-1]:
            left.append(p)
    return left


def _escape(program: str, **kw):
    kw.setdefault("timeout", 10)
    kw.setdefault("guard", False)
    r = run_program(program, **kw)
    assert r.sandbox == "bubblewrap"
    return r


# ----------------------------------------------------------------------------- processes
def test_posix_fork_is_refused(bwrap):
    r = _escape("import posix\nposix.fork()\n")
    assert not r.passed and "BlockingIOError" in r.stderr
    r = _escape("import posix\nposix.fork()\n", guard=True)  # the guard's message, same outcome
    assert not r.passed
    r = _escape("import ctypes\nimport sys\nsys.exit(0 if ctypes.CDLL(None).fork() >= 0 else 1)\n")
    assert not r.passed  # libc's fork() under the guard's radar: the kernel says no


def test_threads_still_work(bwrap):
    r = _escape(
        "import threading\nout = []\nts = [threading.Thread(target=out.append, args=(i,)) for i in range(4)]\n"
        "[t.start() for t in ts]\n[t.join() for t in ts]\nassert sorted(out) == [0, 1, 2, 3]\n",
        guard=True,
    )
    assert r.passed, r.stderr


def test_thirty_processes_cannot_start(bwrap):
    program = (
        "import os, sys\nstarted = 0\nfor _ in range(40):\n    try:\n        pid = os.fork()\n"
        "    except OSError:\n        continue\n    if pid == 0:\n        import time; time.sleep(5); os._exit(0)\n"
        "    started += 1\nprint('started', started, file=sys.stderr)\nsys.exit(0 if started >= 30 else 1)\n"
    )
    r = _escape(program)
    assert not r.passed and "started 0" in r.stderr


def test_setsid_child_cannot_outlive_a_passed_program(bwrap, tmp_path):
    marker = tmp_path / "still-running"
    program = (
        "import os, posix, time\ntry:\n    pid = posix.fork()\nexcept OSError:\n    pid = -1\n"
        "if pid == 0:\n    posix.setsid()\n    time.sleep(1.5)\n"
        f"    open({str(marker)!r}, 'w').write('escaped')\n    os._exit(0)\n"
    )
    since = time.time()
    r = _escape(program)
    assert r.passed  # the parent exits 0 either way; what matters is that nothing is left behind
    time.sleep(2.0)
    assert not marker.exists()
    assert _sandboxed_leftovers(since) == []


def test_stderr_held_open_does_not_block_the_runner(bwrap):
    start = time.perf_counter()
    r = _escape(
        "import os, sys, threading, time\nthreading.Thread(target=time.sleep, args=(60,)).start()\n"
        "os.dup2(2, 9)\nsys.stderr.write('holding')\nsys.stderr.flush()\ntime.sleep(60)\n",
        timeout=1.0,
    )
    assert r.status == "timed out" and time.perf_counter() - start < 5
    assert "holding" in r.stderr


def test_stderr_held_by_an_escaped_child_does_not_block_the_fallback(no_bwrap, tmp_path):
    pidfile = tmp_path / "pid"
    program = (
        "import os, posix, time\ntry:\n    pid = posix.fork()\nexcept OSError:\n    raise SystemExit(0)\n"
        f"if pid == 0:\n    posix.setsid()\n    open({str(pidfile)!r}, 'w').write(str(os.getpid()))\n"
        "    time.sleep(30)\n    os._exit(0)\n"
    )
    start = time.perf_counter()
    with pytest.warns(UserWarning, match="WITHOUT a sandbox"):
        r = run_program(program, timeout=5, guard=False)
    try:
        assert r.sandbox == "rlimits" and time.perf_counter() - start < 4
    finally:  # root is exempt from RLIMIT_NPROC: the fallback cannot stop this child, so the test does
        time.sleep(0.3)
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), 9)


# ----------------------------------------------------------------------------- memory and files
def test_memory_is_bounded_across_children_and_files(bwrap):
    program = (
        "import os, sys\nkids = []\nfor _ in range(4):\n    pid = os.fork()\n    if pid == 0:\n"
        "        x = bytearray(200 << 20)\n        import time; time.sleep(3); os._exit(0)\n    kids.append(pid)\n"
    )
    r = _escape(program, memory_mb=256)
    assert not r.passed and "BlockingIOError" in r.stderr
    r = _escape("x = bytearray(400 << 20)\n", memory_mb=256)
    assert not r.passed and "MemoryError" in r.stderr
    # the tmpfs working folder lives in RAM: it is capped too
    r = _escape("for i in range(12):\n    open(f'f{i}', 'wb').write(bytes(12 << 20))\n")
    assert not r.passed and "No space left on device" in r.stderr


def test_files_outside_the_work_folder_cannot_be_changed(bwrap, tmp_path):
    keep, gone = tmp_path / "keep.txt", tmp_path / "gone.txt"
    keep.write_text("original")
    gone.write_text("original")
    r = _escape(f"open({str(keep)!r}, 'w').write('truncated')\n")
    assert not r.passed
    r = _escape(f"import posix\nposix.unlink({str(gone)!r})\n")
    assert not r.passed
    assert keep.read_text() == "original" and gone.read_text() == "original"
    # what is visible (the Python installation, the system) is read-only; opening for append writes nothing
    r = _escape("import os\nopen(os.__file__, 'ab').close()\n")
    assert not r.passed and "Read-only file system" in r.stderr
    r = _escape("open('/usr/sumi-escape', 'w')\n")
    assert not r.passed
    r = _escape(
        "import os\nassert not os.path.exists(os.path.expanduser('~/.bashrc'))\n"
        f"assert not os.path.exists({str(tmp_path)!r})\nopen('scratch.txt', 'w').write('fine')\n"
    )
    assert r.passed, r.stderr  # the user's folders are absent; the work folder is writable


def test_reimported_subprocess_cannot_spawn_a_shell(bwrap, tmp_path):
    marker = tmp_path / "pwned"
    program = (
        "import sys\nfor m in ('subprocess', '_posixsubprocess'):\n    sys.modules.pop(m, None)\n"
        "import importlib\nsubprocess = importlib.import_module('subprocess')\n"
        f"subprocess.run(['/bin/sh', '-c', 'echo pwned > {marker}'], check=True)\n"
    )
    r = _escape(program, guard=True)
    assert not r.passed and not marker.exists()
    assert "BlockingIOError" in r.stderr or "Resource temporarily unavailable" in r.stderr


def test_parent_environment_is_invisible(bwrap):
    # /proc/<pid>/environ shows a process's environment at its start: the runner is a fresh
    # interpreter started with the secret, as a user's shell would start `sumi eval` with HF_TOKEN
    secret = "s3cr3t-" + os.urandom(6).hex()
    program = (
        "import os, sys\nfound = []\nfor pid in ['self', str(os.getppid())] + os.listdir('/proc'):\n"
        "    try:\n        data = open(f'/proc/{pid}/environ', 'rb').read()\n    except OSError:\n"
        "        continue\n    sys.stderr.write(repr(data))\n    found.append(b'SUMI_SANDBOX_SECRET' in data)\n"
        "found.append('SUMI_SANDBOX_SECRET' in os.environ)\nsys.exit(0 if any(found) else 1)\n"
    )
    runner = (
        "import importlib.util, sys\n"  # the module alone (stdlib only): no seconds of `import sumi`
        f"spec = importlib.util.spec_from_file_location('execution', {execution.__file__!r})\n"
        "mod = sys.modules['execution'] = importlib.util.module_from_spec(spec)\nspec.loader.exec_module(mod)\n"
        "r = mod.run_program(sys.stdin.read(), guard=False)\nprint(r.sandbox, r.passed, r.stderr)\n"
    )
    env = dict(os.environ, SUMI_SANDBOX_SECRET=secret)
    out = subprocess.run(
        [sys.executable, "-c", runner], input=program, env=env, capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert out.startswith("bubblewrap False") and secret not in out


def test_no_network(bwrap):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        port = server.getsockname()[1]
        r = _escape(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n")
        assert not r.passed and ("ConnectionRefused" in r.stderr or "OSError" in r.stderr)
    finally:
        server.close()


def test_fallback_warns_and_still_limits(no_bwrap):
    with pytest.warns(UserWarning, match="bwrap\\) is not installed: generated code runs WITHOUT a sandbox"):
        r = run_program("import sys\nsys.exit(3)\n", timeout=10)
    assert r.sandbox == "rlimits" and r.returncode == 3
    r = run_program("x = bytearray(400 << 20)\n", timeout=10, memory_mb=256)
    assert not r.passed and "MemoryError" in r.stderr
    r = run_program("while True:\n    pass\n", timeout=1.0)
    assert r.status == "timed out"


def test_broken_bwrap_falls_back_with_the_reason(monkeypatch):
    monkeypatch.setattr(execution.shutil, "which", lambda name: "/bin/false")
    find_bubblewrap.cache_clear()
    try:
        with pytest.warns(UserWarning, match="bwrap does not work here"):
            assert find_bubblewrap() is None
    finally:
        find_bubblewrap.cache_clear()


def test_bad_limits_are_rejected():
    for kw, what in (
        ({"timeout": 0}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"timeout": -1}, "timeout"),
        ({"memory_mb": 0}, "memory limit"),
    ):
        with pytest.raises(ValueError, match=what):
            run_program("pass\n", **kw)


# ----------------------------------------------------------------------------- the seccomp filter
def _run_bpf(prog: bytes, nr: int, arch: int, arg0: int = 0) -> int:
    """A classic-BPF interpreter for the instructions the filter uses, over seccomp_data."""
    data = struct.pack("=iIQ6Q", nr, arch, 0, arg0, 0, 0, 0, 0, 0)
    insns = [struct.unpack("=HBBI", prog[i : i + 8]) for i in range(0, len(prog), 8)]
    pc, acc = 0, 0
    while True:
        code, jt, jf, k = insns[pc]
        if code == 0x20:
            acc = struct.unpack_from("=I", data, k)[0]
            pc += 1
        elif code == 0x06:
            return k
        else:
            cond = {0x15: acc == k, 0x35: acc >= k, 0x45: bool(acc & k)}[code]
            pc += 1 + (jt if cond else jf)


@pytest.mark.parametrize(
    "machine,arch,fork,clone,other", [("x86_64", 0xC000003E, (57, 58), 56, 0), ("aarch64", 0xC00000B7, (), 220, 63)]
)
def test_seccomp_filter_decisions(machine, arch, fork, clone, other):
    prog = seccomp_no_processes(machine)
    allow, eagain, kill = 0x7FFF0000, 0x0005000B, 0x80000000
    for nr in fork:
        assert _run_bpf(prog, nr, arch) == eagain
    assert _run_bpf(prog, clone, arch, 0x11) == eagain  # fork-like clone (SIGCHLD)
    assert _run_bpf(prog, clone, arch, 0x3D0F00) == allow  # pthread_create's flags
    assert _run_bpf(prog, clone, arch, 0xFFFF_FFFF_0000_0011) == eagain  # high bits do not fool it
    assert _run_bpf(prog, 435, arch) == 0x00050026  # clone3 -> ENOSYS
    assert _run_bpf(prog, other, arch) == allow
    assert _run_bpf(prog, 2, 0x40000003) == kill  # i386 ABI
    if machine == "x86_64":
        assert _run_bpf(prog, 0x40000000 + 57, arch) == kill  # x32 ABI
    assert seccomp_no_processes("sparc") is None


def test_sandboxed_run_is_fast(bwrap):
    start = time.perf_counter()
    for _ in range(5):
        assert run_program("print(sum(range(10)))\n").passed
    assert (time.perf_counter() - start) / 5 < 2.0
