"""`sumi analyze` and `run_analysis` end to end on the random-weight sumi-tiny preset: JSON, PNG plots,
report, trajectory files, reloading them, and the optional AR judge."""

import json
from pathlib import Path

import pytest
import torch

from sumi.cli import main

FAST = [
    "--model",
    "sumi-tiny",
    "--steps",
    "3",
    "--max-new-tokens",
    "6",
    "--canvas-length",
    "20",
    "--nelbo-samples",
    "2",
    "--seed",
    "0",
]
PLOTS = ("commit_heatmap", "overwrite_rate", "round_trip_lengths", "net_change", "confidence_entropy")


def assert_png(path, min_bytes=5000):
    path = Path(path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > min_bytes, (path, len(data))
    try:
        from PIL import Image
    except ImportError:
        return
    with Image.open(path) as im:
        im.verify()
        assert im.size[0] > 300 and im.size[1] > 150


@pytest.fixture(scope="module")
def greedy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("analyze_greedy")
    rc = main(
        ["analyze", *FAST, "--sampler", "greedy", "--budgets", "1,2,3", "--samples", "2", "--out", str(out), "Hi"]
    )
    assert rc == 0
    return out


def test_analyze_end_to_end_writes_json_plots_report(greedy_run, capsys):
    out = greedy_run
    result = json.loads((out / "metrics.json").read_text())
    assert result["kind"] == "run" and len(result["analyses"]) == 1
    a = result["analyses"][0]
    s = a["summary"]
    assert s["num_rows"] == 2 and s["num_steps"] == 9 and s["num_positions"] == 12  # 2 rows x 6 tokens
    assert s["window"]["start"] == 3 and s["window"]["steps"] == 6
    assert len(a["per_step"]["overwrite_rate"]) == 9 and len(a["per_canvas"]["net_change_to_final"]) == 10
    study = result["budget_study"]
    assert study["sampler"] == "greedy" and study["budget_steps"] == [3, 6, 9] and study["nominal_steps"] == 3
    assert [r["steps"] for r in study["runs"]] == [3, 6, 9]
    for r in study["runs"]:
        assert r["quality"]["self_nelbo"] > 0 and "overwrote tokens" in r["claim"] and "net change" in r["claim"]
    assert study["runs"][0]["window"] is None and study["runs"][2]["window"]["steps"] == 6
    assert a["metadata"]["model"] == "sumi-tiny" and a["metadata"]["prompt_texts"] == ["Hi", "Hi"]
    assert a["metadata"]["seed"] == [0, 1]
    for name in PLOTS + ("quality_vs_budget",):
        assert_png(out / f"{name}.png")
    report = (out / "report.md").read_text()
    assert "Revision budget" in report and "commit_heatmap.png" in report and "RANDOM weights" in report
    assert (out / "trajectories" / "greedy-9steps.pt").is_file()


def test_analyze_reloads_trajectory_files(greedy_run, tmp_path, capsys):
    first = json.loads((greedy_run / "metrics.json").read_text())["analyses"][0]
    capsys.readouterr()
    rc = main(
        ["analyze", "--trajectory", str(greedy_run / "trajectories" / "greedy-9steps.pt"), "--out", str(tmp_path)]
    )
    out, _ = capsys.readouterr()
    assert rc == 0 and "greedy-9steps" in out
    again = json.loads((tmp_path / "metrics.json").read_text())["analyses"][0]
    for key in ("summary", "per_step", "per_canvas", "commit_steps", "round_trip_length_histogram"):
        assert again[key] == first[key]
    for name in PLOTS:
        assert_png(tmp_path / f"{name}.png")


def test_analyze_ancestral_reports_constant_level_no_ops(tmp_path, capsys):
    rc = main(["analyze", *FAST, "--budgets", "1,2", "--no-save-trajectories", "--out", str(tmp_path), "Hi"])
    out, err = capsys.readouterr()
    assert rc == 0 and "RANDOM weights" in err
    assert "0 tokens changed (no-ops: True)" in out and out.count("overwrote tokens") == 2
    result = json.loads((tmp_path / "metrics.json").read_text())
    study = result["budget_study"]
    assert study["runs"][1]["steps"] == 6 and study["ancestral_constant_level"]["keeps_every_token"]
    assert not (tmp_path / "trajectories").exists()
    assert "no-ops" in (tmp_path / "report.md").read_text()


def test_analyze_input_errors(tmp_path, capsys):
    assert main(["analyze", "--trajectory", str(tmp_path / "missing.pt"), "--out", str(tmp_path)]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["analyze", *FAST, "--judge", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "judge" in capsys.readouterr().err
    assert main(["analyze", *FAST, "--budgets", "1,0", "--out", str(tmp_path)]) == 2
    assert "budgets" in capsys.readouterr().err


@pytest.fixture(scope="module")
def judge_folder(tmp_path_factory):
    """A tiny random Llama causal LM with a byte-level tokenizer: a stand-in for a real AR judge."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    vocab["<s>"] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="<s>")
    folder = tmp_path_factory.mktemp("judge")
    tok.save_pretrained(folder)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=128,
        bos_token_id=vocab["<s>"],
        eos_token_id=vocab["<s>"],
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def test_run_analysis_api_with_judge(judge_folder, tmp_path):
    import sumi
    from sumi.analysis import ARJudge, run_analysis

    judge = ARJudge(judge_folder)
    ppl = judge.perplexity(["Hello"], ["abc"])
    assert ppl["tokens"] == 3 and 1 < ppl["perplexity"] < 10 * 257
    model, tok = sumi.load("sumi-tiny")
    result = run_analysis(
        tmp_path,
        model=model,
        tokenizer=tok,
        model_name="sumi-tiny",
        prompts=["Hi"],
        sampler="adaptive",
        temperature=0.0,
        tokens_per_step=2,
        num_denoising_steps=2,
        max_new_tokens=5,
        canvas_length=16,
        budgets=(1, 2),
        nelbo_samples=2,
        judge=str(judge_folder),
        plots=False,
    )
    runs = result["budget_study"]["runs"]
    assert all(r["quality"]["judge_perplexity"] is None or r["quality"]["judge_perplexity"] > 1 for r in runs)
    assert any(r["quality"]["judge"]["tokens"] > 0 for r in runs)
    assert "judge PPL" in runs[-1]["claim"] or runs[-1]["quality"]["judge_perplexity"] is None
    assert result["budget_study"]["judge"] == str(judge_folder)
    assert (tmp_path / "metrics.json").is_file() and (tmp_path / "report.md").is_file()
    assert not list(tmp_path.glob("*.png"))
