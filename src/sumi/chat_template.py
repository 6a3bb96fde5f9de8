"""Chat templates: the default template of Sumi's tokenizers, the check that a template marks the
assistant turn, and answering rendered prompts (`answer_prompts`, `answer_conversations`: what the
SFT suite and `sumi eval --chat` score).

The default template (`DEFAULT_CHAT_TEMPLATE`, the same text for Sumi's dolma2 tokenizer and the
bundled demo tokenizer: both name `<|beginoftext|>` and `<|endoftext|>` as BOS and EOS) writes
one header line per turn and the content on the lines after it:

    <|beginoftext|>System:
    You are terse.
    User:
    Name a colour.
    Assistant:
    Blue.<|endoftext|>
    User:
    Another.
    Assistant:
                                        <- add_generation_prompt=True ends here

An assistant turn is its content followed by EOS, and only that is inside `{% generation %}`: with
``return_assistant_tokens_mask=True`` transformers marks the tokens the model must learn to write
(the answer and its EOS), never a turn header, so an SFT model does not learn to write
"User:" lines. A header ends with a newline, which both tokenizers always split off, so the
prompt rendered with ``add_generation_prompt=True`` is token for token a prefix of the rendered
conversation (what generation sees is what SFT trained on). The EOS closing an answer is what
`generate()` cuts `.sequences` at.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

DEFAULT_CHAT_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{%- if message['role'] not in ('system', 'user', 'assistant') -%}"
    "{{- raise_exception('unknown role ' ~ message['role'] ~ ': use system, user or assistant') -}}"
    "{%- endif -%}"
    "{{- message['role'] | capitalize ~ ':\\n' -}}"
    "{%- if message['role'] == 'assistant' -%}"
    "{%- generation -%}{{- message['content'] ~ eos_token -}}{%- endgeneration -%}"
    "{%- else -%}{{- message['content'] -}}{%- endif -%}"
    "{%- if not loop.last or add_generation_prompt -%}{{- '\\n' -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- 'Assistant:\\n' -}}{%- endif -%}"
)

# A conversation whose answer every template must mark, and nothing else (`check_assistant_marking`).
PROBE_MESSAGES = [
    {"role": "user", "content": "Say the word blue."},
    {"role": "assistant", "content": "blue"},
]


def ensure_chat_template(tokenizer: Any) -> Any:
    """Give `tokenizer` the default template when it has none (in place; returned for chaining)."""
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    return tokenizer


def render_conversation(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[list[int], list[int]]:
    """Token ids of the whole conversation and the template's assistant mask (1 = a token the
    assistant writes), both of length L. Raises ValueError naming `messages` if the template rejects them."""
    try:
        out = tokenizer.apply_chat_template(
            messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
    except Exception as e:  # jinja reports bad input with any exception (raise_exception)
        raise ValueError(f"messages: the chat template rejected them: {e}") from None
    return list(out["input_ids"]), list(out["assistant_masks"])


def check_assistant_marking(tokenizer: Any) -> None:
    """Raise ValueError unless the tokenizer's chat template marks exactly the assistant's answer
    (plus, optionally, an EOS after it) with `{% generation %}`: an unmarked template would make
    SFT score the whole conversation, turn headers included."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("tokenizer has no chat_template; set one (sumi.chat_template.DEFAULT_CHAT_TEMPLATE)")
    ids, mask = render_conversation(tokenizer, PROBE_MESSAGES)
    marked = [i for i, m in zip(ids, mask) if m]
    if not marked:
        raise ValueError(
            "chat_template does not mark the assistant turn: wrap the assistant content in "
            "{% generation %}...{% endgeneration %}"
        )
    if marked[-1] == tokenizer.eos_token_id:
        marked = marked[:-1]
    text = tokenizer.decode(marked)
    if text.strip() != PROBE_MESSAGES[-1]["content"]:
        raise ValueError(
            f"chat_template marks {text!r} as the assistant turn, not just its content "
            f"{PROBE_MESSAGES[-1]['content']!r}: keep turn headers outside {{% generation %}}"
        )


def chat_prompt_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """The prompt that asks for the next assistant turn: ``apply_chat_template(messages,
    add_generation_prompt=True)`` as token ids."""
    try:
        out = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, return_dict=True)
    except Exception as e:
        raise ValueError(f"messages: the chat template rejected them: {e}") from None
    return list(out["input_ids"])


def answer_prompts(
    model,
    tokenizer: Any,
    prompts: Sequence[Sequence[int]],
    *,
    seeds: Sequence[int],
    batch_size: int = 32,
    progress: Callable[[int], Any] | None = None,
    costs: list[dict[str, int]] | None = None,
    **generate_kwargs: Any,
) -> list[str]:
    """The model's answer after each chat prompt (token ids ending with the template's generation
    prompt, e.g. `chat_prompt_ids`): ``model.generate`` with the model's generation config,
    overridden by `generate_kwargs`, row i seeded with ``seeds[i]``; the tokens after the prompt
    decoded without special tokens and stripped. Prompts of equal length run as one batch (no
    padding, so a row's answer is what it would be alone). `progress(n)` after each batch of n.
    `costs`: when given, one `answer_cost` per prompt is appended to it, in prompt order."""
    import torch

    if len(seeds) != len(prompts):
        raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
    answers = [""] * len(prompts)
    spent: list[dict[str, int]] = [{} for _ in prompts]
    by_length: dict[int, list[int]] = {}
    for i, ids in enumerate(prompts):
        by_length.setdefault(len(ids), []).append(i)
    device = next(model.parameters()).device
    for length, rows in sorted(by_length.items()):
        for k in range(0, len(rows), batch_size):
            chunk = rows[k : k + batch_size]
            ids = torch.tensor([list(prompts[i]) for i in chunk], device=device)  # [b, length]
            out = model.generate(ids, seed=[int(seeds[i]) for i in chunk], **generate_kwargs)
            for j, i in enumerate(chunk):
                answers[i] = tokenizer.decode(out.sequences[j, length:].tolist(), skip_special_tokens=True).strip()
                spent[i] = answer_cost(out, j)
            if progress is not None:
                progress(len(chunk))
    if costs is not None:
        costs.extend(spent)
    return answers


def answer_cost(out: Any, row: int) -> dict[str, int]:
    """What row `row` of a `generate()` output cost: its final answer `budget`, the canvas `positions`
    it fed to the forwards (`row_positions`, the probe of `max_new_tokens="auto"` included) and, with
    auto, the `auto_budget` the probe chose."""
    cost = {"budget": int(out.budgets[row]), "positions": int(out.row_positions[row])}
    if out.auto_budgets is not None:
        cost["auto_budget"] = int(out.auto_budgets[row])
    return cost


def answer_conversations(
    model, tokenizer: Any, conversations: Sequence[list[dict[str, str]]], *, seeds: Sequence[int], **kwargs: Any
) -> list[str]:
    """`answer_prompts` of each conversation rendered by `chat_prompt_ids` (the tokenizer's own
    template: call `ensure_chat_template` first for the default one); `kwargs` as there."""
    return answer_prompts(
        model, tokenizer, [chat_prompt_ids(tokenizer, m) for m in conversations], seeds=seeds, **kwargs
    )


__all__ = [
    "DEFAULT_CHAT_TEMPLATE",
    "PROBE_MESSAGES",
    "ensure_chat_template",
    "render_conversation",
    "check_assistant_marking",
    "chat_prompt_ids",
    "answer_prompts",
    "answer_cost",
    "answer_conversations",
]
