"""The few-step samplers: predictor-corrector (re-noise + ancestral), greedy tail, entropy-bounded
acceptance. Distributions against the forward process written from its definition; exactness of the
plan against hand-run steps; batch invariance through the engine."""

import math

import pytest
import torch

from sumi.denoising import DenoisingEngine, plan_moves
from sumi.sampling import _Randomness, entropy_bounded_step, renoise


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_renoise_is_the_forward_process_between_two_levels():
    # z_s ~ q(z_s | x) at level s (a_s x + (1 - a_s)/V), then renoise to t: z_t must be ~ q(z_t | x)
    V, n, lam_s, lam_t = 7, 200_000, 1.5, -0.5
    a_s, a_t = sigmoid(lam_s), sigmoid(lam_t)
    g = torch.Generator().manual_seed(0)
    x = torch.full((1, n), 3)
    clean = torch.rand(1, n, generator=g) < a_s
    z_s = torch.where(clean, x, torch.randint(0, V, (1, n), generator=g))
    free = torch.ones(1, n, dtype=torch.bool)
    z_t = renoise(
        z_s, free, lam_s, lam_t, _Randomness([torch.Generator().manual_seed(1)], [(0, n)], "cpu"), vocab_size=V
    )
    freq = torch.bincount(z_t[0], minlength=V).double() / n
    expected = torch.full((V,), (1 - a_t) / V, dtype=torch.float64)
    expected[3] += a_t
    assert torch.allclose(freq, expected, atol=4 / math.sqrt(n))


def test_renoise_leaves_fixed_positions_alone():
    z = torch.arange(20)[None] % 5
    free = torch.zeros(1, 20, dtype=torch.bool)
    free[0, 10:] = True
    out = renoise(z, free, 9.0, -9.0, _Randomness([torch.Generator().manual_seed(0)], [(0, 20)], "cpu"), vocab_size=50)
    assert torch.equal(out[0, :10], z[0, :10]) and not torch.equal(out[0, 10:], z[0, 10:])


def test_entropy_bounded_step_accepts_the_confident_and_redraws_the_rest():
    V = 4
    logits = torch.tensor(
        [
            [
                [20.0, 0, 0, 0],  # entropy ~0: accepted -> argmax 0
                [0.0, 0, 0, 0],  # entropy log 4 = 1.386: redrawn
                [0.0, 9, 0, 0],  # confident but not free: kept
                [0.0, 0, 0, 30],
            ]
        ]
    )  # confident: argmax 3
    z = torch.tensor([[1, 2, 1, 1]])
    free = torch.tensor([[True, True, False, True]])
    rng = _Randomness([torch.Generator().manual_seed(0)], [(0, 4)], "cpu")
    new, accepted = entropy_bounded_step(logits, z, free, rng, vocab_size=V, entropy_bound=0.5)
    assert accepted.tolist() == [[True, False, False, True]]
    assert new[0, 0] == 0 and new[0, 2] == 1 and new[0, 3] == 3
    # the redrawn position follows softmax(logits / T): uniform here
    draws = []
    for seed in range(2000):
        rng = _Randomness([torch.Generator().manual_seed(seed)], [(0, 4)], "cpu")
        draws.append(int(entropy_bounded_step(logits, z, free, rng, vocab_size=V, entropy_bound=0.5)[0][0, 1]))
    freq = torch.bincount(torch.tensor(draws), minlength=V).double() / len(draws)
    assert torch.allclose(freq, torch.full((V,), 0.25, dtype=torch.float64), atol=0.05)


def test_the_plan_of_each_sampler():
    lams = [-9.0, 0.0, 9.0]
    assert [m.kind for m in plan_moves("ancestral", lams)] == ["ancestral", "ancestral"]
    pc = plan_moves("predictor_corrector", lams, corrector_steps=2)
    assert [m.kind for m in pc] == ["ancestral", "correct", "correct", "ancestral", "correct", "correct"]
    assert [(m.log_snr_t, m.log_snr_s) for m in pc[:3]] == [(-9.0, 0.0)] * 3  # correctors stay at the level
    tail = plan_moves("ancestral", [-9.0, -3.0, 3.0, 9.0], greedy_tail=1)
    assert [m.kind for m in tail] == ["ancestral", "ancestral", "greedy"]
    assert [m.kind for m in plan_moves("entropy_bounded", lams)] == ["entropy", "entropy"]


def test_predictor_corrector_is_the_ancestral_step_with_renoise_and_repeat(tiny_model):
    # hand-run the plan with the same per-row random stream: predictor, then renoise + ancestral again
    from sumi.sampling import ancestral_step

    C = 24
    out = tiny_model.generate(
        torch.tensor([[5, 6]]),
        max_new_tokens=8,
        canvas_length=C,
        num_denoising_steps=3,
        sampler="predictor_corrector",
        corrector_steps=1,
        seed=[4],
    )
    assert out.num_forwards == 6
    job = tiny_model.prepare_generation(
        torch.tensor([[5, 6]]), max_new_tokens=8, canvas_length=C, num_denoising_steps=3, sampler="ancestral", seed=[4]
    )
    z, free, rng = job.canvas.clone(), job.free, job.rng
    lams = job.log_snrs
    with torch.no_grad():
        for k in range(3):
            z = ancestral_step(tiny_model(input_ids=z).logits, z, free, lams[k], lams[k + 1], rng, vocab_size=256)
            z = renoise(z, free, lams[k + 1], lams[k], rng, vocab_size=256)
            z = ancestral_step(tiny_model(input_ids=z).logits, z, free, lams[k], lams[k + 1], rng, vocab_size=256)
    assert torch.equal(out.canvas, z)


def test_greedy_tail_ends_on_argmax_steps(tiny_model):
    kw = dict(max_new_tokens=8, canvas_length=24, num_denoising_steps=4, seed=[3])
    tail = tiny_model.generate(torch.tensor([[5, 6]]), sampler="ancestral", greedy_tail=1, **kw)
    head = tiny_model.prepare_generation(
        torch.tensor([[5, 6]]),
        sampler="ancestral",
        num_denoising_steps=4,
        **{k: v for k, v in kw.items() if k != "num_denoising_steps"},
    )
    engine = DenoisingEngine(tiny_model)
    engine.add(head)
    for _ in range(3):
        engine.step()
    with torch.no_grad():
        last = tiny_model(input_ids=head.canvas).logits.argmax(-1)
    expected = torch.where(head.free, last, head.canvas)
    assert torch.equal(tail.canvas, expected)


def test_entropy_bounded_rows_end_once_settled(tiny_model):
    # a bound above log V accepts every position: each step is the greedy step, and a row ends at the
    # first step that changes nothing, exactly like greedy with early_stop_patience=1
    kw = dict(max_new_tokens=8, canvas_length=24, num_denoising_steps=30, temperature=0.0)
    forwards = []
    for seed in range(6):
        out = tiny_model.generate(
            torch.tensor([[5, 6]]), seed=[seed], sampler="entropy_bounded", entropy_bound=10.0, **kw
        )
        greedy = tiny_model.generate(torch.tensor([[5, 6]]), seed=[seed], sampler="greedy", early_stop_patience=1, **kw)
        assert torch.equal(out.canvas, greedy.canvas) and out.num_forwards == greedy.num_forwards
        forwards.append(out.num_forwards)
    assert min(forwards) < 30, forwards  # some rows settled early


@pytest.mark.parametrize(
    "sampler,extra",
    [
        ("predictor_corrector", dict(corrector_steps=2)),
        ("ancestral", dict(greedy_tail=2)),
        ("entropy_bounded", dict(entropy_bound=2.0, temperature=0.8)),
    ],
)
def test_few_step_samplers_give_the_same_rows_alone_and_among_others(tiny_model, sampler, extra):
    specs = [
        dict(prompt=[5, 6], canvas_length=24, num_denoising_steps=5, seed=[1], sampler=sampler, **extra),
        dict(prompt=[7], canvas_length=32, num_denoising_steps=3, seed=[2], sampler="ancestral"),
        dict(prompt=[9, 9, 9], canvas_length=20, num_denoising_steps=7, seed=[3], sampler=sampler, **extra),
    ]
    engine = DenoisingEngine(tiny_model)
    jobs = []
    for spec in specs:
        spec = dict(spec)
        jobs.append(tiny_model.prepare_generation(torch.tensor([spec.pop("prompt")]), max_new_tokens=8, **spec))
        engine.add(jobs[-1])
    while engine.jobs:
        engine.step()
    for job, spec in zip(jobs, specs):
        spec = dict(spec)
        alone = tiny_model.generate(torch.tensor([spec.pop("prompt")]), max_new_tokens=8, **spec)
        assert torch.equal(job.result().canvas, alone.canvas)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(corrector_steps=-1), "corrector_steps"),
        (dict(greedy_tail=1.5), "greedy_tail"),
        (dict(entropy_bound=float("nan")), "entropy_bound"),
    ],
)
def test_bad_few_step_options(tiny_model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny_model.generate(torch.tensor([[5, 6]]), max_new_tokens=4, canvas_length=24, num_denoising_steps=2, **kwargs)
