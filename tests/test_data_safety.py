"""Data safety: `data prepare --overwrite` replaces only a prepared sumi dataset, never an input or
anything else; staging folders of dead runs are cleaned up; `tokenizer train` needs --overwrite."""

import json
import subprocess
import sys

import pytest

from sumi.data import prepare_dataset, train_tokenizer

SEED = 7
TEXTS = [f"def f{i}(x):\n    return x * {i} + {i * i}\n# line {i}\n" * (1 + i % 3) for i in range(24)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    for i, t in enumerate(TEXTS):
        (root / f"doc{i:02d}.txt").write_text(t, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory, corpus):
    out = tmp_path_factory.mktemp("tok") / "tok"
    train_tokenizer(sorted(corpus.glob("*.txt")), out, 300, seed=SEED)
    return out


def _prepare(inputs, out, tok_dir, **kw):
    kw.setdefault("val_fraction", 0.2)
    kw.setdefault("num_workers", 1)
    kw.setdefault("progress", False)
    kw.setdefault("seed", SEED)
    return prepare_dataset(inputs, out, str(tok_dir), **kw)


def _snapshot(folder):
    """{relative path: bytes or None for folders} of everything under `folder`."""
    return {
        p.relative_to(folder).as_posix(): (None if p.is_dir() else p.read_bytes()) for p in sorted(folder.rglob("*"))
    }


def _cli(argv, capsys):
    from sumi.cli import main

    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# ----------------------------------------------------------------------------- overwrite
def test_overwrite_refuses_a_folder_that_is_not_a_dataset(tmp_path, corpus, tok_dir):
    victim = tmp_path / "photos"
    (victim / "2024").mkdir(parents=True)
    (victim / "cat.jpg").write_bytes(b"\xff\xd8 a cat")
    (victim / "2024" / "dog.jpg").write_bytes(b"\xff\xd8 a dog")
    before = _snapshot(victim)
    with pytest.raises(FileExistsError, match="refusing to replace .*not a prepared sumi dataset"):
        _prepare(corpus, victim, tok_dir, overwrite=True)
    assert _snapshot(victim) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]  # no staging folder left


def test_overwrite_refuses_a_regular_file(tmp_path, corpus, tok_dir):
    victim = tmp_path / "notes.txt"
    victim.write_text("my notes")
    with pytest.raises(FileExistsError, match="refusing to replace .*not a folder"):
        _prepare(corpus, victim, tok_dir, overwrite=True)
    assert victim.read_text() == "my notes"


def test_overwrite_refuses_a_symlink(tmp_path, corpus, tok_dir):
    ds = tmp_path / "ds"
    _prepare(corpus, ds, tok_dir)
    link = tmp_path / "link"
    link.symlink_to(ds)
    with pytest.raises(FileExistsError, match="symbolic link"):
        _prepare(corpus, link, tok_dir, overwrite=True)
    assert link.is_symlink() and (ds / "metadata.json").is_file()


def test_output_equal_to_or_above_an_input_is_refused(tmp_path, corpus, tok_dir):
    data = tmp_path / "data"
    (data / "inner").mkdir(parents=True)
    for i, t in enumerate(TEXTS[:6]):
        (data / "inner" / f"d{i}.txt").write_text(t)
    before = _snapshot(data)
    for out in (data, data / "inner"):
        for inputs in ([data / "inner"], [data / "inner" / "d0.txt"]):
            with pytest.raises(ValueError, match="holds the input .*d0.txt"):
                _prepare(inputs, out, tok_dir, overwrite=True)
    assert _snapshot(data) == before


def test_overwrite_refuses_a_dataset_with_foreign_files(tmp_path, corpus, tok_dir):
    ds = tmp_path / "ds"
    _prepare(corpus, ds, tok_dir)
    (ds / "README.md").write_text("my notes about this dataset")
    with pytest.raises(FileExistsError, match=r"not part of the dataset \(README.md\)"):
        _prepare(corpus, ds, tok_dir, overwrite=True, seed=SEED + 1)
    assert (ds / "README.md").read_text() == "my notes about this dataset"
    assert json.loads((ds / "metadata.json").read_text())["seed"] == SEED


def test_overwrite_replaces_a_dataset_and_its_shards(tmp_path, corpus, tok_dir):
    ds = tmp_path / "ds"
    _prepare(corpus, ds, tok_dir, shard_tokens=50)
    n_before = len(list(ds.iterdir()))
    _prepare(corpus, ds, tok_dir, overwrite=True, seed=SEED + 1)
    meta = json.loads((ds / "metadata.json").read_text())
    assert meta["seed"] == SEED + 1
    assert len(list(ds.iterdir())) < n_before  # the old shards are gone, not mixed in
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]


def test_cli_overwrite_of_a_non_dataset_is_a_one_line_error(tmp_path, corpus, tok_dir, capsys):
    victim = tmp_path / "keep"
    victim.mkdir()
    (victim / "precious.txt").write_text("x")
    code, out, err = _cli(
        [
            "data",
            "prepare",
            str(corpus),
            "-o",
            str(victim),
            "--tokenizer",
            str(tok_dir),
            "--workers",
            "1",
            "--no-progress",
            "--overwrite",
        ],
        capsys,
    )
    assert code != 0 and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "refusing to replace" in lines[0] and "never an input" in lines[0]
    assert (victim / "precious.txt").read_text() == "x"


# ----------------------------------------------------------------------------- staging folders
def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_staging_folders_of_dead_runs_are_removed(tmp_path, corpus, tok_dir):
    dead = tmp_path / f".ds.tmp-{_dead_pid()}-0123abcd"
    (dead / "sub").mkdir(parents=True)
    (dead / "train-00000.bin").write_bytes(b"\0" * 64)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        alive = tmp_path / f".ds.tmp-{live.pid}-0123abcd"
        alive.mkdir()
        other = tmp_path / f".other.tmp-{_dead_pid()}-0123abcd"  # another output's: not ours to judge
        other.mkdir()
        _prepare(corpus, tmp_path / "ds", tok_dir)
        assert not dead.exists()
        assert alive.is_dir() and other.is_dir()
    finally:
        live.kill()
        live.wait()


def test_killed_prepare_leaves_staging_that_the_next_run_removes(tmp_path, corpus, tok_dir):
    code = (
        "import os, signal, sumi.data.prepare as p\n"
        "real = p._SplitWriter.add\n"
        "def add(self, doc):\n"
        "    real(self, doc)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "p._SplitWriter.add = add\n"
        f"p.prepare_dataset([{str(corpus)!r}], {str(tmp_path / 'ds')!r}, {str(tok_dir)!r}, num_workers=1, "
        "progress=False)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".ds.tmp-")  # what SIGKILL leaves ...
    _prepare(corpus, tmp_path / "ds", tok_dir)
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]  # ... is gone after the next run


# ----------------------------------------------------------------------------- tokenizer train
def test_tokenizer_train_does_not_overwrite_without_flag(tmp_path, corpus):
    files = sorted(corpus.glob("*.txt"))
    out = tmp_path / "tok"
    out.mkdir()
    (out / "mine.txt").write_text("not a tokenizer")
    with pytest.raises(FileExistsError, match="already exists"):
        train_tokenizer(files, out, 300)
    with pytest.raises(FileExistsError, match="refusing to replace"):
        train_tokenizer(files, out, 300, overwrite=True)  # not a tokenizer folder
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    fresh = tmp_path / "fresh"
    train_tokenizer(files, fresh, 300, seed=1)
    train_tokenizer(files, fresh, 300, seed=2, overwrite=True)
    assert json.loads((fresh / "sumi_tokenizer_training.json").read_text())["seed"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh", "tok"]


def test_tokenizer_train_cli_existing_output_and_bad_min_frequency(tmp_path, corpus, capsys):
    out = tmp_path / "tok"
    out.mkdir()
    (out / "keep.txt").write_text("k")
    code, _, err = _cli(
        ["tokenizer", "train", str(corpus / "doc00.txt"), "-o", str(out), "--vocab-size", "300"], capsys
    )
    assert code != 0 and "Traceback" not in err and "already exists" in err and len(err.strip().splitlines()) == 1
    code, _, err = _cli(
        [
            "tokenizer",
            "train",
            str(corpus / "doc00.txt"),
            "-o",
            str(tmp_path / "t2"),
            "--vocab-size",
            "300",
            "--min-frequency",
            "-1",
        ],
        capsys,
    )
    assert code != 0 and "min_frequency" in err and len(err.strip().splitlines()) == 1
    code, _, err = _cli(["tokenizer", "train", str(corpus), "-o", str(tmp_path / "t3"), "--vocab-size", "300"], capsys)
    assert code != 0 and "is a folder" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tok"]


# ----------------------------------------------------------------------------- unreadable inputs
def test_truncated_gzip_and_binary_jsonl_name_the_file(tmp_path, tok_dir, capsys):
    import gzip

    good = tmp_path / "a.txt.gz"
    with gzip.open(good, "wb") as g:
        g.write(("some text " * 500).encode())
    trunc = tmp_path / "trunc.txt.gz"
    trunc.write_bytes(good.read_bytes()[:40])
    with pytest.raises(ValueError, match=r"trunc.txt.gz: truncated or corrupt compressed file"):
        _prepare([trunc], tmp_path / "o", tok_dir)
    binary = tmp_path / "bin.jsonl"
    binary.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(128, 256)) + b"\n")
    with pytest.raises(ValueError, match=r"bin.jsonl:1: not UTF-8 text"):
        _prepare([binary], tmp_path / "o", tok_dir)
    code, _, err = _cli(
        [
            "data",
            "prepare",
            str(trunc),
            "-o",
            str(tmp_path / "o"),
            "--tokenizer",
            str(tok_dir),
            "--workers",
            "1",
            "--no-progress",
        ],
        capsys,
    )
    assert code != 0 and "Traceback" not in err and len(err.strip().splitlines()) == 1 and "trunc.txt.gz" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt.gz", "bin.jsonl", "trunc.txt.gz"]
