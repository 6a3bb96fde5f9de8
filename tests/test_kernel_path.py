"""The native kernel is loaded only from a private folder, and only a library this code built:
never one planted in a shared temporary folder or swapped in afterwards (issue 14 item 3)."""

import os
import shutil
import subprocess

import pytest

import sumi.kernels as kernels

# a stand-in kernel source: `_build` only needs the symbol, and it compiles in milliseconds
STUB = "int sink_attention_bf16(void) { return 0; }\n"
# what an attacker would plant: a library that acts when loaded
PLANT = (
    "#include <stdio.h>\n__attribute__((constructor)) static void pwn(void) {\n"
    '  FILE *f = fopen(MARKER, "w"); if (f) { fputs("pwned", f); fclose(f); }\n}\n'
    "int sink_attention_bf16(void) { return 1; }\n"
)


@pytest.fixture
def env(tmp_path, monkeypatch):
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    src = tmp_path / "stub.c"
    src.write_text(STUB)
    monkeypatch.setattr(kernels, "SOURCE", src)
    monkeypatch.setattr(kernels, "CFLAGS", ["-O0", "-shared", "-fPIC"])
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("SUMI_CACHE_DIR", str(blocker))  # the cache cannot be created: the temp fallback is used
    shared_tmp = tmp_path / "tmp"
    shared_tmp.mkdir()
    monkeypatch.setattr(kernels.tempfile, "tempdir", str(shared_tmp))
    marker = tmp_path / "pwned"
    return cc, shared_tmp, marker, tmp_path


def _plant(cc, folder, marker, tmp_path):
    """Put a malicious library under the name `_build` will look for; returns its path."""
    import hashlib

    digest = hashlib.sha256(kernels.SOURCE.read_bytes() + " ".join(kernels.CFLAGS).encode()).hexdigest()[:16]
    target = folder / f"sink_attention_{digest}.so"
    c = tmp_path / "plant.c"
    c.write_text(f'#define MARKER "{marker}"\n' + PLANT)
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(target), str(c)], check=True)
    # a forged record of its hash, too
    target.with_name(target.name + ".sha256").write_text(kernels._sha256(target) + "\n")
    return target


def _built_path(lib) -> str:
    return lib._name


def test_planted_library_in_a_world_writable_shared_folder_is_not_loaded(env):
    cc, shared_tmp, marker, tmp_path = env
    folder = shared_tmp / f"sumi-kernels-{os.getuid()}"
    folder.mkdir()
    os.chmod(folder, 0o777)  # as an attacker who created it first would leave it
    _plant(cc, folder, marker, tmp_path)
    lib = kernels._build()
    assert not marker.exists()
    assert lib["sink_attention_bf16"]() == 0  # the stub we built, not the plant
    assert not _built_path(lib).startswith(str(folder))


@pytest.mark.skipif(os.getuid() != 0, reason="making a folder of another user's needs root")
def test_planted_library_in_a_folder_of_another_user_is_not_loaded(env):
    cc, shared_tmp, marker, tmp_path = env
    folder = shared_tmp / f"sumi-kernels-{os.getuid()}"
    folder.mkdir(mode=0o755)
    plant = _plant(cc, folder, marker, tmp_path)
    os.chown(plant, 65534, 65534)
    os.chown(folder, 65534, 65534)
    lib = kernels._build()
    assert not marker.exists() and lib["sink_attention_bf16"]() == 0


def test_swapped_library_in_the_private_folder_is_rebuilt(env):
    cc, shared_tmp, marker, tmp_path = env
    lib = kernels._build()
    path = _built_path(lib)
    folder = shared_tmp / f"sumi-kernels-{os.getuid()}"
    assert path.startswith(str(folder)) and (os.stat(folder).st_mode & 0o777) == 0o700
    # replaced after the build, its recorded hash left as it was: rebuilt, not loaded
    c = tmp_path / "plant.c"
    c.write_text(f'#define MARKER "{marker}"\n' + PLANT)
    subprocess.run([cc, "-shared", "-fPIC", "-o", path + ".new", str(c)], check=True)
    os.replace(path + ".new", path)
    assert not kernels._trusted(kernels.Path(path))
    kernels._build()  # (the process keeps its first mapping: what matters is the file now on disk)
    assert kernels._trusted(kernels.Path(path)) and b"pwned" not in open(path, "rb").read()
    # a library group- or world-writable is not trusted either, even with the right hash
    os.chmod(path, 0o777)
    assert not kernels._trusted(kernels.Path(path))


def test_reuses_its_own_build(env):
    _, shared_tmp, _, _ = env
    path = _built_path(kernels._build())
    mtime = os.stat(path).st_mtime_ns
    assert _built_path(kernels._build()) == path and os.stat(path).st_mtime_ns == mtime
