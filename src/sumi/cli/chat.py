"""`sumi chat`: talk to a model in the terminal, with the conversation rendered through the chat
template (the tokenizer's, else `sumi.chat_template.DEFAULT_CHAT_TEMPLATE`) before every answer.

Each line read is a user turn (from a terminal or a pipe); commands start with "/": `/reset`
forgets the conversation, `/settings` shows the sampling settings and `/settings KEY=VALUE` changes
one (e.g. ``/settings sampler=greedy``; ``/settings max_new_tokens=auto`` sizes each answer to where
the model puts EOS), `/canvas` toggles the live view of the canvas as it
denoises (on a terminal), `/quit` (or end of input) leaves. `run_turn` is the one-turn core that
`sumi generate --chat` shares.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .common import (
    CLIError,
    add_model_arg,
    add_runtime_args,
    add_sampling_args,
    add_sizing_args,
    load_model,
    resolve_device,
    sampling_kwargs,
)
from .display import LiveCanvas, sanitize

DEFAULT_MAX_NEW_TOKENS = 128  # when neither the options nor the model's generation config set it
HELP = "commands: /reset  /settings [KEY=VALUE]  /canvas  /quit"


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "chat",
        help="talk to a model in the terminal (multi-turn, through its chat template)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n\n")[0],
        epilog=HELP,
    )
    add_model_arg(p)
    p.set_defaults(model="demo-instruct")
    add_runtime_args(p)
    p.add_argument("--system", metavar="TEXT", help="a system message that starts every conversation")
    p.add_argument("--show-canvas", action="store_true", help="start with the live canvas view on")
    add_sampling_args(
        p.add_argument_group("sampling", "Unset options come from the model's generation config."), auto_budget=True
    )
    add_sizing_args(p)
    return p


def generation_budget(model, kwargs: dict[str, Any]) -> int | str:
    """max_new_tokens: the options', else the model's generation config's, else `DEFAULT_MAX_NEW_TOKENS`.
    "auto" stays "auto": a probe forward sizes the answer, up to `auto_max_new_tokens`, by default
    what fits the canvas after the prompt (the conversation so far)."""
    budget = (
        kwargs.get("max_new_tokens")
        or getattr(model.generation_config, "max_new_tokens", None)
        or DEFAULT_MAX_NEW_TOKENS
    )
    return "auto" if budget == "auto" else int(budget)


def run_turn(
    model, tokenizer, messages: list[dict[str, str]], kwargs: dict[str, Any], *, progress_callback=None
) -> str:
    """The assistant's answer to `messages`: the template's prompt with the generation prompt,
    `generate()` with `kwargs` over the model's generation config, the tokens after the prompt
    decoded without special tokens and stripped."""
    import torch

    from ..chat_template import chat_prompt_ids

    ids = chat_prompt_ids(tokenizer, messages)
    device = next(model.parameters()).device
    kwargs = {**kwargs, "max_new_tokens": generation_budget(model, kwargs)}
    out = model.generate(torch.tensor([ids], device=device), progress_callback=progress_callback, **kwargs)
    return tokenizer.decode(out.sequences[0, len(ids) :].tolist(), skip_special_tokens=True).strip()


def load_chat_model(args: argparse.Namespace):
    """The model and its tokenizer (with a chat template) that --model names."""
    from ..chat_template import ensure_chat_template

    model, tokenizer = load_model(
        args.model, dtype=args.dtype, device=resolve_device(args.device), attn_implementation=args.attn_implementation
    )
    if tokenizer is None:
        raise CLIError(f"argument --model: {args.model!r} has no tokenizer to chat with")
    return model, ensure_chat_template(tokenizer)


def chat_once(args: argparse.Namespace, message: str) -> int:
    """`sumi generate --chat MESSAGE`: one user turn, the answer on stdout."""
    if args.prompts or args.prompts_file:
        raise CLIError("argument --chat: give the message there, without PROMPT arguments or --prompts-file")
    if args.format != "text":
        raise CLIError(
            "argument --format: --chat prints the answer as text; for JSONL give the conversation as a prompt "
            "(PROMPT or --prompts-file) in the model's chat format"
        )
    model, tokenizer = load_chat_model(args)
    print(sanitize(run_turn(model, tokenizer, [{"role": "user", "content": message}], sampling_kwargs(args))))
    return 0


def _change_setting(kwargs: dict[str, Any], text: str) -> str:
    """Apply ``KEY=VALUE`` to `kwargs` (generate() option names, validated); the message to show."""
    import yaml

    from ..generation_sumi import GENERATION_DEFAULTS, validate_generation_options

    key, _, value = text.partition("=")
    key = key.strip().replace("-", "_")
    if not _ or key not in GENERATION_DEFAULTS or key in ("seed", "frozen", "max_length"):
        return f"usage: /settings KEY=VALUE with KEY one of {', '.join(sorted(set(GENERATION_DEFAULTS) - {'seed', 'frozen', 'max_length'}))}"
    trial = {**GENERATION_DEFAULTS, "max_new_tokens": 1, **kwargs, key: yaml.safe_load(value)}
    try:
        validate_generation_options(trial)
    except ValueError as e:
        return f"not changed: {e}"
    kwargs[key] = trial[key]
    return f"{key} = {kwargs[key]!r}"


def _settings_text(model, kwargs: dict[str, Any]) -> str:
    from ..generation_sumi import GENERATION_DEFAULTS

    gc = model.generation_config
    shown = {
        k: kwargs.get(k, getattr(gc, k, None) if getattr(gc, k, None) is not None else v)
        for k, v in GENERATION_DEFAULTS.items()
        if k not in ("frozen", "max_length", "seed")
    }
    shown["max_new_tokens"] = generation_budget(model, kwargs)
    return "  ".join(f"{k}={v}" for k, v in shown.items())


def run(args: argparse.Namespace) -> int:
    model, tokenizer = load_chat_model(args)
    kwargs = sampling_kwargs(args)
    system = [{"role": "system", "content": args.system}] if args.system else []
    messages = list(system)
    show_canvas = args.show_canvas
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"chatting with {args.model}; {HELP}", file=sys.stderr)
    while True:
        if interactive:
            print("> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line:
            return 0
        text = line.strip()
        if not text:
            continue
        if text in ("/quit", "/exit"):
            return 0
        if text == "/reset":
            messages = list(system)
            print("(conversation reset)", flush=True)
            continue
        if text.startswith("/settings"):
            rest = text[len("/settings") :].strip()
            print(_change_setting(kwargs, rest) if rest else _settings_text(model, kwargs), flush=True)
            continue
        if text == "/canvas":
            show_canvas = not show_canvas
            print(f"(live canvas {'on' if show_canvas else 'off'})", flush=True)
            continue
        if text.startswith("/"):
            print(f"unknown command {text.split()[0]!r}; {HELP}", flush=True)
            continue
        messages.append({"role": "user", "content": text})
        callback = _canvas_view(model, tokenizer, messages, kwargs) if show_canvas and sys.stderr.isatty() else None
        try:
            answer = run_turn(model, tokenizer, messages, kwargs, progress_callback=callback)
        except ValueError as e:  # e.g. the conversation no longer fits the canvas
            messages.pop()
            print(f"error: {e} (try /reset)", flush=True)
            continue
        messages.append({"role": "assistant", "content": answer})
        print(sanitize(answer), flush=True)


def _canvas_view(model, tokenizer, messages, kwargs) -> LiveCanvas:
    from ..chat_template import chat_prompt_ids

    P = len(chat_prompt_ids(tokenizer, messages))
    budget = generation_budget(model, kwargs)
    if budget == "auto":  # the probe's canvas: what fits after the prompt (the view then follows the budget)
        o = model.resolve_generation_options({**kwargs, "max_new_tokens": budget})
        budget = max(0, min(int(o["canvas_length"]), model.config.max_position_embeddings) - P - 2)
    return LiveCanvas(sys.stderr, lambda ids: tokenizer.decode(ids), [(P, P + int(budget))])


__all__ = ["add_parser", "run", "run_turn", "chat_once", "load_chat_model", "generation_budget"]
