"""The `sumi` command line, called in-process through `main([...])` (plus one run of the console script)."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sumi import SumiConfig, SumiForMaskGeneration, load_tokenizer
from sumi.cli import main
from sumi.cli.display import LiveCanvas, sanitize, wrap_by_width

FAST = ["--steps", "4", "--canvas-length", "64", "--max-new-tokens", "8", "--seed", "0"]


def run(capsys, *args):
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def jsonl(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def dolma2_folder(tmp_path_factory):
    """A tiny model with the dolma2 vocabulary, saved with Sumi's tokenizer."""
    config = SumiConfig.from_preset(
        "sumi-tiny",
        vocab_size=100278,
        bos_token_id=100256,
        eos_token_id=100257,
        pad_token_id=100277,
        hidden_size=16,
        intermediate_size=32,
        head_dim=8,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("cli_dolma2")
    SumiForMaskGeneration(config).save_pretrained(folder)
    load_tokenizer("dolma2").save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def small_vocab_folder(tmp_path_factory):
    """A model with 100 ids and no tokenizer: no byte-level fallback possible."""
    config = SumiConfig.from_preset("sumi-tiny", vocab_size=100)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("cli_v100")
    SumiForMaskGeneration(config).save_pretrained(folder)
    return folder


# ----------------------------------------------------------------------------- generate
def test_generate_text_on_random_preset(capsys):
    rc, out, err = run(capsys, "generate", "--model", "sumi-tiny", *FAST, "Hello")
    assert rc == 0
    assert out.startswith("Hello") and out.endswith("\n")
    assert "RANDOM weights" in err and "gibberish" in err  # the random-weight notice
    assert "byte-level fallback" in err  # sumi-tiny has no tokenizer
    assert "denoising" in err and "4/4" in err  # the default tqdm bar
    rc2, out2, _ = run(capsys, "generate", "--model", "sumi-tiny", *FAST, "Hello")
    assert rc2 == 0 and out2 == out  # fixed seed: same text


def test_generate_jsonl(capsys):
    rc, out, err = run(
        capsys, "generate", "--model", "sumi-tiny", *FAST, "--format", "jsonl", "Hello", "a longer prompt"
    )
    assert rc == 0
    records = jsonl(out)
    assert [r["prompt"] for r in records] == ["Hello", "a longer prompt"]
    for r in records:
        assert set(r) >= {"prompt", "completion", "prompt_ids", "completion_ids", "settings", "num_forwards", "seconds"}
        assert r["num_forwards"] == 4 and r["seconds"] > 0
        assert r["prompt_ids"][0] == 1  # BOS of sumi-tiny
        assert len(r["completion_ids"]) <= 8 and all(0 <= i < 256 for i in r["completion_ids"])
        s = r["settings"]
        assert s["model"] == "sumi-tiny" and s["model_source"] == "preset" and s["seed"] == 0
        assert s["num_denoising_steps"] == 4 and s["canvas_length"] == 64 and s["sampler"] == "ancestral"
        assert s["tokenizer"] == "bytes"
    assert records[0]["prompt_ids"][1:] == list(b"Hello")


def test_generate_batch_from_prompts_file_is_left_padded(capsys, tmp_path, dolma2_folder, monkeypatch):
    seen = {}
    original = SumiForMaskGeneration.generate

    def spy(self, input_ids=None, attention_mask=None, **kwargs):
        seen.update(input_ids=input_ids.clone(), attention_mask=attention_mask.clone(), kwargs=kwargs)
        return original(self, input_ids, attention_mask, **kwargs)

    monkeypatch.setattr(SumiForMaskGeneration, "generate", spy)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("def f(x):\n\nHello world, this is a longer prompt\nÜnïcödé 🤖\n")
    rc, out, err = run(
        capsys,
        "generate",
        "--model",
        dolma2_folder,
        "--prompts-file",
        prompts,
        "--steps",
        "2",
        "--canvas-length",
        "32",
        "--max-new-tokens",
        "6",
        "--seed",
        "3",
        "--format",
        "jsonl",
    )
    assert rc == 0, err
    assert "RANDOM" not in err  # a saved folder, not a preset
    records = jsonl(out)
    assert [r["prompt"] for r in records] == ["def f(x):", "Hello world, this is a longer prompt", "Ünïcödé 🤖"]
    ids, mask = seen["input_ids"], seen["attention_mask"]
    assert ids.shape[0] == 3  # ONE batch
    assert bool((mask[:, -1] == 1).all()) and int(mask[0, 0]) == 0  # left padding
    assert bool((ids[mask == 0] == 100277).all())
    tok = load_tokenizer("dolma2")
    for i, r in enumerate(records):
        assert r["prompt_ids"] == [100256] + tok(r["prompt"]).input_ids  # BOS + prompt
        assert ids[i][mask[i].bool()].tolist() == r["prompt_ids"]
        assert r["completion"] == tok.decode(r["completion_ids"], skip_special_tokens=True)
        assert r["settings"]["tokenizer"] != "bytes"

    jl = tmp_path / "prompts.jsonl"
    jl.write_text('{"prompt": "one", "id": 1}\n{"prompt": "two"}\n')
    rc, out, err = run(
        capsys,
        "generate",
        "--model",
        dolma2_folder,
        "--prompts-file",
        jl,
        "--steps",
        "1",
        "--canvas-length",
        "16",
        "-n",
        "3",
        "--seed",
        "1",
        "--no-progress",
    )
    assert rc == 0, err
    assert out.startswith("--- 1/2 ---\none") and "--- 2/2 ---\ntwo" in out
    assert err.count("denoising") == 0  # --no-progress


def test_generate_stop_strings_cut_the_text(capsys, dolma2_folder):
    base = [
        "generate",
        "--model",
        dolma2_folder,
        "--steps",
        "2",
        "--canvas-length",
        "32",
        "-n",
        "12",
        "--seed",
        "5",
        "--format",
        "jsonl",
        "--no-progress",
        "Once",
    ]
    rc, out, _ = run(capsys, *base)
    full = jsonl(out)[0]["completion"]
    assert rc == 0 and len(full) > 8
    stop = full[4:7]
    rc, out, _ = run(capsys, *base, "--stop", stop, "--stop", "never-there")
    cut = jsonl(out)[0]
    assert rc == 0 and stop not in cut["completion"] and full.startswith(cut["completion"])
    assert cut["settings"]["stop_strings"] == [stop, "never-there"]


def test_generate_every_sampler_option(capsys):
    rc, out, err = run(
        capsys,
        "generate",
        "--model",
        "sumi-tiny",
        "--steps",
        "3",
        "--canvas-length",
        "32",
        "-n",
        "6",
        "--seed",
        "1,2",
        "--sampler",
        "adaptive",
        "--temperature",
        "0.7",
        "--tokens-per-step",
        "4",
        "--top-k",
        "5",
        "--top-p",
        "0.9",
        "--min-p",
        "0.05",
        "--schedule",
        "cosine",
        "--min-log-snr",
        "-8",
        "--max-log-snr",
        "8",
        "--early-stop",
        "2",
        "--align-rows",
        "--no-trim",
        "--dtype",
        "bfloat16",
        "--attn",
        "eager",
        "--device",
        "cpu",
        "--format",
        "jsonl",
        "hi",
        "longer prompt",
    )
    assert rc == 0, err
    r = jsonl(out)
    assert [x["settings"]["seed"] for x in r] == [1, 2]
    s = r[0]["settings"]
    assert (s["sampler"], s["tokens_per_step"], s["top_k"], s["top_p"], s["min_p"], s["schedule"]) == (
        "adaptive",
        4,
        5,
        0.9,
        0.05,
        "cosine",
    )
    assert (s["align_rows"], s["trim_at_eos"], s["early_stop_patience"], s["dtype"]) == (True, False, 2, "bfloat16")
    assert (s["min_log_snr"], s["max_log_snr"], s["temperature"]) == (-8.0, 8.0, 0.7)
    assert all(len(x["completion_ids"]) == 6 for x in r)  # --no-trim: the whole budget
    rc, out, err = run(
        capsys,
        "generate",
        "--model",
        "sumi-tiny",
        "--steps",
        "2",
        "--canvas-length",
        "32",
        "-n",
        "5",
        "--seed",
        "0",
        "--sampler",
        "greedy",
        "--no-anchors",
        "--frozen",
        "3:65",
        "--denoise-end",
        "20",
        "--format",
        "jsonl",
        "hi",
    )
    assert rc == 0, err
    r = jsonl(out)[0]
    assert r["completion_ids"][0] == 65 and r["settings"]["frozen"] == [[3, 65]]  # BOS h i | A
    full = jsonl(
        run(
            capsys,
            "generate",
            "--model",
            "sumi-tiny",
            "--steps",
            "60",
            "--canvas-length",
            "32",
            "-n",
            "5",
            "--seed",
            "1",
            "--sampler",
            "greedy",
            "--format",
            "jsonl",
            "hi",
        )[1]
    )[0]
    rc, out, err = run(
        capsys,
        "generate",
        "--model",
        "sumi-tiny",
        "--steps",
        "60",
        "--canvas-length",
        "32",
        "-n",
        "5",
        "--seed",
        "1",
        "--sampler",
        "greedy",
        "--stop-on-cycle",
        "--format",
        "jsonl",
        "hi",
    )
    assert rc == 0, err
    early = jsonl(out)[0]  # (with the progress bar on: every row stays in until all have cycled)
    assert early["settings"]["stop_on_cycle"] is True and early["completion_ids"] == full["completion_ids"]
    assert full["num_forwards"] == 60 and early["num_forwards"] < 60
    rc, _, err = run(
        capsys,
        "generate",
        "--model",
        "sumi-tiny",
        "--steps",
        "2",
        "--canvas-length",
        "32",
        "-n",
        "5",
        "--stop-on-cycle",
        "hi",
    )  # ancestral by default: random draws, no exact cycles
    assert rc != 0 and "stop_on_cycle needs a deterministic sampler" in err
    rc, out, err = run(
        capsys,
        "generate",
        "--model",
        "sumi-tiny",
        "--steps",
        "2",
        "--canvas-length",
        "32",
        "-n",
        "0",
        "--seed",
        "0",
        "hi",
    )
    assert rc == 0 and out == "hi\n"  # 0 new tokens: the prompt back
    rc, out, err = run(
        capsys,
        "generate",
        "--model",
        "sumi-tiny",
        "--steps",
        "2",
        "--canvas-length",
        "32",
        "-n",
        "4",
        "--seed",
        "0",
        "--no-bos",
        "--format",
        "jsonl",
    )
    assert rc == 0, err
    assert jsonl(out)[0]["prompt_ids"] == [] and jsonl(out)[0]["settings"]["bos_prepended"] is False


def test_generate_token_id_prompts(capsys, small_vocab_folder):
    rc, out, err = run(
        capsys,
        "generate",
        "--model",
        small_vocab_folder,
        "--ids",
        "--steps",
        "2",
        "--canvas-length",
        "32",
        "-n",
        "4",
        "--seed",
        "0",
        "--format",
        "jsonl",
        "5, 6 7",
    )
    assert rc == 0, err
    assert jsonl(out)[0]["prompt_ids"] == [1, 5, 6, 7]


def test_show_steps_without_tty(capsys):
    rc, out, err = run(capsys, "generate", *FAST, "--show-steps", "Hello")
    assert rc == 0 and out.startswith("Hello")
    assert "denoising" in err and "changed=" in err and "top1=" in err
    assert "\x1b[" not in err


class _TTY(io.StringIO):
    def isatty(self):
        return True


def test_show_steps_on_a_tty(capsys, monkeypatch):
    fake = _TTY()
    monkeypatch.setattr(sys, "stderr", fake)
    rc = main(["generate", *FAST, "--show-steps", "Hello", "World"])
    out, _ = capsys.readouterr()
    live = fake.getvalue()
    assert rc == 0 and out.startswith("--- 1/2 ---\nHello")
    assert "\x1b[J" in live and "\x1b[" in live and "F" in live  # cursor up + clear: redrawn in place
    assert "step 1/4" in live and "step 4/4" in live and "[2] " in live
    assert "denoising" not in live  # no tqdm bar on a TTY


def test_live_canvas_frames():
    stream = _TTY()
    z = torch.tensor([[1, 104, 105, 10, 9, 27, 65, 66]])
    canvas = LiveCanvas(stream, lambda ids: bytes(ids).decode("utf-8", "replace"), [(1, 8)], size=(40, 10))
    info = dict(
        step=0,
        num_steps=2,
        log_snr_t=-9.0,
        log_snr_s=0.0,
        z=z,
        top1_z=z,
        top1_prob=torch.full(z.shape, 0.5),
        noise_mask=None,
        selected_pos=None,
    )
    canvas(info)
    canvas(dict(info, step=1))
    text = stream.getvalue()
    assert "step 2/2" in text and "changed 0/7" in text
    assert "hi↵→\ufffdAB" in text  # newline/tab visible, ESC neutralised
    assert text.count("\x1b[3F") == 0 and text.count("\x1b[2F") == 1  # moved up over the 2-line frame
    assert wrap_by_width("日本語abc", 4) == ["日本", "語ab", "c"]
    assert sanitize("a\x1b[2Jb\n") == "a\ufffd[2Jb\n"


# ----------------------------------------------------------------------------- info
def test_info_sumi_7b_counts_without_weights(capsys):
    # counted on the meta device (how long it takes belongs in a benchmark, not here)
    rc, out, err = run(capsys, "info", "sumi-7b")
    assert rc == 0, err
    assert "7,767,543,808" in out and "7.77B" in out and "6.95B" in out
    assert "bfloat16 14.47 GiB" in out and "random weights" in out
    rc, out, _ = run(capsys, "info", "sumi-7b", "--json")
    report = json.loads(out)
    p = report["parameters"]
    assert 7.76e9 < p["total"] < 7.78e9 and 6.94e9 < p["non_embedding"] < 6.96e9
    assert p["embedding"] == p["lm_head"] == 100278 * 4096
    assert report["weights_bytes"]["bfloat16"] == 2 * p["total"] == report["weights_bytes"]["float16"]
    assert report["weights_bytes"]["float32"] == 4 * p["total"]
    act = report["activations"]
    assert act["canvas_length"] == 2048
    assert act["per_dtype"]["float32"]["logits"] == 2048 * 100278 * 4
    assert act["per_dtype"]["bfloat16"]["sampler_fp32"] == 2 * 2048 * 100278 * 4
    assert report["config"]["num_key_value_heads"] == 8 and report["random_weights"] is True


def test_info_on_a_saved_folder(capsys, dolma2_folder):
    rc, out, err = run(capsys, "info", dolma2_folder, "--json")
    assert rc == 0, err
    report = json.loads(out)
    model = SumiForMaskGeneration.from_pretrained(dolma2_folder)
    assert report["parameters"]["total"] == sum(p.numel() for p in model.parameters())
    assert report["source"] == "folder" and report["random_weights"] is False
    assert report["files"]["count"] == 1 and report["files"]["tokenizer"] is True
    assert report["activations"]["canvas_length"] == 256  # capped at max_position_embeddings
    rc, out, _ = run(capsys, "info", dolma2_folder)
    assert rc == 0 and "tokenizer present" in out and "(folder)" in out
    # which attention bf16 inference gets here: the tiny folder's head_dim 16 rules the kernel out
    assert report["cpu_bf16_attention"]["kernel"] == "SDPA" and "bf16 on CPU   attention through SDPA" in out
    assert report["cpu_bf16_attention"]["why_not"]


# ----------------------------------------------------------------------------- errors and help
@pytest.mark.parametrize(
    "args, message",
    [
        (["generate", "--steps", "-3", "x"], "argument --steps/--num-denoising-steps: must be a positive integer"),
        (["generate", "--temperature", "-0.5", "x"], "argument --temperature/-t: must be a number >= 0"),
        (["generate", "--sampler", "beam", "x"], "argument --sampler: invalid choice: 'beam'"),
        (["generate", "--top-p", "1.5", "x"], "argument --top-p: must be in (0, 1]"),
        (["generate", "--max-new-tokens", "lots", "x"], "argument --max-new-tokens/-n: must be an integer >= 0"),
        (["generate", "--model", "./no/such/dir", "x"], "argument --model: unknown model './no/such/dir'"),
        (["generate", "--model", "nope", "x"], "argument --model: unknown model 'nope'"),
        (
            [
                "generate",
                "--model",
                "sumi-tiny",
                "--canvas-length",
                "8",
                "--steps",
                "2",
                "a prompt that is far too long",
            ],
            "argument PROMPT: prompt 1 is 30 tokens",
        ),
        (
            ["generate", "--model", "sumi-tiny", "--ids", "--steps", "2", "--canvas-length", "32", "1 2 999"],
            "argument PROMPT: prompt 1 has token id 999 outside the model's vocabulary [0, 256)",
        ),
        (["generate", "--ids", "--steps", "2", "1 two"], "argument PROMPT: prompt 1 is not a list of token ids"),
        (["generate", "--seed", "1,2", "--steps", "2", "x"], "argument --seed: 2 seeds for 1 prompt(s)"),
        (["generate", "--min-log-snr", "3", "--max-log-snr", "1", "x"], "argument --min-log-snr: must be below"),
        (["generate", "--prompts-file", "/no/such/prompts.txt"], "argument --prompts-file: cannot read"),
        (["generate", "--device", "warp-drive", "x"], "argument --device: invalid device"),
        (["generate", "--frozen", "3", "x"], "argument --frozen: must be POS:ID"),
        (["generate", "--steps", "2", "--canvas-length", "32", "--frozen", "40:1", "x"], "frozen entry (40, 1)"),
        (["info", "nope"], "argument PATH_OR_PRESET: unknown model 'nope'"),
        (["info", "/"], "argument PATH_OR_PRESET: '/' is not a model folder"),
        (["bogus"], "invalid choice: 'bogus'"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(capsys, args, message):
    rc, out, err = run(capsys, *args)
    assert rc == 2
    assert message in err
    assert "Traceback" not in err and out == ""
    assert err.strip().splitlines()[-1].startswith("sumi")  # "sumi: error: ..." / "sumi generate: error: ..."


def test_errors_that_need_a_model(capsys, tmp_path, small_vocab_folder):
    rc, _, err = run(capsys, "generate", "--model", small_vocab_folder, "--steps", "2", "hello")
    assert rc == 2 and "no tokenizer" in err and "byte-level fallback" in err and "--ids" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"text": "no prompt field"}\n')
    rc, _, err = run(capsys, "generate", "--prompts-file", bad, "--steps", "2")
    assert rc == 2 and "line 2" in err and '"prompt"' in err
    rc, _, err = run(capsys, "generate", "--model", tmp_path, "--steps", "2", "x")
    assert rc == 2 and "no config.json" in err
    if not torch.cuda.is_available():
        rc, _, err = run(capsys, "generate", "--device", "cuda", "x")
        assert rc == 2 and "CUDA is not available" in err


def test_offline_hub_id_is_a_clear_error(capsys, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    rc, _, err = run(capsys, "generate", "--model", "sumi-test-owner/no-such-model", "x")
    assert rc == 2 and "offline" in err and "Traceback" not in err


def test_help_explains_uniform_diffusion(capsys):
    rc, out, _ = run(capsys, "--help")
    assert rc == 0 and "random tokens" in out and "generate" in out and "info" in out
    rc, out, _ = run(capsys, "generate", "--help")
    assert rc == 0
    for flag in (
        "--max-new-tokens",
        "--steps",
        "--sampler",
        "--schedule",
        "--temperature",
        "--tokens-per-step",
        "--canvas-length",
        "--no-anchors",
        "--no-trim",
        "--top-k",
        "--top-p",
        "--min-p",
        "--stop",
        "--align-rows",
        "--early-stop",
        "--stop-on-cycle",
        "--min-log-snr",
        "--max-log-snr",
        "--seed",
        "--dtype",
        "--device",
        "--prompts-file",
        "--format",
        "--show-steps",
    ):
        assert flag in out
    assert "denoises every" in out.replace("\n", " ") and "ancestral" in out
    rc, out, _ = run(capsys, "info", "--help")
    assert rc == 0 and "meta device" in out


# ----------------------------------------------------------------------------- the console script
def test_console_script_entry_point(tmp_path):
    exe = Path(sys.executable).with_name("sumi")
    if not exe.exists():
        pytest.skip(f"no console script next to {sys.executable} (package not installed in this environment)")
    env = dict(os.environ, HF_HUB_OFFLINE="1", NO_COLOR="1")
    done = subprocess.run(
        [
            str(exe),
            "generate",
            "--model",
            "sumi-tiny",
            "--steps",
            "2",
            "--canvas-length",
            "32",
            "-n",
            "4",
            "--seed",
            "0",
            "--format",
            "jsonl",
            "Hi",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["prompt"] == "Hi" and record["num_forwards"] == 2
    assert "RANDOM weights" in done.stderr


def test_out_of_memory_is_reported_without_a_traceback(capsys, monkeypatch):
    def oom(self, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")

    monkeypatch.setattr(SumiForMaskGeneration, "generate", oom)
    rc, out, err = run(capsys, "generate", *FAST, "x")
    assert rc == 1 and "out of memory" in err and "--canvas-length" in err and "Traceback" not in err
