"""The live page at `/` in a real headless browser: Debian's chromium driven by Playwright.

The page runs against the real server (the bundled demo model, 127.0.0.1, an ephemeral port):
it streams POST /v1/canvas, draws at least 3 distinct frames, ends on the text /v1/completions
gives for the same body and seed, and replays the run with its scrubber. Without chromium or
playwright the tests skip, except under CI=true, where they fail.

The screenshot in docs/serve-page.png is rewritten by `SUMI_UPDATE_SCREENSHOT=1 pytest
tests/test_serve_page.py` (a plain run only checks a fresh screenshot, so the tree stays clean).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from sumi.serving.client import get_text, post

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = REPO / "docs" / "serve-page.png"
MAX_SCREENSHOT_BYTES = 300_000
RUN_TIMEOUT_MS = 60_000
API_KEY = "sk-test-page"

# the page's settings for one short, seeded run of the demo model
STEPS, ANSWER_TOKENS = 8, 40
SETTINGS = {
    "#sampler": "ancestral",
    "#steps": str(STEPS),
    "#max_tokens": str(ANSWER_TOKENS),
    "#canvas_length": "96",
    "#seed": "7",
}


def require_browser() -> None:
    """Skip when chromium or playwright is missing; under CI=true that is a failure."""
    missing = []
    if shutil.which(CHROMIUM) is None:
        missing.append(f"{CHROMIUM} (Debian's chromium package)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright Python package")
    if not missing:
        return
    reason = "the browser test needs " + " and ".join(missing)
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason + "; CI must provide them")
    pytest.skip(reason)


# ---- the real server ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server_url():
    import sumi
    from sumi.serving import BackgroundServer, ServeSettings, create_app

    model, tokenizer = sumi.load("demo")
    with BackgroundServer(create_app(model, tokenizer, ServeSettings(model_name="demo", api_key=API_KEY))) as url:
        yield url


def post_ok(url: str, path: str, body: dict) -> dict:
    status, answer = post(url, path, body, api_key=API_KEY)
    assert status == 200, answer
    return answer


# ---- the browser ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


# Records the canvas as drawn: the text of #canvas (and how many tokens are still initial noise)
# each time the page reports a frame drawn, read from the DOM at that moment.
RECORD_FRAMES = """
window.__drawn = [];
document.addEventListener("sumi:frame", () => {
  const canvas = document.getElementById("canvas");
  window.__drawn.push({text: canvas.textContent, noise: canvas.querySelectorAll(".tok.noise").length,
                       tokens: canvas.querySelectorAll(".tok").length,
                       step: document.getElementById("step-counter").textContent});
});
"""


@pytest.fixture
def page(browser, server_url):
    page = browser.new_page(viewport={"width": 1100, "height": 860})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.add_init_script(RECORD_FRAMES)
    page.goto(server_url + "/")
    yield page
    page.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def enter_key(page) -> None:
    """Type the API key; leaving the field makes the page ask /v1/models again, now allowed."""
    page.fill("#api_key", API_KEY)
    page.press("#api_key", "Tab")
    page.wait_for_function("document.getElementById('model-name').textContent === 'model: demo'")


def fill_settings(page, settings: dict[str, str]) -> None:
    for selector, value in settings.items():
        if selector == "#sampler":
            page.select_option(selector, value)
        else:
            page.fill(selector, value)


def run_and_capture_body(page) -> dict:
    """Click Run, wait for the run to end; returns the JSON body the page POSTed to /v1/canvas."""
    with page.expect_request(lambda r: r.url.endswith("/v1/canvas") and r.method == "POST") as request:
        page.click("#run")
    page.wait_for_function("document.getElementById('run').textContent === 'Run'", timeout=RUN_TIMEOUT_MS)
    return json.loads(request.value.post_data)


# ---- tests ---------------------------------------------------------------------------------------


def test_page_draws_the_canvas_live_and_ends_on_the_completions_text(page, server_url, tmp_path):
    page.fill("#prompt", "def read_config(path):")
    enter_key(page)
    fill_settings(page, SETTINGS)
    body = run_and_capture_body(page)
    assert page.text_content("#error") == "" and page.is_hidden("#error")

    # the page sent what the form says, and the server's completion for that body is its final text
    assert body["prompt"] == "def read_config(path):" and body["model"] == "demo"
    assert (body["seed"], body["steps"], body["max_tokens"], body["canvas_length"], body["sampler"]) == (
        7,
        STEPS,
        ANSWER_TOKENS,
        96,
        "ancestral",
    )
    completion_body = {k: v for k, v in body.items() if k != "canvas_every"}
    expected = post_ok(server_url, "/v1/completions", completion_body)["choices"][0]["text"]
    assert page.text_content("#final-text") == expected

    drawn = page.evaluate("window.__drawn")
    texts = [frame["text"] for frame in drawn]
    assert len(set(texts)) >= 3, f"only {len(set(texts))} distinct canvas frames were drawn"
    assert len(drawn) == 1 + STEPS  # the random canvas, then one frame per step (canvas_every=1)
    first, last = drawn[0], drawn[-1]
    assert first["noise"] == first["tokens"] == ANSWER_TOKENS  # the answer region, all random tokens
    assert last["noise"] == 0 and last["tokens"] == ANSWER_TOKENS
    assert first["step"].startswith(f"step 0 / {STEPS}") and last["step"] == f"step {STEPS} / {STEPS}"
    assert page.text_content("#status").startswith("done")

    # replay: the scrubber draws each recorded frame again, exactly as it was drawn live
    assert page.is_enabled("#scrubber")
    assert page.get_attribute("#scrubber", "max") == str(STEPS)
    for index in (0, STEPS // 2, STEPS):
        page.fill("#scrubber", str(index))
        assert page.text_content("#canvas") == texts[index]
        assert page.text_content("#step-counter") == drawn[index]["step"]
    # the replay button plays every frame again, in order, from the first
    page.evaluate("window.__drawn = []")
    page.click("#play")
    page.wait_for_function(
        f"window.__drawn.length === {len(drawn)} && document.getElementById('play').textContent === '▶ replay'"
    )
    assert [frame["text"] for frame in page.evaluate("window.__drawn")] == texts
    assert page.input_value("#scrubber") == str(STEPS)

    page.fill("#scrubber", str(STEPS // 2))
    shot = tmp_path / "serve-page.png"
    page.screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) < MAX_SCREENSHOT_BYTES, len(data)
    if os.environ.get("SUMI_UPDATE_SCREENSHOT") == "1":
        partial = SCREENSHOT.with_suffix(".png.partial")
        partial.write_bytes(data)
        os.replace(partial, SCREENSHOT)


def test_page_marks_changed_and_overwritten_tokens_from_the_stream(page):
    """Each drawn token's marks are the flags of its event (the frames read back through the
    page's read-only hook), and those flags follow their definition from the ids: `changed` =
    differs from the previous frame, `overwrote` = changed where an earlier step had already
    written (so never in the first step)."""
    page.fill("#prompt", "Good Lord,")
    enter_key(page)
    fill_settings(page, SETTINGS)
    run_and_capture_body(page)
    frames = page.evaluate("window.sumiPage.frames()")
    assert len(frames) == 1 + STEPS
    written = [False] * ANSWER_TOKENS
    for previous, frame in zip(frames, frames[1:]):
        before, row = previous["rows"][0], frame["rows"][0]
        changed = [a != b for a, b in zip(before["ids"], row["ids"])]
        assert row["changed"] == changed
        assert all(w for w, o in zip(written, row["overwrote"]) if o)  # only where written before
        assert all(c for c, o in zip(changed, row["overwrote"]) if o)
        written = [w or c for w, c in zip(written, changed)]
    assert any(any(f["rows"][0]["overwrote"]) for f in frames[1:]), "this seeded run overwrites tokens"
    for index in (1, STEPS // 2 + 1, STEPS):
        page.fill("#scrubber", str(index))
        row = frames[index]["rows"][0]
        marks = page.eval_on_selector_all(
            "#canvas .tok", "els => els.map(e => [e.classList.contains('changed'), e.classList.contains('overwrote')])"
        )
        assert marks == [[c, o] for c, o in zip(row["changed"], row["overwrote"])]
        colours = page.eval_on_selector_all("#canvas .tok", "els => els.map(e => e.style.backgroundColor)")
        assert len(set(colours)) > 1  # coloured by confidence, which varies across positions
    legend = page.text_content(".legend")
    assert "overwrote a token the model had written" in legend and "changed this step" in legend


def test_page_shows_token_text_as_text_never_as_markup(page):
    markup = '<img src=x onerror="window.__injected=1">'
    page.fill("#prompt", markup)
    enter_key(page)
    fill_settings(page, SETTINGS)
    run_and_capture_body(page)
    assert page.query_selector("#canvas img") is None and page.query_selector("#final-text img") is None
    assert page.evaluate("window.__injected") is None
    assert markup in page.text_content("#canvas .prompt-text")


def test_page_shows_the_servers_errors_and_the_next_run_succeeds(page):
    fill_settings(page, SETTINGS)
    run_and_capture_body(page)  # no API key yet
    assert page.is_visible("#error")
    error = page.text_content("#error")
    assert error.startswith("401 authentication_error") and "API key" in error, error
    assert page.text_content("#status") == "failed" and page.text_content("#canvas") == ""

    enter_key(page)
    page.fill("#canvas_length", "100000")
    run_and_capture_body(page)
    error = page.text_content("#error")
    assert error.startswith("400 invalid_request_error (param canvas_length)"), error

    page.fill("#steps", "1.5")  # caught by the page itself: the server would answer 422
    page.fill("#canvas_length", "96")
    page.click("#run")
    assert page.text_content("#error") == "steps: expected an integer, got 1.5"

    page.fill("#steps", str(STEPS))
    run_and_capture_body(page)
    assert page.is_hidden("#error")
    assert page.text_content("#status").startswith("done")


def test_page_chat_mode_ends_on_the_chat_completions_text(page, server_url):
    page.check('input[name="mode"][value="chat"]')
    page.fill("#system", "You are terse.")
    page.fill("#prompt", "Name a colour.")
    enter_key(page)
    fill_settings(page, SETTINGS)
    body = run_and_capture_body(page)
    assert body["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name a colour."},
    ]
    chat_body = {k: v for k, v in body.items() if k != "canvas_every"}
    expected = post_ok(server_url, "/v1/chat/completions", chat_body)["choices"][0]["message"]["content"]
    assert page.text_content("#final-text") == expected


def test_page_follows_a_canvas_that_sizes_itself(page, server_url):
    """auto_length + shrink from the page's checkboxes: the final text is the API's for the same body,
    and each frame shows the row's current budget, the dropped tail of a shrunk answer as ended."""
    page.fill("#prompt", "def read_config(path):")
    enter_key(page)
    fill_settings(page, dict(SETTINGS, **{"#sampler": "greedy", "#seed": "6"}))  # a seed whose answer shrinks
    page.check("#auto_length")
    page.check("#shrink")
    body = run_and_capture_body(page)
    assert body["auto_length"] is True and body["shrink"] is True and "grow" not in body
    answer = post_ok(server_url, "/v1/completions", {k: v for k, v in body.items() if k != "canvas_every"})
    assert page.text_content("#final-text") == answer["choices"][0]["text"]
    frames = page.evaluate("window.sumiPage.frames()")
    budget = answer["sumi"]["budgets"][0]
    assert frames[0]["rows"][0]["budget"] == ANSWER_TOKENS  # the probe's canvas
    assert frames[-1]["rows"][0]["budget"] == budget < ANSWER_TOKENS
    for index in range(1, STEPS + 1):
        page.fill("#scrubber", str(index))
        row = frames[index]["rows"][0]
        live = page.eval_on_selector_all("#canvas .tok:not(.ended)", "els => els.length")
        ended = page.eval_on_selector_all("#canvas .tok.ended", "els => els.length")
        assert (live, ended) == (row["budget"], len(row["ids"]) - row["budget"])
    assert f"budget {budget}" in page.text_content("#status") and "positions" in page.text_content("#status")


def test_stop_ends_the_run_and_frees_its_row(page, server_url):
    enter_key(page)
    fill_settings(page, dict(SETTINGS, **{"#steps": "1000"}))  # long enough to be stopped half-way
    page.click("#run")
    page.wait_for_function("window.__drawn.length >= 3", timeout=RUN_TIMEOUT_MS)
    assert page.text_content("#run") == "Stop"
    page.click("#run")
    page.wait_for_function("document.getElementById('status').textContent === 'stopped'")
    assert page.is_hidden("#error") and page.text_content("#final-text") == ""
    assert page.is_enabled("#scrubber")  # what was drawn can still be replayed
    deadline = time.monotonic() + 30
    while json.loads(get_text(server_url, "/health"))["live_rows"] != 0:
        assert time.monotonic() < deadline, "the stopped run still holds its row"
        time.sleep(0.1)
