"""Canvases that size themselves: `max_new_tokens="auto"` (a probe forward reads where the model puts
EOS), `grow` (an answer pressing against its EOS anchor gets more positions) and `shrink` (an answer
whose EOS settled ends there). The expectations come from a toy model whose EOS and content logits
the test sets by position, so each budget is known in advance; batch invariance through the engine;
the cost counter (`row_positions`); the command line and the server."""

from __future__ import annotations

import json
import os

import pytest
import torch

from sumi import SumiConfig, SumiForMaskGeneration
from sumi.denoising import AUTO_MARGIN, DenoisingEngine

V, BOS, EOS, CONTENT = 256, 1, 2, 7


class Toy(SumiForMaskGeneration):
    """sumi-tiny's logits plus a bias by position: a row whose prompt is `[BOS, L, x]` wants an answer
    of L tokens: EOS (logit +20) at positions >= 3 + L, token CONTENT (logit +`content`) before.
    The small random network underneath keeps the attention, masking and sampling paths real."""

    content = 20.0

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, **kwargs):
        out = super().forward(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, **kwargs)
        B, S = input_ids.shape
        pos = torch.arange(S).expand(B, S) if position_ids is None else position_ids
        length = input_ids.gather(1, (pos == 1).long().argmax(-1, keepdim=True))  # the token at position 1
        eos_zone = pos >= 3 + length
        bias = torch.zeros_like(out.logits)
        bias[..., EOS] = torch.where(eos_zone, 20.0, 0.0)
        bias[..., CONTENT] = torch.where(eos_zone, 0.0, self.content)
        out.logits = out.logits + bias
        return out


@pytest.fixture
def toy(monkeypatch):
    """The toy, with the auto rule at its plainest (the probe's first EOS + AUTO_MARGIN, no floor, no
    share) so that each budget below reads as an answer length plus 4; the default rule has its own test."""
    import sumi.denoising as denoising

    monkeypatch.setattr(denoising, "AUTO_MIN", 1)
    monkeypatch.setattr(denoising, "AUTO_MARGIN_SHARE", 0.0)
    torch.manual_seed(0)
    return Toy(SumiConfig.from_preset("sumi-tiny")).eval()


def budgets_seen(model, prompt, **options) -> tuple[list[list[int]], object]:
    """Each step's budgets (from the progress callback) and the output."""
    seen: list[list[int]] = []
    out = model.generate(torch.tensor(prompt), progress_callback=lambda info: seen.append(info["budgets"]), **options)
    return seen, out


# ----------------------------------------------------------------------------- auto
@pytest.mark.parametrize(
    "rule, cases",
    [
        ((1, 4, 0.0), [(None, 40, 40), (0, 40, 4), (10, 40, 14), (38, 40, 40)]),
        # a floor of 16 and a quarter of the answer as room (at least 4): 2 -> 16, 22 -> 22 + 6, capped
        ((16, 4, 0.25), [(2, 40, 16), (12, 40, 16), (13, 40, 17), (22, 40, 28), (22, 25, 25), (2, 10, 10)]),
    ],
)
def test_auto_budget_rule(monkeypatch, rule, cases):
    import sumi.denoising as denoising

    for name, value in zip(("AUTO_MIN", "AUTO_MARGIN", "AUTO_MARGIN_SHARE"), rule):
        monkeypatch.setattr(denoising, name, value)
    assert [denoising.auto_budget(e, cap) for e, cap, _ in cases] == [want for _, _, want in cases]


def test_auto_budget_is_where_the_model_puts_eos_plus_a_margin(toy):
    out = toy.generate(
        torch.tensor([[BOS, 10, 9], [BOS, 25, 9]]),
        max_new_tokens="auto",
        auto_max_new_tokens=40,
        canvas_length=64,
        num_denoising_steps=4,
        sampler="greedy",
        seed=[0, 1],
    )
    assert out.auto_budgets.tolist() == [10 + AUTO_MARGIN, 25 + AUTO_MARGIN] == out.budgets.tolist()
    assert out.lengths.tolist() == [3 + 10, 3 + 25]  # the answer, cut at the toy's first EOS
    assert (out.sequences[0, 3:13] == CONTENT).all() and (out.sequences[1, 3:28] == CONTENT).all()
    # the probe forward counts: 1 probe + 4 steps; each on the row's canvas up to its BOS anchor
    assert out.num_forwards == 5 and out.row_forwards.tolist() == [5, 5]
    assert out.row_positions.tolist() == [(3 + 40 + 2) + 4 * (3 + 14 + 2), (3 + 40 + 2) + 4 * (3 + 29 + 2)]


def test_default_auto_rule_floors_short_answers_and_gives_long_ones_a_share(toy, monkeypatch):
    import sumi.denoising as denoising

    monkeypatch.undo()  # the package's own rule, not the toy fixture's plain one
    assert (denoising.AUTO_MIN, denoising.AUTO_MARGIN, denoising.AUTO_MARGIN_SHARE) == (16, 4, 1.0)
    prompts = torch.tensor([[BOS, 2, 9], [BOS, 10, 9], [BOS, 25, 9], [BOS, 40, 9]])
    options = dict(max_new_tokens="auto", canvas_length=80, num_denoising_steps=3, sampler="greedy", seed=[0, 1, 2, 3])
    out = toy.generate(prompts, **options)
    # 2 tokens: the floor, 16; 10 and 25: twice the answer; 40: what fits (80 - 3 - 2)
    assert out.auto_budgets.tolist() == [16, 20, 50, 75]
    assert out.lengths.tolist() == [3 + 2, 3 + 10, 3 + 25, 3 + 40]  # the answers still end at the toy's EOS


def test_auto_budget_is_capped_and_falls_back_to_the_cap(toy):
    options = dict(max_new_tokens="auto", canvas_length=64, num_denoising_steps=2, sampler="greedy", seed=[0, 1])
    capped = toy.generate(torch.tensor([[BOS, 10, 9], [BOS, 25, 9]]), auto_max_new_tokens=20, **options)
    assert capped.auto_budgets.tolist() == [14, 20]
    # no EOS predicted anywhere in the probe canvas: the budget is the cap (what fits: 64 - 3 - 2)
    far = toy.generate(torch.tensor([[BOS, 200, 9]]), **dict(options, seed=[0]))
    assert far.auto_budgets.tolist() == [64 - 3 - 2]


def test_more_probe_forwards_are_counted_and_start_from_the_same_canvas(toy):
    options = dict(max_new_tokens="auto", canvas_length=48, num_denoising_steps=3, sampler="ancestral", seed=[5])
    one = toy.generate(torch.tensor([[BOS, 6, 9]]), **options)
    three = toy.generate(torch.tensor([[BOS, 6, 9]]), auto_probe_steps=3, **options)
    assert one.num_forwards == 4 and three.num_forwards == 6
    # the toy's EOS does not depend on the draft: same budget, same initial canvas, same result
    assert three.auto_budgets.tolist() == one.auto_budgets.tolist() == [6 + AUTO_MARGIN]
    assert torch.equal(three.canvas, one.canvas)
    assert three.row_positions.item() - one.row_positions.item() == 2 * (3 + 43 + 2)


# ----------------------------------------------------------------------------- grow
def test_grow_inserts_positions_while_the_answer_presses_the_anchor_and_stops_at_the_cap(toy):
    options = dict(max_new_tokens=8, canvas_length=64, num_denoising_steps=10, sampler="greedy", seed=[0])
    seen, out = budgets_seen(toy, [[BOS, 200, 9]], grow=True, grow_max=30, **options)
    # max(4, n // 4) more each step of the first half (steps 0-4): 8 -> 12 -> 16 -> 20 -> 25 -> 30 (the cap)
    assert [b[0] for b in seen] == [12, 16, 20, 25, 30, 30, 30, 30, 30, 30]
    assert out.budgets.tolist() == [30] and out.lengths.tolist() == [3 + 30]
    assert (out.sequences[0, 3:] == CONTENT).all()  # the grown positions were denoised too
    assert out.canvas[0, 33].item() == EOS and out.canvas[0, 34].item() == BOS  # the anchors moved
    seen, out = budgets_seen(toy, [[BOS, 200, 9]], grow=True, grow_max=18, **options)
    assert max(max(b) for b in seen) == 18 == out.budgets.item()  # never past the cap
    # by default a row grows up to what fits the canvas
    seen, out = budgets_seen(toy, [[BOS, 200, 9]], grow=True, **dict(options, canvas_length=24))
    assert out.budgets.item() == 24 - 3 - 2


def test_grow_leaves_an_answer_alone_that_ends_before_the_anchor_or_is_unsure(toy):
    options = dict(max_new_tokens=20, canvas_length=64, num_denoising_steps=6, sampler="greedy", seed=[0], grow=True)
    out = toy.generate(torch.tensor([[BOS, 5, 9]]), **options)  # EOS from answer position 5 on
    assert out.budgets.tolist() == [20]
    toy.content = 0.0  # the network alone: no confident prediction at the answer's end
    out = toy.generate(torch.tensor([[BOS, 200, 9]]), **options)
    assert out.budgets.tolist() == [20]


# ----------------------------------------------------------------------------- shrink
def test_shrink_ends_a_row_at_its_settled_eos_and_its_positions_fall(toy):
    options = dict(max_new_tokens=20, canvas_length=64, num_denoising_steps=8, sampler="greedy", seed=[0])
    full = toy.generate(torch.tensor([[BOS, 5, 9]]), skip_tail=True, **options)  # (shrink implies skip_tail)
    seen, out = budgets_seen(toy, [[BOS, 5, 9]], shrink=True, shrink_patience=2, **options)
    # greedy writes EOS from answer position 5 at step 0; it sits still at steps 1 and 2: after step 2
    # (more than 2 steps after it appeared) the row ends there
    assert [b[0] for b in seen] == [20, 20, 5, 5, 5, 5, 5, 5]
    assert torch.equal(out.sequences, full.sequences) and out.lengths.tolist() == [3 + 5]
    assert full.row_positions.tolist() == [8 * (3 + 20 + 2)]
    assert out.row_positions.tolist() == [3 * (3 + 20 + 2) + 5 * (3 + 5 + 2)]
    assert out.canvas[0, 8].item() == EOS and out.canvas[0, 9].item() == BOS


def test_shrink_waits_for_the_patience(toy):
    options = dict(max_new_tokens=20, canvas_length=64, num_denoising_steps=8, sampler="greedy", seed=[0], shrink=True)
    for patience, first in [(0, 0), (4, 4), (7, 7)]:
        seen, _ = budgets_seen(toy, [[BOS, 5, 9]], shrink_patience=patience, **options)
        assert [b[0] for b in seen].index(5) == first
    seen, _ = budgets_seen(toy, [[BOS, 5, 9]], shrink_patience=8, **options)
    assert seen[-1] == [20]


def test_a_random_eos_in_the_initial_canvas_does_not_shrink_the_row(toy):
    options = dict(max_new_tokens=30, canvas_length=48, num_denoising_steps=6, sampler="adaptive", temperature=0)
    prompt = torch.tensor([[BOS, 200, 9]])  # the toy predicts CONTENT everywhere: no EOS of its own
    seed = next(
        s for s in range(1000) if (toy.prepare_generation(prompt, seed=[s], **options).canvas[0, 3:33] == EOS).any()
    )
    seen, out = budgets_seen(toy, prompt.tolist(), seed=[seed], shrink=True, shrink_patience=0, **options)
    assert (out.canvas[0, 3:33] == EOS).any()  # (adaptive rewrites 1 position a step: the noise EOS stays)
    assert all(b == [30] for b in seen) and out.budgets.tolist() == [30]


# ----------------------------------------------------------------------------- exactness and invariance
SIZING_JOBS = [
    dict(prompt=[BOS, 10, 9], max_new_tokens="auto", canvas_length=48, num_denoising_steps=6, seed=[1]),
    dict(
        prompt=[BOS, 60, 9], max_new_tokens=6, grow=True, grow_max=20, canvas_length=40, num_denoising_steps=8, seed=3
    ),
    dict(
        prompt=[BOS, 5, 9],
        max_new_tokens=20,
        shrink=True,
        shrink_patience=1,
        canvas_length=32,
        num_denoising_steps=7,
        seed=[2],
    ),
    dict(
        prompt=[[BOS, 8, 9], [BOS, 30, 9]],
        max_new_tokens="auto",
        auto_max_new_tokens=24,
        grow=True,
        shrink=True,
        shrink_patience=0,
        canvas_length=56,
        num_denoising_steps=9,
        temperature=1.5,
        seed=[4, 5],
    ),
    dict(
        prompt=[BOS, 6, 9],
        max_new_tokens="auto",
        grow=True,
        shrink=True,
        sampler="greedy",
        stop_on_cycle=True,
        canvas_length=40,
        num_denoising_steps=12,
        seed=[6],
    ),
    dict(prompt=[BOS, 7, 9, 9], max_new_tokens=10, canvas_length=36, num_denoising_steps=5, seed=[7]),  # no sizing
]


def test_sizing_jobs_sharing_forwards_equal_each_job_alone(toy):
    toy.content = 8.0  # p(CONTENT) ~ 0.9 before the toy's EOS: rows without one in reach grow
    engine = DenoisingEngine(toy)
    jobs = []
    for spec in SIZING_JOBS:
        spec = dict(spec)
        jobs.append(toy.prepare_generation(torch.tensor(spec.pop("prompt")), **spec))
        engine.add(jobs[-1])
    while engine.jobs:
        engine.step()
    # each kind of resizing happened: auto 48 -> 14, grown 6 -> 20, shrunk 20 -> 5, both ways in job 3
    assert jobs[0].auto_budgets == [14] and jobs[1].budgets == [20] and jobs[2].budgets == [5]
    assert jobs[3].auto_budgets == [12, 24] and jobs[3].budgets[0] < 12 < 24 < jobs[3].budgets[1]
    for job, spec in zip(jobs, SIZING_JOBS):
        spec = dict(spec)
        ref = toy.generate(torch.tensor(spec.pop("prompt")), **spec)
        out = job.result()
        assert torch.equal(out.canvas, ref.canvas), spec
        assert torch.equal(out.sequences, ref.sequences) and out.num_forwards == ref.num_forwards, spec
        assert torch.equal(out.row_positions, ref.row_positions) and torch.equal(out.budgets, ref.budgets), spec


def test_a_row_with_its_own_seed_is_the_same_alone_or_in_a_batch(toy):
    options = dict(
        max_new_tokens="auto",
        grow=True,
        shrink=True,
        shrink_patience=1,
        canvas_length=48,
        num_denoising_steps=8,
        align_rows=True,
        top_p=0.95,
    )
    prompts = [[BOS, 12, 9, 9], [0, BOS, 4, 9], [BOS, 30, 9, 9]]  # row 1 left-padded
    mask = [[1, 1, 1, 1], [0, 1, 1, 1], [1, 1, 1, 1]]
    batch = toy.generate(torch.tensor(prompts), attention_mask=torch.tensor(mask), seed=[10, 11, 12], **options)
    for i, (p, m) in enumerate(zip(prompts, mask)):
        real = [t for t, k in zip(p, m) if k]
        alone = toy.generate(torch.tensor([real]), seed=[10 + i], **options)
        n = int(batch.budgets[i])
        assert n == int(alone.budgets[0]) and batch.auto_budgets[i] == alone.auto_budgets[0]
        assert batch.canvas[i, : len(real) + n + 2].tolist() == alone.canvas[0, : len(real) + n + 2].tolist()
        assert batch.row_positions[i] == alone.row_positions[0]


@pytest.mark.parametrize(
    "options",
    [
        dict(max_new_tokens="auto", shrink=True, shrink_patience=1),
        dict(max_new_tokens=6, grow=True, shrink=True, shrink_patience=0),
        dict(max_new_tokens="auto", grow=True, auto_max_new_tokens=12),
    ],
)
def test_stop_on_cycle_stays_exact_with_a_canvas_that_resizes(toy, options):
    toy.content = 8.0
    common = dict(canvas_length=40, num_denoising_steps=30, sampler="greedy", seed=[0, 1], **options)
    prompts = torch.tensor([[BOS, 4, 9], [BOS, 40, 9]])
    early = toy.generate(prompts, stop_on_cycle=True, **common)
    full = toy.generate(prompts, stop_on_cycle=False, **common)
    assert torch.equal(early.canvas, full.canvas) and torch.equal(early.budgets, full.budgets)
    assert early.num_forwards < full.num_forwards


def test_defaults_keep_the_canvas_and_report_its_cost(tiny_model):
    options = dict(max_new_tokens=10, canvas_length=40, num_denoising_steps=4, seed=[0])
    out = tiny_model.generate(torch.tensor([[5, 6, 7]]), **options)
    off = tiny_model.generate(torch.tensor([[5, 6, 7]]), grow=False, shrink=False, **options)
    assert torch.equal(out.canvas, off.canvas) and out.auto_budgets is None
    assert out.budgets.tolist() == [10] and out.row_positions.tolist() == [4 * 40]  # the whole canvas each step
    tail = tiny_model.generate(torch.tensor([[5, 6, 7]]), skip_tail=True, **options)
    assert tail.row_positions.tolist() == [4 * (3 + 10 + 2)]


def test_sizing_implies_skip_tail_and_records_a_consistent_trajectory(toy):
    o = toy.resolve_generation_options(dict(max_new_tokens="auto"))
    assert o["skip_tail"] is True and toy.resolve_generation_options(dict(max_new_tokens=4))["skip_tail"] is False
    out = toy.generate(
        torch.tensor([[BOS, 6, 9]]),
        max_new_tokens=4,
        grow=True,
        shrink=True,
        canvas_length=40,
        num_denoising_steps=6,
        seed=[3],
        record_trajectory=True,
    )
    t = out.trajectory
    assert t.num_steps == 6 and torch.equal(t.canvas(t.num_steps - 1), out.canvas)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(max_new_tokens="lots"), "max_new_tokens must be a non-negative integer or 'auto'"),
        (dict(max_new_tokens="auto", anchor_eosbos=False), "needs the EOS/BOS anchors"),
        (dict(grow=True, frozen=[(5, 3)]), "needs the EOS/BOS anchors"),
        (dict(shrink=True, denoise_end=6), "denoise_end"),
        (dict(grow="yes"), "grow must be true or false"),
        (dict(grow_max=0), "grow_max must be a positive integer"),
        (dict(auto_max_new_tokens=-2), "auto_max_new_tokens must be a positive integer"),
        (dict(auto_probe_steps=0), "auto_probe_steps must be a positive integer"),
        (dict(shrink_patience=-1), "shrink_patience must be a non-negative integer"),
    ],
)
def test_bad_sizing_options_are_rejected_before_any_work(tiny_model, kwargs, match):
    kwargs = dict(dict(max_new_tokens=4, canvas_length=32, num_denoising_steps=2), **kwargs)
    with pytest.raises(ValueError, match=match):
        tiny_model.prepare_generation(torch.tensor([[5, 6]]), **kwargs)


# ----------------------------------------------------------------------------- the command line
def test_generate_command_takes_auto_grow_and_shrink(capsys):
    from sumi.cli import main

    fast = ["--model", "sumi-tiny", "--steps", "3", "--canvas-length", "48", "--seed", "0", "--format", "jsonl"]
    rc = main(["generate", *fast, "--max-new-tokens", "auto", "--auto-max-new-tokens", "20", "--grow", "--shrink",
               "--shrink-patience", "1", "--no-progress", "Hi", "there"])  # fmt: skip
    out, _ = capsys.readouterr()
    records = [json.loads(line) for line in out.splitlines()]
    assert rc == 0 and len(records) == 2
    for r in records:
        s = r["settings"]
        assert s["max_new_tokens"] == "auto" and s["auto_max_new_tokens"] == 20 and s["grow"] and s["shrink"]
        assert s["skip_tail"] is True and s["shrink_patience"] == 1
        assert 1 <= r["budget"] <= 48 - 6 - 2 and r["auto_budget"] <= 20 and r["num_forwards"] == 4
        assert r["positions"] > 0 and len(r["completion_ids"]) <= r["budget"]
    rc = main(["generate", *fast, "--max-new-tokens", "6", "--no-progress", "Hi"])
    plain = json.loads(capsys.readouterr()[0])
    assert rc == 0 and plain["budget"] == 6 and plain["positions"] == 3 * 48 and "auto_budget" not in plain


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--max-new-tokens", "lots"], "must be an integer >= 0 or 'auto'"),
        (["--grow-max", "0"], "--grow-max: must be a positive integer"),
        (["--shrink-patience", "-1"], "--shrink-patience: must be an integer >= 0"),
        (["--auto-probe-steps", "0"], "--auto-probe-steps: must be a positive integer"),
        (["--max-new-tokens", "auto", "--no-anchors"], "needs the EOS/BOS anchors"),
    ],
)
def test_generate_command_rejects_bad_sizing_values(capsys, argv, message):
    from sumi.cli import main

    rc = main(["generate", "--model", "sumi-tiny", "--steps", "2", "--canvas-length", "32", *argv, "Hi"])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err


def test_generate_help_explains_the_sizing_options(capsys):
    from sumi.cli import main

    assert main(["generate", "--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("--max-new-tokens N|auto", "--auto-max-new-tokens", "--grow", "--grow-max", "--shrink"):
        assert flag in text
    assert "canvases that size themselves" in text


# ----------------------------------------------------------------------------- chat
@pytest.fixture(scope="module")
def instruct():
    import sumi

    return sumi.load("demo-instruct")


def chat_reference(instruct, messages, **options) -> tuple[str, object]:
    """The answer `generate()` gives the chat prompt of `messages` (and its output)."""
    from sumi.chat_template import chat_prompt_ids

    model, tok = instruct
    ids = chat_prompt_ids(tok, messages)
    out = model.generate(torch.tensor([ids]), **options)
    return tok.decode(out.sequences[0, len(ids) :].tolist(), skip_special_tokens=True).strip(), out


def test_sumi_chat_settings_max_new_tokens_auto_probes_what_fits(instruct, monkeypatch, capsys):
    import io
    import sys

    from sumi.chat_template import chat_prompt_ids
    from sumi.cli import main

    question = "Sort: pear apple fig"
    turns = f"/settings max_new_tokens=auto\n/settings\n{question}\n/reset\n/settings shrink=true\n{question}\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(turns))
    assert main(["chat", "--model", "demo-instruct", "--seed", "0"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "max_new_tokens = 'auto'" and "max_new_tokens=auto" in out[1]
    assert not [line for line in out if line.startswith("error:")], out
    # auto: the probe's cap is what fits the canvas after the prompt (demo-instruct's generation config)
    messages = [{"role": "user", "content": question}]
    fits = instruct[0].generation_config.canvas_length - len(chat_prompt_ids(instruct[1], messages)) - 2
    auto, ref = chat_reference(instruct, messages, max_new_tokens="auto", seed=0)
    capped, _ = chat_reference(instruct, messages, max_new_tokens="auto", auto_max_new_tokens=fits, seed=0)
    assert auto == capped and ref.auto_budgets.item() < fits  # (the model puts EOS early: a smaller canvas)
    shrunk, _ = chat_reference(instruct, messages, max_new_tokens="auto", shrink=True, seed=0)
    assert out[2:] == [auto, "(conversation reset)", "shrink = True", shrunk]


def test_chat_commands_take_max_new_tokens_auto_and_the_sizing_flags(instruct, monkeypatch, capsys):
    import io
    import sys

    from sumi.cli import main

    question = "Sort: pear apple fig"
    messages = [{"role": "user", "content": question}]
    expected, _ = chat_reference(instruct, messages, max_new_tokens="auto", shrink=True, seed=3)
    sizing = ["--max-new-tokens", "auto", "--shrink", "--seed", "3"]
    assert main(["generate", "--model", "demo-instruct", "--chat", question, *sizing]) == 0
    assert capsys.readouterr().out.strip() == expected
    monkeypatch.setattr(sys, "stdin", io.StringIO(question + "\n"))
    assert main(["chat", "--model", "demo-instruct", *sizing]) == 0
    assert capsys.readouterr().out.strip() == expected


# ----------------------------------------------------------------------------- evaluation
BENCH = os.path.join(os.path.dirname(__file__), "fixtures", "eval", "benchmarks")


def test_sumi_eval_chat_with_auto_budget_pays_fewer_positions_and_records_them(tmp_path, capsys):
    from sumi.cli import main

    common = ["eval", "--offline", "gsm8k", "--chat", "--model", "demo-instruct", "--data-dir", BENCH]
    common += ["--log-samples", "--no-progress"]
    runs = {}
    for name, extra in [("fixed", []), ("auto", ["--max-gen-toks", "auto", "--shrink", "--shrink-patience", "2"])]:
        assert main([*common, *extra, "--output-dir", str(tmp_path / name)]) == 0, name
        results = json.loads((tmp_path / name / "results.json").read_text())
        samples = [json.loads(line) for line in (tmp_path / name / "samples_gsm8k.jsonl").read_text().splitlines()]
        runs[name] = results["results"]["gsm8k"], samples, results
    capsys.readouterr()
    (fixed, fixed_samples, _), (auto, auto_samples, results) = runs["fixed"], runs["auto"]
    for r, samples in ((fixed, fixed_samples), (auto, auto_samples)):
        assert r["n"] == 2 and 0.0 <= r["metrics"]["exact_match"] <= 1.0  # scored as usual
        assert r["settings"]["positions"] == sum(s["positions"] for s in samples) > 0
    # the generation config's budget is the probe's cap; each answer got what the probe chose
    import sumi

    budget = sumi.load("demo-instruct")[0].generation_config.max_new_tokens
    assert fixed["settings"]["max_gen_toks"] == budget and "sizing" not in fixed["settings"]
    s = auto["settings"]
    assert s["max_gen_toks"] == "auto" and s["auto_max_new_tokens"] == budget
    assert s["sizing"] == {"shrink": True, "shrink_patience": 2} and results["model"]["shrink"] is True
    g = s["chat"]["generation"]
    assert (g["max_new_tokens"], g["auto_max_new_tokens"], g["shrink"], g["shrink_patience"]) == (
        "auto",
        budget,
        True,
        2,
    )
    assert all(x["budget"] <= x["auto_budget"] <= budget for x in auto_samples)
    assert all(x["budget"] < y["budget"] for x, y in zip(auto_samples, fixed_samples))
    assert s["positions"] < fixed["settings"]["positions"]


def test_runner_api_auto_budget_on_plain_prompts(instruct):
    from sumi.evaluation import SumiEvaluator
    from sumi.evaluation.runner import evaluate_task, run_offline

    model, tok = instruct
    ev = SumiEvaluator(model, tok, seed=0, num_denoising_steps=8, canvas_length=128)
    fixed = evaluate_task(ev, "gsm8k", BENCH, num_fewshot=0)
    auto = evaluate_task(ev, "gsm8k", BENCH, num_fewshot=0, max_gen_toks="auto")
    assert fixed["settings"]["max_gen_toks"] == 256 and auto["settings"]["max_gen_toks"] == "auto"
    assert auto["settings"]["auto_max_new_tokens"] == 256  # the task's budget caps the probe
    assert set(auto["metrics"]) == set(fixed["metrics"])
    assert [x["auto_budget"] for x in auto["samples"]] == [x["budget"] for x in auto["samples"]]
    assert auto["settings"]["positions"] < fixed["settings"]["positions"]
    # the evaluator's max_gen_toks="auto" option does the same; run_offline records the call's options
    same = SumiEvaluator(model, tok, seed=0, num_denoising_steps=8, canvas_length=128, max_gen_toks="auto")
    results = run_offline(same, ["gsm8k"], BENCH, num_fewshot=0)
    assert results["results"]["gsm8k"]["samples"] == auto["samples"] and results["model"]["max_gen_toks"] == "auto"
    assert SumiEvaluator(model, tok, max_gen_toks="auto").chat_options(default_gen_toks=256) == {
        "max_new_tokens": "auto",
        "auto_max_new_tokens": model.generation_config.max_new_tokens,  # its budget, as without auto
    }
    with pytest.raises(ValueError, match="max_gen_toks must be a positive integer or 'auto'"):
        SumiEvaluator(model, tok, max_gen_toks="lots")
    with pytest.raises(ValueError, match="grow must be true or false"):
        SumiEvaluator(model, tok, grow="yes")


# ----------------------------------------------------------------------------- the server
@pytest.fixture(scope="module")
def served():
    from sumi.serving import BackgroundServer, ServeSettings, create_app

    torch.manual_seed(0)
    model = Toy(SumiConfig.from_preset("sumi-tiny")).eval()
    app = create_app(model, None, ServeSettings(model_name="toy", max_batch_rows=4, max_steps=64))
    with BackgroundServer(app) as url:
        yield url, model


def test_server_sizes_the_canvas_like_generate(served):
    from sumi.serving.client import post

    url, model = served
    body = dict(prompt=[BOS, 6, 9], max_tokens=30, steps=6, canvas_length=48, seed=4, auto_length=True, shrink=True)
    status, answer = post(url, "/v1/completions", dict(body, n=2))
    assert status == 200, answer
    ref = model.generate(
        torch.tensor([[BOS, 6, 9]] * 2),
        max_new_tokens="auto",
        auto_max_new_tokens=30,
        num_denoising_steps=6,
        canvas_length=48,
        shrink=True,
        seed=[4, 5],
    )
    assert answer["sumi"]["num_forwards"] == ref.num_forwards == 7
    for i, choice in enumerate(answer["choices"]):
        ids = ref.sequences[i, 3 : int(ref.lengths[i])].tolist()
        assert choice["text"] == bytes(ids).decode("utf-8", "replace")  # the byte-level fallback
        assert choice["finish_reason"] == ("length" if len(ids) >= int(ref.budgets[i]) else "stop")
    status, answer = post(url, "/v1/completions", dict(body, grow=True, grow_max=40, auto_probe_steps=2))
    assert status == 200 and answer["sumi"]["num_forwards"] == 8


@pytest.mark.parametrize(
    "field,value,status,code",
    [
        ("auto_length", "yes", 422, "invalid_type"),
        ("grow", 1, 422, "invalid_type"),
        ("shrink_patience", "2", 422, "invalid_type"),
        ("grow_max", 0, 400, None),
        ("shrink_patience", -1, 400, None),
        ("auto_probe_steps", 0, 400, None),
        ("auto_probe_steps", 1000, 400, None),  # more than the server's --max-steps
    ],
)
def test_server_rejects_bad_sizing_fields_with_an_openai_error(served, field, value, status, code):
    from sumi.serving.client import post

    body = dict(prompt=[BOS, 6, 9], max_tokens=8, steps=2, canvas_length=32, seed=0, **{field: value})
    got, answer = post(served[0], "/v1/completions", body)
    assert got == status, answer
    error = answer["error"]
    assert error["param"] == field and error["code"] == code and error["type"] == "invalid_request_error"
    assert field in error["message"] and "\n" not in error["message"]


def canvas_events(url: str, body: dict) -> list[dict]:
    from sumi.serving.client import Connection

    with Connection(url) as c:
        return [e for e in c.events("/v1/canvas", body) if isinstance(e, dict)]


def test_canvas_stream_follows_each_rows_budget(served):
    """/v1/canvas frames cover each row's current budget: a shrunk row keeps its dropped tail past
    `budget` (ended), a grown row gains positions that are fresh noise (never 'overwrote'), an auto
    row starts from the probe's budget; the final text is the completion's."""
    from sumi.serving.client import post

    url, _ = served
    fast = dict(steps=8, canvas_length=64, sampler="greedy", seed=0)
    shrink = dict(prompt=[BOS, 5, 9], max_tokens=20, shrink=True, shrink_patience=2, **fast)
    events = canvas_events(url, shrink)
    start, frames, final = events[0], events[1:-1], events[-1]
    assert start["rows"][0]["budget"] == 20 and len(start["rows"][0]["ids"]) == 20
    assert [f["rows"][0]["budget"] for f in frames] == [20, 20, 5, 5, 5, 5, 5, 5]  # as in generate()
    assert all(len(f["rows"][0]["ids"]) == len(f["rows"][0]["confidence"]) == 20 for f in frames)
    last = frames[-1]["rows"][0]["ids"]
    assert last[:5] == [CONTENT] * 5 and last[5:7] == [EOS, BOS]  # the answer, then its new anchors
    assert final["sumi"]["budgets"] == [5] and final["choices"][0]["finish_reason"] == "length"
    assert final["choices"][0]["text"] == post(url, "/v1/completions", shrink)[1]["choices"][0]["text"]

    grow = dict(fast, prompt=[BOS, 200, 9], max_tokens=8, grow=True, grow_max=30, steps=10)
    frames = canvas_events(url, grow)[1:-1]
    budgets = [f["rows"][0]["budget"] for f in frames]
    assert budgets == [12, 16, 20, 25, 30, 30, 30, 30, 30, 30]
    assert [len(f["rows"][0]["ids"]) for f in frames] == budgets
    for before, now in zip([8] + budgets, frames):  # the positions a step added are noise, not overwritten
        assert not any(now["rows"][0]["overwrote"][before:])
    confidence = frames[0]["rows"][0]["confidence"]  # (noise shows no confidence until a step writes it)
    assert confidence[8:] == [None] * 4 and None not in confidence[:8]

    auto = dict(fast, prompt=[BOS, 12, 9], max_tokens=40, auto_length=True)
    events = canvas_events(url, auto)
    assert len(events[0]["rows"][0]["ids"]) == 40  # the probe's canvas
    # the server's own rule: a 12-token answer + as much room again = 24
    assert all(f["rows"][0]["budget"] == len(f["rows"][0]["ids"]) == 24 for f in events[1:-1])


def test_live_canvas_and_the_bar_follow_each_rows_budget(toy):
    import io

    from sumi.cli.display import ENDED, BarProgress, LiveCanvas

    def frames(prompt, region, **options) -> list[str]:
        stream = io.StringIO()
        view = LiveCanvas(stream, lambda ids: " ".join(map(str, ids)), [region], size=(400, 20))
        toy.generate(torch.tensor([prompt]), progress_callback=view, **options)
        return [frame.split("\n")[1] for frame in stream.getvalue().split("\x1b[J")[1:]]

    fast = dict(canvas_length=64, num_denoising_steps=8, sampler="greedy", seed=[0])
    shrunk = frames([BOS, 5, 9], (3, 23), max_new_tokens=20, shrink=True, shrink_patience=2, **fast)
    assert shrunk[0] == " ".join(["7"] * 5 + ["2"] * 15)  # all 20 positions: EOS from the 6th on
    assert shrunk[2] == shrunk[-1] == f"7 7 7 7 7 {ENDED} 15 ended"
    grown = frames(
        [BOS, 200, 9], (3, 11), max_new_tokens=8, grow=True, grow_max=30, **dict(fast, num_denoising_steps=10)
    )
    assert [len(f.split()) for f in grown] == [12, 16, 20, 25, 30, 30, 30, 30, 30, 30]
    auto = frames([BOS, 10, 9], (3, 43), max_new_tokens="auto", auto_max_new_tokens=40, **fast)
    assert all(f == " ".join(["7"] * 10 + ["2"] * 4) for f in auto)  # the probe's budget, nothing ended
    stream = io.StringIO()
    bar = BarProgress(8, [(3, 23)], stats=True, stream=stream)
    toy.generate(torch.tensor([[BOS, 5, 9]]), progress_callback=bar, max_new_tokens=20, shrink=True, **fast)
    bar.close()
    assert bar.regions == [(3, 8)] and "budget=5" in stream.getvalue()


@pytest.mark.slow
def run_benchmark(script: str, *args: str, timeout: int = 600):
    """`python benchmarks/SCRIPT ARGS` from the repository root, offline, one thread."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    return subprocess.run(
        [sys.executable, str(root / "benchmarks" / script), *args],
        cwd=root,
        env=dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_bench_auto_canvas_quick(tmp_path):
    out = tmp_path / "auto.json"
    proc = run_benchmark("bench_auto_canvas.py", "--quick", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "| configuration | positions | vs fixed | exact match | mean budget | add |" in proc.stdout
    assert "| task | best fixed | exact | positions | auto |" in proc.stdout
    result = json.loads(out.read_text())
    tables = result["tables"]
    for base, readings in result["goals"].items():  # the goal check recomputed from the per-task numbers
        rows = {r["config"]: r for r in tables[base]}
        fixed = [r for name, r in rows.items() if name.startswith("fixed") and "shrink" not in name]
        suite_best = max(fixed, key=lambda r: (r["exact"], -r["positions"]))["config"]
        assert {g["best_fixed"] for g in readings["suite's best budget"]} == {suite_best}
        for checks in readings.values():
            for g in checks:
                best = rows[g["best_fixed"]]["per_task"][g["task"]]
                assert (g["best_exact"], g["best_positions"]) == (best["exact"], best["positions"])
                want = g["auto_exact"] >= g["best_exact"] and g["auto_positions"] <= 0.6 * g["best_positions"]
                assert g["met"] == (None if g["best_exact"] == 0 else want)
    # on demo-instruct's own 160-token canvas auto pays less than the full canvas even in 4 steps
    # (the smoke run's long run, 4 steps on 96 positions, is too short to repay the probe forward)
    by = {r["config"]: r for r in tables["generation config"]}
    assert by["max_new_tokens=auto"]["positions"] < by["fixed (generation config)"]["positions"]


def test_tune_auto_canvas_runs_each_rule_on_training_instances(tmp_path):
    from sumi.sft_tasks import generate_suite

    out = tmp_path / "tune.json"
    args = ["--per-task", "1", "--steps", "2", "--rules", "1:4:0,16:4:0.25", "--json", str(out)]
    proc = run_benchmark("tune_auto_canvas.py", *args, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [r["config"] for r in rows] == [
        "fixed, budget 96",
        "auto, min 1, margin 4, share 0",
        "auto, min 16, margin 4, share 0.25",
    ]
    # every budget of the floored rule is at least 16; the plain rule's answers are shorter on average
    assert rows[2]["mean_budget"] >= 16 and rows[1]["mean_budget"] < rows[2]["mean_budget"]
    assert all(r["instances"] == 6 for r in rows)
    held = {i.user for i in generate_suite("heldout", 50)}
    assert not held & {i.user for i in generate_suite("train", 1, seed=11)}  # the instances are training ones
    bad = run_benchmark("tune_auto_canvas.py", "--rules", "16:4", timeout=60)
    assert bad.returncode != 0 and "--rules: expected MIN:MARGIN:SHARE" in bad.stderr
