"""sumi.analysis: metrics on hand-made trajectories with known answers, trajectory files, the
revision-budget study's assumptions (prefix property, ancestral no-ops at a constant log-SNR)."""

import math

import numpy as np
import pytest
import torch

from sumi.analysis import (
    analyze_trajectory,
    ancestral_constant_level_check,
    budget_steps,
    change_counts,
    commit_steps,
    commitment_order,
    confidence_entropy,
    edit_step_share,
    gross_change,
    load_trajectory,
    net_change,
    net_change_to_final,
    overwrite_rates,
    record_generation,
    region_mask,
    round_trips,
    save_trajectory,
    self_nelbo,
    settled_share,
    spearman,
    truncate,
)
from sumi.generation_sumi import Trajectory


def make_trajectory(initial, free, steps, top1=None):
    """`steps`: one dict {(row, col): new value} per step."""
    initial = torch.tensor(initial)
    free = torch.tensor(free, dtype=torch.bool)
    changes = []
    for step in steps:
        items = sorted(step.items())
        rows = torch.tensor([r for (r, _), _ in items], dtype=torch.long)
        cols = torch.tensor([c for (_, c), _ in items], dtype=torch.long)
        vals = torch.tensor([v for _, v in items], dtype=torch.long)
        changes.append((rows, cols, vals))
    N = len(steps)
    if top1 is None:
        top1 = [torch.full(initial.shape, 0.5, dtype=torch.float16) for _ in range(N)]
    entropy = [(1 - t.float()).half() for t in top1]
    return Trajectory(initial, free, [float(x) for x in range(N + 1)], changes, top1, entropy, [None] * N)


# Case 1, one row: col 0 = prompt, cols 1-4 free, col 5 = a pinned anchor (changed by hand at step 4:
# frozen positions must never count). col 1: A->B->A; col 2: A->B->C->A; col 3: two plain
# changes; col 4 never changes.
CASE1_META = dict(prompt_len=1, anchor_columns=[[5]], generated_columns=[[1, 5]], row_starts=[0])


def case1(top1=None):
    return make_trajectory(
        [[9, 1, 1, 1, 1, 7]],
        [[False, True, True, True, True, False]],
        [
            {(0, 1): 2, (0, 2): 2, (0, 3): 5},  # step 1
            {(0, 1): 1, (0, 2): 3},  # step 2: col 1 back to A (A->B->A)
            {(0, 2): 1},  # step 3: col 2 back to A (A->B->C->A)
            {(0, 5): 8},  # step 4: only the frozen anchor "changes"
            {(0, 3): 6},
        ],  # step 5
        top1=top1,
    )


def test_overwrite_edit_steps_and_gross_change_case1():
    t = case1()
    np.testing.assert_allclose(overwrite_rates(t), [3 / 4, 2 / 4, 1 / 4, 0, 1 / 4])
    assert change_counts(t)[:, 0].tolist() == [3, 2, 1, 0, 1]
    assert edit_step_share(t) == 4 / 5  # step 4 changed only the frozen anchor
    assert edit_step_share(t, window_start=3) == 1 / 2  # steps 4, 5
    assert gross_change(t) == 7 / 4
    assert gross_change(t, window_start=1) == 4 / 4


def test_net_change_case1():
    t = case1()
    assert net_change(t) == 1 / 4  # only col 3 ends away from its initial token
    assert net_change(t, 1) == 3 / 4
    assert net_change(t, 3) == 1 / 4
    assert net_change(t, 3, 4) == 0.0
    np.testing.assert_allclose(net_change_to_final(t), [1 / 4, 3 / 4, 2 / 4, 1 / 4, 1 / 4, 0])
    with pytest.raises(ValueError):
        net_change(t, 4, 2)


def test_commit_steps_and_settled_share_case1():
    t = case1()
    c = commit_steps(t)
    assert c[0, 1:5].tolist() == [2, 3, 5, 0]
    assert c[0, 0] == 0
    np.testing.assert_allclose(settled_share(t), [1 / 4, 1 / 4, 2 / 4, 3 / 4, 3 / 4, 1])
    s = analyze_trajectory(t, CASE1_META)["summary"]
    assert s["commit"]["never_changed_share"] == 1 / 4 and s["commit"]["mean_step"] == 10 / 4
    assert s["num_positions"] == 4 and s["steps_with_any_change"] == 4


def test_round_trips_case1():
    t = case1()
    rt = round_trips(t)
    assert rt.count == 2
    assert rt.col.tolist() == [1, 2] and rt.step.tolist() == [2, 3]
    assert rt.hops.tolist() == [2, 3]  # A->B->A, A->B->C->A
    assert rt.length.tolist() == [1, 2]  # steps away from A
    s = rt.summary()
    assert s["aba"] == 1 and s["abca"] == 1 and s["longer_cycles"] == 0
    assert s["rate_per_position"] == 2 / 4 and s["positions_with_round_trip"] == 2
    assert s["share_of_changes"] == 2 / 7 and s["returned_to_initial"] == 2
    assert round_trips(t, window_start=2).count == 1  # only the return at step 3
    assert round_trips(t, window_start=3).count == 0


def test_commitment_order_case1():
    t = case1()
    order = commitment_order(t, metadata=CASE1_META)
    # commit steps [2, 3, 5, 0] at columns 1..4: ranks [2, 3, 4, 1] vs [1, 2, 3, 4] -> rho = -1/5
    assert order["position"] == pytest.approx(-0.2)
    assert order["distance_from_prompt"] == pytest.approx(-0.2)
    assert order["distance_from_anchors"] == pytest.approx(0.2)  # distances 4, 3, 2, 1
    # context distance = min(1, 4), min(2, 3), min(3, 2), min(4, 1) = [1, 2, 2, 1]
    assert order["distance_from_context"] == pytest.approx(spearman([2, 3, 5, 0], [1, 2, 2, 1]))


def test_confidence_committed_vs_uncommitted_case1():
    top1 = [torch.tensor([[0.0, 0.1, 0.2, 0.3, 0.4, 0.9]], dtype=torch.float16) for _ in range(5)]
    ce = confidence_entropy(case1(top1))
    f = lambda *xs: pytest.approx(sum(xs) / len(xs), abs=1e-3)
    assert ce["confidence_all"][0] == f(0.1, 0.2, 0.3, 0.4)
    assert ce["confidence_committed"][0] == f(0.4)  # step 1: only col 4 (never changes) is final
    assert ce["confidence_uncommitted"][0] == f(0.1, 0.2, 0.3)
    assert ce["confidence_committed"][2] == f(0.1, 0.4)  # step 3 sees z^(2): cols 1, 4 final
    assert ce["confidence_uncommitted"][2] == f(0.2, 0.3)
    assert ce["confidence_committed"][4] == f(0.1, 0.2, 0.4)
    assert ce["entropy_uncommitted"][4] == f(0.7)
    no_conf = case1()
    no_conf.top1_prob, no_conf.entropy = [], []
    assert confidence_entropy(no_conf) is None


def test_oscillation_and_unchanged_rows():
    # row 0, col 0: A->B->A->B->A; everything else never changes (row 1 is all unchanged)
    t = make_trajectory(
        [[0, 0, 0, 0], [0, 0, 0, 0]], [[True] * 4, [True] * 4], [{(0, 0): 1}, {(0, 0): 0}, {(0, 0): 1}, {(0, 0): 0}]
    )
    rt = round_trips(t)
    assert rt.count == 3 and rt.hops.tolist() == [2, 2, 2] and rt.length.tolist() == [1, 1, 1]
    assert rt.summary()["returned_to_initial"] == 1 and rt.summary()["positions_with_round_trip"] == 1
    assert edit_step_share(t) == 0.5  # row 0 changed at 4/4 steps, row 1 at 0/4
    np.testing.assert_allclose(overwrite_rates(t), [1 / 8] * 4)
    assert net_change(t) == 0.0 and gross_change(t) == 4 / 8
    assert commit_steps(t)[0].tolist() == [4, 0, 0, 0]
    s = analyze_trajectory(t)["summary"]
    assert s["commit"]["never_changed_share"] == 7 / 8
    assert s["round_trips"]["aba"] == 3 and s["net_change"] == 0.0


def test_masks_regions_and_truncate():
    t = case1()
    meta = dict(CASE1_META, generated_columns=[[1, 3]])  # pretend the answer is cols 1-2 only
    gen = region_mask(t, meta, "generated")
    assert gen[0].tolist() == [False, True, True, False, False, False]
    assert region_mask(t, meta, "tail")[0].tolist() == [False, False, False, True, True, False]
    assert region_mask(t, None, "generated").equal(t.free)  # no metadata: every free position
    assert net_change(t, mask=gen) == 0.0  # cols 1, 2 both came back
    assert round_trips(t, gen).count == 2
    assert analyze_trajectory(t, meta, region="tail")["summary"]["num_positions"] == 2
    short = truncate(t, 2)
    assert short.num_steps == 2 and short.canvas(1).equal(t.canvas(1))
    assert commit_steps(short)[0, 1:5].tolist() == [2, 2, 1, 0]


def test_spearman():
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1)
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1)
    assert spearman([1, 1, 2, 2], [1, 2, 3, 4]) == pytest.approx(0.894427191)  # ties: average ranks
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3])) and math.isnan(spearman([1], [2]))


def test_analysis_is_json_clean_with_window():
    import json

    a = analyze_trajectory(case1(), CASE1_META, window_start=3)
    json.dumps(a, allow_nan=False)
    w = a["summary"]["window"]
    assert w["steps"] == 2 and w["net_change"] == 1 / 4 and w["edit_step_share"] == 1 / 2
    assert a["commit_steps"]["first_column"] == 1 and a["commit_steps"]["rows"] == [[2, 3, 5, 0]]
    assert a["round_trip_length_histogram"] == {"1": 1, "2": 1} or a["round_trip_length_histogram"] == {1: 1, 2: 1}


# ----------------------------------------------------------------------------- files
@pytest.mark.parametrize("sampler", ["adaptive", "ancestral"])
def test_save_load_round_trip(tiny_model, tmp_path, sampler):
    out, rec = record_generation(
        tiny_model,
        torch.tensor([[1, 5, 6], [1, 7, 8]]),
        model_name="tiny",
        max_new_tokens=8,
        num_denoising_steps=5,
        canvas_length=24,
        seed=[3, 4],
        sampler=sampler,
        tokens_per_step=2,
        temperature=0.0 if sampler == "adaptive" else 1.0,
    )
    from sumi.tokenization import ByteTokenizer

    tok = ByteTokenizer(256, 1, 2, 0)
    path = save_trajectory(tmp_path / "sub" / "run.pt", rec.trajectory, rec.metadata, tokenizer=tok)
    back = load_trajectory(path)
    a, b = rec.trajectory, back.trajectory
    assert b.initial.dtype == torch.long and b.initial.equal(a.initial) and b.free.equal(a.free)
    assert b.log_snrs == pytest.approx(a.log_snrs) and b.num_steps == a.num_steps == 5
    assert b.canvases().equal(a.canvases()) and b.canvas(4).equal(out.canvas)
    for (r1, c1, v1), (r2, c2, v2) in zip(a.changes, b.changes):
        assert r1.equal(r2) and c1.equal(c2) and v1.equal(v2)
    assert all(x.equal(y) for x, y in zip(a.top1_prob, b.top1_prob))
    assert all(x.equal(y) for x, y in zip(a.entropy, b.entropy))
    if sampler == "adaptive":
        assert all(x.equal(y) for x, y in zip(a.selected, b.selected)) and b.selected[0].shape == (2, 2)
    else:
        assert b.selected == [None] * 5
    m = back.metadata
    assert m["model"] == "tiny" and m["sampler"] == sampler and m["seed"] == [3, 4] and m["sumi_version"]
    assert m["prompt_ids"] == [[1, 5, 6], [1, 7, 8]] and m["prompt_texts"] == ["\x05\x06", "\x07\x08"]
    assert m["generated_columns"] == [[3, 11], [3, 11]] and m["anchor_columns"] == [[11, 12], [11, 12]]
    assert m["completion_ids"][0] == out.sequences[0, 3 : int(out.lengths[0])].tolist()
    x, y = analyze_trajectory(b, m), analyze_trajectory(a, rec.metadata)
    assert {k: v for k, v in x.items() if k != "metadata"} == {k: v for k, v in y.items() if k != "metadata"}
    small = load_trajectory(save_trajectory(tmp_path / "small.pt", a, rec.metadata, include_confidence=False))
    assert small.trajectory.top1_prob == [] and small.trajectory.canvases().equal(a.canvases())
    assert (tmp_path / "small.pt").stat().st_size < path.stat().st_size


def test_load_rejects_other_files(tmp_path):
    torch.save({"a": torch.zeros(2)}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not a sumi trajectory"):
        load_trajectory(tmp_path / "x.pt")
    (tmp_path / "y.pt").write_text("hello")
    with pytest.raises(ValueError):
        load_trajectory(tmp_path / "y.pt")


# ----------------------------------------------------------------------------- the study's assumptions
@pytest.mark.parametrize("sampler,temperature", [("greedy", 1.0), ("adaptive", 0.0), ("adaptive", 1.0)])
def test_greedy_and_adaptive_budgets_are_prefixes_of_one_run(tiny_model, sampler, temperature):
    kw = dict(max_new_tokens=8, canvas_length=20, seed=11, sampler=sampler, temperature=temperature, tokens_per_step=2)
    long = tiny_model.generate(torch.tensor([[1, 5]]), num_denoising_steps=9, record_trajectory=True, **kw)
    for n in (3, 6):
        short = tiny_model.generate(torch.tensor([[1, 5]]), num_denoising_steps=n, **kw)
        assert short.canvas.equal(long.trajectory.canvas(n - 1))


def test_ancestral_steps_at_constant_log_snr_keep_every_token(tiny_model):
    check = ancestral_constant_level_check(
        tiny_model, torch.tensor([[1, 5, 6]]), log_snr=9.0, steps=3, max_new_tokens=6, canvas_length=16, seed=0
    )
    assert check["tokens_changed"] == 0 and check["posterior_max_deviation_from_point_mass"] == 0.0
    assert check["keeps_every_token"] and check["free_positions"] == 11
    low = ancestral_constant_level_check(
        tiny_model, torch.tensor([[1, 5, 6]]), log_snr=-2.0, steps=2, max_new_tokens=6, canvas_length=16, seed=0
    )
    assert low["tokens_changed"] == 0  # any constant level: a_t / a_s = 1


def test_budget_steps_and_self_nelbo(tiny_model):
    assert budget_steps(8, [4, 1, 2, 2.0]) == [8, 16, 32]
    assert budget_steps(3, [0.5, 1]) == [2, 3]
    with pytest.raises(ValueError):
        budget_steps(8, [0])
    q = self_nelbo(tiny_model, [[1, 5], [1]], [[7, 8, 9], []], num_samples=2, seed=0)
    assert q["per_row"][1] is None and q["tokens"] == 3 and q["mean"] == pytest.approx(q["per_row"][0])
    assert q["mean"] > 0
    assert self_nelbo(tiny_model, [[1, 5]], [[7, 8, 9]], num_samples=2, seed=0)["mean"] == q["mean"]  # seeded


def test_token_entropy_from_the_definition():
    from sumi.analysis.quality import token_entropy

    assert token_entropy([]) == 0.0 and token_entropy([7] * 10) == 0.0
    # [1, 1, 2, 3]: p = (1/2, 1/4, 1/4) -> H = 1.5 ln 2
    assert abs(token_entropy([1, 1, 2, 3]) - 1.5 * math.log(2)) < 1e-12
    assert abs(token_entropy(list(range(16))) - math.log(16)) < 1e-12
