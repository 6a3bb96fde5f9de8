"""Trainer tests (CPU, offline): config validation, schedules, fused loss, overfitting, 1 vs 2
processes, SIGKILL + resume, corrupted checkpoints, export, dry run.

The subprocess tests (marked `slow`, a few seconds each plus interpreter start-up) run the real
entry point, `python -m sumi.training` and `python -m torch.distributed.run --nproc_per_node=2 -m
sumi.training`, with OMP_NUM_THREADS=1 and a free port picked with `socket`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import torchrun_args

from sumi.training import (
    ConfigError,
    SyntheticSource,
    TrainConfig,
    draw_step_noise,
    export_checkpoint,
    find_latest_checkpoint,
    fused_head_loss,
    list_checkpoints,
    lr_at,
    param_groups,
    read_jsonl,
    train,
)

REPO = Path(__file__).resolve().parents[1]

# A tiny run: sumi-tiny, 8 x 32 tokens per step, clean-prefix conditioning on half of the rows,
# WSD with warm-up, eval every 4 steps, a checkpoint every 3 steps (and at the end).
TINY = """\
model: {preset: sumi-tiny}
data: {source: synthetic, seq_len: 32, prefix_fraction: 0.5, prefix_len: 8}
optim: {lr: 3.0e-3, min_lr: 3.0e-4, warmup_steps: 2, decay_fraction: 0.3}
batch: {global_batch_size: 8, micro_batch_size: 8}
steps: 8
seed: 3
device: cpu
num_threads: 1
eval: {every: 4, batches: 1, batch_size: 4, nelbo_samples: 4}
checkpoint: {every: 3, keep_last: 0}
log: {progress: false}
"""


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    src = str(REPO / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "") if env.get("PYTHONPATH") else src
    return env


def _run(args: list[str], cwd: Path, timeout: float = 240, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env or _env(), capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return proc


def _losses(records: list[dict]) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in records if "loss" in r]


def _evals(records: list[dict]) -> list[tuple[int, float]]:
    return [(r["step"], r["val_nelbo"]) for r in records if r.get("kind") == "eval"]


def _close(a: list[tuple[int, float]], b: list[tuple[int, float]], rel: float) -> None:
    assert [s for s, _ in a] == [s for s, _ in b], (a, b)
    for (s, x), (_, y) in zip(a, b):
        assert abs(x - y) <= rel * max(abs(x), abs(y), 1e-12), f"step {s}: {x} vs {y}"


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """One uninterrupted 1-process run of TINY through `python -m sumi.training` (a subprocess)."""
    root = tmp_path_factory.mktemp("baseline")
    (root / "tiny.yaml").write_text(TINY)
    _run(["-m", "sumi.training", "tiny.yaml", "out_dir=run"], cwd=root)
    return root


# ----------------------------------------------------------------------------- config
def test_config_yaml_and_typed_overrides(tmp_path):
    (tmp_path / "r.yaml").write_text(TINY)
    c = TrainConfig.from_yaml(
        tmp_path / "r.yaml",
        [
            "optim.lr=1e-4",
            "optim.betas=0.8,0.9",
            "steps=12",
            "activation_checkpointing=true",
            "eval.batch_size=null",
            "model.overrides.num_hidden_layers=3",
            "dtype=bfloat16",
        ],
    )
    assert c.optim.lr == 1e-4 and isinstance(c.optim.lr, float)
    assert c.optim.betas == (0.8, 0.9) and c.steps == 12 and c.activation_checkpointing is True
    assert c.eval.batch_size is None and c.model.overrides == {"num_hidden_layers": 3}
    assert c.data.prefix_len == 8 and c.dtype == "bfloat16"
    assert c.grad_accum_steps(1) == 1
    c2 = c.with_overrides(["batch.micro_batch_size=2"])
    assert c2.grad_accum_steps(1) == 4 and c2.grad_accum_steps(2) == 2 and c2.grad_accum_steps(4) == 1
    assert TrainConfig.from_dict(c.to_dict()) == c  # round trip


def test_bad_configs_fail_fast_with_the_key(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text(TINY + "optim_extra: 1\n")
    with pytest.raises(ConfigError, match="optim_extra"):
        TrainConfig.from_yaml(tmp_path / "bad.yaml")
    (tmp_path / "bad2.yaml").write_text(TINY.replace("lr: 3.0e-3", "lrr: 3.0e-3"))
    with pytest.raises(ConfigError, match=r"'optim\.lrr'.*did you mean 'lr'"):
        TrainConfig.from_yaml(tmp_path / "bad2.yaml")
    (tmp_path / "ok.yaml").write_text(TINY)
    with pytest.raises(
        ConfigError,
        match=r"'optim\.warmup' in overrides \(did you mean 'warmup_steps'\?\); "
        r"valid keys in section 'optim'",
    ):
        TrainConfig.from_yaml(tmp_path / "ok.yaml", ["optim.warmup=3"])
    with pytest.raises(ConfigError, match=r"'optimm'"):
        TrainConfig.from_yaml(tmp_path / "ok.yaml", ["optimm.lr=3"])
    with pytest.raises(ConfigError, match=r"'optim\.lr'.*expected a number"):
        TrainConfig.from_yaml(tmp_path / "ok.yaml", ["optim.lr=fast"])
    with pytest.raises(ConfigError, match=r"model\.overrides\.hidden_sise.*hidden_size"):
        TrainConfig.from_yaml(tmp_path / "ok.yaml", ["model.overrides.hidden_sise=32"]).validate()
    c = TrainConfig.from_yaml(tmp_path / "ok.yaml", ["batch.global_batch_size=10", "batch.micro_batch_size=4"])
    with pytest.raises(
        ConfigError,
        match=r"batch\.global_batch_size=10 is not divisible by batch\.micro_batch_size=4"
        r" x world size 2 = 8",
    ):
        c.validate(world_size=2)
    # the command line: a one-line error and exit status 2, before any training starts
    from sumi.training.cli import main

    assert (
        main(
            [
                str(tmp_path / "ok.yaml"),
                "batch.global_batch_size=7",
                "batch.micro_batch_size=2",
                f"out_dir={tmp_path / 'never'}",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "batch.global_batch_size=7" in err and "Traceback" not in err
    assert not (tmp_path / "never").exists()
    assert main([str(tmp_path / "bad2.yaml"), "--dry-run"]) == 2
    assert "optim.lrr" in capsys.readouterr().err


def test_lr_schedules():
    c = TrainConfig.from_dict({"optim": {"lr": 1.0, "min_lr": 0.1, "warmup_steps": 10, "decay_fraction": 0.2}})
    lrs = [lr_at(s, 100, c.optim) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(x == 1.0 for x in lrs[10:80])  # stable
    assert lrs[80] == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[80:], lrs[81:]))
    c.optim.schedule = "cosine"
    lrs = [lr_at(s, 100, c.optim) for s in range(100)]
    assert lrs[10] == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.1)
    assert lrs[55] == pytest.approx(0.55, abs=0.02)


def test_weight_decay_groups(tiny_model):
    decay, no_decay = param_groups(tiny_model, 0.1)
    names = {id(p): n for n, p in tiny_model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert "model.embed_tokens.weight" in decayed and "lm_head.weight" in decayed
    assert "model.layers.0.mlp.down_proj.weight" in decayed
    assert all("norm" in names[id(p)] for p in no_decay["params"]) and no_decay["weight_decay"] == 0.0


# ----------------------------------------------------------------------------- noise and loss
def test_noise_is_global_and_prefix_is_clean():
    from sumi.training import DataSection

    data = DataSection(seq_len=16, prefix_fraction=1.0, prefix_len=4)
    n = draw_step_noise(5, 6, 16, 50, data, seed=1)
    n2 = draw_step_noise(5, 6, 16, 50, data, seed=1)
    assert torch.equal(n.replaced, n2.replaced) and torch.equal(n.t, n2.t)  # a function of (seed, step)
    assert not torch.equal(draw_step_noise(6, 6, 16, 50, data, seed=1).t, n.t)
    x = torch.randint(0, 50, (3, 16))
    z, labels, t = n.apply(x, slice(3, 6))
    assert (n.prefix_len >= 1).all() and n.num_scored == 6 * 16 - int(n.prefix_len.sum())
    for i in range(3):
        p = int(n.prefix_len[3 + i])
        assert torch.equal(z[i, :p], x[i, :p]) and (labels[i, :p] == -100).all()
        assert torch.equal(labels[i, p:], x[i, p:])


def test_fused_loss_matches_model_loss(tiny_model):
    torch.manual_seed(0)
    x = torch.randint(0, 256, (2, 24))
    t = torch.rand(2, 24) * 0.9 + 0.05
    z = torch.where(torch.rand(2, 24) < t, torch.randint(0, 256, (2, 24)), x)
    labels = x.clone()
    labels[0, :5] = -100
    m = tiny_model.train()
    ref = m(input_ids=z, labels=labels, t=t).loss * (labels != -100).sum()
    ref.backward()
    ref_grads = [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    hidden = m.model(input_ids=z).last_hidden_state
    out = fused_head_loss(
        hidden.flatten(0, 1),
        m.lm_head.weight,
        z.flatten(),
        labels.flatten(),
        t.flatten(),
        vocab_size=256,
        chunk_tokens=7,
    )
    out.backward()
    assert out.item() == pytest.approx(ref.item(), rel=1e-5)
    for a, b in zip(ref_grads, (p.grad for p in m.parameters())):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------- training
def test_tiny_model_overfits_a_fixed_batch(tmp_path, one_thread):
    """8 fixed random sequences (each seen 4 times per step under different noise): the loss falls
    far below its start. (With t ~ U over the whole log-SNR range and no absolute positions, even a
    perfect memoriser keeps some loss at high t, and a 0.1M-parameter model memorises slowly: the
    mean loss of the last 20 steps is about half that of the first 10.)"""
    cfg = TrainConfig.from_dict(
        {
            "model": {"preset": "sumi-tiny"},
            "data": {"source": "synthetic", "synthetic_kind": "random", "synthetic_sequences": 8, "seq_len": 32},
            "optim": {"lr": 1e-2, "min_lr": 1e-3, "warmup_steps": 0, "decay_fraction": 0.3, "weight_decay": 0.0},
            "batch": {"global_batch_size": 32, "micro_batch_size": 16},  # 2 accumulation steps
            "steps": 300,
            "out_dir": str(tmp_path),
            "device": "cpu",
            "eval": {"at_end": False},
            "checkpoint": {"at_end": False},
            "log": {"progress": False},
        }
    )
    result = train(cfg)
    first = sum(result.losses[:10]) / 10
    last = sum(result.losses[-20:]) / 20
    assert last < 0.6 * first, (first, last)  # measured: ~0.49 for seeds 0 and 1
    assert len(read_jsonl(tmp_path / "train_log.jsonl")) == 300


def test_export_gives_the_trainers_model(tmp_path, one_thread):
    from sumi import SumiForMaskGeneration

    (tmp_path / "r.yaml").write_text(TINY)
    result = train(
        tmp_path / "r.yaml",
        [f"out_dir={tmp_path / 'run'}", "steps=5", "checkpoint.every=2", "checkpoint.keep_last=2", "eval.every=0"],
        return_model=True,
    )
    ckpts = [p.name for _, p in list_checkpoints(tmp_path / "run" / "checkpoints")]
    assert ckpts == ["step_0000005", "step_0000004"]  # keep_last=2
    out = export_checkpoint(tmp_path / "run" / "checkpoints", tmp_path / "export")
    assert (out / "modeling_sumi.py").is_file() and (out / "config.json").is_file()
    loaded = SumiForMaskGeneration.from_pretrained(out).eval()
    trained = result.model
    for (n, a), (_, b) in zip(trained.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), n
    x = torch.randint(0, 256, (2, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(x).logits, trained(x).logits)
    # the trainer's weights moved away from the seeded init
    torch.manual_seed(0)
    assert not torch.equal(trained.lm_head.weight, SumiForMaskGeneration(loaded.config).lm_head.weight)
    # a later stage continues from the exported folder (model.path; the recipe's preset is ignored),
    # loaded in full on the CPU or into meta-device shards: the same weights, the same first loss
    firsts = []
    for init in ("cpu", "meta"):
        r = train(
            tmp_path / "r.yaml",
            [
                f"out_dir={tmp_path / init}",
                f"model.path={out}",
                f"model.init={init}",
                "steps=1",
                "eval.at_end=false",
                "checkpoint.at_end=false",
            ],
            return_model=True,
        )
        for (n, a), (_, b) in zip(r.model.state_dict().items(), loaded.state_dict().items()):
            assert (a - b).abs().max() < 0.01, n  # one AdamW step (lr 1.5e-3) away from the export
        firsts.append(r.losses[0])
    assert firsts[0] == firsts[1]


@pytest.mark.slow
def test_two_processes_match_one_process(baseline, tmp_path):
    """torchrun with 2 gloo ranks, micro-batch 2 and 2 accumulation steps: the same global batch of 8."""
    (tmp_path / "tiny.yaml").write_text(TINY)
    _run(
        torchrun_args("sumi.training", "tiny.yaml", "out_dir=run", "batch.micro_batch_size=2"),
        cwd=tmp_path,
    )
    one = read_jsonl(baseline / "run" / "train_log.jsonl")
    two = read_jsonl(tmp_path / "run" / "train_log.jsonl")
    assert len(_losses(one)) == 8 and len(_evals(one)) == 2
    _close(_losses(two), _losses(one), rel=1e-5)
    _close(_evals(two), _evals(one), rel=1e-5)
    state = json.loads((tmp_path / "run" / "checkpoints" / "step_0000008" / "trainer_state.json").read_text())
    assert state["world_size"] == 2 and state["grad_accum_steps"] == 2


@pytest.mark.slow
def test_sigkill_then_resume_continues_exactly(baseline, tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sumi.training", "tiny.yaml", "out_dir=run", "step_delay_s=0.4"],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    target = tmp_path / "run" / "checkpoints" / "step_0000003" / "manifest.json"
    deadline = time.monotonic() + 180
    while not target.exists():
        assert proc.poll() is None, f"run ended before its first checkpoint:\n{proc.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, "no checkpoint after 180 s"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    killed = read_jsonl(tmp_path / "run" / "train_log.jsonl")
    assert max(s for s, _ in _losses(killed)) < 8  # it really was interrupted

    _run(["-m", "sumi.training", "tiny.yaml", "out_dir=run", "--resume"], cwd=tmp_path)
    resumed = read_jsonl(tmp_path / "run" / "train_log.jsonl")
    expected = read_jsonl(baseline / "run" / "train_log.jsonl")
    assert _losses(resumed) == _losses(expected)  # exact, not approximately
    assert _evals(resumed) == _evals(expected)
    assert [r["grad_norm"] for r in resumed if "loss" in r] == [r["grad_norm"] for r in expected if "loss" in r]


@pytest.mark.slow
def test_truncated_checkpoint_is_detected_and_the_previous_one_used(baseline, tmp_path, caplog, one_thread):
    ckpts = tmp_path / "run" / "checkpoints"
    shutil.copytree(baseline / "run" / "checkpoints", ckpts)
    shutil.copy(baseline / "run" / "train_log.jsonl", tmp_path / "run" / "train_log.jsonl")
    assert [s for s, _ in list_checkpoints(ckpts)] == [8, 6, 3]
    newest = ckpts / "step_0000008" / "__0_0.distcp"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # truncated
    flipped = ckpts / "step_0000006" / "__0_0.distcp"  # same size, one byte changed: only sha256 sees it
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0xFF
    flipped.write_bytes(bytes(data))
    with caplog.at_level(logging.ERROR, logger="sumi.training"):
        assert find_latest_checkpoint(ckpts) == ckpts / "step_0000003"
    text = caplog.text
    assert "step_0000008" in text and "truncated" in text and "step_0000006" in text and "sha256" in text
    assert find_latest_checkpoint(ckpts, checksum=False) == ckpts / "step_0000006"

    (tmp_path / "tiny.yaml").write_text(TINY)
    result = train(tmp_path / "tiny.yaml", [f"out_dir={tmp_path / 'run'}"], resume=True)
    assert result.resumed_from == ckpts / "step_0000003" and result.start_step == 3
    assert [s for s, _ in list_checkpoints(ckpts)] == [8, 6, 3]  # rewritten; the bad ones were moved aside
    assert (ckpts / "step_0000008.corrupt").is_dir() and find_latest_checkpoint(ckpts) == ckpts / "step_0000008"
    expected = read_jsonl(baseline / "run" / "train_log.jsonl")
    _close(_losses(read_jsonl(tmp_path / "run" / "train_log.jsonl")), _losses(expected), rel=1e-6)


def test_fresh_run_refuses_a_folder_with_checkpoints(tmp_path, one_thread):
    (tmp_path / "r.yaml").write_text(TINY)
    args = [f"out_dir={tmp_path / 'run'}", "steps=1", "eval.at_end=false"]
    train(tmp_path / "r.yaml", args)
    with pytest.raises(ConfigError, match=r"--resume.*to export it as it is: sumi export .*checkpoints OUT_DIR"):
        train(tmp_path / "r.yaml", args)


# ----------------------------------------------------------------------------- dry run, recipes, sources
def test_dry_run_sumi_7b(capsys):
    from sumi.training.cli import main

    t0 = time.perf_counter()
    assert main([str(REPO / "recipes" / "sumi-7b.yaml"), "--dry-run", "--world-size", "288"]) == 0
    assert time.perf_counter() - t0 < 20
    out = capsys.readouterr().out
    assert "7,767,543,808 (7.77B)" in out
    assert "4608 sequences x 1184 tokens = 5,455,872 tokens per step" in out
    assert "gradient accumulation 4 steps" in out and "estimated memory per rank" in out
    c = TrainConfig.from_yaml(REPO / "recipes" / "sumi-7b.yaml")
    assert (c.optim.lr, c.optim.min_lr, c.optim.warmup_steps, c.optim.betas) == (2e-4, 2e-5, 2000, (0.9, 0.95))
    assert (c.optim.weight_decay, c.optim.grad_clip, c.dtype, c.optim.schedule) == (0.1, 1.0, "bfloat16", "wsd")
    with pytest.raises(ConfigError, match="global_batch_size=4608"):
        c.validate(world_size=5)


def test_tiny_cpu_recipe_is_valid(capsys):
    from sumi.training.cli import main

    assert main([str(REPO / "recipes" / "tiny-cpu.yaml"), "--dry-run"]) == 0
    assert "sumi-tiny" in capsys.readouterr().out


def test_synthetic_source_follows_the_rank_contract():
    src = SyntheticSource(100)
    whole = next(src.batches(8, 6, seed=1, start_step=2))
    parts = [next(src.batches(8, 3, seed=1, rank=r, world_size=2, start_step=2)) for r in range(2)]
    assert torch.equal(torch.cat(parts), whole)


def test_trains_on_a_packed_dataset(tmp_path, one_thread):
    """The real data path: text -> train_tokenizer -> prepare_dataset -> PackedDataset -> train."""
    from sumi.data import PackedDataset, prepare_dataset, train_tokenizer

    docs = tmp_path / "docs"
    docs.mkdir()
    words = "the quick brown fox jumps over a lazy dog while seven wizards quietly hex jumbo boxes".split()
    for i in range(60):
        text = " ".join(words[(i * 7 + j * 3) % len(words)] for j in range(40 + i % 13))
        (docs / f"doc{i:03d}.txt").write_text(text + "\n")
    files = sorted(docs.glob("*.txt"))
    tok = train_tokenizer(files, tmp_path / "tok", vocab_size=300)
    prepare_dataset(
        docs, tmp_path / "data", tokenizer=str(tmp_path / "tok"), val_fraction=0.3, num_workers=1, progress=False
    )
    assert PackedDataset(tmp_path / "data", "validation").num_tokens > 64
    (tmp_path / "r.yaml").write_text(TINY)
    result = train(
        tmp_path / "r.yaml",
        [
            f"out_dir={tmp_path / 'run'}",
            "data.source=packed",
            f"data.path={tmp_path / 'data'}",
            "steps=4",
            f"model.overrides.vocab_size={len(tok)}",
            f"model.overrides.bos_token_id={tok.bos_token_id}",
            f"model.overrides.eos_token_id={tok.eos_token_id}",
            f"model.overrides.pad_token_id={tok.pad_token_id}",
            "checkpoint.every=0",
            "eval.batch_size=2",
        ],
    )
    assert len(result.losses) == 4 and all(0 < x < 10 for x in result.losses)
    assert [e["step"] for e in result.evals] == [4] and result.evals[0]["val_nelbo"] > 0
    state = json.loads((result.checkpoint / "trainer_state.json").read_text())
    assert state["data"]["rows_consumed"] == 4 * 8 and state["data"]["next_batch_index"] == 4


@pytest.mark.slow
def test_bench_train_quick(tmp_path):
    """benchmarks/bench_train.py --quick runs and prints its table (timings are not checked)."""
    out_json = tmp_path / "bench_train.json"
    proc = _run([str(REPO / "benchmarks" / "bench_train.py"), "--quick", "--json", str(out_json)], cwd=REPO)
    assert "| path | dtype | step (s) | tokens/s | achieved GFLOP/s | % of matmul peak |" in proc.stdout
    for dtype in ("float32", "bfloat16"):
        assert f"| sumi trainer | {dtype} |" in proc.stdout and f"| plain loop | {dtype} |" in proc.stdout
    rows = json.loads(out_json.read_text())["rows"]
    assert len(rows) == 4 and all(r["loss_rel_diff"] < 1e-3 for r in rows if "loss_rel_diff" in r)
