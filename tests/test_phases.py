"""Training phases (`sumi.training.phases`) and the trainer across a phase boundary: lengths in steps or
tokens, lr segments, per-source counts in the log and checkpoints, per-source validation, and (slow)
1 vs 2 processes and SIGKILL + --resume across the boundary."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import torchrun_args
from test_training import _close, _env, _evals, _losses, _run

from sumi.training import ConfigError, TrainConfig, lr_at, read_jsonl, train
from sumi.training.phases import build_plan

# Two synthetic "languages"; phase 1 reads only "general", phase 2 is mostly "code" (a mid-training).
TWO_PHASES = """\
model: {preset: sumi-tiny}
data:
  seq_len: 32
  sources:
    - {name: general, kind: synthetic, grammar_seed: 1}
    - {name: code, kind: synthetic, grammar_seed: 2}
phases:
  - {name: pre, steps: 4, mixture: {general: 1.0}, lr: {schedule: constant, start: 3.0e-3, warmup_steps: 2}}
  - {name: mid, tokens: 1024, mixture: {general: 0.25, code: 0.75}, lr: {schedule: linear, start: 3.0e-3, end: 3.0e-4}}
batch: {global_batch_size: 8, micro_batch_size: 8}
seed: 3
device: cpu
num_threads: 1
eval: {every: 4, batches: 1, batch_size: 4, nelbo_samples: 4}
checkpoint: {every: 3, keep_last: 0}
log: {progress: false}
"""


def _cfg(tmp_path, overrides=()):
    (tmp_path / "two.yaml").write_text(TWO_PHASES)
    return TrainConfig.from_yaml(tmp_path / "two.yaml", list(overrides))


def test_phase_lengths_in_steps_or_tokens(tmp_path):
    c = _cfg(tmp_path)
    assert c.steps == 4 + 4  # 1024 tokens / (8 x 32) = 4 steps
    plan = build_plan(c)
    assert [(p.name, p.start, p.steps) for p in plan.phases] == [("pre", 0, 4), ("mid", 4, 4)]
    assert plan.phases[1].weights == (0.25, 0.75) and plan.phases[0].weights == (1.0, 0.0)
    assert _cfg(tmp_path, ["phases.1.tokens=1100"]).steps == 4 + 5  # rounded up to whole steps
    assert _cfg(tmp_path, ["batch.global_batch_size=4", "batch.micro_batch_size=4"]).steps == 4 + 8
    assert TrainConfig.from_dict(c.to_dict()) == c  # round trip (steps is derived, not stored)
    with pytest.raises(ConfigError, match=r"'steps'.*8 steps long, not 20"):
        _cfg(tmp_path, ["steps=20"])
    with pytest.raises(ConfigError, match=r"'phases\.0'.*exactly one of steps or tokens"):
        _cfg(tmp_path, ["phases.0.tokens=512"])
    with pytest.raises(ConfigError, match=r"'phases\.5' in overrides: 'phases' has 2 entries"):
        _cfg(tmp_path, ["phases.5.steps=1"])
    with pytest.raises(ConfigError, match=r"'phases\.1\.mixture'.*sum to 1\.25"):
        _cfg(tmp_path, ["phases.1.mixture.general=0.5"]).validate()
    with pytest.raises(ConfigError, match=r"'phases\.0\.lr\.schedule'"):
        _cfg(tmp_path, ["phases.0.lr.schedule=wsd"]).validate()


def test_lr_segments_follow_their_definitions(tmp_path):
    c = _cfg(tmp_path)
    plan = build_plan(c)
    lrs = [plan.lr_at(s, c.optim) for s in range(8)]
    assert lrs[:4] == pytest.approx([1.5e-3, 3e-3, 3e-3, 3e-3])  # warm-up 2 steps, then constant
    assert lrs[4:] == pytest.approx([3e-3 + (3e-4 - 3e-3) * i / 3 for i in range(4)])  # linear, end at last step
    cos = build_plan(_cfg(tmp_path, ["phases.1.lr.schedule=cosine"]))
    assert [cos.lr_at(s, c.optim) for s in range(4, 8)] == pytest.approx(
        [3e-4 + (3e-3 - 3e-4) * 0.5 * (1 + math.cos(math.pi * i / 3)) for i in range(4)]
    )
    run = _cfg(
        tmp_path,
        [
            "phases.0.lr.schedule=run",
            "phases.0.lr.start=null",
            "phases.0.lr.warmup_steps=0",
            "phases.1.lr.schedule=run",
            "phases.1.lr.start=null",
            "phases.1.lr.end=null",
        ],
    )
    assert [build_plan(run).lr_at(s, run.optim) for s in range(8)] == [lr_at(s, 8, run.optim) for s in range(8)]


def test_a_two_phase_run_logs_phases_and_source_tokens(tmp_path):
    result = train(_cfg(tmp_path, [f"out_dir={tmp_path / 'run'}"]))
    assert len(result.losses) == 8
    log = read_jsonl(tmp_path / "run" / "train_log.jsonl")
    steps = [r for r in log if "loss" in r]
    assert [r["phase"] for r in steps] == ["pre"] * 4 + ["mid"] * 4
    assert steps[3]["source_tokens"] == {"general": 4 * 8 * 32, "code": 0}
    tok = steps[-1]["source_tokens"]
    assert sum(tok.values()) == 8 * 8 * 32 and tok["code"] == pytest.approx(0.75 * 4 * 8 * 32, abs=32)
    assert [r["phase"] for r in log if r.get("kind") == "phase"] == ["pre", "mid"]
    evals = [r for r in log if r.get("kind") == "eval"]
    assert [(e["step"], e["phase"]) for e in evals] == [(4, "pre"), (8, "mid")]
    for e in evals:
        assert e["val_nelbo"] == pytest.approx((e["val_nelbo/general"] + e["val_nelbo/code"]) / 2)
    state = json.loads((result.checkpoint / "trainer_state.json").read_text())
    assert state["data"]["source_tokens"] == tok and state["data"]["phase"]["name"] == "mid"
    assert state["data"]["phase"]["step_in_phase"] == 4


def test_dry_run_prints_each_phase(tmp_path, capsys):
    from sumi.training.cli import main

    (tmp_path / "two.yaml").write_text(TWO_PHASES)
    assert main([str(tmp_path / "two.yaml"), "--dry-run", "--tokens-per-second", "512"]) == 0
    out = capsys.readouterr().out
    assert "1. pre: steps 0-4 (4 steps = 1.02K tokens); 2 s at 512 tokens/s" in out
    assert "general" in out and "code" in out and "[endless]" in out


@pytest.mark.slow
def test_two_processes_match_one_across_a_phase_boundary(tmp_path):
    (tmp_path / "two.yaml").write_text(TWO_PHASES)
    _run(["-m", "sumi.training", "two.yaml", "out_dir=one"], cwd=tmp_path)
    _run(
        torchrun_args("sumi.training", "two.yaml", "out_dir=two", "batch.micro_batch_size=2"),
        cwd=tmp_path,
    )
    one, two = read_jsonl(tmp_path / "one" / "train_log.jsonl"), read_jsonl(tmp_path / "two" / "train_log.jsonl")
    assert len(_losses(one)) == 8
    _close(_losses(two), _losses(one), rel=1e-5)
    _close(_evals(two), _evals(one), rel=1e-5)
    assert [r["source_tokens"] for r in one if "loss" in r] == [r["source_tokens"] for r in two if "loss" in r]


@pytest.mark.slow
def test_sigkill_and_resume_across_a_phase_boundary_is_exact(tmp_path):
    (tmp_path / "two.yaml").write_text(TWO_PHASES)
    _run(["-m", "sumi.training", "two.yaml", "out_dir=base"], cwd=tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sumi.training", "two.yaml", "out_dir=run", "step_delay_s=0.4"],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    target = tmp_path / "run" / "checkpoints" / "step_0000003" / "manifest.json"  # in phase 1; killed before 8
    deadline = time.monotonic() + 180
    while not target.exists():
        assert proc.poll() is None, f"run ended before its first checkpoint:\n{proc.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, "no checkpoint after 180 s"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert max(s for s, _ in _losses(read_jsonl(tmp_path / "run" / "train_log.jsonl"))) < 8
    _run(["-m", "sumi.training", "two.yaml", "out_dir=run", "--resume"], cwd=tmp_path)
    resumed, base = read_jsonl(tmp_path / "run" / "train_log.jsonl"), read_jsonl(tmp_path / "base" / "train_log.jsonl")
    assert _losses(resumed) == _losses(base) and _evals(resumed) == _evals(base)  # exact
    assert [r["lr"] for r in resumed if "loss" in r] == [r["lr"] for r in base if "loss" in r]
    assert [r["source_tokens"] for r in resumed if "loss" in r] == [r["source_tokens"] for r in base if "loss" in r]
