"""Smoke test of the benchmark scripts: they run and print their table (timings are not checked)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_core_quick(tmp_path):
    out_json = tmp_path / "bench_core.json"
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_core.py"), "--quick", "--json", str(out_json)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    out = proc.stdout
    assert "| measurement | canvas | dtype | official-style | sumi | ratio | notes |" in out
    assert "matmul" in out and "torch" in out
    for dtype in ("float32", "bfloat16"):
        for what in ("forward", "attention scores, 1 layer", "generate, per step (K=2)",
                     "sampling only, step 64/128", "sampling only, step 0/2"):
            assert f"| {what} | 64 | {dtype} |" in out, f"missing row {what!r} / {dtype}:\n{out}"
    data = json.loads(out_json.read_text())
    assert len(data["rows"]) == 10 and data["machine"]["torch"]
