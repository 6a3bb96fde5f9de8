"""Folder outputs are all-or-nothing: `export` killed or out of space leaves no half-written folder
and replaces only a previous export (issue 14 item 6; data prepare and tokenizer train: see
test_data_safety.py); `sumi.atomic` itself."""

import errno
import os
import subprocess
import sys

import pytest

from sumi.atomic import atomic_folder, check_target, remove_stale_staging
from sumi.training import export_checkpoint, train

RECIPE = """\
model: {preset: sumi-tiny}
data: {source: synthetic, seq_len: 32, prefix_fraction: 0.5, prefix_len: 8}
optim: {lr: 3.0e-3, warmup_steps: 1}
batch: {global_batch_size: 4, micro_batch_size: 4}
steps: 2
seed: 0
device: cpu
num_threads: 1
eval: {every: 0, at_end: false}
checkpoint: {every: 2, keep_last: 0}
log: {progress: false}
"""


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    (root / "r.yaml").write_text(RECIPE)
    train(root / "r.yaml", [f"out_dir={root / 'run'}"])
    return root / "run" / "checkpoints"


def _disk_full_after_config(self, folder, *args, **kwargs):
    """save_pretrained that writes config.json, then runs out of space on the weights."""
    self.config.save_pretrained(folder)
    path = os.path.join(folder, "model.safetensors")
    open(path, "wb").write(b"\0" * 100)
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)


def test_export_out_of_space_leaves_nothing(tmp_path, checkpoints, monkeypatch):
    from sumi import SumiForMaskGeneration

    monkeypatch.setattr(SumiForMaskGeneration, "save_pretrained", _disk_full_after_config)
    with pytest.raises(OSError, match="No space left on device"):
        export_checkpoint(checkpoints, tmp_path / "export")
    assert list(tmp_path.iterdir()) == []


def test_export_cli_out_of_space_is_one_line_naming_the_file(tmp_path, checkpoints, monkeypatch, capsys):
    from sumi import SumiForMaskGeneration
    from sumi.cli import main

    monkeypatch.setattr(SumiForMaskGeneration, "save_pretrained", _disk_full_after_config)
    code = main(["export", str(checkpoints), str(tmp_path / "export")])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0 and "Traceback" not in err and len(lines) == 1
    assert "No space left on device" in lines[0] and "model.safetensors" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_killed_export_leaves_no_folder_and_the_next_run_cleans_up(tmp_path, checkpoints):
    code = (
        "import os, signal\nfrom sumi import SumiForMaskGeneration\nfrom sumi.training import export_checkpoint\n"
        "real = SumiForMaskGeneration.save_pretrained\n"
        "def save(self, folder, *a, **k):\n    self.config.save_pretrained(folder)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "SumiForMaskGeneration.save_pretrained = save\n"
        f"export_checkpoint({str(checkpoints)!r}, {str(tmp_path / 'export')!r})\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=300)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert not (tmp_path / "export").exists()  # no folder with a config and no weights
    out = export_checkpoint(checkpoints, tmp_path / "export")
    assert (out / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # the dead run's staging folder is gone


def test_export_replaces_only_a_previous_export(tmp_path, checkpoints):
    out = export_checkpoint(checkpoints, tmp_path / "export", dtype="bfloat16")
    size = (out / "model.safetensors").stat().st_size
    export_checkpoint(checkpoints, out)  # a previous export: replaced (float32 now)
    assert (out / "model.safetensors").stat().st_size > size
    (out / "README.md").write_text("{}")
    with pytest.raises(FileExistsError, match=r"holds files an export does not write \(README.md\)"):
        export_checkpoint(checkpoints, out)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a model folder"):
        export_checkpoint(checkpoints, notes)
    assert (notes / "todo.txt").read_text() == "keep me" and (out / "README.md").is_file()


# ----------------------------------------------------------------------------- sumi.atomic
def test_atomic_folder_installs_on_success_and_removes_on_error(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with atomic_folder(out) as tmp:
            (tmp / "half").write_text("x")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_folder(out) as tmp:
        (tmp / "a").write_text("1")
        assert not out.exists()  # nothing at the destination until the end
    assert (out / "a").read_text() == "1" and sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with pytest.raises(FileExistsError, match="already exists"):
        check_target(out, overwrite=False, may_replace=None, what="x")
    with pytest.raises(FileExistsError, match="not an output of this command"):
        check_target(out, overwrite=True, may_replace=None, what="x")
    with atomic_folder(out, overwrite=True, may_replace=lambda p: None) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["b"]


def test_remove_stale_staging_keeps_live_and_foreign_names(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = [tmp_path / f".out.tmp-{dead.pid}-0123abcd", tmp_path / f".out.old-{dead.pid}-89abcdef"]
    keep = [
        tmp_path / f".out.tmp-{os.getpid()}-0123abcd",
        tmp_path / f".other.tmp-{dead.pid}-0123abcd",
        tmp_path / ".out.tmp-notapid-0123abcd",
        tmp_path / "out",
    ]
    for p in stale + keep:
        p.mkdir()
    assert sorted(remove_stale_staging(tmp_path / "out")) == sorted(stale)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in stale)
