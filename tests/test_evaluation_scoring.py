"""SumiEvaluator (likelihood, generation), the offline runner, `sumi eval`, `sumi perplexity` and
the canvas-length study, on tiny models."""

import json
import math
from pathlib import Path

import pytest
import torch

from sumi import SumiConfig, SumiForMaskGeneration
from sumi.cli import main
from sumi.diffusion import corrupt, sample_t
from sumi.evaluation import SumiEvaluator, cut_at_stop, perplexity_report
from sumi.evaluation.runner import evaluate_task

FIXTURES = Path(__file__).parent / "fixtures" / "eval"
BENCH = FIXTURES / "benchmarks"
DOCS = FIXTURES / "lm_eval_tasks" / "docs.jsonl"

CONTEXT, ANSWER = "The cat sat on", " the mat."


@pytest.fixture(scope="module")
def overfit_model():
    """sumi-tiny overfit on one byte sequence ([BOS] text [EOS][BOS]) with the GIDD loss (~5 s)."""
    torch.manual_seed(0)
    model = SumiForMaskGeneration(SumiConfig.from_preset("sumi-tiny"))
    x = torch.tensor([[1] + list((CONTEXT + ANSWER).encode()) + [2, 1]]).repeat(32, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(300):
        t = sample_t(32, x.shape[1], generator=g)
        loss = model(input_ids=corrupt(x, t, 256, generator=g), labels=x, t=t).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def random_evaluator():
    torch.manual_seed(0)
    return SumiEvaluator(
        SumiForMaskGeneration(SumiConfig.from_preset("sumi-tiny")).eval(),
        num_samples=4,
        num_denoising_steps=4,
        canvas_length=96,
        seed=0,
    )


def test_the_training_text_is_ranked_first(overfit_model):
    ev = SumiEvaluator(overfit_model, num_samples=16, seed=0)
    choices = [" the dog.", ANSWER, " a hat!!", " the hat."]
    lls = [ll for ll, _ in ev.loglikelihood([(CONTEXT, c) for c in choices])]
    assert max(range(4), key=lambda i: lls[i]) == 1
    assert lls[1] > lls[3] + 1.0  # even the near miss is clearly worse
    assert lls[1] > -1.0  # the memorised continuation is nearly certain (-NELBO <= log p <= 0)
    # the anchored layout (EOS, BOS, random tail up to the canvas length) scores too
    ev.set(score_canvas="anchored")
    anchored = [ll for ll, _ in ev.loglikelihood([(CONTEXT, c) for c in choices])]
    assert all(math.isfinite(x) and x <= 0 for x in anchored) and anchored != lls
    ev.set(score_canvas="exact")
    # the same item through the offline multiple-choice scorer: acc and acc_norm both pick it
    from sumi.evaluation.runner import evaluate_mc
    from sumi.evaluation.tasks import MCItem

    metrics, samples = evaluate_mc(ev, [MCItem(0, [CONTEXT], choices, [c.strip() for c in choices], 1)])
    assert metrics["acc"] == 1.0 and metrics["acc_norm"] == 1.0 and samples[0]["pred"] == 1
    # rolling NELBO: the memorised document is far more likely than gibberish of similar length
    memorised, other = ev.rolling_nelbo([CONTEXT + ANSWER, "zq xv kj wpq yyb"])
    assert memorised.num_tokens == len(CONTEXT + ANSWER) and memorised.nelbo < 0.2 * other.nelbo


def test_greedy_check_is_computed_on_request(overfit_model):
    ev = SumiEvaluator(overfit_model, num_samples=2, seed=0, greedy_check=True, num_denoising_steps=8)
    ((ll, greedy),) = ev.loglikelihood([(CONTEXT, " the mat.")])
    assert isinstance(greedy, bool)
    ev.set(greedy_check=False)
    assert ev.loglikelihood([(CONTEXT, " the mat.")])[0][1] is False


def test_encode_pair_follows_lm_eval():
    ev = SumiEvaluator(SumiForMaskGeneration(SumiConfig.from_preset("sumi-tiny")))
    assert ev.encode_pair("Answer: ", "yes") == (list(b"Answer:"), list(b" yes"))
    assert ev.encode_pair("", "yes") == ([], list(b"yes"))
    assert ev._prefix([5]) == [1, 5] and ev._prefix([1, 5]) == [1, 5]


def test_generation_is_deterministic_batch_invariant_and_cut(random_evaluator):
    ev = random_evaluator
    prompts = ["Hello there", "A much longer prompt than the first one", "x"]
    together = ev.generate_tokens([ev.encode(p) for p in prompts], max_gen_toks=10)
    alone = [ev.generate_tokens([ev.encode(p)], max_gen_toks=10)[0] for p in prompts]
    assert together == alone
    assert all(len(x) <= 10 and ev.eos_id not in x for x in together)
    again = ev.generate(prompts, max_gen_toks=10)
    assert again == [ev.decode(x) for x in together]
    # a long prompt is cut from the left so that the answer keeps room on the canvas
    long_out = ev.generate_tokens([list(range(3, 200))], max_gen_toks=40)[0]
    assert len(long_out) <= 40
    assert cut_at_stop("abc\n\nQuestion: x", ["Question:", "\n\n"]) == "abc"
    assert cut_at_stop("abc", None) == "abc" and cut_at_stop("abc", ["", "z"]) == "abc"


def test_perplexity_report(random_evaluator):
    docs = [json.loads(line)["text"] for line in DOCS.read_text().splitlines()]
    r = perplexity_report(random_evaluator, docs, seed=0)
    assert r["num_documents"] == 2 and r["ci_units"] == "windows" and r["num_windows"] >= 3
    assert r["num_tokens"] == sum(len(d.encode()) for d in docs)  # byte-level tokens
    assert r["bits_per_byte"] == pytest.approx(r["nelbo_nats"] / math.log(2) / r["num_bytes"])
    lo, hi = r["nats_per_token_ci95"]
    assert lo <= r["nats_per_token"] <= hi and lo < hi
    assert r["perplexity"] == pytest.approx(math.exp(r["nats_per_token"]))
    assert r["nats_per_token"] > 0 and r["seconds"] > 0


def test_offline_runner_on_fixtures(random_evaluator):
    r = evaluate_task(random_evaluator, "mmlu", BENCH, limit=1)
    assert r["n"] == 1 and r["metrics"]["acc"] in (0.0, 1.0) and "acc_norm" not in r["metrics"]
    assert r["settings"]["truncated_inputs"] == 4  # a 5-shot context and each of 4 answers overflow 96 tokens
    r = evaluate_task(random_evaluator, "gsm8k", BENCH)
    assert r["n"] == 2 and 0.0 <= r["metrics"]["exact_match"] <= 1.0 and r["settings"]["max_gen_toks"] == 256
    assert r["settings"]["truncated_inputs"] == 2  # both few-shot prompts lose their oldest tokens
    assert r["seconds_per_item"] > 0 and len(r["samples"]) == 2
    r = evaluate_task(random_evaluator, "nelbo", nelbo_file=DOCS)
    assert r["primary"] == "bits_per_byte" and r["metrics"]["bits_per_byte"] > 0


def test_sumi_eval_offline_all_and_canvas_study(tmp_path, capsys):
    out = tmp_path / "res"
    rc = main(
        [
            "eval",
            "--offline",
            "all",
            "--data-dir",
            str(BENCH),
            "--model",
            "sumi-tiny",
            "--limit",
            "2",
            "--limit-gen",
            "1",
            "--steps",
            "4",
            "--num-samples",
            "2",
            "--max-gen-toks",
            "16",
            "--allow-code-execution",
            "--output-dir",
            str(out),
            "--log-samples",
            "--no-progress",
        ]
    )
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    assert results["format"] == "sumi-eval/1" and set(results["results"]) == {
        "mmlu",
        "hellaswag",
        "piqa",
        "arc_easy",
        "arc_challenge",
        "winogrande",
        "gsm8k",
        "humaneval",
        "mbpp",
    }
    for name, r in results["results"].items():
        value = r["metrics"][r["primary"]]
        n = 1 if name in ("gsm8k", "humaneval", "mbpp") else 2  # --limit-gen 1, --limit 2
        assert 0.0 <= value <= 1.0 and r["n"] == n and r["seconds_per_item"] > 0, name
    assert results["versions"]["torch"] and results["versions"]["sumi"] == "0.1.0"
    assert results["config"]["limit"] == 2 and results["config"]["limit_gen"] == 1
    assert results["model"]["num_denoising_steps"] == 4
    assert len(results["data_files"]["humaneval.jsonl"]["sha256"]) == 64
    assert (out / "samples_gsm8k.jsonl").is_file()
    table = capsys.readouterr().out
    assert "| mmlu | acc |" in table and "| humaneval | pass@1 |" in table
    assert (out / "results.md").read_text() == table

    study = tmp_path / "study"
    rc = main(
        [
            "eval",
            "--offline",
            "gsm8k,nelbo",
            "--nelbo-file",
            str(DOCS),
            "--data-dir",
            str(BENCH),
            "--model",
            "sumi-tiny",
            "--canvas-lengths",
            "32,64,512",
            "--steps",
            "2",
            "--num-samples",
            "2",
            "--max-gen-toks",
            "8",
            "--output-dir",
            str(study),
            "--no-progress",
        ]
    )
    assert rc == 0
    res = json.loads((study / "results.json").read_text())["canvas_study"]
    assert res["canvas_lengths"] == [32, 64, 512] and res["effective"]["512"] == 256  # sumi-tiny's cap
    assert set(res["tasks"]) == {"gsm8k", "nelbo"} and set(res["tasks"]["nelbo"]) == {"32", "64", "512"}
    png = (study / "canvas_length.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    md = (study / "results.md").read_text()
    assert "| canvas length | gsm8k exact_match | nelbo bits_per_byte |" in md and "512 (capped at 256)" in md


def test_sumi_perplexity_command(tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("Uniform diffusion starts from random tokens.\n\nEvery position is denoised in parallel.\n")
    assert (
        main(
            [
                "perplexity",
                str(text),
                "--model",
                "sumi-tiny",
                "--num-samples",
                "2",
                "--canvas-length",
                "32",
                "--no-progress",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "nats/token" in out and "bits/byte" in out and "95% CI" in out and "upper bound" in out
    report_path = tmp_path / "r.json"
    assert (
        main(
            [
                "perplexity",
                str(DOCS),
                "--model",
                "sumi-tiny",
                "--json",
                "--num-samples",
                "2",
                "--output",
                str(report_path),
                "--no-progress",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["num_documents"] == 2 and report["nelbo_method"] == "stratified-logsnr"
    assert json.loads(report_path.read_text())["nats_per_token"] == report["nats_per_token"]
    assert main(["perplexity", str(tmp_path / "missing.txt"), "--model", "sumi-tiny"]) == 2


def test_sumi_eval_input_errors(tmp_path, capsys):
    assert main(["eval", "--offline", "boolq", "--model", "sumi-tiny"]) == 2
    assert "unknown offline task" in capsys.readouterr().err
    assert main(["eval", "--offline", "nelbo", "--model", "sumi-tiny"]) == 2
    assert "--nelbo-file" in capsys.readouterr().err
    assert main(["eval", "--offline", "mmlu", "--data-dir", str(tmp_path / "nope"), "--model", "sumi-tiny"]) == 2
    assert (
        main(["eval", "--offline", "mmlu", "--data-dir", str(tmp_path), "--model", "sumi-tiny", "--no-progress"]) == 2
    )
    assert "not found" in capsys.readouterr().err
    assert main(["eval", "--offline", "mmlu", "--canvas-lengths", "2,x"]) == 2


def test_real_tokenizer_path():
    """A dolma2-vocabulary model with Sumi's tokenizer (not the byte fallback): BPE pair split,
    scoring, generation with stop strings."""
    from sumi import load_tokenizer

    torch.manual_seed(0)
    cfg = SumiConfig.from_preset(
        "sumi-tiny",
        vocab_size=100278,
        bos_token_id=100256,
        eos_token_id=100257,
        pad_token_id=100277,
        max_position_embeddings=128,
    )
    tok = load_tokenizer("dolma2")
    ev = SumiEvaluator(SumiForMaskGeneration(cfg).eval(), tok, num_samples=2, num_denoising_steps=2, seed=0)
    assert not ev.byte_level and ev.max_length == 128
    ctx, cont = ev.encode_pair("Question: Where?\nAnswer: ", "Paris")
    assert tok.decode(ctx) == "Question: Where?\nAnswer:" and tok.decode(cont) == " Paris"
    ((ll, _),) = ev.loglikelihood([("Question: Where?\nAnswer:", " Paris")])
    assert math.isfinite(ll) and ll < 0
    out = ev.generate(["def f(x):"], max_gen_toks=6, until=["\n"])
    assert isinstance(out[0], str) and "\n" not in out[0]


def test_items_share_random_numbers_and_windows_do_not(random_evaluator):
    """WinoGrande-style items (two contexts, one continuation) get common random numbers through
    their item key; rolling windows get independent ones, so K barely moves the corpus estimate."""
    import numpy as np

    ev = SumiEvaluator(random_evaluator.model, num_samples=8)
    pairs = [
        ("The trophy did not fit because the trophy", " was too big."),
        ("The trophy did not fit because the box", " was too big."),
    ]
    shared, independent = [], []
    for seed in range(12):
        ev.set(seed=seed)
        a, b = ev.loglikelihood(pairs, keys=[("wino", 0), ("wino", 0)])
        shared.append(a[0] - b[0])
        a, b = ev.loglikelihood(pairs)
        independent.append(a[0] - b[0])
    assert np.std(shared) < 0.3 * np.std(independent)

    rng = np.random.default_rng(0)
    doc = bytes(rng.integers(32, 127, size=1200).tolist()).decode()
    ev.set(seed=0, canvas_length=48)
    few = perplexity_report(ev, [doc])
    ev.set(num_samples=32)
    many = perplexity_report(ev, [doc])
    lo, hi = few["nats_per_token_ci95"]
    assert few["num_units"] >= 20 and lo <= many["nats_per_token"] <= hi
