"""Trajectory files: a recorded generation run and its metadata in one compact `.pt` file.

A file stores the initial canvas, the free mask, the schedule, the per-step *changes* (not every
canvas), optionally the denoiser's per-step top-1 probability and entropy (float16) and the
adaptive sampler's selected positions, plus a JSON metadata object (model, sampler options, seed,
prompt, canvas layout, sumi version, ...). It is a plain `torch.save` of tensors, numbers and
strings, so it loads with `torch.load(..., weights_only=True)`.

```python
out, record = record_generation(model, input_ids, tokenizer=tok, model_name="sumi-tiny",
                                max_new_tokens=32, num_denoising_steps=64, sampler="greedy", seed=0)
save_trajectory("run.pt", record.trajectory, record.metadata)
record = load_trajectory("run.pt")          # .trajectory (a sumi Trajectory), .metadata (dict)
```
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..denoising import Trajectory, frozen_per_row
from ..denoising import canvas_layout as layout_of
from ..generation_sumi import GENERATION_DEFAULTS

FORMAT = "sumi-trajectory"
FORMAT_VERSION = 1


@dataclass
class TrajectoryRecord:
    """A trajectory with its metadata (and the file it came from, if any)."""

    trajectory: Trajectory
    metadata: dict = field(default_factory=dict)
    path: str | None = None


def _sumi_version() -> str:
    from .. import __version__

    return __version__


def _small_int(t: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(t).long()
    if t.numel() and (int(t.min()) < -(2**31) or int(t.max()) >= 2**31):
        return t
    return t.to(torch.int32)


def _decode(tokenizer, ids: list[int]) -> str:
    try:
        return tokenizer.decode(ids, skip_special_tokens=True)
    except TypeError:
        return tokenizer.decode(ids)


def save_trajectory(
    path: str | os.PathLike,
    trajectory: Trajectory,
    metadata: dict | None = None,
    *,
    tokenizer=None,
    include_confidence: bool = True,
) -> Path:
    """Write `trajectory` and `metadata` to `path` (a `.pt` file; parents are created).

    With a `tokenizer`, the metadata also gets `prompt_texts` (decoded `prompt_ids`) and
    `completion_texts` (decoded `completion_ids`) where those ids are present and texts are not.
    `include_confidence=False` drops the per-step top-1 probability and entropy (the bulk of the
    file: 4 bytes per position per step). Returns the path.
    """
    meta = dict(metadata or {})
    meta.setdefault("sumi_version", _sumi_version())
    if tokenizer is not None:
        for ids_key, text_key in (("prompt_ids", "prompt_texts"), ("completion_ids", "completion_texts")):
            if meta.get(ids_key) is not None and meta.get(text_key) is None:
                meta[text_key] = [_decode(tokenizer, list(r)) for r in meta[ids_key]]
    try:
        meta_json = json.dumps(meta, ensure_ascii=False)
    except TypeError as e:
        raise ValueError(f"trajectory metadata must be JSON-serialisable: {e}") from e
    changes = trajectory.changes
    counts = torch.tensor([int(torch.as_tensor(r).numel()) for r, _, _ in changes], dtype=torch.long)
    cat = lambda i: (
        torch.cat([torch.as_tensor(c[i]).long().reshape(-1) for c in changes])
        if changes
        else torch.zeros(0, dtype=torch.long)
    )
    payload: dict[str, Any] = dict(
        format=FORMAT,
        version=FORMAT_VERSION,
        metadata_json=meta_json,
        initial=_small_int(trajectory.initial),
        free=torch.as_tensor(trajectory.free).bool(),
        log_snrs=torch.tensor([float(x) for x in trajectory.log_snrs], dtype=torch.float64),
        change_counts=counts,
        change_rows=_small_int(cat(0)),
        change_cols=_small_int(cat(1)),
        change_values=_small_int(cat(2)),
    )
    if include_confidence and trajectory.top1_prob:
        payload["top1_prob"] = torch.stack([torch.as_tensor(x).half() for x in trajectory.top1_prob])
        payload["entropy"] = torch.stack([torch.as_tensor(x).half() for x in trajectory.entropy])
    selected = trajectory.selected
    if selected and all(s is not None for s in selected):
        payload["selected"] = _small_int(torch.stack([torch.as_tensor(s) for s in selected]))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


def load_trajectory(path: str | os.PathLike) -> TrajectoryRecord:
    """Read a file written by `save_trajectory`; the trajectory's tensors come back as int64 / bool
    / float16 on the CPU, exactly as `generate(record_trajectory=True)` returns them."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 - a corrupt or foreign file: say so in one line
        raise ValueError(f"{str(path)!r} is not a readable sumi trajectory file ({type(e).__name__}: {e})") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{str(path)!r} is not a sumi trajectory file")
    if int(payload.get("version", 0)) > FORMAT_VERSION:
        raise ValueError(
            f"{str(path)!r} has trajectory format version {payload['version']}; this sumi reads "
            f"up to {FORMAT_VERSION}: upgrade sumi"
        )
    counts = payload["change_counts"].tolist()
    rows = payload["change_rows"].long().split(counts)
    cols = payload["change_cols"].long().split(counts)
    values = payload["change_values"].long().split(counts)
    N = len(counts)
    top1 = list(payload["top1_prob"].unbind(0)) if "top1_prob" in payload else []
    entropy = list(payload["entropy"].unbind(0)) if "entropy" in payload else []
    selected = list(payload["selected"].long().unbind(0)) if "selected" in payload else [None] * N
    trajectory = Trajectory(
        initial=payload["initial"].long(),
        free=payload["free"].bool(),
        log_snrs=payload["log_snrs"].tolist(),
        changes=list(zip(rows, cols, values)),
        top1_prob=top1,
        entropy=entropy,
        selected=selected,
    )
    return TrajectoryRecord(trajectory, json.loads(payload["metadata_json"]), str(path))


# ----------------------------------------------------------------------------- recording a run
def canvas_layout(model, options: dict, prompt_lens: list[int], P: int) -> dict[str, Any]:
    """Where generate() puts things (`sumi.denoising.canvas_layout`), from resolved options, as plain
    lists for the metadata: each row's answer budget, its canvas start column, its generated columns
    `[P, P + budget)` and its pinned columns after the prompt (EOS/BOS anchors or `frozen` tokens)."""
    mnt = options.get("max_new_tokens")
    if mnt is None and options.get("max_length") is not None:
        mnt = options["max_length"] - P
    frozen = options.get("frozen")
    layout = layout_of(
        model.config,
        prompt_lens,
        P,
        mnt,
        options["canvas_length"],
        anchors=bool(options["anchor_eosbos"]) and frozen is None,
        aligned=bool(options.get("align_rows")),
    )
    pinned = layout.anchor_columns()
    if frozen is not None:
        pinned = [
            sorted(s + pos for pos, _ in rows if s + pos >= P)
            for s, rows in zip(layout.starts, frozen_per_row(frozen, len(prompt_lens)))
        ]
    return dict(
        canvas_length=layout.canvas_length,
        prompt_len=P,
        row_prompt_lens=list(prompt_lens),
        budgets=layout.budgets,
        row_starts=layout.starts,
        generated_columns=[list(layout.answer_columns(i)) for i in range(len(prompt_lens))],
        anchor_columns=pinned,
    )


# The resolved generation options a trajectory's metadata records: all of them (max_length is
# recorded as the max_new_tokens it resolves to).
GENERATE_OPTION_KEYS = tuple(k for k in GENERATION_DEFAULTS if k != "max_length")


def record_generation(
    model,
    input_ids=None,
    attention_mask=None,
    *,
    tokenizer=None,
    model_name: str | None = None,
    extra_metadata: dict | None = None,
    **generate_kwargs,
):
    """Run `model.generate(..., record_trajectory=True)` and return `(output, TrajectoryRecord)`;
    the metadata holds the resolved sampler options, the canvas layout (`canvas_layout`), the
    unpadded prompt and completion ids (and texts, with a tokenizer), the model name, dtype and
    device, and the sumi version."""
    generate_kwargs.pop("record_trajectory", None)
    device = next(model.parameters()).device
    if input_ids is None:
        input_ids = torch.tensor([[model.config.bos_token_id]])
    input_ids = torch.as_tensor(input_ids)
    if input_ids.dim() == 1:
        input_ids = input_ids[None]
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    attention_mask = torch.as_tensor(attention_mask)
    out = model.generate(
        input_ids.to(device), attention_mask=attention_mask.to(device), record_trajectory=True, **generate_kwargs
    )
    if out.trajectory is None:
        raise ValueError("nothing was generated (max_new_tokens = 0): no trajectory to record")
    explicit = {k: v for k, v in generate_kwargs.items() if k in GENERATE_OPTION_KEYS or k == "max_length"}
    options = model.resolve_generation_options(explicit, generate_kwargs.get("generation_config"))
    B, P = input_ids.shape
    prompt_lens = attention_mask.long().sum(-1).tolist()
    layout = canvas_layout(model, options, prompt_lens, P)
    prompt_ids = [input_ids[b, P - p :].tolist() for b, p in enumerate(prompt_lens)]
    sequences = out.sequences.cpu()
    completion_ids = [sequences[b, P : int(out.lengths[b])].tolist() for b in range(B)]
    meta: dict[str, Any] = dict(
        sumi_version=_sumi_version(),
        model=model_name or getattr(model.config, "_name_or_path", None) or None,
        vocab_size=model.config.vocab_size,
        eos_token_id=model.config.eos_token_id,
        bos_token_id=model.config.bos_token_id,
        dtype=str(next(model.parameters()).dtype).removeprefix("torch."),
        device=str(device),
        **{k: options.get(k) for k in GENERATE_OPTION_KEYS},
        prompt_ids=prompt_ids,
        completion_ids=completion_ids,
        num_forwards=int(out.num_forwards or 0),
    )
    meta.update(layout)  # canvas_length: the one actually used (capped at max_position_embeddings)
    meta["frozen"] = (
        [list(map(list, r)) if isinstance(r, (list, tuple)) else r for r in meta["frozen"]]
        if meta.get("frozen") is not None
        else None
    )
    if tokenizer is not None:
        meta["prompt_texts"] = [_decode(tokenizer, r) for r in prompt_ids]
        meta["completion_texts"] = [_decode(tokenizer, r) for r in completion_ids]
    meta.update(extra_metadata or {})
    return out, TrajectoryRecord(out.trajectory, json.loads(json.dumps(meta, default=str)))


# Metadata entries with one value per row (the rest describe the whole run).
ROW_METADATA = (
    "prompt_ids",
    "completion_ids",
    "row_prompt_lens",
    "budgets",
    "row_starts",
    "generated_columns",
    "anchor_columns",
    "prompt_texts",
    "completion_texts",
)


def concat_records(records: list[TrajectoryRecord]) -> TrajectoryRecord:
    """One record of the rows of `records` in order: the runs of consecutive row blocks of one batch
    (same padded prompt width, canvas and steps; e.g. the blocks of a data-parallel run)."""
    if not records:
        raise ValueError("no trajectory records to concatenate")
    if len(records) == 1:
        return records[0]
    trajs = [r.trajectory for r in records]
    if len({t.num_steps for t in trajs}) != 1 or len({tuple(t.initial.shape[1:]) for t in trajs}) != 1:
        raise ValueError("trajectories of different step counts or canvas widths cannot be concatenated")
    offsets = [0]
    for t in trajs[:-1]:
        offsets.append(offsets[-1] + t.initial.shape[0])

    def per_step(name: str) -> list:
        steps = [getattr(t, name) for t in trajs]
        if not all(steps) or any(x is None for s in steps for x in s):
            return [None] * trajs[0].num_steps if name == "selected" and any(steps) else []
        return [torch.cat([torch.as_tensor(s[k]) for s in steps]) for k in range(trajs[0].num_steps)]

    changes = [
        tuple(
            torch.cat([torch.as_tensor(t.changes[k][i]).long() + (o if i == 0 else 0) for t, o in zip(trajs, offsets)])
            for i in range(3)
        )
        for k in range(trajs[0].num_steps)
    ]
    merged = Trajectory(
        initial=torch.cat([t.initial for t in trajs]),
        free=torch.cat([t.free for t in trajs]),
        log_snrs=list(trajs[0].log_snrs),
        changes=changes,
        top1_prob=per_step("top1_prob"),
        entropy=per_step("entropy"),
        selected=per_step("selected"),
    )
    meta = dict(records[0].metadata)
    for key in ROW_METADATA:
        if all(r.metadata.get(key) is not None for r in records):
            meta[key] = [row for r in records for row in r.metadata[key]]
    seeds = [r.metadata.get("seed") for r in records]
    if all(isinstance(x, list) for x in seeds):
        meta["seed"] = [x for block in seeds for x in block]
    meta["num_forwards"] = max(int(r.metadata.get("num_forwards") or 0) for r in records)
    return TrajectoryRecord(merged, meta)


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "TrajectoryRecord",
    "save_trajectory",
    "load_trajectory",
    "canvas_layout",
    "record_generation",
    "concat_records",
    "ROW_METADATA",
    "GENERATE_OPTION_KEYS",
]
