"""The step-driven engine: jobs of different lengths, samplers, schedules, step counts and seeds share
forwards, join at step boundaries and leave when done or cancelled, each with the result it has alone."""

import pytest
import torch

from sumi.denoising import CanvasJob, DenoisingEngine, canvas_layout

V, BOS, EOS = 256, 1, 2

# one option set per job: different prompts, canvas lengths, samplers, schedules, step counts, exits
JOBS = [
    dict(prompt=[5, 6, 7], max_new_tokens=10, canvas_length=24, num_denoising_steps=6, sampler="ancestral", seed=[1]),
    dict(prompt=[9], max_new_tokens=20, canvas_length=40, num_denoising_steps=4, sampler="greedy", seed=[2]),
    dict(
        prompt=[3, 4],
        max_new_tokens=8,
        canvas_length=32,
        num_denoising_steps=9,
        sampler="adaptive",
        tokens_per_step=3,
        temperature=0.7,
        seed=[3],
    ),
    dict(
        prompt=[[5, 6], [7, 8]],
        max_new_tokens=6,
        canvas_length=16,
        num_denoising_steps=5,
        sampler="ancestral",
        schedule="cosine",
        top_p=0.9,
        seed=[4, 5],
    ),
    dict(
        prompt=[8, 8, 8, 8],
        max_new_tokens=12,
        canvas_length=28,
        num_denoising_steps=12,
        sampler="adaptive",
        temperature=0,
        tokens_per_step=2,
        stop_on_cycle=True,
        seed=[6],
    ),
    dict(
        prompt=[7],
        max_new_tokens=5,
        canvas_length=20,
        num_denoising_steps=7,
        sampler="ancestral",
        skip_tail=True,
        seed=[7],
    ),
]


def prepare(model, spec: dict) -> CanvasJob:
    spec = dict(spec)
    return model.prepare_generation(torch.tensor(spec.pop("prompt")), **spec)


def alone(model, spec: dict):
    spec = dict(spec)
    return model.generate(torch.tensor(spec.pop("prompt")), **spec)


def test_generate_is_one_job_stepped_to_the_end(tiny_model):
    spec = JOBS[0]
    job, engine = prepare(tiny_model, spec), DenoisingEngine(tiny_model)
    engine.add(job)
    seen = 0
    while not job.done:
        assert job.steps_done == seen
        engine.step()
        seen += 1
    assert seen == job.num_steps == 6 and engine.forwards == 6 and not engine.jobs
    assert torch.equal(job.result().canvas, alone(tiny_model, spec).canvas)


def test_jobs_sharing_forwards_equal_each_job_alone(tiny_model):
    engine = DenoisingEngine(tiny_model)
    jobs = [prepare(tiny_model, spec) for spec in JOBS]
    for job in jobs:
        engine.add(job)
    while engine.jobs:
        engine.step()
    assert engine.forwards == max(spec["num_denoising_steps"] for spec in JOBS)  # all in every forward
    for job, spec in zip(jobs, JOBS):
        ref = alone(tiny_model, spec)
        out = job.result()
        assert torch.equal(out.canvas, ref.canvas), spec
        assert torch.equal(out.sequences, ref.sequences) and out.num_forwards == ref.num_forwards, spec


def test_a_job_joining_half_way_equals_the_job_alone(tiny_model):
    engine = DenoisingEngine(tiny_model)
    first, late = prepare(tiny_model, JOBS[2]), prepare(tiny_model, JOBS[1])
    engine.add(first)
    for _ in range(4):
        engine.step()
    assert first.steps_done == 4
    engine.add(late)  # joins at this step boundary, at its own step 0
    finished = []
    while engine.jobs:
        finished += engine.step()
    assert late.steps_done == 4 and first.steps_done == 9
    assert finished == [late, first]  # the late job (4 steps) finished first
    assert torch.equal(first.result().canvas, alone(tiny_model, JOBS[2]).canvas)
    assert torch.equal(late.result().canvas, alone(tiny_model, JOBS[1]).canvas)


def test_a_cancelled_job_leaves_and_the_rest_are_unchanged(tiny_model):
    engine = DenoisingEngine(tiny_model)
    keep, drop = prepare(tiny_model, JOBS[0]), prepare(tiny_model, JOBS[2])
    engine.add(keep)
    engine.add(drop)
    engine.step()
    assert engine.live_rows == 2
    engine.cancel(drop)
    assert drop.done and drop.cancelled and engine.live_rows == 1 and drop.steps_done == 1
    while engine.jobs:
        engine.step()
    assert torch.equal(keep.result().canvas, alone(tiny_model, JOBS[0]).canvas)


def test_rows_that_leave_early_stop_taking_part_in_forwards(tiny_model):
    # stop_on_cycle: greedy rows leave once their canvas repeats; the engine's batch shrinks
    spec = dict(
        prompt=[5, 6],
        max_new_tokens=8,
        canvas_length=20,
        num_denoising_steps=40,
        sampler="greedy",
        stop_on_cycle=True,
        seed=[1],
    )
    job, engine = prepare(tiny_model, spec), DenoisingEngine(tiny_model)
    engine.add(job)
    while not job.done:
        engine.step()
    assert job.steps_done < 40 and engine.live_rows == 0
    assert torch.equal(job.result().canvas, alone(tiny_model, dict(spec, stop_on_cycle=False)).canvas)


def test_progress_callbacks_see_each_jobs_own_rows(tiny_model):
    seen = {0: [], 1: []}
    engine = DenoisingEngine(tiny_model)
    jobs = []
    for i, spec in enumerate(JOBS[:2]):
        spec = dict(spec)
        prompt = torch.tensor(spec.pop("prompt"))
        jobs.append(
            tiny_model.prepare_generation(prompt, progress_callback=lambda info, i=i: seen[i].append(info), **spec)
        )
        engine.add(jobs[-1])
    while engine.jobs:
        engine.step()
    for i, job in enumerate(jobs):
        assert [info["step"] for info in seen[i]] == list(range(job.num_steps))
        assert seen[i][-1]["z"].shape == (1, job.layout.canvas_length)
        assert torch.equal(seen[i][-1]["z"], job.result().canvas)
        assert ((seen[i][-1]["top1_prob"] > 0) & (seen[i][-1]["top1_prob"] <= 1)).all()


def test_layout_of_a_row(tiny_model):
    layout = canvas_layout(tiny_model.config, [2, 4], 4, 10, 24, anchors=True, aligned=True)
    assert layout.starts == [2, 0] and layout.width == 26 and layout.budgets == [10, 10]
    assert layout.answer_columns(0) == (4, 14) and layout.anchor_columns() == [[14, 15], [14, 15]]
    short = canvas_layout(tiny_model.config, [3], 3, 100, 16, anchors=True, aligned=False)
    assert short.budgets == [16 - 3 - 2]  # capped to what fits before EOS, BOS
    with pytest.raises(ValueError, match="does not fit a canvas of 16"):
        canvas_layout(tiny_model.config, [14], 14, 4, 16, anchors=True, aligned=False)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(temperature=float("nan")), "temperature"),
        (dict(temperature=float("inf")), "temperature"),
        (dict(min_log_snr=3.0, max_log_snr=-3.0), "min_log_snr"),
        (dict(min_log_snr=float("nan")), "min_log_snr"),
        (dict(early_stop_patience=-1), "early_stop_patience"),
        (dict(frozen=[(0, 5)]), "inside the prompt"),
        (dict(canvas_length=0), "canvas_length"),
        (dict(seed="7"), "seed"),
        (dict(tokens_per_step=0), "tokens_per_step"),
        (dict(stop_strings=["x"]), "tokenizer"),
    ],
)
def test_prepare_rejects_bad_options_before_any_work(tiny_model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny_model.prepare_generation(
            torch.tensor([[5, 6]]),
            max_new_tokens=4,
            canvas_length=kwargs.pop("canvas_length", 32),
            num_denoising_steps=2,
            **kwargs,
        )


def run_recording_logits(model, specs: list[dict], together: bool, spy_groups=None):
    """The jobs of `specs` stepped to the end, in one engine (`together`) or each in its own; returns
    the jobs and, per job, the logits each of its steps read (its `advance` inputs)."""
    jobs = [prepare(model, spec) for spec in specs]
    seen: list[list[torch.Tensor]] = [[] for _ in jobs]
    for job, log in zip(jobs, seen):
        real = job.advance
        job.advance = lambda logits, real=real, log=log: (
            log.append(logits[:, : real.__self__.width].clone()) or real(logits)
        )
    engines = [DenoisingEngine(model)] if together else [DenoisingEngine(model) for _ in jobs]
    if spy_groups is not None:
        for engine in engines:
            engine._groups = spy_groups(engine._groups)
    for k, job in enumerate(jobs):
        engines[0 if together else k].add(job)
    for engine in engines:
        while engine.jobs:
            engine.step()
    return jobs, seen


def test_with_batch_invariance_jobs_of_each_width_share_a_forward(tiny_model):
    """In exact mode (`make_batch_invariant`, here in bf16, where GEMMs and attention otherwise
    move a row's bits with its batch and its padding) a forward holds the rows of one width only,
    and every logit each job reads is bit-identical to its run alone."""
    import copy

    from sumi.batch_invariance import make_batch_invariant

    model = copy.deepcopy(tiny_model).to(torch.bfloat16)
    make_batch_invariant(model)
    specs = JOBS + [dict(JOBS[0], seed=[11], sampler="greedy"), dict(JOBS[1], seed=[12], num_denoising_steps=3)]
    calls = []  # (widths, jobs) of each forward

    def spy(real):
        def grouped(jobs):
            out = real(jobs)
            calls.extend(({j.forward_width for j in g}, len(g)) for g in out)
            return out

        return grouped

    jobs, together = run_recording_logits(model, specs, True, spy)
    assert all(len(widths) == 1 for widths, _ in calls) and len(calls) > max(s["num_denoising_steps"] for s in specs)
    assert max(n for _, n in calls) == 2  # the jobs of one width shared their forwards
    alone_jobs, alone_logits = run_recording_logits(model, specs, False)
    for spec, a, b, job, ref in zip(specs, together, alone_logits, jobs, alone_jobs):
        assert len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b)), spec
        assert torch.equal(job.result().canvas, ref.result().canvas), spec


def test_with_batch_invariance_self_sizing_jobs_of_nearby_widths_share_a_padded_forward(tiny_model):
    """A job whose width moves with its budget (skip_tail, auto, shrink) pads its forward to a multiple
    of WIDTH_MULTIPLE columns (masked keys) in exact mode, alone as in a batch: jobs of nearby widths
    then share a forward, and every logit each job reads is bit-identical to its run alone."""
    import copy

    from sumi.batch_invariance import make_batch_invariant
    from sumi.denoising import WIDTH_MULTIPLE

    model = copy.deepcopy(tiny_model).to(torch.bfloat16)
    make_batch_invariant(model)
    base = dict(prompt=[7], canvas_length=40, num_denoising_steps=6, sampler="ancestral", skip_tail=True)
    specs = [
        dict(base, max_new_tokens=5, seed=[1]),  # width 1 + 5 + 2 = 8
        dict(base, max_new_tokens=9, seed=[2], sampler="greedy"),  # 12
        dict(base, max_new_tokens=3, seed=[3], num_denoising_steps=4),  # 6
        dict(base, max_new_tokens=20, seed=[4], skip_tail=False, shrink=True),  # sizing: 23, then shrinks
        dict(base, max_new_tokens="auto", seed=[5], skip_tail=False, sampler="adaptive", tokens_per_step=2),
    ]
    groups = []  # per forward: (its width, the widths of the jobs in it)

    def spy(real):
        def grouped(jobs):
            out = real(jobs)
            groups.extend((g[0].forward_width, sorted(j.width for j in g)) for g in out)
            return out

        return grouped

    jobs, together = run_recording_logits(model, specs, True, spy)
    assert all(w % WIDTH_MULTIPLE == 0 or w == 40 for w, _ in groups)  # (40: the whole canvas)
    assert (WIDTH_MULTIPLE, [6, 8, 12]) in groups  # the three skip_tail jobs in one forward
    alone_jobs, alone_logits = run_recording_logits(model, specs, False)
    for spec, a, b, job, ref in zip(specs, together, alone_logits, jobs, alone_jobs):
        assert len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b)), spec
        assert torch.equal(job.result().canvas, ref.result().canvas), spec
