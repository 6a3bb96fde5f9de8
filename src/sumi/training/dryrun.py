"""`--dry-run`: validate a recipe and print its size, batch arithmetic and memory per rank, instantly.

The parameter count comes from the model built on PyTorch's meta device (no memory, so sumi-7b takes
a fraction of a second). The memory estimate is analytic; see `memory_per_rank` for what it counts.
"""

from __future__ import annotations

from typing import Any

from ..diffusion import default_loss_chunk_tokens
from ..formatting import format_count
from .config import TrainConfig
from .phases import build_plan

GIB = 2**30


def build_model_config(config: TrainConfig):
    """The SumiConfig a recipe trains: a preset with overrides, or a saved folder's config."""
    from ..configuration_sumi import SumiConfig

    m = config.model
    if m.path is not None:
        model_config = SumiConfig.from_pretrained(m.path)
        for k, v in m.overrides.items():
            setattr(model_config, k, v)
        model_config._check()
    else:
        model_config = SumiConfig.from_preset(m.preset, **m.overrides)
    if config.data.seq_len > model_config.max_position_embeddings:
        from .config import ConfigError

        raise ConfigError(
            f"config key 'data.seq_len': {config.data.seq_len} exceeds the model's "
            f"max_position_embeddings={model_config.max_position_embeddings}"
        )
    return model_config


def parameter_counts(model_config) -> dict[str, int]:
    """`sumi.modeling_sumi.parameter_counts` plus `weight_decayed` (AdamW decays every >= 2-D weight)."""
    from ..modeling_sumi import parameter_counts as model_counts

    counts = model_counts(model_config)
    return dict(counts, weight_decayed=counts["matrices"])


def memory_per_rank(config: TrainConfig, model_config, counts: dict[str, int], world_size: int) -> dict[str, Any]:
    """Estimated peak memory of one rank (bytes), by part.

    Counted:
      * ``params``, ``grads``, ``adamw``: fp32 master weights, fp32 gradients and the two fp32 AdamW
        moments, each sharded over the `world_size` ranks by FSDP (4 + 4 + 8 bytes per parameter / W);
      * ``fsdp_buffers``: unsharded copies in the compute dtype (bf16 on CUDA with bfloat16, else fp32)
        of the root's parameters (embedding, head, final norm: kept for the whole step) and of two
        decoder layers (the one computing and the one prefetched), plus one layer's unsharded gradient;
      * ``activations``: tensors saved for the backward of one micro-batch of ``micro_batch_size x
        seq_len`` tokens. Without activation checkpointing, per token and layer: the two RMSNorms'
        fp32 inputs/outputs, q/k/v (before and after RoPE), the SDPA output and log-sum-exp, the
        o_proj input, the MLP's gate, up, silu and product; with eager attention also three fp32
        ``[heads, S, S+1]`` score tensors per layer. With it: each layer's input only, plus one
        layer's full activations while it is recomputed. Plus the embedding output and final norm;
      * ``loss``: fused: the saved gradient of the hidden states plus one chunk's fp32
        ``[chunk, V]`` temporaries (about 6 of them); unfused: about 5 fp32 ``[tokens, V]`` tensors;
      * ``noise``: the global step batch's t (fp32) and replacement draws (int64) every rank holds.
    Not counted: the CUDA context and NCCL buffers (~1-3 GiB), allocator fragmentation, the data
    loader, compile workspaces. Treat the total as a lower bound with ~10-20 % headroom.
    """
    W = world_size
    N = counts["total"]
    cuda_bf16 = config.dtype == "bfloat16" and config.device != "cpu"
    act_b = 2 if config.dtype == "bfloat16" else 4  # activations (autocast / mixed precision)
    param_b = 2 if cuda_bf16 else 4  # unsharded parameter copies
    H, I, L = model_config.hidden_size, model_config.intermediate_size, model_config.num_hidden_layers
    V = model_config.vocab_size
    heads = model_config.num_attention_heads
    q = heads * model_config.head_dim
    kv = model_config.num_key_value_heads * model_config.head_dim
    S = config.data.seq_len
    T = config.batch.micro_batch_size * S
    G = config.batch.global_batch_size

    out: dict[str, Any] = {}
    out["params"] = 4 * N / W
    out["grads"] = 4 * N / W
    out["adamw"] = 8 * N / W
    root = counts["embedding"] + counts["lm_head"] + H
    unsharded = W > 1 or cuda_bf16  # a 1-rank fp32 run computes on the shards themselves
    out["fsdp_buffers"] = param_b * (root + 3 * counts["per_layer"]) if unsharded else 0.0
    per_tok_layer = (
        act_b * (H + (q + 2 * kv) + (q + kv) + (2 * q + 2 * kv) + q + H + 4 * I) + act_b * heads + 2 * (2 * H * 4)
    )  # + fp32 RMSNorm temporaries
    if config.model.attn_implementation == "eager":
        per_tok_layer += 3 * heads * (S + 1) * 4
    layer_full = T * per_tok_layer
    if config.activation_checkpointing:
        acts = L * T * H * act_b + layer_full
    else:
        acts = L * layer_full
    acts += T * H * (act_b + 2 * 4)  # embedding output, final norm
    out["activations"] = acts
    if config.fused_loss:
        chunk = min(T, config.loss_chunk_tokens or default_loss_chunk_tokens(V))
        out["loss"] = T * H * act_b + 6 * chunk * V * 4
    else:
        out["loss"] = T * V * act_b + 5 * T * V * 4
    out["noise"] = G * S * (4 + 8)
    out["total"] = sum(out.values())
    out["_notes"] = dict(compute_param_bytes=param_b, activation_bytes=act_b, tokens_per_micro_batch=T)
    return out


def _duration(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:,.1f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:,.1f} h"
    return f"{seconds / 60:,.1f} min" if seconds >= 120 else f"{seconds:,.0f} s"


def _source_windows(config: TrainConfig) -> dict[str, int | None]:
    """Windows of seq_len tokens in each source's train split, where it can be read here (else None;
    a streamed source is not read: its length is unknown until a run has read it to its end)."""
    from .mixture import _num_rows
    from .sources import open_source

    out: dict[str, int | None] = {}
    for section in config.data.sources:
        if section.kind == "stream":
            out[section.name] = None
            continue
        try:
            out[section.name] = _num_rows(open_source(section, "train", 1 << 62), config.data.seq_len)
        except (OSError, ValueError):
            out[section.name] = None
    return out


def _lr_segment(phase, optim) -> str:
    seg = phase.lr
    if seg.schedule == "run":
        return f"lr: the run's {optim.schedule} schedule"
    start = optim.lr if seg.start is None else seg.start
    end = optim.min_lr if seg.end is None else seg.end
    warm = f"{seg.warmup_steps} warm-up steps, then " if seg.warmup_steps else ""
    return f"lr: {warm}{seg.schedule} {start:g}" + (f" -> {end:g}" if seg.schedule != "constant" else "")


def phases_report(config: TrainConfig, world_size: int = 1, tokens_per_s: float | None = None) -> list[str]:
    """Lines of `--dry-run` per phase: steps, tokens, lr segment, tokens (and passes) per source, and
    the time at `tokens_per_s` (the whole job's throughput)."""
    from .mixture import rows_per_phase

    plan = build_plan(config)
    G, S = config.batch.global_batch_size, config.data.seq_len
    rows = rows_per_phase(plan, G, config.seed) if plan.source_names else None
    windows = _source_windows(config)
    seen = dict.fromkeys(plan.source_names, 0)
    lines = [
        f"phases: {len(plan.phases)}, {plan.total_steps:,} steps = {format_count(plan.total_steps * G * S)} "
        f"tokens; data.on_exhausted={config.data.on_exhausted}"
    ]
    for p in plan.phases:
        tokens = p.steps * G * S
        when = f"; {_duration(tokens / tokens_per_s)} at {format_count(tokens_per_s)} tokens/s" if tokens_per_s else ""
        lines.append(
            f"  {p.index + 1}. {p.name}: steps {p.start:,}-{p.end:,} ({p.steps:,} steps = "
            f"{format_count(tokens)} tokens){when}; {_lr_segment(p, config.optim)}"
        )
        for i, name in enumerate(plan.source_names if rows is not None else ()):
            n = int(rows[p.index, i])
            seen[name] += n
            if n == 0:
                continue
            size = windows[name]
            passes = (
                f"{seen[name] / size:.2f} passes so far"
                if size
                else "endless"
                if size is None and _is_endless(config, name)
                else "streamed: length unknown until read"
                if _kind(config, name) == "stream"
                else "size unknown here"
            )
            lines.append(f"       {name:<16} {format_count(n * S):>8} tokens ({n / (p.steps * G):6.1%})   [{passes}]")
    if tokens_per_s:
        lines.append(
            f"  total time at {format_count(tokens_per_s)} tokens/s: "
            f"{_duration(plan.total_steps * G * S / tokens_per_s)} ({world_size} ranks)"
        )
    return lines


def _kind(config: TrainConfig, name: str) -> str:
    return next(s.kind for s in config.data.sources if s.name == name)


def _is_endless(config: TrainConfig, name: str) -> bool:
    return any(s.name == name and s.kind == "synthetic" and not s.synthetic_sequences for s in config.data.sources)


def dry_run_report(config: TrainConfig, world_size: int = 1, tokens_per_s: float | None = None) -> str:
    """The text `--dry-run` prints (validates first: raises ConfigError on a bad recipe)."""
    config.validate(world_size)
    model_config = build_model_config(config)
    counts = parameter_counts(model_config)
    accum = config.grad_accum_steps(world_size)
    G, S, mb = config.batch.global_batch_size, config.data.seq_len, config.batch.micro_batch_size
    tokens_step = G * S
    lines = []
    src = config.model.path or config.model.preset
    lines.append(
        f"recipe OK: model {src}, world size {world_size}, dtype {config.dtype}, "
        f"activation checkpointing {'on' if config.activation_checkpointing else 'off'}, "
        f"{'fused' if config.fused_loss else 'unfused'} loss, attention {config.model.attn_implementation}"
    )
    lines.append(
        f"parameters: {counts['total']:,} ({format_count(counts['total'])}) = "
        f"{format_count(counts['non_embedding'])} non-embedding + embedding {format_count(counts['embedding'])}"
        f" + head {format_count(counts['lm_head'])}; weight decay on {format_count(counts['weight_decayed'])} "
        f"(all >=2-D weights incl. embedding and head; not the RMSNorm weights)"
    )
    lines.append(
        f"batch: global {G} sequences x {S} tokens = {tokens_step:,} tokens per step; "
        f"micro-batch {mb} per rank x {world_size} ranks; gradient accumulation {accum} steps"
    )
    total_tokens = tokens_step * config.steps
    lines.append(
        f"run: {config.steps:,} steps = {format_count(total_tokens)} tokens; "
        f"~{6 * counts['total'] * total_tokens:.3g} FLOPs (6 N D, attention excluded)"
    )
    if config.phases or config.data.sources or tokens_per_s:
        lines.extend(phases_report(config, world_size, tokens_per_s))
    o = config.optim
    lr_desc = f"{o.schedule}: warm-up {o.warmup_steps} steps to {o.lr:g}"
    if o.schedule == "wsd":
        decay = int(round(o.decay_fraction * config.steps))
        lr_desc += f", constant to step {config.steps - decay}, linear decay over {decay} steps to {o.min_lr:g}"
    else:
        lr_desc += f", cosine to {o.min_lr:g}"
    if config.phases:
        lr_desc += " (used by phases whose lr schedule is 'run')"
    lr_desc += f" (lr at the last step {build_plan(config).lr_at(config.steps - 1, o):.3g})"
    lines.append(
        f"schedule: {lr_desc}; AdamW betas {tuple(o.betas)}, weight decay {o.weight_decay:g}, clip {o.grad_clip:g}"
    )
    mem = memory_per_rank(config, model_config, counts, world_size)
    lines.append(
        f"estimated memory per rank (world size {world_size}; lower bound, see sumi.training.dryrun.memory_per_rank):"
    )
    for key, label in (
        ("params", "fp32 params (sharded)"),
        ("grads", "fp32 grads (sharded)"),
        ("adamw", "AdamW moments (sharded)"),
        ("fsdp_buffers", "FSDP unsharded buffers"),
        ("activations", f"activations, {mb}x{S} tokens"),
        ("loss", "loss temporaries"),
        ("noise", "global-batch noise"),
    ):
        lines.append(f"  {label:<34} {mem[key] / GIB:10.2f} GiB")
    lines.append(f"  {'total':<34} {mem['total'] / GIB:10.2f} GiB")
    alt = TrainConfig.from_dict(config.to_dict())
    alt.activation_checkpointing = not config.activation_checkpointing
    m2 = memory_per_rank(alt, model_config, counts, world_size)
    lines.append(
        f"  ({'with' if alt.activation_checkpointing else 'without'} activation checkpointing: "
        f"activations {m2['activations'] / GIB:.2f} GiB, total {m2['total'] / GIB:.2f} GiB)"
    )
    return "\n".join(lines)


__all__ = ["dry_run_report", "phases_report", "memory_per_rank", "parameter_counts", "build_model_config"]
