"""The server's parts without HTTP: metrics, error parameters, the chat template, canvas frames,
body parsing, the scheduler's admission rule and recovery, settings and the command line."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
import torch

from sumi.serving.canvas import CanvasFrames
from sumi.serving.chat import PLAIN_STOP, render_chat
from sumi.serving.errors import APIError, param_from_message
from sumi.serving.jobs import MESSAGE_PARAMS, api_message
from sumi.serving.metrics import Histogram, RateWindow, ServerMetrics
from sumi.serving.protocol import ChatRequest, CompletionRequest, parse_body
from sumi.serving.scheduler import QueueFull, Scheduler, Ticket
from sumi.serving.settings import ServeSettings


# ---------------------------------------------------------------------------- metrics
class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_window_counts_the_last_window_only():
    clock = FakeClock()
    rate = RateWindow(window_s=10.0, clock=clock)
    events = [(101.0, 5), (103.5, 7), (108.0, 2), (112.0, 4), (115.0, 1)]
    queries = [102.0, 105.0, 113.5, 115.0, 119.0, 130.0]
    for now in sorted({t for t, _ in events} | set(queries)):
        clock.now = now
        for t, amount in events:
            if t == now:
                rate.add(amount)
        if now in queries:
            in_window = sum(a for t, a in events if now - 10.0 < t <= now)
            assert rate.rate() == pytest.approx(in_window / min(10.0, now - 100.0)), now
    assert rate.total == sum(a for _, a in events)


def test_histogram_is_cumulative_with_sum_and_count():
    h = Histogram(buckets=(0.1, 1.0, 10.0))
    values = [0.05, 0.1, 0.5, 3.0, 20.0, 0.7]
    for v in values:
        h.observe(v)
    lines = dict(line.rsplit(" ", 1) for line in h.lines("lat"))
    for bound in ("0.1", "1.0", "10.0"):
        assert int(lines[f'lat_bucket{{le="{bound}"}}']) == sum(v <= float(bound) for v in values)
    assert int(lines['lat_bucket{le="+Inf"}']) == len(values) == int(lines["lat_count"])
    assert float(lines["lat_sum"]) == pytest.approx(sum(values))


def test_metrics_render_every_family_once_with_help_and_type():
    m = ServerMetrics()
    m.count_forwards(3)
    m.count_answer(17)
    m.count_request(200, 0.4)
    m.count_request(400, None)
    text = m.render(queue_depth=2, live_rows=5, max_batch_rows=16)
    names = re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.M)
    assert len(names) == len({n for n, _ in names})
    assert "sumi_queue_depth 2" in text and "sumi_live_rows 5" in text
    assert "sumi_forwards_total 3" in text and "sumi_answer_tokens_total 17" in text
    assert 'sumi_requests_total{status="400"} 1' in text and "sumi_request_latency_seconds_count 1" in text
    for line in text.splitlines():
        assert line.startswith("#") or re.fullmatch(r'[a-z_]+(\{[a-z]+="[^"]+"\})? -?[0-9.e+]+', line), line


# ---------------------------------------------------------------------------- errors and parsing
@pytest.mark.parametrize(
    "message,param",
    [
        ("unknown sampler 'x'; choose one of ('ancestral', 'adaptive', 'greedy')", "sampler"),
        ("num_denoising_steps must be a positive integer, got 0", "steps"),
        ("max_new_tokens must be a non-negative integer, got -1", "max_tokens"),
        ("min_log_snr and max_log_snr must be finite numbers with min_log_snr < max_log_snr", "min_log_snr"),
        (
            "stop_on_cycle needs a deterministic sampler (greedy, ...) got sampler='ancestral' at temperature=1",
            "stop_on_cycle",
        ),
        ("the prompt (300 tokens) does not fit a canvas of 256 tokens: raise canvas_length", "prompt"),
        ("input_ids must lie in [0, vocab_size=8192)", "prompt"),
        ("top_p must be in (0, 1], got 1.5", "top_p"),
        ("something else entirely", None),
    ],
)
def test_validation_messages_name_their_request_field(message, param):
    assert param_from_message(message, MESSAGE_PARAMS) == param


def test_messages_are_rewritten_in_request_terms():
    assert api_message("num_denoising_steps must be a positive integer") == "steps must be a positive integer"
    assert api_message("max_new_tokens must be ...; max_new_tokens_x") == "max_tokens must be ...; max_new_tokens_x"


def test_parse_body_statuses():
    def status_of(raw: bytes, model=CompletionRequest) -> tuple[int, str | None]:
        with pytest.raises(APIError) as e:
            parse_body(raw, model)
        return e.value.status, e.value.param

    assert status_of(b"{") == (400, None)
    assert status_of(b'"a string"') == (400, None)
    assert status_of(b'{"prompt": "a", "top_p": Infinity}') == (400, None)
    assert status_of(b"\xc3\x28") == (400, None)
    assert status_of(b'{"prompt": "a", "n": 2.0}') == (422, "n")  # no silent coercion
    assert status_of(b'{"prompt": "a", "seed": "1"}') == (422, "seed")
    assert status_of(b'{"prompt": "a", "bogus": 1}') == (400, "bogus")
    assert status_of(b'{"max_tokens": 3}', ChatRequest) == (422, "messages")
    req = parse_body(b'{"prompt": [1, 2], "steps": 8, "stop": "x", "temperature": 0}', CompletionRequest)
    assert req.prompt == [1, 2] and req.temperature == 0.0
    assert req.generation_options() == {"num_denoising_steps": 8, "stop_strings": ["x"], "temperature": 0.0}


# ---------------------------------------------------------------------------- chat
def test_plain_chat_template():
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Bye"},
    ]
    chat = render_chat(messages, tokenizer=None)
    assert chat.text == "System: Be brief.\nUser: Hi\nAssistant: Hello.\nUser: Bye\nAssistant:"
    assert chat.add_bos and chat.stop == [PLAIN_STOP] == ["\nUser:"]
    with pytest.raises(ValueError, match="messages"):
        render_chat([], tokenizer=None)


def test_a_tokenizer_chat_template_is_used_when_present():
    from sumi.loading import BUNDLED_DIR
    from sumi.tokenization import load_tokenizer

    tok = load_tokenizer(str(BUNDLED_DIR / "demo"))
    tok.chat_template = (
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    chat = render_chat([{"role": "user", "content": "Hi"}], tok)
    assert chat.text == "<user>Hi<assistant>" and not chat.add_bos and chat.stop == []
    tok.chat_template = "{{ raise_exception('roles must alternate') }}"
    with pytest.raises(ValueError, match="messages: .*roles must alternate"):
        render_chat([{"role": "user", "content": "Hi"}], tok)


# ---------------------------------------------------------------------------- canvas frames
def test_canvas_frames_against_a_direct_computation():
    """Random canvases for 7 steps, frames every 2 steps: `changed` against the previous frame and
    `overwrote` (changed, and some step since the previous frame changed a token the model had
    written) recomputed from the whole history."""
    g = torch.Generator().manual_seed(0)
    P, budgets, S, steps, every = 3, [5, 4], 12, 7, 2
    canvases = [torch.randint(0, 4, (2, S), generator=g)]  # a small vocabulary: many unchanged positions
    for _ in range(steps):
        nxt = canvases[-1].clone()
        flip = torch.rand(2, S, generator=g) < 0.4
        nxt[flip] = torch.randint(0, 4, (int(flip.sum()),), generator=g)
        canvases.append(nxt)
    probs = [torch.rand(2, S, generator=g) for _ in range(steps)]
    frames = []
    tracker = CanvasFrames(canvases[0], P, budgets, every, frames.append)
    assert tracker.initial_rows() == [
        {"index": i, "budget": n, "ids": canvases[0][i, P : P + n].tolist()} for i, n in enumerate(budgets)
    ]
    for k in range(steps):
        tracker(dict(step=k, num_steps=steps, z=canvases[k + 1], top1_prob=probs[k]))
    assert [f["step"] for f in frames] == [2, 4, 6, 7]
    previous = 0
    for f in frames:
        s = f["step"]
        for i, n in enumerate(budgets):
            row = f["rows"][i]
            cols = range(P, P + n)
            assert row["budget"] == n  # (a fixed canvas: the layout's budget at every step)
            assert row["ids"] == canvases[s][i, P : P + n].tolist()
            assert row["changed"] == [bool(canvases[s][i, c] != canvases[previous][i, c]) for c in cols]

            # step k rewrote column c: it changed it, and an earlier step had changed it already
            step_changed = [[bool(canvases[k + 1][i, c] != canvases[k][i, c]) for c in cols] for k in range(s)]
            rewrote = [
                any(step_changed[k][j] and any(step_changed[e][j] for e in range(k)) for k in range(previous, s))
                for j in range(n)
            ]
            assert row["overwrote"] == [ch and r for ch, r in zip(row["changed"], rewrote)]
            assert row["confidence"] == pytest.approx(probs[s - 1][i, P : P + n].tolist(), abs=1e-4)
        previous = s


# ---------------------------------------------------------------------------- scheduler
def test_admission_is_first_come_first_served_within_the_row_limit():
    async def scenario():
        loop = asyncio.get_running_loop()
        s = Scheduler(lambda: None, max_batch_rows=4, max_queue=3)
        s.thread = type("Alive", (), {"is_alive": lambda self: True})()  # accept submissions, run nothing
        tickets = [Ticket(loop=loop, num_rows=n) for n in (3, 2, 1)]
        for t in tickets:
            s.submit(t)
        with pytest.raises(QueueFull):
            s.submit(Ticket(loop=loop, num_rows=1))
        with pytest.raises(ValueError, match="max_batch_rows"):
            s.submit(Ticket(loop=loop, num_rows=5))
        assert s._admit() == [tickets[0]]  # 3 + 2 > 4: the second waits, and the third behind it
        assert s.live_rows == 3 and s.queue_depth == 2
        s.cancel(tickets[1])  # a queued ticket leaves the queue at once
        assert tickets[1].state == "cancelled" and s._admit() == [tickets[2]] and s.live_rows == 4

    asyncio.run(scenario())


def test_a_failed_step_fails_its_requests_and_a_fresh_engine_serves_the_next(tiny_model):
    from sumi.denoising import DenoisingEngine

    engines = []

    class Failing(DenoisingEngine):
        def step(self):
            raise RuntimeError("boom")

    def factory():
        engines.append(Failing(tiny_model) if not engines else DenoisingEngine(tiny_model))
        return engines[-1]

    async def scenario():
        loop = asyncio.get_running_loop()
        s = Scheduler(factory, max_batch_rows=4, max_queue=4)
        s.start()
        try:
            results = []
            for seed in (0, 1):
                job = tiny_model.prepare_generation(
                    torch.tensor([[1, 2, 3]]), max_new_tokens=8, num_denoising_steps=4, canvas_length=16, seed=[seed]
                )
                ticket = Ticket(loop=loop, num_rows=1, job=job)
                s.submit(ticket)
                results.append(await asyncio.wait_for(ticket.events.get(), 30))
            return results, s.live_rows
        finally:
            s.stop()

    (first, second), rows = asyncio.run(scenario())
    assert first[0] == "error" and "boom" in str(first[1])
    assert second[0] == "result" and second[1].num_forwards == 4 and rows == 0
    expected = tiny_model.generate(
        torch.tensor([[1, 2, 3]]), max_new_tokens=8, num_denoising_steps=4, canvas_length=16, seed=[1]
    )
    assert torch.equal(second[1].sequences, expected.sequences)


# ---------------------------------------------------------------------------- settings and the command line
def test_settings_reject_non_positive_limits():
    with pytest.raises(ValueError, match="max_batch_rows must be a positive integer"):
        ServeSettings(max_batch_rows=0)
    with pytest.raises(ValueError, match="max_canvas"):
        ServeSettings(max_canvas=-5)


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--max-batch-rows", "0"], "argument --max-batch-rows: max_batch_rows must be a positive integer, got 0"),
        (["--port", "70000"], "argument --port: must be in [0, 65536), got 70000"),
        (["--threads", "0"], "argument --threads: must be a positive integer, got 0"),
        (["--device", "banana"], "argument --device: invalid device 'banana'"),
        (["--model", "no/such-model-here", "--port", "0"], "argument --model"),
    ],
)
def test_cli_errors_are_one_line(args, expected, capsys):
    from sumi.serving.cli import main

    assert main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sumi serve: error: ") and expected in lines[0], lines


@pytest.mark.slow  # a fresh interpreter loads torch and the model: ~5-15 s
def test_python_m_sumi_serving_serves_until_interrupted():
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sumi.serving", "--port", "0", "--log-level", "warning"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        plan = proc.stderr.readline()  # the batch-invariance probe's choice, one line, before the address
        assert plan.startswith("sumi serve: batch-invariant GEMM calls") and "320->8192 float32: " in plan, plan
        line = proc.stderr.readline()
        url = re.search(r"http://\S+:\d+", line).group(0)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=5) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
