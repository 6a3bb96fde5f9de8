"""Training checkpoints: DCP model + optimizer state, trainer state, a manifest, atomic install.

Layout of ``{checkpoint.dir}``::

    step_0001000/
        .metadata, __0_0.distcp, __1_0.distcp, ...   torch.distributed.checkpoint (model + optimizer,
                                                     from get_state_dict: sharded, any world size
                                                     can load it)
        trainer_state.json                           step, config, model config, data position, world size
        manifest.json                                written last: every other file's size and sha256
    step_0002000/ ...

Saving writes into ``step_XXXXXXX.tmp/``; each rank hashes the ``.distcp`` files it wrote, rank 0
writes the trainer state and then the manifest, and renames the folder to ``step_XXXXXXX/`` after a
barrier. A checkpoint folder without a ``.tmp`` suffix therefore always has a manifest, and a
checkpoint is *complete* when every file in its manifest exists with the recorded size and hash.
Resuming picks the newest complete checkpoint; a truncated or corrupted one is reported (logged as
an error naming the file) and the previous one is used. Only the last `keep_last` are kept.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ..atomic import atomic_folder, check_target
from ..checksums import sha256_file

logger = logging.getLogger("sumi.training")

MANIFEST = "manifest.json"
TRAINER_STATE = "trainer_state.json"
FORMAT = "sumi-train-checkpoint"
_STEP_RE = re.compile(r"^step_(\d+)$")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: missing, incomplete or corrupted (the message says why)."""


def checkpoint_name(step: int) -> str:
    return f"step_{step:07d}"


def _file_entry(path: Path) -> dict[str, Any]:
    return {"size": path.stat().st_size, "sha256": sha256_file(path)}


def _write_json_durably(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def list_checkpoints(root: str | os.PathLike) -> list[tuple[int, Path]]:
    """(step, folder) of every installed (non-.tmp) checkpoint under `root`, newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _STEP_RE.match(p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), p))
    return sorted(found, reverse=True)


def verify_checkpoint(path: str | os.PathLike, *, checksum: bool = True) -> dict[str, Any]:
    """Check a checkpoint folder against its manifest; returns the manifest or raises CheckpointError."""
    path = Path(path)
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} has no {MANIFEST} (an interrupted save?)")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint {str(path)!r}: {MANIFEST} is unreadable: {e}") from None
    if manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), dict):
        raise CheckpointError(f"checkpoint {str(path)!r}: {MANIFEST} is not a {FORMAT} manifest")
    for name, entry in manifest["files"].items():
        f = path / name
        if not f.is_file():
            raise CheckpointError(f"checkpoint {str(path)!r} is incomplete: file {name!r} is missing")
        size = f.stat().st_size
        if size != entry["size"]:
            raise CheckpointError(
                f"checkpoint {str(path)!r} is corrupted: file {name!r} has {size} bytes, "
                f"the manifest says {entry['size']} (truncated?)"
            )
        if checksum:
            digest = sha256_file(f)
            if digest != entry["sha256"]:
                raise CheckpointError(
                    f"checkpoint {str(path)!r} is corrupted: file {name!r} has sha256 "
                    f"{digest[:16]}..., the manifest says {entry['sha256'][:16]}..."
                )
    return manifest


def find_latest_checkpoint(root: str | os.PathLike, *, checksum: bool = True) -> Path | None:
    """The newest complete checkpoint under `root` (None if there is none). Each newer one that fails
    verification is logged as an error and skipped."""
    root = Path(root)
    if root.is_dir():
        for p in sorted(root.glob("step_*.tmp")):
            logger.warning("ignoring %s: an interrupted checkpoint save", p)
    for _, path in list_checkpoints(root):
        try:
            verify_checkpoint(path, checksum=checksum)
        except CheckpointError as e:
            logger.error("%s; falling back to the previous checkpoint", e)
            continue
        return path
    return None


def resolve_checkpoint(path: str | os.PathLike, *, checksum: bool = True) -> Path:
    """`path` itself if it is a checkpoint folder (verified), else the newest complete checkpoint
    under it (a checkpoint root); CheckpointError if there is none."""
    path = Path(path)
    if (path / MANIFEST).is_file() or (path / TRAINER_STATE).is_file():
        verify_checkpoint(path, checksum=checksum)
        return path
    latest = find_latest_checkpoint(path, checksum=checksum)
    if latest is None:
        raise CheckpointError(f"no complete checkpoint in {str(path)!r}")
    return latest


def read_trainer_state(path: str | os.PathLike) -> dict[str, Any]:
    return json.loads((Path(path) / TRAINER_STATE).read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------- save / load (collective)
def save_checkpoint(
    root: str | os.PathLike,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    trainer_state: dict[str, Any],
    *,
    keep_last: int = 0,
    barrier=None,
) -> Path:
    """Collective: every rank calls it. Returns the installed folder ``root/step_XXXXXXX``."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    root = Path(root)
    rank = dist.get_rank() if dist.is_initialized() else 0
    barrier = barrier or (dist.barrier if dist.is_initialized() else (lambda: None))
    final = root / checkpoint_name(step)
    tmp = root / (checkpoint_name(step) + ".tmp")
    if rank == 0:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
    barrier()

    model_sd, optim_sd = get_state_dict(model, optimizer)
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(tmp))
    barrier()

    # each rank hashes the data files it wrote (DCP names them __{rank}_{i}.distcp)
    mine = {p.name: _file_entry(p) for p in sorted(tmp.glob(f"__{rank}_*.distcp"))}
    gathered: list[Any] = [None] * (dist.get_world_size() if dist.is_initialized() else 1)
    if dist.is_initialized():
        dist.all_gather_object(gathered, mine)
    else:
        gathered = [mine]
    if rank == 0:
        _write_json_durably(tmp / TRAINER_STATE, trainer_state)
        files: dict[str, Any] = {}
        for part in gathered:
            files.update(part)
        for p in sorted(tmp.iterdir()):
            if p.is_file() and p.name not in files and p.name != MANIFEST:
                files[p.name] = _file_entry(p)
        for p in tmp.iterdir():  # flush the data before the manifest makes the checkpoint "complete"
            if p.is_file():
                fd = os.open(p, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        _write_json_durably(
            tmp / MANIFEST, {"format": FORMAT, "version": 1, "step": step, "files": dict(sorted(files.items()))}
        )
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(root)
        if keep_last > 0:
            for _, old in list_checkpoints(root)[keep_last:]:
                shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


class Checkpointer:
    """A run's checkpoint policy and saving: every `every` steps (0 = never on a schedule) and at
    the last step when `at_end`, into ``root/step_XXXXXXX``, keeping the last `keep_last`."""

    def __init__(
        self, root: str | os.PathLike, *, every: int, at_end: bool, keep_last: int, total_steps: int, barrier=None
    ):
        self.root = Path(root)
        self.every, self.at_end, self.keep_last, self.total_steps = every, at_end, keep_last, total_steps
        self.barrier = barrier

    def should_save(self, step: int) -> bool:
        """Whether the run saves after `step` optimizer steps."""
        return bool(self.every and step % self.every == 0) or (self.at_end and step == self.total_steps)

    def save(
        self, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer, trainer_state: dict[str, Any]
    ) -> Path:
        """Collective (`save_checkpoint`): every rank calls it; returns the installed folder. A full
        disk is a CheckpointError saying where (the partial folder removed, earlier checkpoints kept)."""
        try:
            return save_checkpoint(
                self.root, step, model, optimizer, trainer_state, keep_last=self.keep_last, barrier=self.barrier
            )
        except Exception as e:  # DCP wraps a rank's OSError in its own exception: look at the text too
            if not _is_disk_full(e):
                raise
            shutil.rmtree(self.root / (checkpoint_name(step) + ".tmp"), ignore_errors=True)
            raise CheckpointError(
                f"no space left on device while writing the checkpoint of step {step} in {str(self.root)!r}: "
                "the earlier checkpoints are kept; free space (or lower checkpoint.keep_last) and --resume"
            ) from None


def _is_disk_full(e: BaseException) -> bool:
    import errno

    return (isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)) or "No space left on device" in str(e)


# the model config keys that decide the shapes of the weights
_SHAPE_KEYS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "tie_word_embeddings",
)


def _check_same_shapes(path: Path, config) -> None:
    """A checkpoint of another model shape is a CheckpointError naming the keys that differ (before
    DCP reports a missing or mis-shaped tensor)."""
    saved = read_trainer_state(path).get("model_config") or {}
    if config is None or not saved:
        return
    differ = [
        f"{k} {saved[k]} -> {getattr(config, k, None)}"
        for k in _SHAPE_KEYS
        if k in saved and saved[k] != getattr(config, k, None)
    ]
    if differ:
        raise CheckpointError(
            f"checkpoint {str(path)!r} holds a model of another shape ({', '.join(differ)}): "
            "resume with the model settings it was saved with, or start a new out_dir"
        )


def load_checkpoint(
    path: str | os.PathLike, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None
) -> dict[str, Any]:
    """Collective: load model (and optimizer) state from a checkpoint folder; returns its trainer state."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    path = Path(path)
    _check_same_shapes(path, getattr(model, "config", None))
    if optimizer is None:
        from torch.distributed.checkpoint.state_dict import get_model_state_dict, set_model_state_dict

        state = {"model": get_model_state_dict(model)}
        dcp.load(state, checkpoint_id=str(path))
        set_model_state_dict(model, state["model"])
    else:
        model_sd, optim_sd = get_state_dict(model, optimizer)
        state = {"model": model_sd, "optim": optim_sd}
        dcp.load(state, checkpoint_id=str(path))
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    return read_trainer_state(path)


# ----------------------------------------------------------------------------- export
def export_checkpoint(
    ckpt_dir: str | os.PathLike, out_dir: str | os.PathLike, *, dtype: str | None = None, verify: bool = True
) -> Path:
    """Write a normal HF folder (`SumiForMaskGeneration.save_pretrained`: safetensors, config, generation
    config and the remote code) from a training checkpoint, in this one process (no process group).

    `ckpt_dir` is a ``step_XXXXXXX`` folder or a checkpoint root (then its newest complete checkpoint).
    `dtype` ("float32" / "bfloat16"; default: the training weights' float32) casts the weights.
    Atomic: written into a hidden folder next to `out_dir` and renamed into place; an existing
    `out_dir` is replaced only if it holds nothing but a previous export's files.
    """
    import torch.distributed.checkpoint as dcp

    from ..configuration_sumi import SumiConfig
    from ..modeling_sumi import SumiForMaskGeneration

    check_target(Path(out_dir), overwrite=True, may_replace=why_not_an_export, what=_EXPORT)  # before the work
    ckpt = resolve_checkpoint(ckpt_dir, checksum=verify)
    state = read_trainer_state(ckpt)
    config = SumiConfig.from_dict(dict(state["model_config"]))
    config._attn_implementation = "sdpa"
    with torch.device("meta"):
        model = SumiForMaskGeneration(config)
    model = model.to_empty(device="cpu")
    sd = model.state_dict()
    with warnings.catch_warnings():  # "torch.distributed is ... uninitialized, assuming ... a single process": yes
        warnings.filterwarnings("ignore", message=".*torch.distributed is disabled.*")
        dcp.load({"model": sd}, checkpoint_id=str(ckpt), no_dist=True)
    model.load_state_dict(sd)
    if dtype is not None:
        model = model.to({"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype])
    with atomic_folder(out_dir, overwrite=True, may_replace=why_not_an_export, what=_EXPORT) as tmp:
        model.save_pretrained(tmp)  # a kill or a full disk leaves no half-written folder
    return Path(out_dir)


# what an export writes (`save_pretrained` of the model, and of the tokenizer for chat / student
# exports): an existing folder holding only these may be replaced by an export
_EXPORT_FILES = (
    "config.json",
    "generation_config.json",
    "model*.safetensors",
    "model.safetensors.index.json",
    "*.py",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)
_EXPORT = "an exported model folder (config, generation config, safetensors weights, remote code and tokenizer only)"


def why_not_an_export(folder: Path) -> str | None:
    """Why `folder` may not be replaced by an export (None: it holds only an earlier export's files)."""
    if not (folder / "config.json").is_file():
        return "it is not a model folder (no config.json)"
    foreign = sorted(
        p.name for p in folder.iterdir() if p.is_dir() or not any(fnmatch.fnmatch(p.name, pat) for pat in _EXPORT_FILES)
    )
    if foreign:
        return f"it holds files an export does not write ({', '.join(foreign[:5])})"
    return None


__all__ = [
    "CheckpointError",
    "checkpoint_name",
    "list_checkpoints",
    "verify_checkpoint",
    "find_latest_checkpoint",
    "resolve_checkpoint",
    "read_trainer_state",
    "save_checkpoint",
    "load_checkpoint",
    "export_checkpoint",
    "why_not_an_export",
    "Checkpointer",
]
