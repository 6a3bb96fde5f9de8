"""`SFTSection`: the ``sft:`` section of a recipe with ``task: sft`` (see `sumi.training.sft`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SUPERVISE = ("last", "all")
PADDING = ("eos", "none", "pad")


@dataclass
class SFTSection:
    """Supervised fine-tuning on chat conversations.

    `data` / `val_data`: a JSONL file (one ``{"messages": [{"role", "content"}, ...]}`` per line) or
    a `datasets` name (with `data_config`, `data_split` / `val_split`) with a ``messages`` column.
    `tokenizer`: a folder or name for `sumi.tokenization.load_tokenizer` (default: the model's
    folder); `chat_template`: a Jinja file replacing the tokenizer's template (default: its own,
    else `sumi.chat_template.DEFAULT_CHAT_TEMPLATE`). `split_digits`: write numbers digit by digit
    (`sumi.tokenization.split_digits`); `split_letters`: write words letter by letter
    (`sumi.tokenization.split_letters`); both saved with the exported tokenizer.
    The canvas (``data.seq_len`` tokens): clean prompt, answer + EOS, padding, the EOS,BOS anchors
    at ``prompt + answer_tokens`` (0: at the end of the canvas, as `generate()` places them when
    the budget fills the canvas), filler after them. `supervise`: score the "last" assistant turn
    or "all" of them. `padding`: "eos" (padding is EOS, noised and scored), "none" (EOS, noised,
    not scored) or "pad" (the tokenizer's pad id, noised and scored).
    LoRA (`lora_r` > 0, needs `peft`): adapters on the modules named in `lora_targets`
    (comma-separated suffixes), everything else frozen; merged into the weights on export.
    `generation`: generate() keyword -> value, written to the exported generation_config.json.
    """

    data: str | None = None
    data_config: str | None = None
    data_split: str = "train"
    val_data: str | None = None
    val_split: str = "validation"
    tokenizer: str | None = None
    chat_template: str | None = None
    split_digits: bool = False
    split_letters: bool = False
    supervise: str = "last"
    padding: str = "eos"
    answer_tokens: int = 0
    max_examples: int = 0  # 0 = all
    lora_r: int = 0  # 0 = full fine-tuning
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: str = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
    generation: dict[str, Any] = field(default_factory=dict)  # generate() settings for the exported folder


def validate_sft(config, need) -> None:
    """Check a ``task: sft`` config (`need(ok, key, message)` raises ConfigError)."""
    s, d = config.sft, config.data
    need(bool(s.data), "sft.data", "task: sft needs sft.data (a JSONL file or a datasets name)")
    need(s.supervise in SUPERVISE, "sft.supervise", f"must be one of {SUPERVISE}, got {s.supervise!r}")
    need(s.padding in PADDING, "sft.padding", f"must be one of {PADDING}, got {s.padding!r}")
    need(s.answer_tokens >= 0, "sft.answer_tokens", "must be >= 0 (0 = up to the end of the canvas)")
    need(s.max_examples >= 0, "sft.max_examples", "must be >= 0 (0 = all)")
    need(s.lora_r >= 0, "sft.lora_r", "must be >= 0 (0 = full fine-tuning)")
    need(0.0 <= s.lora_dropout < 1.0, "sft.lora_dropout", f"must be in [0, 1), got {s.lora_dropout}")
    from ..generation_sumi import GENERATION_DEFAULTS

    unknown = sorted(set(s.generation) - set(GENERATION_DEFAULTS))
    need(not unknown, "sft.generation", f"unknown generate() options {unknown}")
    need(s.lora_r == 0 or bool(s.lora_targets.strip()), "sft.lora_targets", "name at least one module")
    need(d.prefix_fraction == 0.0, "data.prefix_fraction", "must be 0 with task: sft (the prompt is the clean prefix)")
    need(
        config.model.path is not None or s.tokenizer is not None,
        "sft.tokenizer",
        "task: sft from a preset needs sft.tokenizer (or model.path, a folder with a tokenizer)",
    )


__all__ = ["SFTSection", "SUPERVISE", "PADDING", "validate_sft"]
