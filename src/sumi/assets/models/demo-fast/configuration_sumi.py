"""Sumi model configuration.

This file is part of the remote code exported next to every checkpoint that sumi saves, so it
imports only `transformers` (never `sumi`). Field names and defaults follow the official
`tohoku-nlp/sumi-7b` release: they are part of the checkpoint format.
"""

from typing import Any

from transformers import PretrainedConfig

# Presets. "sumi-7b" is the official config; the others keep its shape (GQA 4:1, SwiGLU, untied
# head) at sizes meant for experiments, CPU work and tests. Parameter counts (embedding + head
# included) are printed by `sumi info PRESET` and checked in the tests.
PRESETS: dict[str, dict[str, Any]] = {
    "sumi-7b": dict(  # 7.77B parameters: 6.95B non-embedding + 2 x 410.7M
        vocab_size=100278,
        hidden_size=4096,
        intermediate_size=12288,
        num_hidden_layers=36,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        max_position_embeddings=4864,
        rms_norm_eps=1e-5,
        rope_parameters={"rope_theta": 500000.0, "rope_type": "default"},
        bos_token_id=100256,
        eos_token_id=100257,
        pad_token_id=100277,
        dtype="bfloat16",
    ),
    "sumi-1b": dict(  # 1.28B parameters (0.87B non-embedding), dolma2 vocabulary: the GPU scaling preset
        vocab_size=100278,
        hidden_size=2048,
        intermediate_size=6144,
        num_hidden_layers=18,
        num_attention_heads=16,
        num_key_value_heads=4,
        head_dim=128,
        max_position_embeddings=4864,
        rms_norm_eps=1e-5,
        rope_parameters={"rope_theta": 500000.0, "rope_type": "default"},
        bos_token_id=100256,
        eos_token_id=100257,
        pad_token_id=100277,
    ),
    "sumi-57m": dict(  # 56.9M parameters: the CPU benchmark shape of the performance notes
        vocab_size=32000,
        hidden_size=512,
        intermediate_size=1536,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=2,
        head_dim=64,
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
        rope_parameters={"rope_theta": 10000.0, "rope_type": "default"},
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    ),
    "sumi-tiny": dict(  # 0.11M parameters: unit tests and smoke runs
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=256,
        rms_norm_eps=1e-5,
        rope_parameters={"rope_theta": 10000.0, "rope_type": "default"},
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    ),
}


class SumiConfig(PretrainedConfig):
    r"""Configuration of a Sumi uniform-diffusion language model (LLaMA-style, bidirectional).

    The network never sees the diffusion time; `uniform_diffusion_beta_is` and
    `uniform_diffusion_z_loss_strength` only parameterise the GIDD training loss.

    ```python
    >>> from sumi import SumiConfig
    >>> config = SumiConfig.from_preset("sumi-7b")
    >>> config.num_key_value_heads
    8
    ```
    """

    model_type = "sumi"
    keys_to_ignore_at_inference = ["past_key_values"]

    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    hidden_act: str = "silu"
    max_position_embeddings: int = 2048
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-6
    rope_parameters: dict | None = None
    attention_bias: bool = False
    add_qkv_bias: bool = False
    mlp_bias: bool = False
    attention_dropout: float = 0.0
    tie_word_embeddings: bool = False
    bos_token_id: int | None = 1
    eos_token_id: int | None = 2
    pad_token_id: int | None = None
    pretraining_tp: int | None = 1
    uniform_diffusion_beta_is: float = 1.0
    uniform_diffusion_z_loss_strength: float = 1e-5

    def __post_init__(self, **kwargs):
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        super().__post_init__(**kwargs)
        self._check()

    def _check(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(f"SumiConfig: {msg}")

        for name in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
            "max_position_embeddings",
        ):
            value = getattr(self, name)
            need(isinstance(value, int) and value > 0, f"`{name}` must be a positive integer, got {value!r}")
        need(
            self.num_attention_heads % self.num_key_value_heads == 0,
            f"`num_attention_heads` ({self.num_attention_heads}) must be a multiple of "
            f"`num_key_value_heads` ({self.num_key_value_heads}) for grouped-query attention",
        )
        need(self.head_dim % 2 == 0, f"`head_dim` must be even for rotary embeddings, got {self.head_dim}")
        need(self.hidden_act == "silu", f"only hidden_act='silu' (SwiGLU) is supported, got {self.hidden_act!r}")
        need(
            not (self.attention_bias or self.add_qkv_bias or self.mlp_bias),
            "Sumi has no biases: `attention_bias`, `add_qkv_bias` and `mlp_bias` must be False",
        )
        need(not self.tie_word_embeddings, "Sumi's head is untied: `tie_word_embeddings` must be False")
        rope_type = (self.rope_parameters or {}).get("rope_type", "default")
        need(rope_type == "default", f"only rope_type='default' is supported, got {rope_type!r}")
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            value = getattr(self, name)
            need(
                value is None or (isinstance(value, int) and 0 <= value < self.vocab_size),
                f"`{name}` must be an id in [0, vocab_size={self.vocab_size}), got {value!r}",
            )

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "SumiConfig":
        """A preset config by name (see `PRESETS`), with optional field overrides."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        kwargs = {k: (dict(v) if isinstance(v, dict) else v) for k, v in PRESETS[name].items()}
        kwargs.update(overrides)
        return cls(**kwargs)


__all__ = ["SumiConfig", "PRESETS"]
