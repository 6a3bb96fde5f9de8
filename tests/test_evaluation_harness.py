"""The `sumi` model for lm-evaluation-harness: registration, the real lm-eval CLI in a subprocess
on local task YAMLs, and `sumi eval --tasks`."""

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("lm_eval")

from sumi import SumiConfig, SumiForMaskGeneration  # noqa: E402

TASKS_DIR = Path(__file__).parent / "fixtures" / "eval" / "lm_eval_tasks"
TASKS = "sumi_fixture_mc,sumi_fixture_gen,sumi_fixture_rolling"


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_model")
    torch.manual_seed(0)
    SumiForMaskGeneration(SumiConfig.from_preset("sumi-tiny")).save_pretrained(path)
    return path


@pytest.fixture
def task_dir(tmp_path, monkeypatch):
    """A copy of the local task YAMLs (their data paths are relative) as the working directory,
    with the datasets cache inside tmp_path."""
    work = tmp_path / "tasks"
    shutil.copytree(TASKS_DIR, work)
    monkeypatch.chdir(work)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_datasets"))
    return work


def test_registration_and_console_script():
    import lm_eval.api.registry as registry

    import sumi.evaluation.harness as harness

    assert registry.get_model("sumi") is harness.SumiLM
    scripts = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="console_scripts")}
    assert scripts.get("sumi-lm-eval") == "sumi.evaluation.harness:main"


def test_lm_eval_cli_runs_the_plugin(saved_model, task_dir, tmp_path):
    out = tmp_path / "out"
    env = dict(
        os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false"
    )
    args = [
        "--model",
        "sumi",
        "--model_args",
        f"pretrained={saved_model},num_samples=4,num_denoising_steps=4,canvas_length=96,seed=7",
        "--tasks",
        TASKS,
        "--include_path",
        str(task_dir),
        "--output_path",
        str(out),
        "--log_samples",
        "--device",
        "cpu",
        "--batch_size",
        "2",
    ]
    # lm-eval's own CLI (lm_eval.__main__.cli_evaluate), unchanged, with "sumi" registered first
    proc = subprocess.run(
        [sys.executable, "-m", "sumi.evaluation.harness", *args],
        cwd=task_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results_file = next(out.rglob("results_*.json"))
    res = json.loads(results_file.read_text())
    r = res["results"]
    assert 0.0 <= r["sumi_fixture_mc"]["acc,none"] <= 1.0 and 0.0 <= r["sumi_fixture_mc"]["acc_norm,none"] <= 1.0
    assert r["sumi_fixture_gen"]["exact_match,none"] in (0.0, 0.5, 1.0)
    assert r["sumi_fixture_rolling"]["bits_per_byte,none"] > 0
    assert res["config"]["model"] == "sumi"
    # the generations were cut at the task's stop string ("\n") and kept within max_gen_toks (bytes here)
    gen_samples = [json.loads(line) for line in next(out.rglob("samples_sumi_fixture_gen_*.jsonl")).open()]
    for s in gen_samples:
        text = s["resps"][0][0]
        assert "\n" not in text and len(text.encode("utf-8", "surrogatepass")) <= 12 * 3
    # multiple-choice log-likelihoods are negative finite numbers
    mc_samples = [json.loads(line) for line in next(out.rglob("samples_sumi_fixture_mc_*.jsonl")).open()]
    lls = [float(resp[0][0]) for s in mc_samples for resp in s["resps"]]
    assert len(lls) == 9 and all(ll < 0 for ll in lls)


def test_sumi_eval_tasks_uses_lm_eval_in_process(saved_model, task_dir, tmp_path, capsys):
    from sumi.cli import main

    out = tmp_path / "res"
    rc = main(
        [
            "eval",
            "--tasks",
            "sumi_fixture_mc,sumi_fixture_rolling",
            "--include-path",
            str(task_dir),
            "--model",
            str(saved_model),
            "--num-samples",
            "2",
            "--limit",
            "2",
            "--canvas-length",
            "64",
            "--output-dir",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["backend"] == "lm-eval"
    mc = res["results"]["sumi_fixture_mc"]
    assert mc["n"] == 2 and 0.0 <= mc["metrics"]["acc"] <= 1.0 and "acc_stderr" in mc["metrics"]
    assert mc["primary"] == "acc" and "sample_len" not in mc["metrics"]
    assert res["results"]["sumi_fixture_rolling"]["metrics"]["bits_per_byte"] > 0
    assert "| sumi_fixture_mc | acc |" in capsys.readouterr().out
