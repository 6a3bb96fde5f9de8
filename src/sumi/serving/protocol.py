"""The wire format: OpenAI's request bodies (plus sumi's diffusion extras) and response objects.

Requests are parsed strictly (no type coercion, no unknown fields): a body of the wrong shape is a
422, an unknown field a 400, both naming the field. Values are checked later, mostly by the
model's own option validation (`prepare_generation`), so the server and `generate()` accept
exactly the same things.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import APIError, invalid

# generate() option -> the request field that sets it (diffusion extras keep their names).
OPTION_FIELDS = {
    "max_new_tokens": "max_tokens",
    "num_denoising_steps": "steps",
    "stop_strings": "stop",
    "seed": "seed",
    "sampler": "sampler",
    "schedule": "schedule",
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "canvas_length": "canvas_length",
    "tokens_per_step": "tokens_per_step",
    "stop_on_cycle": "stop_on_cycle",
    "early_stop_patience": "early_stop_patience",
    "skip_tail": "skip_tail",
    "min_log_snr": "min_log_snr",
    "max_log_snr": "max_log_snr",
    "corrector_steps": "corrector_steps",
    "greedy_tail": "greedy_tail",
    "entropy_bound": "entropy_bound",
    "auto_probe_steps": "auto_probe_steps",
    "grow": "grow",
    "grow_max": "grow_max",
    "shrink": "shrink",
    "shrink_patience": "shrink_patience",
}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class StreamOptions(_Body):
    include_usage: bool = False


class SamplingFields(_Body):
    """What every generation endpoint accepts: OpenAI's sampling fields and the diffusion extras
    (None = the model's generation config)."""

    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    # OpenAI fields with no diffusion counterpart: accepted at their neutral values only
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    # diffusion extras
    steps: int | None = None
    sampler: str | None = None
    schedule: str | None = None
    canvas_length: int | None = None
    tokens_per_step: int | None = None
    top_k: int | None = None
    min_p: float | None = None
    stop_on_cycle: bool | None = None
    early_stop_patience: int | None = None
    skip_tail: bool | None = None
    min_log_snr: float | None = None
    max_log_snr: float | None = None
    corrector_steps: int | None = None
    greedy_tail: int | None = None
    entropy_bound: float | None = None
    # canvases that size themselves: `auto_length` probes where the model puts EOS and sizes the
    # answer to it, `max_tokens` then being the largest budget (generate()'s max_new_tokens="auto",
    # auto_max_new_tokens=max_tokens); `grow` / `shrink` follow the answer while it denoises
    auto_length: bool | None = None
    auto_probe_steps: int | None = None
    grow: bool | None = None
    grow_max: int | None = None
    shrink: bool | None = None
    shrink_patience: int | None = None

    def generation_options(self) -> dict[str, Any]:
        """The generate() options this request sets explicitly (the rest resolve through the model;
        `max_tokens` and `auto_length` are set by `JobBuilder.prepare`)."""
        options = {opt: getattr(self, name) for opt, name in OPTION_FIELDS.items() if name != "seed"}
        if isinstance(options["stop_strings"], str):
            options["stop_strings"] = [options["stop_strings"]]
        return {k: v for k, v in options.items() if v is not None}


class CompletionRequest(SamplingFields):
    """POST /v1/completions. `prompt`: text, or token ids, or a list holding one text."""

    prompt: str | list[int] | list[str] = ""
    logprobs: int | None = None
    echo: bool = False
    best_of: int | None = None
    suffix: str | None = None
    sumi_canvas: bool = False  # ride the canvas frames along in the stream's chunks
    canvas_every: int = 1


class TextPart(_Body):
    type: Literal["text"]
    text: str


class Message(_Body):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class ChatRequest(SamplingFields):
    """POST /v1/chat/completions."""

    messages: list[Message]
    max_completion_tokens: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None


class CanvasRequest(SamplingFields):
    """POST /v1/canvas: a completion (`prompt`) or a chat (`messages`) body, streamed as canvas frames."""

    prompt: str | list[int] | list[str] | None = None
    messages: list[Message] | None = None
    canvas_every: int = Field(default=1)


# ----------------------------------------------------------------------------- parsing
def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def parse_body(raw: bytes, model: type[BaseModel]) -> BaseModel:
    """A request body -> `model`, or an APIError: 400 for bytes that are not UTF-8 JSON holding an
    object (NaN and Infinity are not JSON) or for an unknown field, 422 for a field of the wrong
    type or a missing one."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise invalid(f"the request body is not valid UTF-8 (byte {e.start})", code="invalid_encoding") from None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except ValueError as e:
        raise invalid(f"the request body is not valid JSON: {e}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise invalid(f"the request body must be a JSON object, got {type(data).__name__}", code="invalid_json")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise _schema_error(e) from None


def _schema_error(e: ValidationError) -> APIError:
    err = e.errors()[0]
    field = str(err["loc"][0]) if err["loc"] else None
    if err["type"] == "extra_forbidden":
        return invalid(f"unrecognized request argument: {field}", param=field, code="unknown_parameter")
    if err["type"] == "missing":
        return APIError(422, f"missing required field: {field}", param=field, code="missing_field")
    where = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("list[", "str", "int", "Literal")))
    got = err.get("input")
    shown = json.dumps(got)[:80] if isinstance(got, (str, int, float, bool, type(None), list, dict)) else repr(got)
    return APIError(422, f"{where}: {err['msg'].lower()}, got {shown}", param=field, code="invalid_type")


# ----------------------------------------------------------------------------- responses
def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion_object(request_id: str, model: str, choices: list[dict], use: dict, extra: dict) -> dict:
    """A whole `text_completion`; choices: [{"index", "text", "finish_reason"}]."""
    return {
        "id": request_id,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [dict(c, logprobs=None) for c in choices],
        "usage": use,
        "sumi": extra,
    }


def chat_object(request_id: str, model: str, choices: list[dict], use: dict, extra: dict) -> dict:
    """A whole `chat.completion`; choices as for `completion_object`."""
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": c["index"],
                "message": {"role": "assistant", "content": c["text"]},
                "logprobs": None,
                "finish_reason": c["finish_reason"],
            }
            for c in choices
        ],
        "usage": use,
        "sumi": extra,
    }


def completion_chunk(request_id: str, model: str, index: int, text: str, finish_reason: str | None) -> dict:
    return {
        "id": request_id,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": index, "text": text, "logprobs": None, "finish_reason": finish_reason}],
    }


def chat_chunk(request_id: str, model: str, index: int, delta: dict, finish_reason: str | None) -> dict:
    return {
        "id": request_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


def usage_chunk(request_id: str, model: str, obj: str, use: dict) -> dict:
    """The last chunk with `stream_options.include_usage`: no choices, the usage."""
    return {"id": request_id, "object": obj, "created": int(time.time()), "model": model, "choices": [], "usage": use}


def sse(data: dict | str) -> str:
    """One server-sent event."""
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"
