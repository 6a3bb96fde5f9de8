"""Smoke test of the benchmark scripts: they run and print their table (timings are not checked)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# each runs a benchmark script in a subprocess: `make test-fast` leaves them out, `make test` (CI) runs them
pytestmark = pytest.mark.slow


def run_quick(script: str, tmp_path: Path, timeout: float, *args: str, **env_extra) -> tuple[str, dict]:
    """Run `benchmarks/<script> --quick --json ... [args]`; returns its stdout and the JSON it wrote."""
    out_json = tmp_path / f"{script}.json"
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", **env_extra)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--json", str(out_json), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout, json.loads(out_json.read_text())


def test_bench_core_quick(tmp_path):
    out, data = run_quick("bench_core.py", tmp_path, 120)
    assert "| measurement | canvas | dtype | official-style | sumi | ratio | notes |" in out
    assert "matmul" in out and "torch" in out
    for dtype in ("float32", "bfloat16"):
        for what in (
            "forward",
            "attention scores, 1 layer",
            "generate, per step (K=2)",
            "sampling only, step 64/128",
            "whole step 64/128 (forward + sampling)",
            "sampling only, step 0/2",
            "forward FLOP rate",
            "attention peak memory, 1 layer",
            "adaptive sampling only, T = 0",
        ):
            assert f"| {what} | 64 | {dtype} |" in out, f"missing row {what!r} / {dtype}:\n{out}"
    assert len(data["rows"]) == 18 and data["machine"]["torch"]
    assert "same canvas: yes" in out  # the adaptive rows: dense reference and adaptive_step agree


def test_bench_load_quick(tmp_path):
    out, data = run_quick("bench_load.py", tmp_path, 180, TMPDIR=str(tmp_path))
    assert "| file → model | layout | loader | load | load + first read | peak RSS |" in out
    assert "cores" in out and "torch" in out
    for case in ("bf16 → bfloat16", "bf16 → float32", "fp32 → float32", "fp32 → bfloat16"):
        for layout in ("sharded", "single"):
            for loader in ("sumi", "transformers"):
                assert f"| {case} | {layout} | {loader} |" in out, f"missing row {case} / {layout} / {loader}:\n{out}"
    assert len(data["rows"]) == 16 and data["machine"]["torch"]
    assert all(r["same_weights"] for r in data["rows"])
    assert not list(tmp_path.glob("bench_load_*")), "the temporary checkpoints were not removed"


def test_bench_early_exit_quick(tmp_path):
    out, data = run_quick("bench_early_exit.py", tmp_path, 180)
    assert "| sampler | variant | row-forwards |" in out and "torch" in out
    variants = {(r["sampler"], r["variant"]) for r in data["rows"]}
    cycles = {"stop on cycle", "skip tail + stop on cycle"}
    assert variants == {
        (s, v)
        for s in ("ancestral", "adaptive", "greedy")
        for v in ["official", "early exit", "skip tail", "both"] + ([] if s == "ancestral" else sorted(cycles))
    }
    for r in data["rows"]:
        skips = r["variant"] in ("skip tail", "both", "skip tail + stop on cycle")
        assert r["forward_tokens"] <= 4 * 48 and skips == (r["forward_tokens"] < 4 * 48)
        assert r["identical"] or r["sampler"] == "ancestral"  # exact early exits: the same samples


def test_bench_attention_quick(tmp_path):
    from sumi import kernels

    if not kernels._cpu_has_flags():
        pytest.skip("needs a CPU with AVX512-BF16 (the script exits 1 and says so elsewhere)")
    out, data = run_quick("bench_attention.py", tmp_path, 120)
    assert "| shape | B, h / KV heads, S, d | SDPA | sumi kernel | ratio | max abs diff |" in out and "torch" in out
    assert len(data["rows"]) == 2 and all(r["max_abs_diff"] < 0.05 for r in data["rows"])


def test_bench_serve_quick(tmp_path):
    out, data = run_quick("bench_serve.py", tmp_path, 180)
    assert "| clients | requests | errors | answer tokens/s | vs sequential |" in out and "torch" in out
    assert [r["clients"] for r in data["rows"]] == [
        "sequential (generate)",
        "sequential (generate, batch-invariant)",
        1,
        2,
    ]
    served = data["rows"][2:]
    assert all(r["errors"] == 0 and r["identical"] for r in served)  # batching never changes an answer
    assert all(r["tokens_per_s"] > 0 for r in data["rows"])


def test_bench_canvas_length_quick(tmp_path):
    text = tmp_path / "held_out.txt"  # the smoke run scores a text file, not the prepared data
    text.write_text((ROOT / "README.md").read_text(encoding="utf-8")[:4000], encoding="utf-8")
    plot = tmp_path / "canvas-length.png"
    out, data = run_quick("bench_canvas_length.py", tmp_path, 240, "--data", str(text), "--plot", str(plot))
    assert "| canvas L | windows × t samples | NELBO nats/token |" in out
    assert "| canvas L | tail | judge gen. PPL" in out
    assert "| variant | canvas L | edits/step | fit | exact match |" in out and "torch" in out
    assert [r["canvas"] for r in data["nelbo"]["rows"]] == [32, 64]
    assert all(r["tokens"] == 64 and math.isfinite(r["nats_per_token"]) for r in data["nelbo"]["rows"])
    assert [(r["canvas"], r["tail"]) for r in data["generation"]["rows"]] == [(19, 0), (32, 13)]
    assert all(lo <= r["gen_ppl"] <= hi for r in data["generation"]["rows"] for lo, hi in [r["gen_ppl_ci95"]])
    rows = data["instruct"]["rows"]
    assert {(r["variant"], r["canvas"]) for r in rows} == {(v, L) for v in ("config", "edits scale") for L in (96, 160)}
    at_160 = [r for r in rows if r["canvas"] == 160]  # the training length: every prompt fits, edits unscaled
    assert all(r["fit"] == r["n"] == 6 for r in at_160) and at_160[0]["accuracy"] == at_160[1]["accuracy"]
    assert all(r["forward_positions"] <= r["forwards"] * r["canvas"] for r in rows if r["fit"])
    assert data["weights"]["base"]["sha256"] and plot.stat().st_size > 0
