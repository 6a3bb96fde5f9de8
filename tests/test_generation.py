"""generate(): the official defaults, seed-exact replay, invariants, extensions and bad input."""

import pytest
import torch
from transformers import GenerationConfig

from sumi.generation_sumi import filter_probs

V, BOS, EOS, PAD = 256, 1, 2, 0


def run(model, prompt, **kw):
    kw.setdefault("max_new_tokens", 12)
    kw.setdefault("num_denoising_steps", 6)
    kw.setdefault("canvas_length", 40)
    return model.generate(torch.tensor(prompt), **kw)


# ----------------------------------------------------------------------------- official replay
def official_style_generate(model, prompt, *, max_new_tokens, steps, canvas_length, seed, sampler, tokens_per_step=1):
    """Greedy / adaptive (T = 0) written from spec §5-6 with the eager path: the reference our
    generate() must replay token for token."""
    model.config._attn_implementation = "eager"
    try:
        prompt = torch.tensor(prompt)
        B, P = prompt.shape
        C = canvas_length
        budget = max(1, min(max_new_tokens, C - P - 2))
        g = torch.Generator().manual_seed(seed)
        z = torch.cat([prompt, torch.randint(0, V, (B, C - P), generator=g)], dim=1)
        z[:, P + budget] = EOS
        z[:, P + budget + 1] = BOS
        free = torch.zeros(B, C, dtype=torch.bool)
        free[:, P:] = True
        free[:, P + budget] = free[:, P + budget + 1] = False
        for _ in range(steps):
            logits = model(input_ids=z).logits.double()
            probs = torch.softmax(logits, -1)
            if sampler == "greedy":
                z = torch.where(free, probs.argmax(-1), z)
            else:
                for b in range(B):
                    conf = [(probs[b, i].max() - probs[b, i, z[b, i]]).item() if free[b, i] else -1.0 for i in range(C)]
                    chosen = sorted(range(C), key=lambda i: -conf[i])[:tokens_per_step]
                    for i in chosen:
                        z[b, i] = probs[b, i].argmax()
        return z
    finally:
        model.config._attn_implementation = "sdpa"


@pytest.mark.parametrize("sampler,tps", [("greedy", 1), ("adaptive", 1), ("adaptive", 3)])
def test_seed_exact_replay_of_official_greedy_and_adaptive(tiny_model, sampler, tps):
    prompt = [[5, 6, 7, 8], [9, 10, 11, 12]]
    ref = official_style_generate(
        tiny_model, prompt, max_new_tokens=10, steps=5, canvas_length=32, seed=123, sampler=sampler, tokens_per_step=tps
    )
    out = run(
        tiny_model,
        prompt,
        max_new_tokens=10,
        num_denoising_steps=5,
        canvas_length=32,
        seed=123,
        sampler=sampler,
        temperature=0.0,
        tokens_per_step=tps,
    )
    assert torch.equal(out.canvas, ref)


def test_initial_canvas_is_one_randint_after_the_prompt(tiny_model):
    prompt = [[5, 6, 7]]
    out = run(tiny_model, prompt, denoise_end=3, seed=7)  # nothing denoisable: the canvas stays at its init
    expected = torch.randint(0, V, (1, 40 - 3), generator=torch.Generator().manual_seed(7))
    tail = out.canvas[0, 3:].clone()
    tail[12], tail[13] = expected[0, 12], expected[0, 13]  # the EOS / BOS anchors replace two draws
    assert torch.equal(tail, expected[0])
    assert out.canvas[0, 15] == EOS and out.canvas[0, 16] == BOS


# ----------------------------------------------------------------------------- invariants
@pytest.mark.parametrize("sampler", ["ancestral", "adaptive", "greedy"])
def test_prompt_and_anchors_unchanged(tiny_model, sampler):
    prompt = [[5, 6, 7, 8, 9]]
    seen = []
    out = run(
        tiny_model,
        prompt,
        sampler=sampler,
        seed=0,
        tokens_per_step=4,
        progress_callback=lambda info: seen.append(info["z"].clone()),
    )
    for z in seen + [out.canvas]:
        assert torch.equal(z[:, :5], torch.tensor(prompt))
        assert z[0, 5 + 12] == EOS and z[0, 5 + 13] == BOS
    assert out.canvas.shape == (1, 40)


@pytest.mark.parametrize("sampler", ["ancestral", "adaptive", "greedy"])
def test_seeds_reproducible(tiny_model, sampler):
    a = run(tiny_model, [[5, 6]], sampler=sampler, seed=3)
    b = run(tiny_model, [[5, 6]], sampler=sampler, seed=3)
    c = run(tiny_model, [[5, 6]], sampler=sampler, seed=4)
    assert torch.equal(a.canvas, b.canvas)
    assert not torch.equal(a.canvas, c.canvas)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(
        run(tiny_model, [[5, 6]], sampler=sampler, generator=g1).canvas,
        run(tiny_model, [[5, 6]], sampler=sampler, generator=g2).canvas,
    )


def test_trimming_at_first_eos(tiny_model):
    prompt = [[5, 6, 7]]
    frozen = [(3 + 4, EOS)]  # an EOS pinned 4 tokens into the answer
    out = run(tiny_model, prompt, frozen=frozen, seed=0, sampler="greedy")
    assert out.sequences.shape == (1, 3 + 4)
    assert torch.equal(out.sequences[0], out.canvas[0, :7])
    untrimmed = run(tiny_model, prompt, frozen=frozen, seed=0, sampler="greedy", trim_at_eos=False)
    assert untrimmed.sequences.shape == (1, 3 + 12)
    # with anchors, the EOS anchor bounds the answer at the budget
    anchored = run(tiny_model, prompt, seed=0, sampler="greedy")
    assert anchored.sequences.shape[1] <= 3 + 12
    assert EOS not in anchored.sequences[0, 3:].tolist()


def test_sequences_are_right_padded_per_row(tiny_model):
    out = run(tiny_model, [[5, 6], [7, 8]], frozen=[[(2 + 1, EOS)], [(2 + 5, EOS)]], seed=0, sampler="greedy")
    assert out.sequences.shape == (2, 7)
    assert out.sequences[0, 3:].tolist() == [PAD] * 4
    assert out.lengths.tolist() == [3, 7]


def test_frozen_and_denoise_end(tiny_model):
    frozen = [(10, 42), (11, 43)]
    out = run(tiny_model, [[5, 6]], frozen=frozen, seed=1, sampler="greedy", num_denoising_steps=3)
    assert out.canvas[0, 10] == 42 and out.canvas[0, 11] == 43
    init = run(tiny_model, [[5, 6]], frozen=frozen, seed=1, sampler="greedy", denoise_end=2).canvas
    cut = run(tiny_model, [[5, 6]], frozen=frozen, seed=1, sampler="greedy", denoise_end=20).canvas
    assert torch.equal(cut[0, 20:], init[0, 20:])  # the tail after denoise_end stays at its random init
    assert not torch.equal(cut[0, 2:20], init[0, 2:20])


def test_batched_equals_each_row_alone_with_align_rows(tiny_model):
    prompts = [[5, 6, 7, 8, 9], [10, 11]]
    padded = torch.tensor([[5, 6, 7, 8, 9], [PAD, PAD, PAD, 10, 11]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 0, 1, 1]])
    for sampler, extra in [
        ("greedy", {}),
        ("adaptive", {"temperature": 0.0, "tokens_per_step": 3}),
        ("ancestral", {}),
        ("adaptive", {"tokens_per_step": 2}),
    ]:
        batch = tiny_model.generate(
            padded,
            attention_mask=mask,
            max_new_tokens=12,
            num_denoising_steps=5,
            canvas_length=40,
            sampler=sampler,
            seed=[11, 22],
            align_rows=True,
            **extra,
        )
        for i, (p, s) in enumerate(zip(prompts, [11, 22])):
            alone = tiny_model.generate(
                torch.tensor([p]),
                max_new_tokens=12,
                num_denoising_steps=5,
                canvas_length=40,
                sampler=sampler,
                seed=s,
                **extra,
            )
            assert torch.equal(batch.canvas[i], alone.canvas[0]), (sampler, i)
            n = alone.sequences.shape[1]  # the row's prompt ends at column 5, as in the left-padded batch
            assert batch.sequences[i, 5 - len(p) : 5 - len(p) + n].tolist() == alone.sequences[0].tolist(), (sampler, i)


def test_official_layout_left_padded_batch_runs(tiny_model):
    padded = torch.tensor([[5, 6, 7], [PAD, 10, 11]])
    mask = torch.tensor([[1, 1, 1], [0, 1, 1]])
    out = tiny_model.generate(
        padded, attention_mask=mask, max_new_tokens=8, num_denoising_steps=3, canvas_length=32, seed=0
    )
    assert out.canvas.shape == (2, 32) and torch.equal(out.canvas[:, :3], padded)
    assert (out.canvas[:, 3 + 8] == EOS).all() and (out.canvas[:, 3 + 9] == BOS).all()


@pytest.mark.parametrize("sampler,extra", [("greedy", {}), ("adaptive", {"temperature": 0.0, "tokens_per_step": 8})])
def test_early_stop_never_changes_a_converged_result(tiny_model, sampler, extra):
    # A random tiny model's greedy map often cycles forever; this one (head = embedding, a stronger
    # residual update) settles on a fixed point after a few steps, as trained models do.
    with torch.no_grad():
        tiny_model.lm_head.weight.copy_(tiny_model.model.embed_tokens.weight)
        for layer in tiny_model.model.layers:
            layer.self_attn.o_proj.weight.mul_(3.0)
            layer.mlp.down_proj.weight.mul_(3.0)
    full = run(tiny_model, [[5, 6, 7]], sampler=sampler, seed=5, num_denoising_steps=40, **extra)
    early = run(
        tiny_model, [[5, 6, 7]], sampler=sampler, seed=5, num_denoising_steps=40, early_stop_patience=1, **extra
    )
    assert torch.equal(full.canvas, early.canvas)
    assert full.num_forwards == 40 and 2 < early.num_forwards < 40


def _settling(model):
    """Make a random tiny model settle on fixed points (see the test above)."""
    with torch.no_grad():
        model.lm_head.weight.copy_(model.model.embed_tokens.weight)
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.mul_(3.0)
            layer.mlp.down_proj.weight.mul_(3.0)
    return model


@pytest.mark.parametrize("sampler,extra", [("greedy", {}), ("adaptive", {"temperature": 0.0, "tokens_per_step": 8})])
def test_rows_leave_the_batch_one_by_one(tiny_model, sampler, extra):
    model = _settling(tiny_model)
    prompts = torch.tensor([[5, 6, 7], [8, 9, 10], [11, 12, 13], [14, 15, 16]])
    full = model.generate(
        prompts,
        max_new_tokens=12,
        canvas_length=40,
        num_denoising_steps=40,
        sampler=sampler,
        seed=[1, 2, 3, 4],
        **extra,
    )
    early = model.generate(
        prompts,
        max_new_tokens=12,
        canvas_length=40,
        num_denoising_steps=40,
        sampler=sampler,
        seed=[1, 2, 3, 4],
        early_stop_patience=1,
        **extra,
    )
    assert torch.equal(full.canvas, early.canvas)  # fixed points: stopping a row changes nothing
    assert full.row_forwards.tolist() == [40] * 4
    per_row = early.row_forwards.tolist()
    assert early.num_forwards == max(per_row) and len(set(per_row)) > 1 and sum(per_row) < 4 * 40, per_row


@pytest.mark.parametrize("sampler,extra", [("greedy", {}), ("adaptive", {"temperature": 0.0, "tokens_per_step": 4})])
@pytest.mark.parametrize("steps", [37, 38])  # both phases of a period-2 oscillation
def test_stop_on_cycle_ends_on_the_full_runs_canvas(tiny_model, sampler, extra, steps):
    # The random tiny model's deterministic samplers oscillate instead of settling (see above).
    prompts = torch.tensor([[5, 6, 7], [8, 9, 10], [11, 12, 13], [14, 15, 16]])
    kw = dict(
        max_new_tokens=12, canvas_length=40, num_denoising_steps=steps, sampler=sampler, seed=[1, 2, 3, 4], **extra
    )
    full = tiny_model.generate(prompts, record_trajectory=True, **kw)
    early = tiny_model.generate(prompts, stop_on_cycle=True, **kw)
    assert torch.equal(full.canvas, early.canvas) and torch.equal(full.sequences, early.sequences)
    per_row = early.row_forwards.tolist()
    assert sum(per_row) < 4 * steps and early.num_forwards == max(per_row), per_row
    # at least one row that left early was still changing at the full run's last step: an
    # oscillation (period >= 2), not a fixed point that early_stop_patience=1 would also catch
    rows_changed_last = set(full.trajectory.changes[-1][0].tolist())
    assert any(per_row[r] < steps and r in rows_changed_last for r in range(4)), (per_row, rows_changed_last)
    # with a trajectory (or a progress callback) every row stays in the batch until all have
    # cycled and hold their last canvas: the same result, and the records end on it
    both = tiny_model.generate(prompts, stop_on_cycle=True, record_trajectory=True, **kw)
    assert torch.equal(both.canvas, full.canvas)
    assert torch.equal(both.trajectory.canvas(both.trajectory.num_steps - 1), full.canvas)
    assert both.num_forwards == both.trajectory.num_steps <= steps
    seen = []
    called = tiny_model.generate(prompts, stop_on_cycle=True, progress_callback=seen.append, **kw)
    assert torch.equal(called.canvas, full.canvas) and len(seen) == called.num_forwards == both.num_forwards
    assert torch.equal(seen[-1]["z"], full.canvas)


def test_stop_on_cycle_with_a_callback_stops_once_every_row_has_cycled(tiny_model):
    kw = dict(max_new_tokens=12, canvas_length=40, num_denoising_steps=60, sampler="greedy", seed=[3, 4])
    prompts = torch.tensor([[5, 6, 7], [11, 12, 13]])  # rows that cycle from steps 26 and 32
    full = tiny_model.generate(prompts, **kw)
    per_row = tiny_model.generate(prompts, stop_on_cycle=True, **kw)
    seen = []
    called = tiny_model.generate(prompts, stop_on_cycle=True, progress_callback=seen.append, **kw)
    assert torch.equal(called.canvas, full.canvas) and torch.equal(per_row.canvas, full.canvas)
    # all rows cycle here; the batch runs until the last one has (plus at most a period's phase)
    assert int(per_row.row_forwards.max()) < 60, per_row.row_forwards
    assert int(per_row.row_forwards.max()) <= called.num_forwards <= int(per_row.row_forwards.max()) + 8 < 60


def test_stop_on_cycle_batch_rows_equal_the_rows_alone(tiny_model):
    # left-padded prompts with align_rows: each row as if alone, rows leaving at different steps
    prompts = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]
    padded = torch.tensor([[5, 6, 7, 8, 9], [PAD, PAD, PAD, 10, 11], [PAD, PAD, 12, 13, 14]])
    kw = dict(max_new_tokens=12, num_denoising_steps=45, canvas_length=40, sampler="greedy", stop_on_cycle=True)
    batch = tiny_model.generate(padded, attention_mask=(padded != PAD).long(), seed=[3, 4, 5], align_rows=True, **kw)
    per_row = batch.row_forwards.tolist()  # (measured: [45, 26, 29])
    assert min(per_row) < 45 and len(set(per_row)) > 1, per_row  # rows leave at different steps
    for i, (p, s) in enumerate(zip(prompts, [3, 4, 5])):
        alone = tiny_model.generate(torch.tensor([p]), seed=s, **kw)
        full = tiny_model.generate(torch.tensor([p]), seed=s, **dict(kw, stop_on_cycle=False))
        assert torch.equal(batch.canvas[i], alone.canvas[0]) and torch.equal(alone.canvas, full.canvas), i
        assert int(batch.row_forwards[i]) == alone.num_forwards, i


@pytest.mark.parametrize("sampler,extra", [("ancestral", {}), ("adaptive", {"temperature": 0.5})])
def test_stop_on_cycle_refuses_random_samplers(tiny_model, sampler, extra):
    with pytest.raises(ValueError, match="stop_on_cycle needs a deterministic sampler"):
        run(tiny_model, [[5, 6, 7]], sampler=sampler, stop_on_cycle=True, num_denoising_steps=2, **extra)


def test_a_row_that_stops_early_matches_the_row_alone(tiny_model):
    # ancestral: stopping is a heuristic, but a row's result must not depend on its batch
    prompts = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]
    padded = torch.tensor([[5, 6, 7, 8, 9], [PAD, PAD, PAD, 10, 11], [PAD, PAD, 12, 13, 14]])
    mask = (padded != PAD).long()
    kw = dict(
        max_new_tokens=12,
        num_denoising_steps=30,
        canvas_length=40,
        early_stop_patience=2,
        min_log_snr=-2.0,
        max_log_snr=12.0,
    )  # a late schedule, so rows stop at different steps
    batch = tiny_model.generate(padded, attention_mask=mask, seed=[11, 22, 33], align_rows=True, **kw)
    for i, (p, s) in enumerate(zip(prompts, [11, 22, 33])):
        alone = tiny_model.generate(torch.tensor([p]), seed=s, **kw)
        assert torch.equal(batch.canvas[i], alone.canvas[0]), i
        assert int(batch.row_forwards[i]) == alone.num_forwards, i
    assert int(batch.row_forwards.min()) < 30


def test_skip_tail_runs_the_canvas_up_to_the_bos_anchor(tiny_model):
    P, n = 3, 12
    kw = dict(max_new_tokens=n, num_denoising_steps=6, seed=4)
    full = run(tiny_model, [[5, 6, 7]], sampler="greedy", **kw)
    skip = run(tiny_model, [[5, 6, 7]], sampler="greedy", skip_tail=True, **kw)
    traj = run(tiny_model, [[5, 6, 7]], sampler="greedy", record_trajectory=True, **kw).trajectory
    assert torch.equal(skip.canvas[0, P + n + 2 :], traj.initial[0, P + n + 2 :])  # tail: random init, untouched
    assert not torch.equal(full.canvas[0, P + n + 2 :], traj.initial[0, P + n + 2 :])
    # the same as a canvas that ends at the anchor (one row: the first columns of the initial draw agree)
    short = run(tiny_model, [[5, 6, 7]], sampler="greedy", canvas_length=P + n + 2, **kw)
    assert torch.equal(skip.canvas[0, : P + n + 2], short.canvas[0])
    assert torch.equal(skip.sequences, short.sequences)
    with pytest.raises(ValueError, match="skip_tail needs the EOS/BOS anchors"):
        run(tiny_model, [[5, 6, 7]], frozen=[(9, EOS)], skip_tail=True, **kw)


def test_skip_tail_batch_row_equals_the_row_alone(tiny_model):
    prompts = [[5, 6, 7, 8, 9], [10, 11]]
    padded = torch.tensor([[5, 6, 7, 8, 9], [PAD, PAD, PAD, 10, 11]])
    kw = dict(max_new_tokens=10, num_denoising_steps=5, canvas_length=40, skip_tail=True)
    batch = tiny_model.generate(padded, attention_mask=(padded != PAD).long(), seed=[3, 4], align_rows=True, **kw)
    for i, (p, s) in enumerate(zip(prompts, [3, 4])):
        alone = tiny_model.generate(torch.tensor([p]), seed=s, **kw)
        assert torch.equal(batch.canvas[i], alone.canvas[0]), i


def test_progress_callback_keys(tiny_model):
    infos = []
    run(tiny_model, [[5]], sampler="adaptive", num_denoising_steps=4, progress_callback=infos.append, seed=0)
    assert [i["step"] for i in infos] == [0, 1, 2, 3]
    keys = {"step", "num_steps", "log_snr_t", "log_snr_s", "z", "top1_z", "top1_prob", "noise_mask", "selected_pos"}
    assert all(set(i) == keys for i in infos)
    assert infos[0]["log_snr_t"] < infos[0]["log_snr_s"] == infos[1]["log_snr_t"]
    assert infos[0]["selected_pos"].shape == (1, 1)
    assert infos[0]["top1_prob"].shape == (1, 40) and infos[0]["noise_mask"].dtype == torch.bool


def test_no_prompt_and_zero_tokens(tiny_model):
    out = tiny_model.generate(max_new_tokens=5, num_denoising_steps=2, canvas_length=16, seed=0)
    assert out.canvas[0, 0] == BOS and out.sequences.shape[1] <= 6
    zero = tiny_model.generate(torch.tensor([5, 6]), max_new_tokens=0)
    assert zero.sequences.tolist() == [[5, 6]] and zero.num_forwards == 0
    via_length = tiny_model.generate(
        torch.tensor([5, 6]), max_length=6, num_denoising_steps=2, canvas_length=16, seed=0, trim_at_eos=False
    )
    assert via_length.sequences.shape == (1, 6)


def test_budget_is_capped_by_the_canvas(tiny_model):
    out = run(tiny_model, [[5, 6]], max_new_tokens=1000, canvas_length=20, trim_at_eos=False, seed=0)
    assert out.sequences.shape == (1, 2 + 20 - 2 - 2)
    assert out.canvas[0, 18] == EOS and out.canvas[0, 19] == BOS


def test_options_resolve_through_generation_configs(tiny_model):
    tiny_model.generation_config.num_denoising_steps = 3
    tiny_model.generation_config.sampler = "greedy"
    assert run(tiny_model, [[5]], num_denoising_steps=None).num_forwards == 3
    passed = GenerationConfig(num_denoising_steps=2)
    assert run(tiny_model, [[5]], num_denoising_steps=None, generation_config=passed).num_forwards == 2
    assert run(tiny_model, [[5]], num_denoising_steps=4, generation_config=passed).num_forwards == 4
    a = run(tiny_model, [[5]], num_denoising_steps=None, seed=0)
    b = run(tiny_model, [[5]], num_denoising_steps=3, sampler="greedy", seed=0)
    assert torch.equal(a.canvas, b.canvas)


def test_generation_config_is_saved_and_reloaded(tiny_model, tmp_path):
    from sumi import SumiForMaskGeneration

    tiny_model.generation_config.num_denoising_steps = 7
    tiny_model.generation_config.sampler = "adaptive"
    tiny_model.save_pretrained(tmp_path)
    loaded = SumiForMaskGeneration.from_pretrained(tmp_path)
    assert loaded.generation_config.num_denoising_steps == 7
    assert run(loaded, [[5]], num_denoising_steps=None, max_new_tokens=4).num_forwards == 7


# ----------------------------------------------------------------------------- extensions
def test_filter_probs_against_brute_force():
    p = torch.tensor([[0.05, 0.4, 0.1, 0.3, 0.15]])
    assert torch.allclose(filter_probs(p, top_k=2), torch.tensor([[0, 0.4, 0, 0.3, 0]]) / 0.7)
    # nucleus: smallest set whose mass reaches 0.75 -> {0.4, 0.3, 0.15}
    assert torch.allclose(filter_probs(p, top_p=0.75), torch.tensor([[0, 0.4, 0, 0.3, 0.15]]) / 0.85)
    # min-p 0.5: keep p >= 0.2
    assert torch.allclose(filter_probs(p, min_p=0.5), torch.tensor([[0, 0.4, 0, 0.3, 0]]) / 0.7)
    assert torch.equal(filter_probs(p), p)


def test_top_k_one_makes_adaptive_sampling_greedy(tiny_model):
    a = run(tiny_model, [[5, 6]], sampler="adaptive", temperature=1.0, top_k=1, tokens_per_step=4, seed=2)
    b = run(tiny_model, [[5, 6]], sampler="adaptive", temperature=0.0, tokens_per_step=4, seed=2)
    assert torch.equal(a.canvas, b.canvas)


class ByteTokenizer:
    def decode(self, ids):
        return bytes(i for i in ids if 32 <= i < 127).decode()


def test_stop_strings_cut_the_sequences(tiny_model):
    # pin "xy!z" into the answer; the stop string "!" must cut right before it
    frozen = [(2, ord("x")), (3, ord("y")), (4, ord("!")), (5, ord("z")), (20, EOS)]
    out = run(
        tiny_model, [[5, 6]], frozen=frozen, sampler="greedy", seed=0, stop_strings=["!"], tokenizer=ByteTokenizer()
    )
    assert out.sequences[0, :4].tolist() == [5, 6, ord("x"), ord("y")]
    assert set(out.sequences[0, 4:].tolist()) == {PAD}
    assert out.lengths.tolist() == [4]
    with pytest.raises(ValueError, match="tokenizer"):
        run(tiny_model, [[5, 6]], stop_strings=["!"])


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(input_ids=torch.tensor([[5, 300]])), "vocab_size"),
        (dict(input_ids=torch.tensor([[5, -1]])), "vocab_size"),
        (dict(input_ids=torch.ones(1, 39, dtype=torch.long)), "does not fit"),
        (dict(input_ids=torch.ones(1, 2, 2, dtype=torch.long)), "input_ids"),
        (dict(input_ids=torch.tensor([[5.0]])), "input_ids"),
        (dict(input_ids=torch.tensor([[5, 6]]), attention_mask=torch.ones(1, 3)), "attention_mask"),
        (dict(sampler="beam"), "sampler"),
        (dict(schedule="exp"), "schedule"),
        (dict(max_new_tokens=-1), "max_new_tokens"),
        (dict(num_denoising_steps=0), "num_denoising_steps"),
        (dict(temperature=-0.5), "temperature"),
        (dict(top_p=1.5), "top_p"),
        (dict(frozen=[(100, 5)]), "frozen"),
        (dict(seed=[1, 2]), "seed"),
    ],
)
def test_bad_input_gives_clear_errors(tiny_model, kwargs, match):
    kwargs.setdefault("input_ids", torch.tensor([[5, 6]]))
    kwargs.setdefault("max_new_tokens", 4)
    with pytest.raises(ValueError, match=match):
        tiny_model.generate(canvas_length=40, num_denoising_steps=kwargs.pop("num_denoising_steps", 2), **kwargs)


def test_missing_length_and_unknown_option(tiny_model):
    with pytest.raises(ValueError, match="max_new_tokens"):
        tiny_model.generate(torch.tensor([[5]]))
    with pytest.raises(TypeError, match="num_beams"):
        tiny_model.generate(torch.tensor([[5]]), max_new_tokens=2, num_beams=4)


@pytest.mark.parametrize("sampler", ["ancestral", "adaptive", "greedy"])
def test_recording_a_trajectory_changes_nothing(tiny_model, sampler):
    plain = run(tiny_model, [[5, 6, 7]], sampler=sampler, seed=9, tokens_per_step=3)
    rec = run(tiny_model, [[5, 6, 7]], sampler=sampler, seed=9, tokens_per_step=3, record_trajectory=True)
    assert torch.equal(plain.canvas, rec.canvas) and torch.equal(plain.sequences, rec.sequences)
    traj = rec.trajectory
    assert plain.trajectory is None and traj.num_steps == 6 and len(traj.log_snrs) == 7
    seen = []
    run(
        tiny_model,
        [[5, 6, 7]],
        sampler=sampler,
        seed=9,
        tokens_per_step=3,
        progress_callback=lambda info: seen.append(info["z"].clone()),
    )
    canvases = traj.canvases()
    assert all(torch.equal(canvases[k + 1], z) for k, z in enumerate(seen))
    assert torch.equal(traj.canvas(traj.num_steps - 1), rec.canvas)
    assert traj.top1_prob[0].shape == (1, 40) and traj.entropy[0].dtype == torch.float16
