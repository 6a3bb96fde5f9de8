"""`sumi info`: a model's config, parameter count and memory needs, without loading any weights."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..formatting import format_bytes, format_count
from .common import CLIError, model_source, positive_int

EPILOG = """\
The parameter count is computed on PyTorch's meta device (no memory is allocated, so even sumi-7b
is instant). Memory estimates are for the weights in each dtype and, roughly, for the largest
temporaries of one denoising step of a 2048-token canvas at batch 1 (see the printed breakdown).
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    i = subparsers.add_parser(
        "info",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
        help="show a model's config, parameter count and memory estimates",
        description="Show the config, parameter count and memory needs of a checkpoint "
        "folder, a preset or a Hub id\n(without loading any weights).",
    )
    i.add_argument("model", metavar="PATH_OR_PRESET", help="a checkpoint folder, a preset name or a Hub id")
    i.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    i.add_argument(
        "--canvas-length",
        type=positive_int,
        default=2048,
        metavar="N",
        help="canvas of the activation estimate (default: 2048, capped at max_position_embeddings)",
    )
    i.add_argument(
        "--verify",
        action="store_true",
        help="also load the weights: each must match the config and hold no NaN or infinity (reads every weight)",
    )
    return i


_CONFIG_KEYS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "max_position_embeddings",
    "rms_norm_eps",
    "rope_parameters",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "tie_word_embeddings",
)


def _read_config(name: str, source: str):
    """The config of a preset, folder or Hub id, and for a folder its weight files; (config, files or None)."""
    from ..configuration_sumi import SumiConfig
    from ..loading import read_config

    try:
        if source == "preset":
            return SumiConfig.from_preset(name), None
        if source != "folder":
            return SumiConfig.from_pretrained(name), None
        folder = Path(name).expanduser()
        if not (folder / "config.json").is_file():
            raise CLIError(f"argument PATH_OR_PRESET: {name!r} is not a model folder: it has no config.json")
        config = read_config(folder)
    except CLIError:
        raise
    except (OSError, ValueError) as e:
        raise CLIError(f"argument PATH_OR_PRESET: cannot read the config of {name!r}: {e}") from None
    weights = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin"))
    files = dict(
        count=len(weights),
        bytes=sum(f.stat().st_size for f in weights),
        tokenizer=any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")),
    )
    return config, files


def model_report(name: str, source: str, canvas_length: int) -> dict:
    """What `sumi info --json` prints."""
    from .. import kernels
    from ..modeling_sumi import DTYPE_BYTES, memory_estimate, parameter_counts

    config, files = _read_config(name, source)
    counts = parameter_counts(config)
    own_dtype = getattr(config, "dtype", None)
    own_dtype = str(own_dtype).removeprefix("torch.") if own_dtype is not None else None
    report = dict(
        model=name,
        source=source,
        random_weights=source == "preset",
        config={k: getattr(config, k) for k in _CONFIG_KEYS} | {"dtype": own_dtype},
        parameters=counts,
        weights_bytes={k: counts["total"] * b for k, b in DTYPE_BYTES.items()},
        activations=memory_estimate(config, canvas_length),
    )
    if files is not None:
        report["files"] = files
    why = kernels.why_not_for(config.head_dim)  # which attention bf16 inference gets on this machine
    report["cpu_bf16_attention"] = dict(kernel="SDPA" if why else "sumi native (AVX512-BF16)", why_not=why)
    return report


def _text(report: dict) -> str:
    c, counts, mem, files = report["config"], report["parameters"], report["activations"], report.get("files")
    name, source = report["model"], report["source"]
    lines = [
        f"model         {name} ({source}{': random weights when loaded' if source == 'preset' else ''})",
        f"architecture  {c['num_hidden_layers']} layers, hidden {c['hidden_size']}, MLP {c['intermediate_size']} "
        f"(SwiGLU), heads {c['num_attention_heads']} (KV {c['num_key_value_heads']}, head_dim {c['head_dim']})",
        f"vocabulary    {c['vocab_size']} ids; bos {c['bos_token_id']}, eos {c['eos_token_id']}, "
        f"pad {c['pad_token_id']}",
        f"positions     max {c['max_position_embeddings']}, RoPE theta "
        f"{(c['rope_parameters'] or {}).get('rope_theta')}; rms_norm_eps {c['rms_norm_eps']}",
        f"dtype         {c['dtype'] or 'not set (float32)'}",
        f"parameters    {counts['total']:,} total ({format_count(counts['total'])}) = {counts['non_embedding']:,} "
        f"non-embedding ({format_count(counts['non_embedding'])}) + embedding {counts['embedding']:,} + "
        f"lm_head {counts['lm_head']:,}",
        "weights       " + " | ".join(f"{k} {format_bytes(v)}" for k, v in report["weights_bytes"].items()),
    ]
    if files is not None:
        lines.append(
            f"files         {files['count']} weight file(s), {format_bytes(files['bytes'])} on disk; "
            f"tokenizer {'present' if files['tokenizer'] else 'absent'}"
        )
    att = report["cpu_bf16_attention"]
    why_not = f" ({att['why_not']})" if att["why_not"] else ""
    lines.append(f"bf16 on CPU   attention through {att['kernel']}{why_not}")
    S = mem["canvas_length"]
    lines.append(
        f"inference     rough activations of one denoising step, canvas {S} x batch 1 "
        f"(logits [{S}, {c['vocab_size']}] + two fp32 sampler copies, or the largest layer transient; "
        f"eager adds fp32 [heads, {S}, {S + 1}] scores x2):"
    )
    for k, m in mem["per_dtype"].items():
        total = report["weights_bytes"][k] + m["peak_sdpa"]
        lines.append(
            f"  {k:<9}   logits {format_bytes(m['logits'])}, sampler fp32 {format_bytes(m['sampler_fp32'])}, layer "
            f"{format_bytes(m['layer_transient'])}; peak {format_bytes(m['peak_sdpa'])} (sdpa) / "
            f"{format_bytes(m['peak_eager'])} (eager); with weights ~{format_bytes(total)}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    name = args.model
    source = model_source(name, "PATH_OR_PRESET")
    if source == "bundled":
        from ..loading import BUNDLED_DIR

        name, source = str(BUNDLED_DIR / name), "folder"
    report = model_report(name, source, args.canvas_length)
    if args.verify:  # a mismatch or a non-finite weight is an error naming the tensors
        from ..loading import load

        model, _ = load(name, verify=True)
        report["verified"] = f"{len(model.state_dict())} tensors match the config, all finite"
    text = _text(report) + (f"\nverified      {report['verified']}" if args.verify else "")
    print(json.dumps(report, indent=2, default=str) if args.json else text)
    return 0


__all__ = ["add_parser", "run", "model_report"]
