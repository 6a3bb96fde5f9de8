"""The Sumi network: a bidirectional LLaMA-style transformer with off-by-one softmax attention.

Reads top to bottom in dependency order: RMSNorm, rotary embedding, MLP, attention, decoder
layer, model, denoiser head. This file is exported verbatim as a checkpoint's remote code
(`modeling_sumi.py`), so it imports only torch, transformers and its sibling files.

Shapes: B batch, S canvas length, H hidden size, V vocabulary, h query heads, k KV heads,
d head dim.
"""

import math
import os
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AttentionInterface, PreTrainedModel
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput, MaskedLMOutput

from .configuration_sumi import SumiConfig
from .diffusion import fused_linear_gidd_loss, uniform_gidd_loss
from .generation_sumi import SumiGenerationMixin


class SumiRMSNorm(nn.Module):
    """`weight * (x * rsqrt(mean(x^2) + eps))`, normalised in fp32 and cast back before the weight."""

    def __init__(self, hidden_size: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(input_dtype)


def rotary_cos_sin(
    position_ids: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotate-half RoPE, computed in fp32, returned as `[B, S, d]` in `dtype`.

    The inverse frequencies `theta^(-(0, 2, .., d-2)/d)` are recomputed on every call (d/2 numbers)
    instead of living in a buffer, so a model materialised from the meta device needs no fix-up.
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float, device=position_ids.device) / head_dim))
    freqs = position_ids[..., None].float() * inv_freq  # [B, S, d/2]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x `[B, heads, S, d]`, cos/sin `[B, S, d]`."""
    cos, sin = cos[:, None], sin[:, None]
    return x * cos + rotate_half(x) * sin


class SumiLinear(nn.Linear):
    """`nn.Linear` that can multiply in blocks of at most `row_block` token rows, each call's rows
    zero-padded to a multiple of `row_multiple` (default `row_block`: every call the same size):
    `x [..., in] -> [..., out]`.

    A GEMM library chooses its blocking, and with it the order of each dot product's sum, from the
    number of rows M, so in bf16 a token's output changes in the last bits with how many other
    tokens share the call. Calls of one fixed size give every token the same kernel whatever the
    batch (measured: the output of a row does not depend on its place in a call or on the other
    rows). Where the library keeps one kernel for every multiple of `row_multiple` up to
    `row_block` (`sumi.batch_invariance` probes that), smaller calls are as good and cheaper. Off
    (`None`) by default; `SumiPreTrainedModel.set_batch_invariant` turns it on for the whole model."""

    row_block: int | None = None
    row_multiple: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.row_block is None:
            return super().forward(x)
        rows = x.reshape(-1, x.shape[-1])
        n, pad = rows.shape[0], -rows.shape[0] % (self.row_multiple or self.row_block)
        if pad == 0 and n <= self.row_block:  # already one call of an allowed size
            return super().forward(x)
        if pad:
            rows = F.pad(rows, (0, 0, 0, pad))
        out = torch.cat([F.linear(block, self.weight, self.bias) for block in rows.split(self.row_block)])
        return out[:n].view(*x.shape[:-1], self.out_features)


class SumiMLP(nn.Module):
    """SwiGLU: `down(silu(gate(x)) * up(x))`."""

    def __init__(self, config: SumiConfig):
        super().__init__()
        self.gate_proj = SumiLinear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = SumiLinear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = SumiLinear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """`[B, k, S, d]` -> `[B, k * n_rep, S, d]`: each KV head serves `n_rep` query heads."""
    if n_rep == 1:
        return x
    B, k, S, d = x.shape
    return x[:, :, None].expand(B, k, n_rep, S, d).reshape(B, k * n_rep, S, d)


def eager_sink_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None, scale: float
) -> torch.Tensor:
    """Off-by-one softmax attention, written out: `p_i = exp(s_i) / (1 + sum_j exp(s_j))`.

    The reference path (and the official implementation's): an fp32 `[B, h, S, S+1]` score
    tensor whose extra column is the constant 0 logit of the "sink".
    Args: q `[B, h, S, d]`, k/v `[B, k, S, d]`, key_mask `[B, S]` bool (True = attend) or None.
    Returns: `[B, h, S, d]` in q's dtype.
    """
    n_rep = q.shape[1] // k.shape[1]
    k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)
    scores = torch.matmul(q.float(), k.float().transpose(-1, -2)) * scale
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    sink = scores.new_zeros(scores.shape[:-1] + (1,))
    probs = torch.softmax(torch.cat([scores, sink], dim=-1), dim=-1)[..., :-1]
    return torch.matmul(probs.to(v.dtype), v)


def sdpa_sink_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None, scale: float
) -> torch.Tensor:
    """The same attention through `scaled_dot_product_attention`, exactly.

    One extra key of zeros scores `q . 0 = 0` for every query, and its zero value adds nothing:
    ordinary softmax over the S+1 keys is then the off-by-one softmax over the S real keys. With
    no padding mask SDPA may pick a flash / memory-efficient kernel (no `[S, S]` tensor at all).
    Shapes as `eager_sink_attention`.
    """
    B, n_kv, S, d = k.shape
    zeros = k.new_zeros(B, n_kv, 1, d)
    k = torch.cat([k, zeros], dim=2)
    v = torch.cat([v, zeros], dim=2)
    mask = None
    if key_mask is not None:
        mask = torch.cat([key_mask, key_mask.new_ones(B, 1)], dim=1)[:, None, None, :]
    gqa = q.shape[1] != n_kv
    if gqa and q.device.type != "cpu":
        # CUDA's memory-efficient kernel rejects enable_gqa (fp32 would fall back to the math
        # kernel and its [S, S] scores); expanded K/V keep every fused kernel eligible.
        k, v, gqa = repeat_kv(k, q.shape[1] // n_kv), repeat_kv(v, q.shape[1] // n_kv), False
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=gqa)


class SinkAttentionInterface(AttentionInterface):
    """transformers' attention registry, for the off-by-one softmax: `SumiAttention` takes its
    function by the name in `config._attn_implementation`, as transformers' models do from theirs.

    Its own mapping, not transformers' (those functions are the plain softmax): "eager" (the
    default, `eager_sink_attention`), "sdpa", and what `SinkAttentionInterface.register(name, fn)`
    adds (installed sumi registers its native CPU kernel as "sumi_native"). A function takes
    `(q, k, v, key_mask, scale)` with the shapes of `eager_sink_attention`.
    """

    _global_mapping = {"sdpa": sdpa_sink_attention}


ALL_ATTENTION_FUNCTIONS = SinkAttentionInterface()

# What a model runs when no attention is asked for: the first of these that is registered (the
# standalone remote code has only "sdpa").
PREFERRED_ATTENTION = ("sumi_native", "sdpa")


class SumiAttention(nn.Module):
    """Bidirectional grouped-query attention with RoPE and the attention sink."""

    def __init__(self, config: SumiConfig, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.head_dim = config.head_dim
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.scale = 1.0 / math.sqrt(self.head_dim)
        H = config.hidden_size
        self.q_proj = SumiLinear(H, self.num_heads * self.head_dim, bias=False)
        self.k_proj = SumiLinear(H, self.num_kv_heads * self.head_dim, bias=False)
        self.v_proj = SumiLinear(H, self.num_kv_heads * self.head_dim, bias=False)
        self.o_proj = SumiLinear(self.num_heads * self.head_dim, H, bias=False)

    def forward(
        self,
        hidden_states: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        key_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """hidden_states `[B, S, H]`, cos/sin `[B, S, d]`, key_mask `[B, S]` bool -> `[B, S, H]`."""
        B, S, _ = hidden_states.shape
        q = self.q_proj(hidden_states).view(B, S, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(hidden_states).view(B, S, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(hidden_states).view(B, S, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        attention = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_sink_attention)
        out = attention(q, k, v, key_mask, self.scale)
        return self.o_proj(out.transpose(1, 2).reshape(B, S, self.num_heads * self.head_dim))


class SumiDecoderLayer(GradientCheckpointingLayer):
    """Pre-norm block: `h = h + attn(norm(h)); h = h + mlp(norm(h))`."""

    def __init__(self, config: SumiConfig, layer_idx: int):
        super().__init__()
        self.input_layernorm = SumiRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.self_attn = SumiAttention(config, layer_idx)
        self.post_attention_layernorm = SumiRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.mlp = SumiMLP(config)

    def forward(self, hidden_states, cos, sin, key_mask=None):
        hidden_states = hidden_states + self.self_attn(self.input_layernorm(hidden_states), cos, sin, key_mask)
        return hidden_states + self.mlp(self.post_attention_layernorm(hidden_states))


# A saved folder carries these files and this auto_map (like the official repo), so that
# `AutoModelForMaskGeneration.from_pretrained(folder, trust_remote_code=True)` needs no sumi install.
REMOTE_CODE_FILES = (
    "configuration_sumi.py",
    "modeling_sumi.py",
    "generation_sumi.py",
    "denoising.py",
    "sampling.py",
    "diffusion.py",
)
AUTO_MAP = {
    "AutoConfig": "configuration_sumi.SumiConfig",
    "AutoModel": "modeling_sumi.SumiModel",
    "AutoModelForMaskGeneration": "modeling_sumi.SumiForMaskGeneration",
}


def write_remote_code(folder) -> None:
    """Copy the very modules this model runs on into `folder` (one source of truth; also refreshes
    the remote code of a folder saved by an older version)."""
    here = Path(__file__).parent
    for name in REMOTE_CODE_FILES:
        shutil.copyfile(here / name, Path(folder) / name)


class SumiPreTrainedModel(PreTrainedModel):
    """Weight init (transformers' rules: Linear/Embedding ~ N(0, initializer_range), norms = 1) and
    saving in the official format: safetensors (sharded with an index past `max_shard_size`) plus
    the remote code."""

    config_class = SumiConfig
    config: SumiConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["SumiDecoderLayer"]
    _supports_sdpa = True
    _can_compile_fullgraph = True

    def get_correct_attn_implementation(self, requested_attention: str | None, is_init_check: bool = False) -> str:
        """A name of `ALL_ATTENTION_FUNCTIONS` (or "eager"); None = the first registered of
        `PREFERRED_ATTENTION`. transformers' own names (flash, flex) would drop the sink: refused."""
        if requested_attention is None:
            return next(name for name in PREFERRED_ATTENTION if name in ALL_ATTENTION_FUNCTIONS)
        if requested_attention != "eager" and requested_attention not in ALL_ATTENTION_FUNCTIONS:
            raise ValueError(
                f"attn_implementation={requested_attention!r} is not an attention of Sumi models; "
                f"choose one of {['eager', *ALL_ATTENTION_FUNCTIONS]}"
            )
        return requested_attention

    def set_batch_invariant(self, row_block: int | None = 128, row_multiple: int | None = None) -> None:
        """Make every projection multiply in calls of at most `row_block` token rows, padded to a
        multiple of `row_multiple` (default `row_block`; None: off), so that a row's logits are
        bit-identical alone or batched with any others. Needed on CPUs, where the GEMM's blocking
        follows the batch size (in bf16; in fp32 with several threads); costs a few small GEMM calls
        per projection.
        `sumi.batch_invariance.make_batch_invariant` picks the cheapest blocks per projection."""
        for name, value in (("row_block", row_block), ("row_multiple", row_multiple)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{name} must be a positive int or None, got {value!r}")
        if row_block is not None and row_multiple is not None and row_block % row_multiple:
            raise ValueError(f"row_block ({row_block}) must be a multiple of row_multiple ({row_multiple})")
        for module in self.modules():
            if isinstance(module, SumiLinear):
                module.row_block, module.row_multiple = row_block, row_multiple if row_block else None

    @property
    def batch_invariant(self) -> bool:
        """Whether every projection multiplies in calls of the sizes `set_batch_invariant` set."""
        linears = [m for m in self.modules() if isinstance(m, SumiLinear)]
        return bool(linears) and all(m.row_block is not None for m in linears)

    def save_pretrained(self, save_directory, *args, max_shard_size="5GB", **kwargs):
        self.config.auto_map = dict(AUTO_MAP)
        self.config.architectures = [type(self).__name__]
        if getattr(self, "generation_config", None) is not None:
            # a config marked "from model config" drops its custom fields (num_denoising_steps, ...) on load
            self.generation_config._from_model_config = False
        super().save_pretrained(save_directory, *args, max_shard_size=max_shard_size, **kwargs)
        write_remote_code(save_directory)
        # transformers writes the weight files through a private temp file (mode 0600): give them
        # the permissions of every other file in the folder
        mode = 0o666 & ~_umask()
        for f in os.listdir(save_directory):
            if f.endswith(".safetensors"):
                os.chmod(os.path.join(save_directory, f), mode)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _key_mask(attention_mask: torch.Tensor | None, shape: torch.Size) -> torch.Tensor | None:
    """A 2-D padding mask (1 keep / 0 pad) as a bool key mask, or None when nothing is padded."""
    if attention_mask is None:
        return None
    if attention_mask.shape != shape:
        raise ValueError(
            f"attention_mask must be 2-D [batch, seq] = {tuple(shape)} with 1 = keep, 0 = pad; "
            f"got shape {tuple(attention_mask.shape)}"
        )
    key_mask = attention_mask.bool()
    return None if bool(key_mask.all()) else key_mask


class SumiModel(SumiPreTrainedModel):
    """Embedding, decoder stack and final norm: `input_ids [B, S]` -> `last_hidden_state [B, S, H]`."""

    def __init__(self, config: SumiConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(SumiDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = SumiRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutput:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of `input_ids` [batch, seq] and `inputs_embeds` [batch, seq, hidden]")
        if inputs_embeds is None:
            if input_ids.dim() != 2:
                raise ValueError(f"input_ids must be 2-D [batch, seq], got shape {tuple(input_ids.shape)}")
            if (
                not torch.compiler.is_compiling()
                and input_ids.numel()
                and (int(input_ids.min()) < 0 or int(input_ids.max()) >= self.config.vocab_size)
            ):
                raise ValueError(
                    f"input_ids must lie in [0, vocab_size={self.config.vocab_size}); got values in "
                    f"[{int(input_ids.min())}, {int(input_ids.max())}]"
                )
            inputs_embeds = self.embed_tokens(input_ids)
        elif inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != self.config.hidden_size:
            raise ValueError(
                f"inputs_embeds must be [batch, seq, {self.config.hidden_size}], got {tuple(inputs_embeds.shape)}"
            )
        B, S, _ = inputs_embeds.shape
        if position_ids is None:
            if S > self.config.max_position_embeddings:
                raise ValueError(
                    f"sequence length {S} exceeds max_position_embeddings={self.config.max_position_embeddings}"
                )
            position_ids = torch.arange(S, device=inputs_embeds.device).expand(B, S)
        elif position_ids.shape[-1] != S:
            raise ValueError(f"position_ids must be [batch, {S}], got {tuple(position_ids.shape)}")
        position_ids = position_ids.expand(B, S)
        key_mask = _key_mask(attention_mask, torch.Size((B, S)))

        cos, sin = rotary_cos_sin(
            position_ids, self.config.head_dim, float(self.config.rope_parameters["rope_theta"]), inputs_embeds.dtype
        )
        hidden_states = inputs_embeds
        for layer in self.layers:
            hidden_states = layer(hidden_states, cos, sin, key_mask)
        return BaseModelOutput(last_hidden_state=self.norm(hidden_states))


class SumiForMaskGeneration(SumiGenerationMixin, SumiPreTrainedModel):
    """Sumi with its denoiser head: logits over the clean token at every canvas position.

    `forward(input_ids=z_t, labels=x, t=t)` also returns the uniform GIDD loss (mean over
    positions whose label is not -100). The network itself never sees t.
    """

    def __init__(self, config: SumiConfig):
        super().__init__(config)
        self.model = SumiModel(config)
        self.lm_head = SumiLinear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def set_input_embeddings(self, value):
        self.model.embed_tokens = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        t: torch.Tensor | float | None = None,
        return_dict: bool | None = None,
        loss_chunk_size: int | None = None,
        **kwargs,
    ) -> MaskedLMOutput:
        """Returns `.logits` `[B, S, V]` and, with `labels` (clean x) and `t`, `.loss` (scalar).

        `loss_chunk_size` (training): compute the loss chunk by chunk from the hidden states
        (`fused_linear_gidd_loss`) without materialising the logits; `.logits` is then None.
        """
        if labels is not None and t is None:
            raise ValueError(
                "`labels` were given without `t`: the GIDD loss needs the noise level t "
                "([B], [B, 1] or [B, S]) at which `input_ids` were noised"
            )
        if labels is not None and input_ids is None:
            raise ValueError("the loss needs `input_ids` (the noised z_t), not only `inputs_embeds`")
        hidden = self.model(input_ids, attention_mask, position_ids, inputs_embeds).last_hidden_state
        if labels is not None and loss_chunk_size:
            total, count = fused_linear_gidd_loss(
                hidden,
                self.lm_head.weight,
                input_ids,
                labels,
                t,
                vocab_size=self.config.vocab_size,
                beta_is=self.config.uniform_diffusion_beta_is,
                z_loss_strength=self.config.uniform_diffusion_z_loss_strength,
                chunk_size=loss_chunk_size,
            )
            return MaskedLMOutput(loss=total / count.clamp(min=1), logits=None)
        logits = self.lm_head(hidden)
        loss = None
        if labels is not None:
            per_token, valid = uniform_gidd_loss(
                logits,
                input_ids,
                labels,
                t,
                vocab_size=self.config.vocab_size,
                beta_is=self.config.uniform_diffusion_beta_is,
                z_loss_strength=self.config.uniform_diffusion_z_loss_strength,
            )
            loss = per_token.sum() / valid.sum().clamp(min=1)
        return MaskedLMOutput(loss=loss, logits=logits)


def parameter_counts(config: SumiConfig) -> dict[str, int]:
    """Parameter counts of `SumiForMaskGeneration(config)`, built on the meta device (no memory):
    total, embedding, lm_head, non_embedding, per_layer and matrices (all >= 2-D weights)."""
    with torch.device("meta"):
        model = SumiForMaskGeneration(config)
    total = sum(p.numel() for p in model.parameters())
    embed = model.model.embed_tokens.weight.numel()
    head = model.lm_head.weight.numel()
    return dict(
        total=total,
        embedding=embed,
        lm_head=head,
        non_embedding=total - embed - head,
        per_layer=sum(p.numel() for p in model.model.layers[0].parameters()),
        matrices=sum(p.numel() for p in model.parameters() if p.ndim >= 2),
    )


DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def memory_estimate(config: SumiConfig, canvas_length: int = 2048, batch_size: int = 1) -> dict:
    """Rough inference memory of one denoising step (bytes), per weight dtype.

    Counts, for a canvas of S = min(canvas_length, max_position_embeddings) tokens and batch B:
      * logits `[B, S, V]` in the model dtype (the lm_head output);
      * sampler temporaries: two fp32 `[B, S, V]` tensors (logits.float() / T and its
        softmax / logsumexp) -- the ancestral sampler never builds the dense posterior;
      * the largest per-layer transient: residual + normed hidden + q/k/v + attention output
        (`[B, S, H]`-sized) and the MLP's gate, up and product (`[B, S, I]` each), in the model dtype;
      * with eager attention only: fp32 scores and probabilities `[B, heads, S, S+1]` (SDPA uses a
        fused kernel and skips them).
    Peak activations = max(sampler phase, per-layer transient + hidden); not counted: the
    allocator's caching and fragmentation, the CUDA context, the tokenizer.
    """
    S = min(int(canvas_length), config.max_position_embeddings)
    B, V, H, I = batch_size, config.vocab_size, config.hidden_size, config.intermediate_size
    q = config.num_attention_heads * config.head_dim
    kv = config.num_key_value_heads * config.head_dim
    out: dict = {"canvas_length": S, "batch_size": B, "per_dtype": {}}
    for name, b in DTYPE_BYTES.items():
        logits = B * S * V * b
        sampler = 2 * B * S * V * 4
        layer = B * S * (2 * H + q + 2 * kv + q) * b + 3 * B * S * I * b
        eager_scores = 2 * B * config.num_attention_heads * S * (S + 1) * 4
        peak = max(logits + sampler, layer)
        out["per_dtype"][name] = dict(
            logits=logits,
            sampler_fp32=sampler,
            layer_transient=layer,
            eager_attention_scores=eager_scores,
            peak_sdpa=peak,
            peak_eager=max(logits + sampler, layer + eager_scores),
        )
    return out


__all__ = [
    "parameter_counts",
    "memory_estimate",
    "DTYPE_BYTES",
    "write_remote_code",
    "REMOTE_CODE_FILES",
    "AUTO_MAP",
    "SumiPreTrainedModel",
    "SumiModel",
    "SumiForMaskGeneration",
]
