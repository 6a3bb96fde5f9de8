"use strict";
// The live canvas page. It POSTs the form to /v1/canvas and reads the server-sent events with
// fetch + a stream reader (EventSource cannot POST), draws every canvas frame as it arrives, and
// keeps the frames so a range input can replay the run once it ends. Model output only ever
// reaches the DOM through text nodes (never innerHTML).
(() => {
  const $ = (id) => document.getElementById(id);

  // form field -> how to parse it; an empty field is left out (the server's default applies)
  const NUMBER_FIELDS = {
    steps: "int", temperature: "float", canvas_length: "int", max_tokens: "int", seed: "int",
    tokens_per_step: "int", top_k: "int", top_p: "float", min_p: "float", canvas_every: "int",
  };
  // canvases that size themselves: checkboxes sent as `true` when ticked (left out otherwise)
  const FLAG_FIELDS = ["auto_length", "grow", "shrink"];
  const WHITESPACE_MARKS = { " ": "·", "\n": "↵", "\t": "⇥", "\r": "␍" };
  const MAX_BREAKS_PER_TOKEN = 2;  // a "\n\n\n\n" token in the random canvas should not eat the page
  const REPLAY_FRAME_MS = 120;

  const state = {
    frames: [],        // [{step, numSteps, rows: [{index, budget, ids, tokens, confidence?, changed?, overwrote?}]}]
    prompt: "",        // the prompt as the server laid it out (chat template applied)
    model: null,       // the id /v1/models reports, sent with every request
    controller: null,  // AbortController of the run in flight
    replay: null,      // interval id while the replay button plays the frames
  };

  // ---- request -----------------------------------------------------------------------------------

  class InputError extends Error {}

  function parseNumber(name) {
    const input = $(name);
    if (input.validity.badInput) throw new InputError(`${name}: expected a number`);
    if (input.value.trim() === "") return undefined;
    const value = Number(input.value);
    if (NUMBER_FIELDS[name] === "int" && !Number.isInteger(value)) {
      throw new InputError(`${name}: expected an integer, got ${input.value}`);
    }
    return value;
  }

  /** The JSON body of /v1/canvas from the form: the /v1/completions (or chat) body plus extras. */
  function requestBody() {
    const body = {};
    if (state.model) body.model = state.model;
    const text = $("prompt").value;
    if (promptMode() === "chat") {
      const system = $("system").value.trim();
      body.messages = (system ? [{ role: "system", content: system }] : [])
        .concat([{ role: "user", content: text }]);
    } else {
      body.prompt = text;
    }
    if ($("sampler").value) body.sampler = $("sampler").value;
    for (const name of Object.keys(NUMBER_FIELDS)) {
      const value = parseNumber(name);
      if (value !== undefined) body[name] = value;
    }
    for (const name of FLAG_FIELDS) {
      if ($(name).checked) body[name] = true;
    }
    return body;
  }

  function promptMode() {
    return document.querySelector('input[name="mode"]:checked').value;
  }

  function authHeaders() {
    const key = $("api_key").value.trim();
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  /** "400 invalid_request_error (param steps): ..." from an OpenAI-style {"error": {...}} body. */
  function describeError(error, status) {
    if (!error || typeof error !== "object") return `${status ?? "error"}: ${String(error)}`;
    const head = [status, error.type || error.code].filter(Boolean).join(" ");
    const param = error.param ? ` (param ${error.param})` : "";
    return `${head}${param}: ${error.message ?? JSON.stringify(error)}`;
  }

  async function httpError(response) {
    const text = await response.text();
    try {
      const parsed = JSON.parse(text);
      if (parsed && parsed.error) return describeError(parsed.error, response.status);
      if (parsed && parsed.detail) return `${response.status}: ${JSON.stringify(parsed.detail)}`;
    } catch (_) { /* not JSON: show the start of the raw body */ }
    return `${response.status} ${response.statusText}: ${text.slice(0, 300)}`;
  }

  // ---- server-sent events ------------------------------------------------------------------------

  /** Split off complete lines (\n, \r\n or \r endings); a trailing \r waits for a possible \n. */
  function takeLines(buffer) {
    const lines = [];
    let start = 0;
    for (let i = 0; i < buffer.length; i++) {
      const c = buffer[i];
      if (c !== "\n" && c !== "\r") continue;
      if (c === "\r") {
        if (i + 1 === buffer.length) break;
        if (buffer[i + 1] === "\n") {
          lines.push(buffer.slice(start, i));
          start = ++i + 1;
          continue;
        }
      }
      lines.push(buffer.slice(start, i));
      start = i + 1;
    }
    return [lines, buffer.slice(start)];
  }

  /** Yields the data of each event of an SSE response body (multi-line data joined by \n). */
  async function* sseData(response) {
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let data = [];
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        let lines;
        [lines, buffer] = takeLines(buffer + value);
        for (const line of lines) {
          if (line === "") {
            if (data.length) yield data.join("\n");
            data = [];
          } else if (line.startsWith("data:")) {
            data.push(line.slice(line.startsWith("data: ") ? 6 : 5));
          }  // comments (":") and other fields (event, id, retry) carry nothing for this page
        }
      }
      if (data.length) yield data.join("\n");
    } finally {
      reader.cancel().catch(() => {});  // the consumer stopped early ([DONE], an error): close the body
    }
  }

  // ---- drawing -----------------------------------------------------------------------------------

  /** Low confidence: pale amber; high: blue. One definition for the tokens and the legend. */
  function confidenceColour(p) {
    const c = Math.min(1, Math.max(0, Number(p) || 0));
    return `hsl(${35 + 170 * c}, ${85 - 20 * c}%, ${91 - 22 * c}%)`;
  }

  function paintLegend() {
    const stops = [0, 0.25, 0.5, 0.75, 1].map(confidenceColour).join(", ");
    document.documentElement.style.setProperty("--conf-gradient", `linear-gradient(to right, ${stops})`);
    document.documentElement.style.setProperty("--conf-mid", confidenceColour(0.6));
  }

  function trailingNewlines(text) {
    return text.length - text.replace(/\n+$/, "").length;
  }

  /** Append `text` to `parent` as text nodes, whitespace shown as dim marks. A newline inside the
   *  text (up to `maxBreaks` of them) also breaks the line there, so an indent starts the next line
   *  as in the text; newlines that end it are left to the caller (a break after the token). */
  function appendVisibleText(parent, text, maxBreaks = 0) {
    if (text === "") {
      parent.classList.add("empty");
      parent.append("∅");
      return;
    }
    const inner = text.length - trailingNewlines(text);
    let run = "";
    let breaks = 0;
    let at = 0;
    for (const ch of text) {
      at += ch.length;
      const mark = WHITESPACE_MARKS[ch];
      if (mark === undefined) {
        run += ch;
        continue;
      }
      if (run) parent.append(run);
      run = "";
      const ws = document.createElement("span");
      ws.className = "ws";
      ws.textContent = mark;
      parent.append(ws);
      if (ch === "\n" && at <= inner && breaks++ < maxBreaks) parent.append("\n");
    }
    if (run) parent.append(run);
  }

  /** A row's answer ends at its budget; the positions after it (ids the frame still carries) are the
   *  tail a canvas that sizes itself dropped when the answer shrank. */
  function hasEnded(row, i) {
    return typeof row.budget === "number" && i >= row.budget;
  }

  function tokenElement(row, i) {
    const span = document.createElement("span");
    span.className = "tok";
    const text = String(row.tokens?.[i] ?? "");
    const confidence = row.confidence?.[i];
    const ended = hasEnded(row, i);
    if (ended) {
      span.classList.add("ended");
    } else if (confidence === undefined || confidence === null) {
      span.classList.add("noise");
    } else {
      span.style.backgroundColor = confidenceColour(confidence);
    }
    if (row.changed?.[i] && !ended) span.classList.add("changed");
    if (row.overwrote?.[i] && !ended) span.classList.add("overwrote");
    if (/^<\|.*\|>$/.test(text)) span.classList.add("special");
    appendVisibleText(span, text, MAX_BREAKS_PER_TOKEN);
    const id = row.ids?.[i];
    span.title = [
      id !== undefined ? `id ${id}` : null,
      ended ? "ended: past the answer's end (the row shrank)"
        : confidence != null ? `confidence ${Number(confidence).toFixed(3)}` : "random token",
      row.overwrote?.[i] ? "overwrote a model-written token" : row.changed?.[i] ? "changed this step" : null,
    ].filter(Boolean).join(" · ");
    return span;
  }

  function rowElement(row, showIndex) {
    const div = document.createElement("div");
    div.className = "row";
    if (showIndex) {
      const label = document.createElement("span");
      label.className = "row-label";
      label.textContent = `row ${row.index}`;
      div.append(label);
    }
    if (state.prompt) {
      const prompt = document.createElement("span");
      prompt.className = "prompt-text";
      prompt.title = "prompt";
      prompt.textContent = state.prompt;
      div.append(prompt);
    }
    const n = row.tokens?.length ?? 0;
    for (let i = 0; i < n; i++) {
      div.append(tokenElement(row, i));
      const breaks = Math.min(MAX_BREAKS_PER_TOKEN, trailingNewlines(String(row.tokens[i] ?? "")));
      for (let b = 0; b < breaks; b++) div.append(document.createElement("br"));
    }
    return div;
  }

  function stepLabel(frame) {
    if (frame.step === null) return `step 0 / ${frame.numSteps} · random canvas`;
    return `step ${frame.step} / ${frame.numSteps}`;
  }

  /** Draw frame number `index` of this run; tells listeners (and the browser test) it is drawn. */
  function renderFrame(index) {
    const frame = state.frames[index];
    const rows = frame.rows ?? [];
    $("canvas").replaceChildren(...rows.map((row) => rowElement(row, rows.length > 1)));
    $("step-counter").textContent = stepLabel(frame);
    document.dispatchEvent(new CustomEvent("sumi:frame", { detail: { index, step: frame.step } }));
  }

  function addFrame(frame) {
    state.frames.push(frame);
    const last = state.frames.length - 1;
    const scrubber = $("scrubber");
    scrubber.max = String(last);
    scrubber.value = String(last);
    renderFrame(last);
  }

  function showFinal(event) {
    const choices = event.choices ?? [];
    const texts = choices.map((c) => c.text ?? c.message?.content ?? "");
    $("final-text").textContent = choices.length > 1
      ? texts.map((t, i) => `── row ${choices[i].index ?? i} ──\n${t}`).join("\n")
      : (texts[0] ?? "");
    const reasons = [...new Set(choices.map((c) => c.finish_reason).filter(Boolean))];
    $("finish").textContent = reasons.length ? `(finish: ${reasons.join(", ")})` : "";
    return event;
  }

  // ---- one run -----------------------------------------------------------------------------------

  function showError(message) {
    $("error").textContent = message;
    $("error").hidden = !message;
  }

  function setRunning(running) {
    $("run").textContent = running ? "Stop" : "Run";
    $("run").classList.toggle("stop", running);
    $("scrubber").disabled = $("play").disabled = running || state.frames.length < 2;
  }

  // ---- replay ------------------------------------------------------------------------------------

  function stopReplay() {
    clearInterval(state.replay);
    state.replay = null;
    $("play").textContent = "▶ replay";
  }

  /** Play the frames from the first (or from where the scrubber stands, unless at the end). */
  function startReplay() {
    const scrubber = $("scrubber");
    const last = state.frames.length - 1;
    let index = Number(scrubber.value) >= last ? 0 : Number(scrubber.value);
    $("play").textContent = "❚❚ pause";
    const show = () => {
      scrubber.value = String(index);
      renderFrame(index);
      if (++index > last) stopReplay();
    };
    show();
    if (state.replay === null && index <= last) state.replay = setInterval(show, REPLAY_FRAME_MS);
  }

  function resetRun() {
    stopReplay();
    state.frames = [];
    state.prompt = "";
    $("canvas").replaceChildren();
    $("final-text").textContent = "";
    $("finish").textContent = "";
    $("step-counter").textContent = "step –";
    $("scrubber").max = "0";
    $("scrubber").value = "0";
    showError("");
  }

  /** Apply one event of the stream; returns the final event when it is one. */
  function applyEvent(event) {
    if (event.error) throw new Error(describeError(event.error));
    switch (event.object) {
      case "sumi.canvas.start":
        state.prompt = String(event.prompt ?? "");
        addFrame({ step: null, numSteps: event.num_steps, rows: event.rows });
        return null;
      case "sumi.canvas":
        addFrame({ step: event.step, numSteps: event.num_steps, rows: event.rows });
        return null;
      case "sumi.canvas.final":
        return showFinal(event);
      default:
        return null;  // a newer server's extra events
    }
  }

  function summary(final, seconds, body) {
    const parts = [`done in ${seconds.toFixed(1)} s`];
    if (final?.num_forwards !== undefined) parts.push(`${final.num_forwards} forwards`);
    if (final?.usage?.completion_tokens !== undefined) parts.push(`${final.usage.completion_tokens} tokens`);
    const budgets = final?.sumi?.budgets;  // where the canvas sized itself: the budgets it ended with
    if (Array.isArray(budgets) && FLAG_FIELDS.some((name) => body[name])) parts.push(`budget ${budgets.join(", ")}`);
    const positions = final?.sumi?.positions;
    if (Array.isArray(positions)) parts.push(`${positions.reduce((a, b) => a + b, 0)} positions`);
    if (final?.sumi?.seed !== undefined) parts.push(`seed ${final.sumi.seed}`);
    return parts.join(" · ");
  }

  async function run() {
    let body;
    try {
      body = requestBody();
    } catch (err) {
      if (err instanceof InputError) return showError(err.message);
      throw err;
    }
    resetRun();
    const controller = new AbortController();
    state.controller = controller;
    setRunning(true);
    $("status").textContent = "running…";
    const started = performance.now();
    let final = null;
    let outcome = "";
    try {
      const response = await fetch("v1/canvas", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "text/event-stream", ...authHeaders() },
        body: JSON.stringify(body),
        signal: controller.signal,
      });
      if (!response.ok) throw new Error(await httpError(response));
      for await (const data of sseData(response)) {
        if (data === "[DONE]") break;
        final = applyEvent(JSON.parse(data)) ?? final;
      }
      outcome = final ? summary(final, (performance.now() - started) / 1000, body) : "the stream ended without a result";
      if (!final) showError(outcome);
    } catch (err) {
      if (controller.signal.aborted) {
        outcome = "stopped";
      } else {
        outcome = "failed";
        showError(err instanceof TypeError ? `could not reach the server: ${err.message}` : err.message);
      }
    } finally {
      state.controller = null;
      setRunning(false);
      $("status").textContent = outcome;
      document.dispatchEvent(new CustomEvent("sumi:done", { detail: { ok: final !== null, frames: state.frames.length } }));
    }
  }

  // ---- wiring ------------------------------------------------------------------------------------

  async function loadModel() {
    try {
      const response = await fetch("v1/models", { headers: authHeaders() });
      if (!response.ok) return;
      const models = (await response.json()).data ?? [];
      if (!models.length) return;
      state.model = models[0].id;
      $("model-name").textContent = `model: ${state.model}`;
    } catch (_) { /* the page still works: the server picks its model */ }
  }

  function onSubmit(e) {
    e.preventDefault();
    if (state.controller) state.controller.abort();
    else run();
  }

  function onScrub() {
    stopReplay();
    const index = Number($("scrubber").value);
    if (state.frames[index]) renderFrame(index);
  }

  function onModeChange() {
    document.querySelector("label.system").hidden = promptMode() !== "chat";
  }

  paintLegend();
  $("run-form").addEventListener("submit", onSubmit);
  $("scrubber").addEventListener("input", onScrub);
  $("play").addEventListener("click", () => (state.replay === null ? startReplay() : stopReplay()));
  $("prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("run-form").requestSubmit();
  });
  for (const radio of document.querySelectorAll('input[name="mode"]')) radio.addEventListener("change", onModeChange);
  $("api_key").addEventListener("change", loadModel);
  loadModel();
  // read-only view for scripts and the browser test: the frames of the last run
  window.sumiPage = Object.freeze({ frames: () => state.frames.slice(), renderFrame });
})();
