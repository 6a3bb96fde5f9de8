"""Bad input and limits: every bad request gets an OpenAI-style error body with the right status,
never a 500 or a traceback, and the server keeps serving. A full queue answers 429 with Retry-After.

One server for the module: an API key, 2 rows, a queue of 1, short prompts and a small body cap.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from sumi.serving.client import Connection, get_text, post

KEY = "sk-test-errors"
GOOD = dict(prompt="def f(x):", max_tokens=8, steps=8, canvas_length=64, seed=0)
CHAT = dict(messages=[{"role": "user", "content": "hi"}], max_tokens=8, steps=8, canvas_length=64, seed=0)
MAX_BODY = 4096


@pytest.fixture(scope="module")
def url():
    import sumi
    from sumi.serving import BackgroundServer, ServeSettings, create_app

    model, tok = sumi.load("demo")
    settings = ServeSettings(
        model_name="demo",
        api_key=KEY,
        max_batch_rows=2,
        max_queue=1,
        max_prompt_tokens=48,
        max_steps=2000,
        max_body_bytes=MAX_BODY,
    )
    with BackgroundServer(create_app(model, tok, settings)) as base:
        yield base


# (name, method, path, body (dict = JSON, bytes = as is), extra headers, status, param, code)
BAD_REQUESTS = [
    ("malformed JSON", "POST", "/v1/completions", b'{"prompt": "a",', {}, 400, None, "invalid_json"),
    ("JSON that is not an object", "POST", "/v1/completions", b'["prompt"]', {}, 400, None, "invalid_json"),
    ("invalid UTF-8", "POST", "/v1/completions", b'{"prompt": "\xff\xfe"}', {}, 400, None, "invalid_encoding"),
    (
        "NaN is not JSON",
        "POST",
        "/v1/completions",
        b'{"prompt": "a", "temperature": NaN}',
        {},
        400,
        None,
        "invalid_json",
    ),
    (
        "max_tokens of the wrong type",
        "POST",
        "/v1/completions",
        dict(GOOD, max_tokens="ten"),
        {},
        422,
        "max_tokens",
        "invalid_type",
    ),
    (
        "stream of the wrong type",
        "POST",
        "/v1/completions",
        dict(GOOD, stream="yes"),
        {},
        422,
        "stream",
        "invalid_type",
    ),
    (
        "prompt of the wrong type",
        "POST",
        "/v1/completions",
        dict(GOOD, prompt={"text": "a"}),
        {},
        422,
        "prompt",
        "invalid_type",
    ),
    ("missing messages", "POST", "/v1/chat/completions", dict(max_tokens=8), {}, 422, "messages", "missing_field"),
    (
        "unknown role",
        "POST",
        "/v1/chat/completions",
        dict(CHAT, messages=[{"role": "robot", "content": "x"}]),
        {},
        422,
        "messages",
        "invalid_type",
    ),
    ("unknown field", "POST", "/v1/completions", dict(GOOD, stepz=8), {}, 400, "stepz", "unknown_parameter"),
    ("negative max_tokens", "POST", "/v1/completions", dict(GOOD, max_tokens=-1), {}, 400, "max_tokens", None),
    ("huge max_tokens", "POST", "/v1/completions", dict(GOOD, max_tokens=10**9), {}, 400, "max_tokens", None),
    (
        "canvas past the model's positions",
        "POST",
        "/v1/completions",
        dict(GOOD, canvas_length=4096),
        {},
        400,
        "canvas_length",
        None,
    ),
    ("unknown sampler", "POST", "/v1/completions", dict(GOOD, sampler="beam"), {}, 400, "sampler", None),
    ("unknown schedule", "POST", "/v1/completions", dict(GOOD, schedule="cubic"), {}, 400, "schedule", None),
    ("zero steps", "POST", "/v1/completions", dict(GOOD, steps=0), {}, 400, "steps", None),
    ("steps past --max-steps", "POST", "/v1/completions", dict(GOOD, steps=5000), {}, 400, "steps", None),
    ("top_p above 1", "POST", "/v1/completions", dict(GOOD, top_p=1.5), {}, 400, "top_p", None),
    ("negative temperature", "POST", "/v1/completions", dict(GOOD, temperature=-0.5), {}, 400, "temperature", None),
    (
        "stop_on_cycle with a random sampler",
        "POST",
        "/v1/completions",
        dict(GOOD, stop_on_cycle=True),
        {},
        400,
        "stop_on_cycle",
        None,
    ),
    ("n past --max-batch-rows", "POST", "/v1/completions", dict(GOOD, n=3), {}, 400, "n", None),
    ("negative seed", "POST", "/v1/completions", dict(GOOD, seed=-1), {}, 400, "seed", None),
    (
        "token ids outside the vocabulary",
        "POST",
        "/v1/completions",
        dict(GOOD, prompt=[2, 99999]),
        {},
        400,
        "prompt",
        None,
    ),
    ("empty messages", "POST", "/v1/chat/completions", dict(CHAT, messages=[]), {}, 400, "messages", None),
    (
        "prompt past --max-prompt-tokens",
        "POST",
        "/v1/completions",
        dict(GOOD, prompt="word " * 200),
        {},
        400,
        "prompt",
        "context_length_exceeded",
    ),
    (
        "prompt longer than the canvas",
        "POST",
        "/v1/completions",
        dict(GOOD, prompt=[2] * 40, canvas_length=32),
        {},
        400,
        "prompt",
        "context_length_exceeded",
    ),
    (
        "penalties a diffusion model cannot honour",
        "POST",
        "/v1/completions",
        dict(GOOD, presence_penalty=1.0),
        {},
        400,
        "presence_penalty",
        None,
    ),
    ("both prompt and messages", "POST", "/v1/canvas", dict(GOOD, messages=CHAT["messages"]), {}, 400, "prompt", None),
    ("canvas_every 0", "POST", "/v1/canvas", dict(GOOD, canvas_every=0), {}, 400, "canvas_every", None),
    ("unknown model", "POST", "/v1/completions", dict(GOOD, model="gpt-4"), {}, 404, "model", "model_not_found"),
    ("unknown model card", "GET", "/v1/models/gpt-4", None, {}, 404, "model", "model_not_found"),
    ("unknown route", "POST", "/v1/embeddings", dict(input="a"), {}, 404, None, "not_found"),
    ("wrong method", "GET", "/v1/completions", None, {}, 405, None, None),
    (
        "oversized body",
        "POST",
        "/v1/completions",
        dict(GOOD, prompt="x" * (2 * MAX_BODY)),
        {},
        413,
        None,
        "request_too_large",
    ),
    ("wrong key", "POST", "/v1/completions", GOOD, {"Authorization": "Bearer sk-wrong"}, 401, None, "invalid_api_key"),
    ("no key", "POST", "/v1/completions", GOOD, {"Authorization": ""}, 401, None, "invalid_api_key"),
    ("metrics without the key", "GET", "/metrics", None, {"Authorization": ""}, 401, None, "invalid_api_key"),
]


@pytest.mark.parametrize(
    "name,method,path,body,headers,status,param,code", BAD_REQUESTS, ids=[case[0] for case in BAD_REQUESTS]
)
def test_bad_request_gets_an_openai_error(url, name, method, path, body, headers, status, param, code):
    with Connection(url, api_key=KEY) as c:
        got, _, answer = c.json(method, path, body, headers)
    assert got == status, answer
    assert isinstance(answer, dict) and set(answer) == {"error"}, answer
    error = answer["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"] and "Traceback" not in error["message"]
    assert "\n" not in error["message"]
    assert error["type"] == {401: "authentication_error"}.get(status, "invalid_request_error")
    assert error["param"] == param and error["code"] == code


def test_error_messages_use_the_request_names(url):
    status, answer = post(url, "/v1/completions", dict(GOOD, steps=0), api_key=KEY)
    assert "steps must be a positive integer" in answer["error"]["message"]
    assert "num_denoising_steps" not in answer["error"]["message"]
    status, answer = post(url, "/v1/completions", dict(GOOD, max_tokens=10**9), api_key=KEY)
    assert "canvas_length" in answer["error"]["message"]  # says how to make room


def test_the_server_still_serves_after_the_bad_requests(url):
    with Connection(url, api_key=KEY) as c:
        for case in BAD_REQUESTS:
            c.json(case[1], case[2], case[3], case[4])
            c.close()  # a fresh connection each time: some errors close it
    status, answer = post(url, "/v1/completions", GOOD, api_key=KEY)
    assert status == 200 and answer["choices"][0]["text"] is not None
    status, answer = post(url, "/v1/chat/completions", CHAT, api_key=KEY)
    assert status == 200 and answer["choices"][0]["message"]["role"] == "assistant"
    metrics = get_text(url, "/metrics", api_key=KEY)
    assert 'sumi_requests_total{status="500"}' not in metrics
    assert json.loads(get_text(url, "/health"))["status"] == "ok"  # probes need no key


def metric(url: str, name: str) -> float:
    line = next(line for line in get_text(url, "/metrics", api_key=KEY).splitlines() if line.startswith(name + " "))
    return float(line.split()[1])


def test_a_full_queue_answers_429_with_retry_after(url):
    # two rows busy with a long run, one request waiting: the next one is turned away
    long_run = Connection(url, api_key=KEY)
    events = long_run.events("/v1/canvas", dict(GOOD, steps=1000, n=2))
    assert next(events)["object"] == "sumi.canvas.start"
    next(events)
    waiting: list = []
    waiter = threading.Thread(target=lambda: waiting.append(post(url, "/v1/completions", GOOD, api_key=KEY)))
    waiter.start()
    deadline = time.monotonic() + 10
    while metric(url, "sumi_queue_depth") != 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    with Connection(url, api_key=KEY) as c:
        status, headers, answer = c.json("POST", "/v1/completions", GOOD)
    assert status == 429 and int(headers["retry-after"]) >= 1
    assert answer["error"]["type"] == "rate_limit_error" and answer["error"]["code"] == "queue_full"
    long_run.close()  # hanging up frees both rows: the waiting request runs
    waiter.join(timeout=60)
    assert waiting and waiting[0][0] == 200
    assert json.dumps(waiting[0][1]["choices"][0]["text"])
