"""Chat messages -> one prompt string.

With a tokenizer, its chat template (`tokenizer.chat_template`, else sumi's default
`sumi.chat_template.DEFAULT_CHAT_TEMPLATE`, the one `sumi chat` uses) renders the messages (with
the generation prompt for the assistant's turn). Without one (byte-level models), this plain
template, one turn per line, which a base model continues naturally:

    System: You are terse.
    User: Name a colour.
    Assistant: Blue.
    User: Another.
    Assistant:

The answer is then also cut at the next turn ("\\nUser:"), since a base model may write the
user's next line itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..chat_template import DEFAULT_CHAT_TEMPLATE

PLAIN_ROLES = {"system": "System", "developer": "System", "user": "User", "assistant": "Assistant"}
PLAIN_STOP = "\nUser:"


@dataclass
class ChatPrompt:
    """text: the prompt; add_bos: whether the server should put BOS before it (the plain template;
    a chat template writes its own special tokens); stop: stop strings the template implies."""

    text: str
    add_bos: bool
    stop: list[str] = field(default_factory=list)


def render_chat(messages: list[dict[str, str]], tokenizer) -> ChatPrompt:
    """messages: [{"role": ..., "content": str}, ...] (roles as in `PLAIN_ROLES`).

    Raises ValueError (naming `messages`) when the tokenizer's template rejects them."""
    if not messages:
        raise ValueError("messages must hold at least one message")
    if tokenizer is not None:  # its own template, else sumi's default (what `sumi chat` renders)
        template = getattr(tokenizer, "chat_template", None) or DEFAULT_CHAT_TEMPLATE
        try:
            text = tokenizer.apply_chat_template(
                messages, chat_template=template, tokenize=False, add_generation_prompt=True
            )
        except Exception as e:  # a jinja template signals bad input with any exception (raise_exception)
            raise ValueError(f"messages: the model's chat template rejected them: {e}") from None
        return ChatPrompt(text=text, add_bos=False)
    lines = [f"{PLAIN_ROLES[m['role']]}: {m['content']}" for m in messages]
    return ChatPrompt(text="\n".join(lines + ["Assistant:"]), add_bos=True, stop=[PLAIN_STOP])
