"""`sumi serve` end to end: the bundled demo model behind a real uvicorn server on 127.0.0.1.

The references are independent of the server: `model.generate()` with the same prompt ids and one
seed per row. Batch invariance: concurrent requests of different lengths, samplers and step counts
each equal the request run alone; a request that joins a running one half-way finishes first.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from sumi.serving.client import Connection, get_text, post

API_KEY = "sk-test-serve"
FAST = dict(steps=8, canvas_length=64)  # short runs: a few hundred ms each on one CPU thread


@pytest.fixture(scope="module")
def served():
    import sumi
    from sumi.serving import BackgroundServer, ServeSettings, create_app

    model, tok = sumi.load("demo")
    app = create_app(model, tok, ServeSettings(model_name="demo", api_key=API_KEY, max_batch_rows=16))
    with BackgroundServer(app) as url:
        yield url, model, tok


@pytest.fixture(scope="module")
def client(served):
    from openai import OpenAI

    return OpenAI(base_url=served[0] + "/v1", api_key=API_KEY, max_retries=0, timeout=120)


def reference_ids(
    model, tok, ids: list[int], seeds: list[int], stop: list[str] | None = None, **body
) -> list[list[int]]:
    """Each row's answer ids from `generate()` on the prompt ids, one generator per row, the
    request's options under their generate() names."""
    names = dict(steps="num_denoising_steps", max_tokens="max_new_tokens")
    options = {names.get(k, k): v for k, v in body.items()}
    out = model.generate(torch.tensor([ids] * len(seeds)), seed=seeds, tokenizer=tok, stop_strings=stop, **options)
    return [out.sequences[i, len(ids) : int(out.lengths[i])].tolist() for i in range(len(seeds))]


def reference(model, tok, ids: list[int], seeds: list[int], stop: list[str] | None = None, **body) -> list[str]:
    """What each row should say (see `reference_ids`)."""
    return [tok.decode(a, skip_special_tokens=True) for a in reference_ids(model, tok, ids, seeds, stop, **body)]


def prompt_ids(tok, text: str) -> list[int]:
    return [tok.bos_token_id] + tok.encode(text, add_special_tokens=False)


def metric(url: str, name: str) -> float:
    for line in get_text(url, "/metrics", api_key=API_KEY).splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not in /metrics")


# ---------------------------------------------------------------------------- the OpenAI API
def test_completion_equals_generate_with_the_same_seed(served, client):
    url, model, tok = served
    body = dict(max_tokens=24, **FAST)
    out = client.completions.create(model="demo", prompt="def add(a, b):", seed=3, extra_body=body)
    answer = reference_ids(model, tok, prompt_ids(tok, "def add(a, b):"), [3], **body)[0]
    assert out.choices[0].text == tok.decode(answer, skip_special_tokens=True)
    assert out.object == "text_completion" and out.model == "demo"
    assert out.usage.prompt_tokens == len(prompt_ids(tok, "def add(a, b):"))
    assert out.usage.completion_tokens == len(answer)
    assert out.choices[0].finish_reason == ("length" if len(answer) == 24 else "stop")


def test_streamed_completion_joins_to_the_plain_text(client):
    body = dict(max_tokens=32, **FAST)
    plain = client.completions.create(model="demo", prompt="import os\n", seed=5, extra_body=body)
    chunks = list(
        client.completions.create(
            model="demo",
            prompt="import os\n",
            seed=5,
            stream=True,
            stream_options={"include_usage": True},
            extra_body=body,
        )
    )
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == plain.choices[0].text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [plain.choices[0].finish_reason]
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens


def test_n_choices_are_rows_seeded_seed_plus_index(served, client):
    url, model, tok = served
    body = dict(max_tokens=16, **FAST)
    out = client.completions.create(model="demo", prompt="class A:", seed=40, n=3, extra_body=body)
    assert [c.index for c in out.choices] == [0, 1, 2]
    expected = reference(model, tok, prompt_ids(tok, "class A:"), [40, 41, 42], **body)
    assert [c.text for c in out.choices] == expected
    alone = client.completions.create(model="demo", prompt="class A:", seed=41, extra_body=body)
    assert alone.choices[0].text == out.choices[1].text


def test_chat_uses_the_default_template_and_streams_the_same_text(served, client):
    """The demo tokenizer has no chat template: the server renders sumi's default, as `sumi chat` does."""
    url, model, tok = served
    body = dict(max_tokens=32, sampler="adaptive", temperature=0.0, tokens_per_step=6, **FAST)
    messages = [{"role": "system", "content": "You write Python."}, {"role": "user", "content": "Write a function."}]
    plain = client.chat.completions.create(model="demo", messages=messages, seed=9, extra_body=body)
    template = "<|beginoftext|>System:\nYou write Python.\nUser:\nWrite a function.\nAssistant:\n"
    expected = reference(
        model, tok, tok.encode(template, add_special_tokens=False), [9], **{k: v for k, v in body.items()}
    )
    assert plain.choices[0].message.content == expected[0]
    assert plain.choices[0].message.role == "assistant" and plain.object == "chat.completion"
    stream = list(client.chat.completions.create(model="demo", messages=messages, seed=9, stream=True, extra_body=body))
    assert stream[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in stream) == plain.choices[0].message.content
    assert stream[-1].choices[0].finish_reason == plain.choices[0].finish_reason


def test_stop_strings_cut_the_answer(served, client):
    url, model, tok = served
    body = dict(max_tokens=48, **FAST)
    full = client.completions.create(model="demo", prompt="def f(x):", seed=2, extra_body=body).choices[0].text
    stop = full.strip()[:3]  # a piece the answer certainly contains
    assert stop
    cut = client.completions.create(model="demo", prompt="def f(x):", seed=2, stop=[stop], extra_body=body)
    assert stop not in cut.choices[0].text and full.startswith(cut.choices[0].text)
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].text == reference(model, tok, prompt_ids(tok, "def f(x):"), [2], stop=[stop], **body)[0]


def test_models_health_and_seedless_requests(served, client):
    url, _, _ = served
    assert [m.id for m in client.models.list().data] == ["demo"]
    with Connection(url) as c:
        status, _, health = c.json("GET", "/health")
    assert status == 200 and health["status"] == "ok" and health["model"] == "demo"
    status, body = post(url, "/v1/completions", dict(prompt="x", max_tokens=8, **FAST), api_key=API_KEY)
    assert status == 200 and isinstance(body["sumi"]["seed"], int)  # drawn, and returned for a replay
    status, again = post(
        url, "/v1/completions", dict(prompt="x", max_tokens=8, seed=body["sumi"]["seed"], **FAST), api_key=API_KEY
    )
    assert again["choices"][0]["text"] == body["choices"][0]["text"]


def test_responses_report_each_choices_budget_and_the_positions_it_paid(served, client):
    """`sumi.budgets` / `sumi.positions` (and with auto_length `sumi.auto_budgets`), per choice: what
    `generate()` reports for the same rows; the same in a stream's last chunks."""
    url, model, tok = served
    sized = dict(max_tokens=24, auto_length=True, shrink=True, shrink_patience=1, **FAST)
    out = client.completions.create(model="demo", prompt="def add(a, b):", seed=3, n=2, extra_body=sized)
    ref = model.generate(
        torch.tensor([prompt_ids(tok, "def add(a, b):")] * 2),
        seed=[3, 4],
        max_new_tokens="auto",
        auto_max_new_tokens=24,
        shrink=True,
        shrink_patience=1,
        num_denoising_steps=8,
        canvas_length=64,
    )
    extra = out.model_extra["sumi"]
    assert extra["budgets"] == ref.budgets.tolist() and extra["positions"] == ref.row_positions.tolist()
    assert extra["auto_budgets"] == ref.auto_budgets.tolist() and extra["num_forwards"] == ref.num_forwards
    assert out.usage.completion_tokens <= sum(extra["budgets"])
    # a fixed budget: the whole canvas every step (no auto_budgets)
    fixed = client.completions.create(
        model="demo", prompt="def add(a, b):", seed=3, extra_body=dict(max_tokens=24, **FAST)
    )
    assert fixed.model_extra["sumi"]["budgets"] == [24] and fixed.model_extra["sumi"]["positions"] == [8 * 64]
    assert "auto_budgets" not in fixed.model_extra["sumi"]
    # streams carry them on each choice's last chunk and on the usage chunk
    stream = dict(stream=True, stream_options={"include_usage": True}, extra_body=sized)
    chunks = list(client.completions.create(model="demo", prompt="def add(a, b):", seed=3, n=2, **stream))
    finals = [c for c in chunks if not c.choices or c.choices[0].finish_reason]
    assert len(finals) == 3 and all(c.model_extra["sumi"] == extra for c in finals)
    messages = [{"role": "user", "content": "Write a function."}]
    plain = client.chat.completions.create(model="demo", messages=messages, seed=5, extra_body=sized)
    chunks = list(client.chat.completions.create(model="demo", messages=messages, seed=5, **stream))
    finals = [c for c in chunks if not c.choices or c.choices[0].finish_reason]
    assert len(finals) == 2 and all(c.model_extra["sumi"] == plain.model_extra["sumi"] for c in finals)
    assert plain.model_extra["sumi"]["auto_budgets"] and plain.model_extra["sumi"]["positions"][0] > 0


# ---------------------------------------------------------------------------- continuous batching
BATCH_CASES = [
    dict(prompt="def f(x):", max_tokens=24, steps=8, canvas_length=64, seed=1),
    dict(
        prompt="import os\nimport sys\n",
        max_tokens=40,
        steps=12,
        canvas_length=96,
        sampler="adaptive",
        temperature=0.0,
        tokens_per_step=4,
        seed=2,
    ),
    dict(prompt="ROMEO.", max_tokens=16, steps=16, canvas_length=96, sampler="greedy", seed=3),
    dict(
        prompt="class A:",
        max_tokens=30,
        steps=10,
        canvas_length=64,
        sampler="adaptive",
        tokens_per_step=3,
        top_k=50,
        seed=4,
    ),
    dict(prompt="", max_tokens=20, steps=14, canvas_length=80, schedule="cosine", min_p=0.05, seed=5),
    dict(prompt="    return", max_tokens=12, steps=9, canvas_length=64, temperature=0.8, top_p=0.9, seed=6, n=2),
    dict(
        prompt="def g():",
        max_tokens=20,
        steps=5,
        canvas_length=64,
        sampler="predictor_corrector",
        corrector_steps=1,
        greedy_tail=1,
        seed=7,
    ),
    dict(
        prompt="KING.",
        max_tokens=16,
        steps=12,
        canvas_length=48,
        sampler="entropy_bounded",
        entropy_bound=1.5,
        temperature=0.9,
        seed=8,
    ),
]


def alone(model, tok, case: dict) -> list[str]:
    body = {k: v for k, v in case.items() if k not in ("prompt", "seed", "n")}
    seeds = [case["seed"] + i for i in range(case.get("n", 1))]
    return reference(model, tok, prompt_ids(tok, case["prompt"]), seeds, **body)


def test_concurrent_requests_each_equal_the_request_alone(served):
    assert_concurrent_cases_equal_alone(*served)


def assert_concurrent_cases_equal_alone(url: str, model, tok) -> None:
    """BATCH_CASES sent at once each answer as `generate()` alone, sharing forwards."""
    before = metric(url, "sumi_forwards_total")
    with ThreadPoolExecutor(len(BATCH_CASES)) as pool:
        answers = list(pool.map(lambda c: post(url, "/v1/completions", c, api_key=API_KEY), BATCH_CASES))
    forwards = metric(url, "sumi_forwards_total") - before
    for case, (status, body) in zip(BATCH_CASES, answers):
        assert status == 200, body
        assert [c["text"] for c in body["choices"]] == alone(model, tok, case), case
    # they shared forwards: one request after another would take the sum of their steps
    assert forwards < sum(c["steps"] for c in BATCH_CASES), forwards


def test_a_request_joining_half_way_finishes_before_the_long_one(served):
    url, model, tok = served
    long_case = dict(prompt="ROMEO.", max_tokens=48, steps=48, canvas_length=96, seed=21)
    # the same canvas width as the long one: with batch invariance on, rows share a forward per width
    short_case = dict(prompt="def g():", max_tokens=16, steps=8, canvas_length=96, sampler="greedy", seed=22)
    finished: dict[str, float] = {}
    short_answer: list = []

    def run_short():
        short_answer.append(post(url, "/v1/completions", short_case, api_key=API_KEY))
        finished["short"] = time.monotonic()

    before = metric(url, "sumi_forwards_total")
    joiner = threading.Thread(target=run_short)
    with Connection(url, api_key=API_KEY) as c:
        for event in c.events("/v1/canvas", dict(long_case, canvas_every=1)):
            if event == "[DONE]":
                break
            if event["object"] == "sumi.canvas" and event["step"] == 4:
                joiner.start()  # the long run is under way: 44 of its 48 steps to go
            if event["object"] == "sumi.canvas.final":
                finished["long"] = time.monotonic()
                long_text = event["choices"][0]["text"]
    joiner.join()
    assert finished["short"] < finished["long"], "the short request waited for the long one"
    status, body = short_answer[0]
    assert status == 200 and body["choices"][0]["text"] == alone(model, tok, short_case)[0]
    assert long_text == alone(model, tok, long_case)[0]
    assert metric(url, "sumi_forwards_total") - before < 48 + 8  # the short one rode along


def test_a_client_that_hangs_up_frees_its_rows(served):
    url, _, _ = served
    c = Connection(url, api_key=API_KEY)
    events = c.events("/v1/canvas", dict(prompt="x", max_tokens=32, steps=1000, canvas_length=64, n=3, seed=0))
    assert next(events)["object"] == "sumi.canvas.start"
    assert next(events)["step"] == 1
    assert metric(url, "sumi_live_rows") == 3
    c.close()
    deadline = time.monotonic() + 10
    while metric(url, "sumi_live_rows") != 0:
        assert time.monotonic() < deadline, "the rows of a departed client were not freed"
        time.sleep(0.05)
    forwards = metric(url, "sumi_forwards_total")
    time.sleep(0.3)
    assert metric(url, "sumi_forwards_total") == forwards  # nothing is denoised for nobody


def test_a_plain_request_whose_client_hangs_up_is_cancelled(served):
    url, _, _ = served
    c = Connection(url, api_key=API_KEY)
    c.conn.request(
        "POST",
        "/v1/completions",
        body=json.dumps(dict(prompt="x", max_tokens=32, steps=1000, canvas_length=64, n=2, seed=0)),
        headers=dict(c.headers, **{"Content-Type": "application/json"}),
    )
    deadline = time.monotonic() + 10
    while metric(url, "sumi_live_rows") != 2:
        assert time.monotonic() < deadline, "the request never started"
        time.sleep(0.02)
    c.close()  # without reading the answer
    while metric(url, "sumi_live_rows") != 0:
        assert time.monotonic() < deadline + 10, "the rows of a departed client were not freed"
        time.sleep(0.05)


# ---------------------------------------------------------------------------- the canvas stream
def canvas_run(url: str, body: dict) -> list:
    with Connection(url, api_key=API_KEY) as c:
        return list(c.events("/v1/canvas", body))


def test_canvas_stream_frames_follow_the_contract(served):
    url, model, tok = served
    body = dict(prompt="def add(a, b):", max_tokens=24, steps=8, canvas_length=64, seed=11)
    events = canvas_run(url, dict(body, canvas_every=1))
    start, frames, final, done = events[0], events[1:-2], events[-2], events[-1]
    assert start["object"] == "sumi.canvas.start" and start["num_steps"] == 8 and done == "[DONE]"
    assert start["prompt"] == "def add(a, b):"
    assert [f["step"] for f in frames] == list(range(1, 9))
    assert all(f["object"] == "sumi.canvas" and f["provisional"] is True for f in frames)
    previous = start["rows"][0]["ids"]
    written = [False] * 24  # positions the model has changed at least once
    overwrites = 0
    for f in frames:
        row = f["rows"][0]
        ids = row["ids"]
        assert len(ids) == len(row["tokens"]) == len(row["confidence"]) == 24
        assert row["tokens"] == [tok.decode([i]) for i in ids]
        assert all(0.0 <= p <= 1.0 for p in row["confidence"])
        changed = [a != b for a, b in zip(ids, previous)]
        assert row["changed"] == changed
        assert row["overwrote"] == [c and w for c, w in zip(changed, written)]
        overwrites += sum(row["overwrote"])
        written = [w or c for w, c in zip(written, changed)]
        previous = ids
    assert overwrites > 0  # a uniform-noise model rewrites tokens it wrote itself
    text = final["choices"][0]["text"]
    eos = tok.eos_token_id
    answer = previous[: previous.index(eos)] if eos in previous else previous
    assert text == tok.decode(answer, skip_special_tokens=True)
    status, plain = post(url, "/v1/completions", body, api_key=API_KEY)
    assert text == plain["choices"][0]["text"] == alone(model, tok, body)[0]
    assert final["num_forwards"] == 8 and final["usage"]["completion_tokens"] == len(answer)


def test_canvas_every_k_steps_compares_with_the_previous_frame(served):
    url, _, _ = served
    body = dict(
        prompt="ROMEO.",
        max_tokens=16,
        steps=8,
        canvas_length=64,
        sampler="adaptive",
        temperature=0.0,
        tokens_per_step=2,
        seed=12,
    )
    every = canvas_run(url, dict(body, canvas_every=1))
    sparse = canvas_run(url, dict(body, canvas_every=3))
    steps = [e["step"] for e in sparse if isinstance(e, dict) and e["object"] == "sumi.canvas"]
    assert steps == [3, 6, 8]  # every 3 steps, and the last
    by_step = {e["step"]: e["rows"][0] for e in every if isinstance(e, dict) and e["object"] == "sumi.canvas"}
    by_step[0] = every[0]["rows"][0]
    for prev, now in zip([0, 3, 6], steps):
        row = next(e["rows"][0] for e in sparse if isinstance(e, dict) and e.get("step") == now)
        assert row["ids"] == by_step[now]["ids"]
        assert row["changed"] == [a != b for a, b in zip(by_step[now]["ids"], by_step[prev]["ids"])]
        # overwrote: changed since the last frame, and some step in between rewrote a written token
        assert all(not o or c for o, c in zip(row["overwrote"], row["changed"]))
        rewritten = [any(by_step[k]["overwrote"][j] for k in range(prev + 1, now + 1)) for j in range(16)]
        assert row["overwrote"] == [c and r for c, r in zip(row["changed"], rewritten)]
    assert sparse[-2]["choices"] == every[-2]["choices"]


def test_completion_stream_carries_canvas_frames_and_append_only_text(served, client):
    url, _, _ = served
    body = dict(prompt="class A:", max_tokens=20, steps=8, canvas_length=64, seed=13)
    with Connection(url, api_key=API_KEY) as c:
        chunks = list(c.events("/v1/completions", dict(body, stream=True, sumi_canvas=True, canvas_every=2)))
    assert chunks[-1] == "[DONE]"
    frames = [ch["sumi_canvas"] for ch in chunks[:-1] if "sumi_canvas" in ch]
    assert [f["step"] for f in frames] == [0, 2, 4, 6, 8] and all(f["provisional"] for f in frames)
    assert all(ch["object"] == "text_completion" for ch in chunks[:-1])
    texts = [ch["choices"][0]["text"] for ch in chunks[:-1]]
    assert all(t == "" for t, ch in zip(texts, chunks) if "sumi_canvas" in ch)
    plain = client.completions.create(
        model="demo",
        prompt=body["prompt"],
        seed=13,
        extra_body={k: body[k] for k in ("max_tokens", "steps", "canvas_length")},
    )
    assert "".join(texts) == plain.choices[0].text


def test_metrics_are_prometheus_text(served):
    url, _, _ = served
    assert post(url, "/v1/completions", dict(prompt="x", max_tokens=8, **FAST), api_key=API_KEY)[0] == 200
    text = get_text(url, "/metrics", api_key=API_KEY)
    samples = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert line.startswith(("# HELP ", "# TYPE "))
            continue
        name, value = line.rsplit(" ", 1)
        samples[name] = float(value)
    for name in (
        "sumi_queue_depth",
        "sumi_live_rows",
        "sumi_forwards_per_second",
        "sumi_answer_tokens_per_second",
        "sumi_forwards_total",
        "sumi_answer_tokens_total",
        "sumi_request_latency_seconds_count",
    ):
        assert name in samples, name
    buckets = [v for k, v in samples.items() if k.startswith("sumi_request_latency_seconds_bucket")]
    assert buckets == sorted(buckets) and buckets[-1] == samples["sumi_request_latency_seconds_count"] > 0
    assert samples['sumi_requests_total{status="200"}'] >= samples["sumi_request_latency_seconds_count"]
    assert "# TYPE sumi_request_latency_seconds histogram" in text
    json.dumps(samples)  # plain numbers only
