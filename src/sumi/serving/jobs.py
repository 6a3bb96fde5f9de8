"""From a parsed request to a prepared `CanvasJob`, and from its result to OpenAI choices.

The request's diffusion options go to `model.prepare_generation`, the same validation that
`generate()` runs; a ValueError from it becomes a 400 naming the request field (with the field's
API name: `max_tokens`, `steps`, `stop`). The server adds only its own bounds (`ServeSettings`)
and the checks `generate()` does not make because it clamps instead (a canvas past the model's
positions, an answer budget larger than the canvas leaves).

Rows: a request with `n` choices is one job of `n` rows, row i seeded with `seed + i` (each row its
own generator), so a choice is the same whether it was served alone or among others. Without a
seed one is drawn and returned in the response (`sumi.seed`).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import torch

from ..tokenization import ByteTokenizer, encode_user_text
from .chat import render_chat
from .errors import APIError, invalid, param_from_message
from .protocol import OPTION_FIELDS, SamplingFields
from .settings import ServeSettings

SEED_LIMIT = 2**63
MAX_STOP_STRINGS = 16
# Words of the model's messages -> the request fields they are about.
MESSAGE_PARAMS = dict(OPTION_FIELDS, input_ids="prompt", prompt="prompt", max_length="max_tokens")


@dataclass
class Prompt:
    """ids: the prompt as the model sees it; source: the request field it came from ("prompt" or
    "messages"); stop: stop strings the chat template implies."""

    ids: list[int]
    source: str
    stop: list[str] = field(default_factory=list)


class TextCodec:
    """Text <-> ids for the served model: its tokenizer, or the byte-level fallback when it has none."""

    def __init__(self, tokenizer, config):
        if tokenizer is None:
            tokenizer = ByteTokenizer(
                max(config.vocab_size, 256), config.bos_token_id, config.eos_token_id, config.pad_token_id
            )
        self.tokenizer = tokenizer
        self.byte_level = isinstance(tokenizer, ByteTokenizer)
        self._pieces: dict[int, str] = {}

    def encode(self, text: str) -> list[int]:
        """User text: plain text (`encode_user_text`)."""
        return encode_user_text(self.tokenizer, text)

    def encode_rendered(self, text: str) -> list[int]:
        """Text rendered by a chat template: its special-token markers are the special tokens."""
        if self.byte_level:
            return self.tokenizer.encode(text)
        return list(self.tokenizer(text, add_special_tokens=False).input_ids)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def pieces(self, ids: list[int]) -> list[str]:
        """Each id decoded alone (special tokens included), cached."""
        out = []
        for i in ids:
            if i not in self._pieces:
                self._pieces[i] = self.tokenizer.decode([i], skip_special_tokens=False)
            out.append(self._pieces[i])
        return out


def api_message(message: str) -> str:
    """A model validation message in the request's terms (max_new_tokens -> max_tokens, ...)."""
    for option in ("max_new_tokens", "num_denoising_steps", "stop_strings"):
        message = re.sub(rf"\b{option}\b", OPTION_FIELDS[option], message)
    return message


class JobBuilder:
    """Checks requests against the model and the server's bounds and prepares their jobs."""

    def __init__(self, model, tokenizer, settings: ServeSettings):
        self.model, self.settings = model, settings
        self.config = model.config
        self.codec = TextCodec(tokenizer, model.config)
        positions = self.config.max_position_embeddings
        self.max_canvas = min(settings.max_canvas or positions, positions)

    # ---- bounds the server sets (before any tokenising)
    def check_fields(self, req: SamplingFields, *, max_tokens: int | None) -> None:
        s = self.settings
        if req.model is not None and req.model != s.model_name:
            raise APIError(
                404,
                f"the model {req.model!r} does not exist; this server serves {s.model_name!r}",
                param="model",
                code="model_not_found",
            )
        if not 1 <= req.n <= s.max_batch_rows:
            raise invalid(
                f"n must be between 1 and {s.max_batch_rows} (the server's --max-batch-rows), got {req.n}", param="n"
            )
        if max_tokens is not None and max_tokens < 1:
            raise invalid(f"max_tokens must be a positive integer, got {max_tokens}", param="max_tokens")
        if req.steps is not None and req.steps > s.max_steps:
            raise invalid(
                f"steps must be at most {s.max_steps} (the server's --max-steps), got {req.steps}", param="steps"
            )
        if req.canvas_length is not None and req.canvas_length > self.max_canvas:
            raise invalid(
                f"canvas_length must be at most {self.max_canvas} (this model has "
                f"{self.config.max_position_embeddings} positions, the server allows "
                f"{self.max_canvas}), got {req.canvas_length}",
                param="canvas_length",
            )
        if req.seed is not None and not 0 <= req.seed < SEED_LIMIT:
            raise invalid(f"seed must be in [0, 2**63), got {req.seed}", param="seed")
        stops = [req.stop] if isinstance(req.stop, str) else (req.stop or [])
        if len(stops) > MAX_STOP_STRINGS:
            raise invalid(f"stop holds at most {MAX_STOP_STRINGS} strings, got {len(stops)}", param="stop")
        for name in ("presence_penalty", "frequency_penalty"):
            if getattr(req, name) not in (None, 0, 0.0):
                raise invalid(f"{name} is not supported by a diffusion model (leave it unset or 0)", param=name)
        if req.logit_bias:
            raise invalid("logit_bias is not supported by a diffusion model", param="logit_bias")
        for name in ("logprobs", "echo", "suffix", "top_logprobs"):
            if getattr(req, name, None) not in (None, False):
                raise invalid(f"{name} is not supported by this server", param=name)
        if getattr(req, "best_of", None) not in (None, 1):
            raise invalid("best_of is not supported by this server (use n)", param="best_of")
        if req.auto_probe_steps is not None and req.auto_probe_steps > s.max_steps:
            raise invalid(
                f"auto_probe_steps must be at most {s.max_steps} (the server's --max-steps), got {req.auto_probe_steps}",
                param="auto_probe_steps",
            )
        if getattr(req, "canvas_every", 1) < 1:
            raise invalid(f"canvas_every must be a positive integer, got {req.canvas_every}", param="canvas_every")

    # ---- prompts
    def completion_prompt(self, prompt: str | list[int] | list[str]) -> Prompt:
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
            if len(prompt) != 1:
                raise invalid(
                    f"prompt: one prompt per request (got a list of {len(prompt)}); use n for several "
                    "choices, or send several requests",
                    param="prompt",
                )
            prompt = prompt[0]
        if isinstance(prompt, list):
            if not prompt:
                raise invalid(
                    'prompt: an empty list of token ids (send "" for an unconditional sample)', param="prompt"
                )
            return self._bounded(Prompt(list(prompt), "prompt"))
        return self._bounded(Prompt(self._with_bos(self.codec.encode(prompt), True), "prompt"))

    def chat_prompt(self, messages: list[Any]) -> Prompt:
        plain = [{"role": m.role, "content": m.text()} for m in messages]
        try:
            chat = render_chat(plain, None if self.codec.byte_level else self.codec.tokenizer)
        except ValueError as e:
            raise invalid(str(e), param="messages") from None
        ids = self.codec.encode_rendered(chat.text)
        return self._bounded(Prompt(self._with_bos(ids, chat.add_bos), "messages", chat.stop))

    def _with_bos(self, ids: list[int], add_bos: bool) -> list[int]:
        bos = self.config.bos_token_id
        return ([bos] if add_bos and bos is not None else []) + ids

    def _bounded(self, prompt: Prompt) -> Prompt:
        cap = self.settings.max_prompt_tokens
        if cap is not None and len(prompt.ids) > cap:
            raise invalid(
                f"{prompt.source}: the prompt is {len(prompt.ids)} tokens, more than this server's "
                f"--max-prompt-tokens {cap}",
                param=prompt.source,
                code="context_length_exceeded",
            )
        return prompt

    # ---- the job
    def prepare(self, req: SamplingFields, prompt: Prompt, *, max_tokens: int | None, progress_callback=None):
        """The job for `req` (`n` rows) and the seed it used. Raises APIError (400) for options the
        model rejects or an answer budget the canvas cannot hold."""
        seed = req.seed if req.seed is not None else secrets.randbelow(2**31)
        options = req.generation_options()
        options["seed"] = [seed + i for i in range(req.n)]
        budget = max_tokens if max_tokens is not None else self.max_canvas
        if req.auto_length:  # the probe sizes the answer; max_tokens is its largest budget
            options["max_new_tokens"], options["auto_max_new_tokens"] = "auto", budget
        else:
            options["max_new_tokens"] = budget
        if prompt.stop:
            options["stop_strings"] = list(options.get("stop_strings", [])) + prompt.stop
        input_ids = torch.tensor([prompt.ids] * req.n, dtype=torch.long)
        try:
            job = self.model.prepare_generation(
                input_ids, tokenizer=self.codec.tokenizer, progress_callback=progress_callback, **options
            )
        except (ValueError, TypeError) as e:
            message, param = api_message(str(e)), param_from_message(str(e), MESSAGE_PARAMS)
            if param == "prompt":
                param = prompt.source
            too_long = param == prompt.source and "does not fit" in message  # canvas_layout's words
            raise invalid(message, param=param, code="context_length_exceeded" if too_long else None) from None
        # (an auto_length job has not probed yet: its budgets are still the largest, max_tokens)
        if max_tokens is not None and job.budgets[0] < max_tokens:
            canvas = job.layout.canvas_length
            raise invalid(
                f"max_tokens {max_tokens} does not fit: the prompt takes {len(prompt.ids)} of the canvas's "
                f"{canvas} tokens and the EOS/BOS anchors 2, leaving {job.budgets[0]}; lower max_tokens "
                f"or raise canvas_length (at most {self.max_canvas})",
                param="max_tokens",
            )
        return job, seed

    # ---- the result
    def choices(self, job, result) -> tuple[list[dict], int]:
        """[{"index", "text", "finish_reason"}] per row, and the answer tokens in all ("length" when an
        answer filled its budget: the final one of a canvas that sized itself)."""
        P, out, tokens = job.prompt_len, [], 0
        for i, budget in enumerate(job.budgets):
            answer = result.sequences[i, P : int(result.lengths[i])].tolist()
            tokens += len(answer)
            out.append(
                {
                    "index": i,
                    "text": self.codec.decode(answer),
                    "finish_reason": "length" if len(answer) >= budget else "stop",
                }
            )
        return out, tokens
