"""SFT and chat (issue 15): templates, the synthetic suite, canvases and masking, the SFT loss against a
float64 reference, full and LoRA fine-tuning, SIGKILL + resume, `sumi chat` and `sumi generate --chat`."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_ref_loss import ref_loss

from sumi.chat_template import (
    DEFAULT_CHAT_TEMPLATE,
    chat_prompt_ids,
    check_assistant_marking,
    render_conversation,
)
from sumi.sft_tasks import TASKS, WORD_TASKS, generate_instances, generate_suite, heldout_words
from sumi.tokenization import load_tokenizer
from sumi.training import TrainConfig, read_jsonl, train
from sumi.training.noise import draw_step_noise
from sumi.training.sft import CONTEXT, NOISE_ONLY, TARGET, SFTSource, build_canvases

REPO = Path(__file__).resolve().parents[1]
DEMO = str(REPO / "src" / "sumi" / "assets" / "models" / "demo")


@pytest.fixture(scope="module", params=["demo", "dolma2"])
def tokenizer(request):
    tok = load_tokenizer(DEMO if request.param == "demo" else "dolma2")
    tok.chat_template = DEFAULT_CHAT_TEMPLATE
    return tok


CONVERSATION = [
    {"role": "system", "content": "Be terse."},
    {"role": "user", "content": "Name a colour."},
    {"role": "assistant", "content": "Blue."},
    {"role": "user", "content": "Another, please."},
    {"role": "assistant", "content": "Red, like a rose."},
]


# ----------------------------------------------------------------------------- templates
def test_default_template_marks_exactly_the_answers_and_their_eos(tokenizer):
    check_assistant_marking(tokenizer)
    ids, mask = render_conversation(tokenizer, CONVERSATION)
    marked = [i for i, m in zip(ids, mask) if m]
    expected = (
        tokenizer.encode("Blue.", add_special_tokens=False)
        + [tokenizer.eos_token_id]
        + tokenizer.encode("Red, like a rose.", add_special_tokens=False)
        + [tokenizer.eos_token_id]
    )
    assert marked == expected


def test_template_round_trips_and_the_generation_prompt_is_a_token_prefix(tokenizer):
    text = tokenizer.apply_chat_template(CONVERSATION, tokenize=False)
    assert text == (
        "<|beginoftext|>System:\nBe terse.\nUser:\nName a colour.\nAssistant:\nBlue.<|endoftext|>\n"
        "User:\nAnother, please.\nAssistant:\nRed, like a rose.<|endoftext|>"
    )
    ids, _ = render_conversation(tokenizer, CONVERSATION)
    assert tokenizer.decode(ids) == text
    assert tokenizer.encode(text, add_special_tokens=False) == ids
    for k in (2, 4):  # the prompt before each answer is token for token a prefix of the conversation
        prompt = chat_prompt_ids(tokenizer, CONVERSATION[:k])
        assert ids[: len(prompt)] == prompt
        assert tokenizer.decode(prompt).endswith("Assistant:\n")


def test_a_template_that_does_not_mark_the_assistant_turn_is_rejected():
    tok = load_tokenizer(DEMO)
    tok.chat_template = DEFAULT_CHAT_TEMPLATE.replace("{%- generation -%}", "").replace("{%- endgeneration -%}", "")
    with pytest.raises(ValueError, match="does not mark the assistant turn"):
        check_assistant_marking(tok)
    tok.chat_template = (
        "{% for m in messages %}{% generation %}{{ m['role'] }}: {{ m['content'] }}{% endgeneration %}{% endfor %}"
    )
    with pytest.raises(ValueError, match="turn headers"):
        check_assistant_marking(tok)


def test_unknown_role_is_a_clear_error(tokenizer):
    with pytest.raises(ValueError, match="messages: .*unknown role tool"):
        render_conversation(tokenizer, [{"role": "tool", "content": "x"}])


# ----------------------------------------------------------------------------- the suite
def test_suite_is_deterministic_per_seed_and_its_splits_do_not_overlap():
    for task in TASKS:
        a = generate_instances(task, "train", 300, seed=1)
        assert a == generate_instances(task, "train", 300, seed=1)
        assert a != generate_instances(task, "train", 300, seed=2)
        held = generate_instances(task, "heldout", 100, seed=1)
        assert not {i.user for i in a} & {i.user for i in held}
        assert not {i.user for i in generate_instances(task, "train", 300, seed=9)} & {i.user for i in held}
    hw = heldout_words()
    for task in WORD_TASKS:
        train_words = {w for i in generate_instances(task, "train", 300) for w in i.user.split(":", 1)[1].split()}
        assert not train_words & hw
        for inst in generate_instances(task, "heldout_words", 50):
            assert set(inst.user.split(":", 1)[1].split()) <= hw


def test_train_broad_widens_the_words_but_keeps_heldout_words_and_instances_out():
    from sumi.sft_tasks import lexicon

    hw, lex = heldout_words(), set(lexicon())
    assert len(lex) > 2000 and not lex & hw
    for task in TASKS:
        broad = generate_instances(task, "train_broad", 400, seed=1)
        assert broad == generate_instances(task, "train_broad", 400, seed=1)
        held = {i.user for i in generate_instances(task, "heldout", 200, seed=1)}
        assert not {i.user for i in broad} & held
        if task in WORD_TASKS:
            words = [w for i in broad for w in i.user.split(":", 1)[1].split()]
            assert not set(words) & hw
            seen = {w for i in generate_instances(task, "train", 400, seed=1) for w in i.user.split(":", 1)[1].split()}
            new = [w for w in words if w not in seen]
            assert 0.3 < len(new) / len(words) < 0.7  # about BROAD_WORD_FRACTION from the lexicon
            assert any(w not in lex for w in new)  # glued compounds


@pytest.mark.parametrize("split", ["train_focus", "train_sort"])
def test_weighted_splits_lean_on_hard_instances_and_keep_heldout_out(split):
    import re
    from collections import Counter

    from sumi.sft_tasks import SPLIT_WEIGHTS, generate_suite

    weights = SPLIT_WEIGHTS[split]
    assert weights["sort"] > 1 and sum(weights.values()) > len(TASKS)
    suite = generate_suite(split, 300, seed=1)
    assert suite == generate_suite(split, 300, seed=1)
    assert Counter(i.task for i in suite) == {t: 300 * w for t, w in weights.items()}
    assert Counter(i.task for i in suite[: sum(weights.values())]) == weights  # every prefix round mixed
    hw = heldout_words()

    def share(name: str, task: str, hard) -> float:
        insts = generate_instances(task, name, 600, seed=1)
        return sum(map(hard, insts)) / len(insts)

    def numbers(inst):
        return [int(n) for n in re.findall(r"\d+", inst.user)]

    one_digit = lambda i: min(numbers(i)) < 10  # noqa: E731
    assert share(split, "add", one_digit) > share("train_broad", "add", one_digit) + 0.15
    assert share(split, "sort", one_digit) > share("train_broad", "sort", one_digit) + 0.15
    long_text = lambda i: int(i.answer) >= 6  # noqa: E731
    assert share(split, "count", long_text) > share("train_broad", "count", long_text) + 0.2
    for task in TASKS:
        drawn = generate_instances(task, split, 600, seed=1)
        for inst in drawn:  # the answers are still right
            if task == "add":
                assert int(inst.answer) == sum(numbers(inst))
            if task == "sort":
                assert inst.answer == ", ".join(map(str, sorted(numbers(inst))))
        assert not {i.user for i in drawn} & {i.user for i in generate_instances(task, "heldout", 200, seed=1)}
        if task in WORD_TASKS:
            assert not {w for i in drawn for w in i.user.split(":", 1)[1].split()} & hw


def test_split_digits_writes_numbers_digit_by_digit_and_round_trips(tmp_path):
    from sumi.tokenization import split_digits

    tok = load_tokenizer(DEMO)
    text = "What is 57 plus 138?\n110, 9"
    before = tok(text)["input_ids"]
    assert split_digits(split_digits(tok)) is tok  # idempotent
    ids = tok(text)["input_ids"]
    pieces = tok.convert_ids_to_tokens(ids)
    digits = [p.lstrip("\u0120") for p in pieces if any(c.isdigit() for c in p)]
    assert digits == list("571381109"), pieces
    assert ids != before and tok.decode(ids) == text
    tok.save_pretrained(tmp_path / "tok")
    assert load_tokenizer(str(tmp_path / "tok"))(text)["input_ids"] == ids


def test_split_letters_spells_words_and_leaves_special_tokens_whole(tmp_path):
    from sumi.tokenization import split_digits, split_letters

    tok = split_digits(load_tokenizer(DEMO))
    text = "Write this: cat, HELLO 42"
    assert split_letters(split_letters(tok)) is tok  # idempotent
    ids = tok(text)["input_ids"]
    # one token per character (ASCII: one byte each), whatever the tokenizer's merges
    assert [tok.decode([i]) for i in ids] == list(text)
    assert tok.decode(ids) == text
    assert tok.decode(tok("Élan")["input_ids"]) == "Élan"  # a two-byte letter still round-trips
    # upper-casing maps token to token: the same number of tokens, position by position
    low, up = tok("hello world")["input_ids"], tok("HELLO WORLD")["input_ids"]
    assert len(low) == len(up) == len("hello world")
    eos = tok.eos_token
    assert tok.convert_ids_to_tokens(tok(f"ab{eos}")["input_ids"])[-1] == eos  # special token whole
    tok.save_pretrained(tmp_path / "tok")
    again = load_tokenizer(str(tmp_path / "tok"))
    assert again(text)["input_ids"] == ids
    assert split_letters(again).backend_tokenizer.pre_tokenizer.__repr__().count("Split(") == 1


def test_suite_answers_follow_the_task_definitions():
    for inst in generate_suite("heldout", 20, seed=3):
        body = inst.user.split(":", 1)[-1].strip()
        if inst.task == "add":
            a, b = map(int, inst.user.removeprefix("What is ").removesuffix("?").split(" plus "))
            assert inst.answer == str(a + b) and 0 <= a <= 99 and 0 <= b <= 99
        elif inst.task == "sort":
            nums = [int(n) for n in body.split(", ")]
            assert 3 <= len(nums) <= 6 and inst.answer == ", ".join(str(n) for n in sorted(nums))
        elif inst.task == "upper":
            assert inst.answer == body.upper() and 2 <= len(body.split()) <= 5
        elif inst.task == "repeat":
            assert inst.answer == body and 2 <= len(body.split()) <= 8
        elif inst.task == "last":
            assert inst.answer == body.split()[-1]
        else:
            assert inst.answer == str(len(body.split()))


# ----------------------------------------------------------------------------- canvases and masks
def _sft_config(**sft) -> TrainConfig:
    return TrainConfig.from_dict(
        {"task": "sft", "model": {"path": DEMO}, "data": {"seq_len": 64}, "sft": {"data": "suite:train:4", **sft}}
    )


@pytest.mark.parametrize("padding", ["eos", "none", "pad"])
@pytest.mark.parametrize("supervise", ["last", "all"])
def test_prompt_positions_are_never_noised_nor_scored(tokenizer, padding, supervise):
    """Every row of every batch, at the highest noise (t ~ 1 everywhere): the rendered prompt is
    intact in z and -100 in the labels; the answer and its EOS are scored."""
    conversations = [inst.messages() for inst in generate_suite("train", 3, seed=0)] + [CONVERSATION]
    sft = _sft_config(padding=padding, supervise=supervise).sft
    examples = build_canvases(conversations, tokenizer, seq_len=64, sft=sft)
    assert len(examples) == len(conversations)
    source = SFTSource(examples)
    data = TrainConfig().data
    data.min_log_snr, data.max_log_snr = -9.0, -8.0  # almost every noisable token replaced
    V = len(tokenizer)
    batches = source.batches(64, 4, seed=0)
    for step in range(6):
        batch = next(batches)
        noise = draw_step_noise(step, 4, 64, V, data, seed=0)
        z, labels, _ = noise.apply(batch, slice(0, 4))
        for row in range(4):
            tokens, roles = batch.tokens[row], batch.roles[row]
            P = int((roles != CONTEXT).nonzero()[0]) if supervise == "last" else None
            context = roles == CONTEXT
            assert torch.equal(z[row][context], tokens[context])
            assert bool((labels[row][context] == -100).all())
            assert bool((labels[row][roles == NOISE_ONLY] == -100).all())
            assert torch.equal(labels[row][roles == TARGET], tokens[roles == TARGET])
            assert (z[row][roles != CONTEXT] != tokens[roles != CONTEXT]).float().mean() > 0.9
            if P is not None:  # the prompt is what generation would be fed
                prompt = tokens[:P].tolist()
                n_eos = int(P + (labels[row][P:] == tokenizer.eos_token_id).nonzero()[0])
                assert tokenizer.decode(prompt).endswith("Assistant:\n")
                assert tokenizer.decode(tokens[P:n_eos]) in {m["content"] for m in CONVERSATION} | {
                    inst.answer for inst in generate_suite("train", 3, seed=0)
                }
            anchors = tokens[context][-2:].tolist()
            assert anchors == [tokenizer.eos_token_id, tokenizer.bos_token_id]


def test_supervise_all_scores_earlier_answers_and_last_does_not(tokenizer):
    def scored(supervise):
        ex = build_canvases(
            [CONVERSATION], tokenizer, seq_len=64, sft=_sft_config(supervise=supervise, padding="none").sft
        )
        return tokenizer.decode(ex.tokens[0][ex.roles[0] == TARGET])

    assert scored("last") == "Red, like a rose.<|endoftext|>"
    assert scored("all") == "Blue.<|endoftext|>Red, like a rose.<|endoftext|>"


def test_conversations_that_do_not_fit_are_dropped_and_none_fitting_is_an_error(tokenizer):
    long = [{"role": "user", "content": "word " * 80}, {"role": "assistant", "content": "ok"}]
    ex = build_canvases([long, CONVERSATION], tokenizer, seq_len=64, sft=_sft_config().sft)
    assert len(ex) == 1
    with pytest.raises(ValueError, match="data.seq_len"):
        build_canvases([long], tokenizer, seq_len=64, sft=_sft_config().sft)


def test_sft_loss_equals_a_float64_reference_on_a_tiny_batch():
    """The trainer's module on a noised SFT batch = the spec's per-token GIDD loss written out in
    float64 loops, summed over the answer positions only."""
    from sumi import SumiConfig, SumiForMaskGeneration
    from sumi.training.loss import DiffusionTrainingModule

    tok = load_tokenizer(DEMO)
    tok.chat_template = DEFAULT_CHAT_TEMPLATE
    torch.manual_seed(0)
    model = SumiForMaskGeneration(SumiConfig.from_preset("sumi-tiny", vocab_size=len(tok))).double()
    convs = [inst.messages() for inst in generate_instances("add", "train", 2)]
    ex = build_canvases(convs, tok, seq_len=32, sft=_sft_config(padding="none").sft)
    batch = SFTSource(ex, shuffle=False).get_batch(0, 32, 2, seed=0)
    g = torch.Generator().manual_seed(1)
    t = torch.rand(2, 1, generator=g).expand(2, 32).contiguous().double()
    replaced = torch.where(torch.rand(2, 32, generator=g) < t, torch.randint(0, len(tok), (2, 32), generator=g), -1)
    z, labels, t = batch.noised(replaced, t)
    got = DiffusionTrainingModule(model)(z, labels, t)
    logits = model(input_ids=z).logits
    want, valid = ref_loss(logits.detach(), z, labels, t, len(tok))
    assert (
        int(valid.sum())
        == batch.num_scored()
        == sum(len(tok.encode(c[-1]["content"], add_special_tokens=False)) + 1 for c in convs)
    )
    assert float(got.detach()) == pytest.approx(float(want.sum()), rel=1e-6)
    assert bool((z[batch.roles == CONTEXT] == batch.tokens[batch.roles == CONTEXT]).all())


# ----------------------------------------------------------------------------- training
SFT_TINY = """\
task: sft
model: {{preset: sumi-tiny, overrides: {{vocab_size: 8192, bos_token_id: 2, eos_token_id: 1}}}}
sft: {{data: "suite:train:16", val_data: "suite:heldout:4", tokenizer: {demo}, lora_r: {lora_r}}}
data: {{seq_len: 64, per_token_fraction: 0.0}}
optim: {{lr: {lr}, warmup_steps: 0, weight_decay: 0.0}}
batch: {{global_batch_size: 8, micro_batch_size: 8}}
steps: {steps}
seed: 0
device: cpu
num_threads: 1
eval: {{every: {every}, batches: 1, batch_size: 12, nelbo_samples: 3}}
checkpoint: {{every: 2, keep_last: 0}}
log: {{progress: false}}
"""


def _recipe(tmp_path: Path, *, lora_r: int = 0, lr: float = 3e-3, steps: int = 8, every: int = 1) -> Path:
    path = tmp_path / f"sft_{lora_r}.yaml"
    path.write_text(SFT_TINY.format(demo=DEMO, lora_r=lora_r, lr=lr, steps=steps, every=every))
    return path


@pytest.mark.parametrize("lora_r", [0, 4])
def test_full_and_lora_sft_lower_the_heldout_loss(tmp_path, lora_r):
    result = train(
        _recipe(tmp_path, lora_r=lora_r, lr=3e-3 if lora_r == 0 else 3e-2),
        [f"out_dir={tmp_path / 'run'}"],
        return_model=True,
    )
    evals = [e["val_nelbo"] for e in result.evals]  # after each step, the first after one step
    assert evals[-1] < (0.9 if lora_r == 0 else 0.97) * evals[0], evals
    names = set(result.model.state_dict())
    assert not any("lora" in n for n in names)  # merged back into plain weights
    if lora_r:  # only the adapters trained: the embedding is the seeded init
        from sumi import SumiConfig, SumiForMaskGeneration

        torch.manual_seed(0)
        cfg = TrainConfig.from_yaml(_recipe(tmp_path, lora_r=lora_r))
        from sumi.seeding import derive_seed

        torch.manual_seed(derive_seed("init", cfg.seed) % (2**62))
        init = SumiForMaskGeneration(
            SumiConfig.from_preset("sumi-tiny", vocab_size=8192, bos_token_id=2, eos_token_id=1)
        )
        assert torch.equal(init.model.embed_tokens.weight, result.model.model.embed_tokens.weight)
        assert not torch.equal(
            init.model.layers[0].self_attn.q_proj.weight, result.model.model.layers[0].self_attn.q_proj.weight
        )


def test_export_writes_a_chat_ready_folder(tmp_path):
    import sumi
    from sumi.training.sft import export_sft

    train(
        _recipe(tmp_path, lora_r=4, steps=2, every=0),
        [f"out_dir={tmp_path / 'run'}", "eval.at_end=false", "sft.split_digits=true", "sft.split_letters=true"],
    )
    out = export_sft(
        tmp_path / "run" / "checkpoints",
        tmp_path / "out",
        generation={"canvas_length": 48, "max_new_tokens": 16, "num_denoising_steps": 3},
    )
    model, tok = sumi.load(str(out))
    assert tok.chat_template == DEFAULT_CHAT_TEMPLATE
    inputs = tok.apply_chat_template(
        [{"role": "user", "content": "What is 1 plus 2?"}], add_generation_prompt=True, return_tensors="pt"
    )
    assert tok.convert_ids_to_tokens(tok("What is 57?")["input_ids"])[-3:] == ["5", "7", "?"]  # split_digits saved
    assert tok.convert_ids_to_tokens(tok("cat")["input_ids"]) == ["c", "a", "t"]  # split_letters saved
    seq = model.generate(**inputs, seed=0).sequences
    assert seq.shape[1] <= inputs["input_ids"].shape[1] + 16
    assert torch.equal(seq[0, : inputs["input_ids"].shape[1]], inputs["input_ids"][0])


def test_sumi_export_of_an_sft_checkpoint_is_chat_ready_and_replaces_only_an_export(tmp_path, capsys):
    """`sumi export` reads the task from the checkpoint: an SFT run gets its tokenizer and its recipe's
    generation settings, as `sumi sft --export` writes them; it replaces an earlier export, nothing else."""
    import json

    from sumi.cli import main as sumi_main
    from sumi.training.sft import export_sft

    generation = {"canvas_length": 48, "max_new_tokens": 16, "num_denoising_steps": 3}
    train(
        _recipe(tmp_path, steps=2, every=0),
        [f"out_dir={tmp_path / 'run'}", "eval.at_end=false", f"sft.generation={json.dumps(generation)}"],
    )
    ckpt = tmp_path / "run" / "checkpoints"
    export_sft(ckpt, tmp_path / "direct", generation=generation)
    assert sumi_main(["export", str(ckpt), str(tmp_path / "cli"), "--dtype", "bfloat16"]) == 0
    written = {p.name for p in (tmp_path / "cli").iterdir()}
    assert written == {p.name for p in (tmp_path / "direct").iterdir()}
    assert {"tokenizer.json", "tokenizer_config.json", "generation_config.json"} <= written
    gen = json.loads((tmp_path / "cli" / "generation_config.json").read_text())
    assert {k: gen[k] for k in generation} == generation
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (tmp_path / "cli" / name).read_text() == (tmp_path / "direct" / name).read_text()
    tok_config = json.loads((tmp_path / "cli" / "tokenizer_config.json").read_text())
    assert "local_files_only" not in tok_config and "is_local" not in tok_config  # offline here, not there
    # again into the same folder: an earlier export is replaced (both ways) ...
    assert sumi_main(["export", str(ckpt), str(tmp_path / "cli")]) == 0
    export_sft(ckpt, tmp_path / "cli", generation=generation)
    # ... a folder holding anything else is not, and says why
    (tmp_path / "cli" / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert sumi_main(["export", str(ckpt), str(tmp_path / "cli")]) == 2
    assert "notes.txt" in capsys.readouterr().err
    assert (tmp_path / "cli" / "notes.txt").read_text() == "mine"


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.mark.slow
def test_sigkill_during_sft_then_resume_gives_the_same_losses(tmp_path):
    recipe = _recipe(tmp_path, steps=6, every=3)
    cmd = [sys.executable, "-m", "sumi.cli", "sft", str(recipe)]
    subprocess.run(cmd + [f"out_dir={tmp_path / 'base'}"], env=_env(), check=True, capture_output=True, timeout=600)
    proc = subprocess.Popen(
        cmd + [f"out_dir={tmp_path / 'run'}", "step_delay_s=1.0"],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    target = tmp_path / "run" / "checkpoints" / "step_0000002" / "manifest.json"
    deadline = time.monotonic() + 300
    while not target.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert max(r["step"] for r in read_jsonl(tmp_path / "run" / "train_log.jsonl") if "loss" in r) < 6
    subprocess.run(
        cmd + [f"out_dir={tmp_path / 'run'}", "--resume"], env=_env(), check=True, capture_output=True, timeout=600
    )

    def losses(run):
        return [(r["step"], r["loss"]) for r in read_jsonl(tmp_path / run / "train_log.jsonl") if "loss" in r]

    resumed = dict(losses("run"))
    assert sorted(resumed) == list(range(1, 7))
    assert resumed == dict(losses("base"))


# ----------------------------------------------------------------------------- chat
def test_sumi_chat_two_turns_through_stdin_keeps_the_history(monkeypatch, capsys):
    from sumi.cli import chat as chat_cli
    from sumi.cli import main

    seen = []
    real = chat_cli.run_turn

    def spy(model, tokenizer, messages, kwargs, **kw):
        seen.append([dict(m) for m in messages])
        return real(model, tokenizer, messages, kwargs, **kw)

    monkeypatch.setattr(chat_cli, "run_turn", spy)
    monkeypatch.setattr(
        sys,
        "stdin",
        io.StringIO(
            "What is 1 plus 2?\n/settings sampler=greedy\nRepeat exactly: a b\n/reset\nHow many words are in: a b c\n"
        ),
    )
    code = main(
        ["chat", "--model", "demo", "--steps", "2", "--canvas-length", "96", "--max-new-tokens", "8", "--seed", "0"]
    )
    assert code == 0
    out = capsys.readouterr().out.splitlines()
    assert "sampler = 'greedy'" in out and "(conversation reset)" in out
    assert [len(m) for m in seen] == [1, 3, 1]  # the second turn carries the first, /reset forgets it
    assert seen[1][0]["content"] == "What is 1 plus 2?" and seen[1][1]["role"] == "assistant"


def test_generate_chat_prints_the_answer_of_one_turn(capsys):
    from sumi.cli import main

    code = main(
        [
            "generate",
            "--model",
            "demo",
            "--chat",
            "What is 1 plus 2?",
            "--steps",
            "2",
            "--canvas-length",
            "64",
            "--seed",
            "0",
        ]
    )
    assert code == 0
    assert capsys.readouterr().out.strip() != ""
    assert main(["generate", "--chat", "hi", "extra prompt"]) == 2
    # --chat prints text: asking it for JSONL is an error that says so, not a silently plain answer
    assert main(["generate", "--model", "demo", "--chat", "hi", "--format", "jsonl"]) == 2
    err = capsys.readouterr().err
    assert "argument --format: --chat prints the answer as text" in err and "Traceback" not in err


def test_sft_config_errors_name_the_key(tmp_path):
    for override, key in (
        ("sft.padding=zeros", "sft.padding"),
        ("sft.supervise=first", "sft.supervise"),
        ("sft.generation={bogus: 1}", "sft.generation"),
        ("task=rl", "task"),
    ):
        cfg = TrainConfig.from_yaml(_recipe(tmp_path), [override])
        with pytest.raises(ValueError, match=key.replace(".", r"\.")):
            cfg.validate()
    with pytest.raises(ValueError, match="expected suite:SPLIT:PER_TASK"):
        from sumi.training.sft import read_conversations

        read_conversations("suite:train")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    with pytest.raises(ValueError, match="bad.jsonl:1: the last message must be the assistant"):
        read_conversations(str(bad))


def test_demo_instruct_answers_heldout_instances_with_its_own_generation_config():
    """The bundled instruct model, `generate(ids, seed=...)` and nothing else: exact match on small
    held-out samples, including words it never saw in fine-tuning (its full scores on 50 per task:
    docs/demo-instruct/), its tokenizer splitting digits and letters."""
    import sumi
    from sumi.sft_tasks import answer_instances, exact_match

    model, tok = sumi.load("demo-instruct")
    assert tok.chat_template == DEFAULT_CHAT_TEMPLATE
    assert tok.convert_ids_to_tokens(tok("57 cat")["input_ids"]) == ["5", "7", "\u0120", "c", "a", "t"]
    for task, split, at_least in (
        ("add", "heldout", 7),
        ("sort", "heldout", 7),
        ("count", "heldout_words", 7),
        ("upper", "heldout_words", 7),
    ):
        instances = generate_instances(task, split, 8, seed=0)
        answers = answer_instances(model, tok, instances, seed=0)
        hits = sum(exact_match(a, i.answer) for a, i in zip(answers, instances))
        assert hits >= at_least, (task, split, list(zip(answers, [i.answer for i in instances])))
