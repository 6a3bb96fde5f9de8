"""The last items of issue 14: checked loss inputs in `forward`, a locked training run folder, a
capped `--prompts-file` and a one-line out-of-memory error. Each test failed before its fix."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from sumi.diffusion import fused_linear_gidd_loss, uniform_gidd_loss


# ----------------------------------------------------------------------------- loss inputs
def _batch(model, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    V = model.config.vocab_size
    z = torch.randint(0, V, (2, 8), generator=g)
    x = torch.randint(0, V, (2, 8), generator=g)
    return z, x, torch.rand(2, generator=g)


@pytest.mark.parametrize("bad, where", [(None, "vocab"), (-3, "negative")])
@pytest.mark.parametrize("chunked", [False, True])
def test_forward_rejects_labels_outside_the_vocabulary(tiny_model, bad, where, chunked):
    z, x, t = _batch(tiny_model)
    x[0, 3] = tiny_model.config.vocab_size if bad is None else bad
    x[1, 0] = -100  # ignore_index stays allowed next to the bad label
    with pytest.raises(ValueError, match=r"^labels must lie in \[0, vocab_size="):
        tiny_model(input_ids=z, labels=x, t=t, loss_chunk_size=4 if chunked else None)


@pytest.mark.parametrize("t_value", [1.5, -0.25, math.nan])
@pytest.mark.parametrize("chunked", [False, True])
def test_forward_rejects_t_outside_unit_interval_or_nan(tiny_model, t_value, chunked):
    z, x, t = _batch(tiny_model)
    t[1] = t_value
    with pytest.raises(ValueError, match=r"^t \(the noise level\) must lie in \[0, 1\]"):
        tiny_model(input_ids=z, labels=x, t=t, loss_chunk_size=4 if chunked else None)
    with pytest.raises(ValueError, match=r"^t \(the noise level\)"):
        tiny_model(input_ids=z, labels=x, t=t_value)  # a plain float too


def test_forward_accepts_the_ends_of_the_noise_range_and_ignored_labels(tiny_model):
    z, x, _ = _batch(tiny_model)
    x[:, :2] = -100
    for t in (0.0, 1.0, torch.tensor([0.0, 1.0])):
        loss = tiny_model(input_ids=z, labels=x, t=t).loss
        assert torch.isfinite(loss)


def test_loss_functions_check_their_own_inputs():
    """The same checks on the bare loss functions (the trainer calls the fused one directly)."""
    g = torch.Generator().manual_seed(1)
    V, H = 11, 4
    hidden, weight = torch.randn(3, H, generator=g), torch.randn(V, H, generator=g)
    z, x = torch.randint(0, V, (3,), generator=g), torch.randint(0, V, (3,), generator=g)
    logits = hidden @ weight.T
    for fn in (
        lambda z_, x_, t_: uniform_gidd_loss(logits, z_, x_, t_, vocab_size=V),
        lambda z_, x_, t_: fused_linear_gidd_loss(hidden, weight, z_, x_, t_, vocab_size=V),
    ):
        with pytest.raises(ValueError, match="^labels must"):
            fn(z, torch.tensor([0, V + 5, 1]), 0.5)
        with pytest.raises(ValueError, match=r"^input_ids \(z_t\) must"):
            fn(torch.tensor([0, -1, 1]), x, 0.5)
        with pytest.raises(ValueError, match="^t "):
            fn(z, x, torch.tensor([0.2, 2.0, 0.3]))
        fn(z, x, 0.5)  # valid inputs still pass


def test_checked_loss_equals_the_loss_computed_from_its_definition():
    """The refactor into check + core keeps the values: the KL + IS form of the spec, written out."""
    g = torch.Generator().manual_seed(2)
    V = 7
    logits = torch.randn(1, 5, V, generator=g, dtype=torch.float64)
    z, x = torch.randint(0, V, (1, 5), generator=g), torch.randint(0, V, (1, 5), generator=g)
    t = torch.rand(1, 5, generator=g, dtype=torch.float64) * 0.9 + 0.05
    got, _ = uniform_gidd_loss(logits, z, x, t, vocab_size=V, z_loss_strength=0.0)
    alpha, u = 1 - t, t / V
    xhat = torch.softmax(logits, -1)
    q = alpha[..., None] * torch.nn.functional.one_hot(x, V) + u[..., None]
    qhat = alpha[..., None] * xhat + u[..., None]
    kl = (q * (q.log() - qhat.log())).sum(-1)
    r = q.gather(-1, z[..., None]).squeeze(-1) / qhat.gather(-1, z[..., None]).squeeze(-1)
    w = torch.where(z == x, t / (1 + (V - 1) * alpha), torch.ones_like(t))
    torch.testing.assert_close(got.double(), w * kl + w * (r - r.log() - 1), rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------- run folder lock
RECIPE = """\
model: {preset: sumi-tiny}
data: {source: synthetic, seq_len: 16}
batch: {global_batch_size: 2, micro_batch_size: 2}
steps: 1
seed: 0
device: cpu
num_threads: 1
eval: {at_end: false}
checkpoint: {every: 1, keep_last: 0}
log: {progress: false}
"""

# Another process taking the lock the way a live run does (flock on the lock file), then waiting.
HOLDER = """\
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, f"pid {os.getpid()} on testhost".encode())
print("locked", flush=True)
time.sleep(120)
"""


@pytest.fixture
def holder():
    """`holder(folder)` starts a process that holds folder's run lock; killed (SIGKILL) at the end."""
    import subprocess
    import sys

    from sumi.training.runlock import LOCK_NAME

    procs = []

    def start(folder):
        folder.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(folder / LOCK_NAME)], stdout=subprocess.PIPE, text=True
        )
        procs.append(proc)
        assert proc.stdout.readline().strip() == "locked"
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


@pytest.fixture
def recipe(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(RECIPE)
    return path


def test_second_run_into_a_locked_out_dir_fails_and_writes_nothing(recipe, tmp_path, holder):
    from sumi.training import train
    from sumi.training.runlock import RunFolderInUse

    run = tmp_path / "run"
    proc = holder(run)
    with pytest.raises(
        RunFolderInUse,
        match=rf"^{run} is in use by another training run \(pid {proc.pid} on "
        "testhost\\)",
    ):
        train(recipe, [f"out_dir={run}"])
    assert sorted(p.name for p in run.iterdir()) == [".sumi-train.lock"]  # no config, log or checkpoint
    proc.kill()
    proc.wait()  # a dead holder leaves no stale lock: the next run goes ahead
    result = train(recipe, [f"out_dir={run}"])
    assert result.step == 1 and result.checkpoint is not None


def test_a_separate_checkpoint_dir_is_locked_too(recipe, tmp_path, holder):
    from sumi.training import train
    from sumi.training.runlock import RunFolderInUse

    holder(tmp_path / "ckpt")
    with pytest.raises(RunFolderInUse, match="ckpt is in use"):
        train(recipe, [f"out_dir={tmp_path / 'run'}", f"checkpoint.dir={tmp_path / 'ckpt'}"])
    assert not list((tmp_path / "ckpt").glob("step_*"))


def test_lock_is_released_after_a_run_and_after_a_failed_one(recipe, tmp_path):
    from sumi.training import ConfigError, train
    from sumi.training.runlock import run_folder_lock

    run = tmp_path / "run"
    train(recipe, [f"out_dir={run}"])
    with pytest.raises(ConfigError, match="--resume"):  # fails inside the locked block
        train(recipe, [f"out_dir={run}"])
    with run_folder_lock(run):  # free again in this process, and held against a nested attempt
        with pytest.raises(ConfigError, match="in use"):
            train(recipe, [f"out_dir={run}"], resume=True)


def test_sumi_train_reports_a_locked_out_dir_in_one_line(recipe, tmp_path, holder, capsys):
    from sumi.cli import main

    run = tmp_path / "run"
    holder(run)
    assert main(["train", str(recipe), f"out_dir={run}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sumi: error: ") and "in use by another training run" in err[0]


def test_resume_after_a_change_of_model_shape_is_one_line_naming_the_keys(recipe, tmp_path, capsys):
    from sumi.cli import main
    from sumi.training import train

    run = tmp_path / "run"
    train(recipe, [f"out_dir={run}"])
    args = ["train", str(recipe), "--resume", f"out_dir={run}", "steps=2", "model.overrides.num_hidden_layers=3"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sumi: error: checkpoint ")
    assert "another shape (num_hidden_layers 2 -> 3)" in err[0]
    assert main(["train", str(recipe), "--resume", f"out_dir={run}", "steps=2"]) == 0  # same shape: resumes


@pytest.mark.slow
def test_two_real_runs_into_one_out_dir(recipe, tmp_path, capsys):
    """A live `python -m sumi.training` run holds its folder: a second `sumi train` there is refused
    in one line and the first run finishes with all its checkpoints."""
    import os
    import subprocess
    import sys
    import time

    from sumi.cli import main

    run = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    first = subprocess.Popen(
        [sys.executable, "-m", "sumi.training", str(recipe), f"out_dir={run}", "steps=3", "step_delay_s=1.5"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (run / "train_log.jsonl").exists():  # the run is past its set-up, inside the lock
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()[0]
            time.sleep(0.1)
        assert main(["train", str(recipe), f"out_dir={run}", "steps=3"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"pid {first.pid} on " in err[0], err
        out, _ = first.communicate(timeout=120)
        assert first.returncode == 0, out
    finally:
        first.kill()
        first.wait()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [f"step_{s:07d}" for s in (1, 2, 3)]


def test_lock_removes_only_a_folder_it_created_and_left_empty(tmp_path):
    from sumi.training.runlock import LOCK_NAME, run_folder_lock

    fresh, kept, used = tmp_path / "a" / "fresh", tmp_path / "kept", tmp_path / "used"
    kept.mkdir()
    for folder in (fresh, kept, used):
        with pytest.raises(KeyError), run_folder_lock(folder):
            if folder == used:
                (folder / "config.yaml").write_text("x")
            raise KeyError("set-up failed")
    assert not fresh.exists() and (tmp_path / "a").is_dir()
    assert sorted(p.name for p in kept.iterdir()) == [LOCK_NAME]
    assert sorted(p.name for p in used.iterdir()) == [LOCK_NAME, "config.yaml"]


# ----------------------------------------------------------------------------- --prompts-file cap
def test_prompts_file_past_the_cap_is_refused_naming_the_cap(tmp_path):
    from sumi.cli.common import CLIError, read_prompts_file

    path = tmp_path / "p.txt"
    path.write_text("one\ntwo\n")  # 8 bytes
    assert read_prompts_file(str(path), max_bytes=8) == ["one", "two"]  # exactly at the cap: read
    with pytest.raises(
        CLIError,
        match=r"^argument --prompts-file: .*p\.txt' is longer than the cap of 7 B "
        r"\(7 bytes\)",
    ):
        read_prompts_file(str(path), max_bytes=7)


class _Endless:
    """A stdin that never ends (`yes prompt | sumi generate --prompts-file -`), counting what is read."""

    def __init__(self):
        self.buffer, self.read_bytes = self, 0

    def read(self, n: int) -> bytes:
        self.read_bytes += n
        return (b"prompt\n" * (n // 7 + 1))[:n]


def test_endless_stdin_stops_at_the_cap(monkeypatch):
    from sumi.cli.common import CLIError, read_prompts_file

    stdin = _Endless()
    monkeypatch.setattr("sys.stdin", stdin)
    with pytest.raises(CLIError, match="'-' is longer than the cap of 3.00 MiB"):
        read_prompts_file("-", max_bytes=3 << 20)
    assert stdin.read_bytes <= 4 << 20  # read past the cap by at most one piece


def test_sumi_generate_on_dev_zero_is_a_one_line_error(monkeypatch, capsys):
    import os

    from sumi.cli import main

    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    monkeypatch.setattr("sumi.cli.common.MAX_PROMPTS_FILE_BYTES", 2 << 20)
    assert main(["generate", "--prompts-file", "/dev/zero", "-n", "4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        "sumi: error: argument --prompts-file: '/dev/zero' is longer than the cap of 2.00 MiB"
    ), err


# ----------------------------------------------------------------------------- out of memory
def _cpu_allocation_failure():
    torch.empty(1 << 50, dtype=torch.uint8)  # 1 PiB: torch's CPU allocator refuses it


def _python_allocation_failure():
    bytearray(1 << 62)


@pytest.mark.parametrize("fail", [_cpu_allocation_failure, _python_allocation_failure])
def test_out_of_memory_is_a_one_line_error(fail, monkeypatch, capsys):
    from sumi.cli import main

    monkeypatch.setattr("sumi.cli.generate.run", lambda args: fail())
    assert main(["generate", "hello"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sumi: error: out of memory ("), err


def test_other_runtime_errors_are_not_called_out_of_memory(monkeypatch):
    from sumi.cli import is_out_of_memory, main

    def fail(args):
        raise RuntimeError("shape mismatch in layer 3")

    monkeypatch.setattr("sumi.cli.generate.run", fail)
    with pytest.raises(RuntimeError, match="shape mismatch"):  # a bug stays a traceback
        main(["generate", "hello"])
    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(
        RuntimeError("[enforce fail] DefaultCPUAllocator: not enough memory: you tried to allocate 8 bytes")
    )
    assert not is_out_of_memory(ValueError("can't allocate memory"))  # an input error, not an allocation


def test_special_token_text_in_user_text_is_plain_text_everywhere(capsys):
    # one rule (sumi.tokenization.encode_user_text): generate, the server and evaluation encode the
    # literal text of a special token as characters, as data prepare encodes documents
    import copy
    import json

    import sumi
    from sumi.cli import main
    from sumi.tokenization import encode_user_text

    _, tok = sumi.load("demo")
    text = "a <|endoftext|> b"
    ids = encode_user_text(tok, text)
    assert tok.eos_token_id not in ids and tok.decode(ids) == text
    backend = copy.deepcopy(tok.backend_tokenizer)  # how data prepare encodes a document
    backend.encode_special_tokens = True
    assert backend.encode(text, add_special_tokens=False).ids == ids
    assert main(["generate", "--steps", "1", "-n", "2", "--seed", "0", "--format", "jsonl", text]) == 0
    record = json.loads(capsys.readouterr().out.splitlines()[0])
    assert record["prompt_ids"] == [tok.bos_token_id] + ids


def test_a_full_disk_while_saving_a_checkpoint_is_one_line_and_keeps_the_earlier_ones(
    recipe, tmp_path, capsys, monkeypatch
):
    import errno

    from sumi.cli import main
    from sumi.training import checkpoint as ckpt

    run = tmp_path / "run"
    assert main(["train", str(recipe), f"out_dir={run}"]) == 0  # step 1 saved
    real = ckpt.save_checkpoint

    def full_disk(root, step, *args, **kwargs):
        (Path(root) / (ckpt.checkpoint_name(step) + ".tmp")).mkdir(parents=True)  # a partial folder
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt, "save_checkpoint", full_disk)
    capsys.readouterr()
    assert main(["train", str(recipe), "--resume", f"out_dir={run}", "steps=2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()  # (a resume note may come first)
    assert not any("Traceback" in line for line in err) and err[-1].startswith("sumi: error: ")
    assert "no space left on device while writing the checkpoint of step 2" in err[-1]
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["step_0000001"]  # the partial folder removed, the earlier checkpoint kept
    monkeypatch.setattr(ckpt, "save_checkpoint", real)
    assert main(["train", str(recipe), "--resume", f"out_dir={run}", "steps=2"]) == 0


def test_a_binary_recipe_or_a_folder_is_one_line_naming_it(tmp_path, capsys):
    from sumi.cli import main

    binary = tmp_path / "recipe.yaml"
    binary.write_bytes(bytes(range(128, 256)))
    assert main(["train", str(binary)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"recipe {str(binary)!r} is not UTF-8 text" in err[0]
    assert main(["train", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a folder, not a YAML file" in err[0]
