"""`sumi.load`: one call from a name to a ready model (and its tokenizer).

```python
>>> import sumi
>>> model, tok = sumi.load("path/to/checkpoint")      # a folder saved by sumi or in the official format
>>> model, tok = sumi.load("sumi-tiny")               # a preset: random weights (seed 0), for smoke tests
>>> model, tok = sumi.load("tohoku-nlp/sumi-7b", dtype="bfloat16", device="cuda")  # the Hub, when online
```

Names resolve in this order: an existing local path, then a preset name (`sumi.PRESETS`), then a
Hugging Face Hub id ("owner/name").

A safetensors checkpoint, local or from the Hub, loads with peak memory about the size of the
weights, whatever the file's and the model's dtypes (`load_safetensors_folder`).
"""

from __future__ import annotations

import json
import logging
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from .configuration_sumi import PRESETS, SumiConfig
from .modeling_sumi import ALL_ATTENTION_FUNCTIONS, SumiForMaskGeneration
from .tokenization import VOCAB_SIZE as DOLMA2_VOCAB_SIZE
from .tokenization import _looks_like_hub_id, _offline, has_tokenizer_files, load_tokenizer

logger = logging.getLogger(__name__)

# The model `sumi generate` (and `load()`) use when none is named. Switch it here (one place) when a
# bundled trained demo model exists.
DEFAULT_MODEL = "demo"

# Seed of the random weights of a preset: the same preset always gives the same model.
PRESET_SEED = 0

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
}


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | str | None:
    """A torch dtype from a name ("bfloat16", "bf16", "float32", ...), "auto", a torch.dtype or None."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str):
        if dtype == "auto":
            return "auto"
        if dtype.removeprefix("torch.") in DTYPES:
            return DTYPES[dtype.removeprefix("torch.")]
    raise ValueError(f"unknown dtype {dtype!r}; choose one of float32, bfloat16, float16 (or 'auto')")


# Trained models shipped inside the package (src/sumi/assets/models/NAME): `load("demo")`.
BUNDLED_DIR = Path(__file__).parent / "assets" / "models"


def bundled_models() -> list[str]:
    return sorted(p.name for p in BUNDLED_DIR.glob("*") if (p / "config.json").is_file())


def model_source(name_or_path: str | os.PathLike) -> str:
    """How `load()` resolves a name: "folder" (an existing local folder), "bundled" (a model shipped
    in the package, e.g. "demo"), "preset" (a name in `PRESETS`), "hub" (looks like a Hub id
    "owner/name"). Raises ValueError for anything else."""
    name = os.fspath(name_or_path)
    if name in bundled_models() and not Path(name).exists():
        return "bundled"
    path = Path(name).expanduser()
    if path.is_dir():
        return "folder"
    if path.exists():
        raise ValueError(f"{name!r} is a file, not a model folder: pass the folder that holds config.json")
    if name in PRESETS:
        return "preset"
    if _looks_like_hub_id(name):
        return "hub"
    raise ValueError(
        f"unknown model {name!r}: not a local folder, not a preset (one of {', '.join(PRESETS)}), "
        "not a Hub id (owner/name)"
    )


def preset_tokenizer(config: SumiConfig):
    """The tokenizer of a preset: Sumi's dolma2 tokenizer when the vocabulary is dolma2's, else None."""
    return load_tokenizer("dolma2") if config.vocab_size == DOLMA2_VOCAB_SIZE else None


def build_preset(
    name: str,
    *,
    dtype: str | torch.dtype | None = None,
    attn_implementation: str | None = None,
    seed: int = PRESET_SEED,
    **overrides: Any,
) -> SumiForMaskGeneration:
    """A preset model with random weights, initialised from `torch.manual_seed(seed)` on the CPU
    (the global RNG state is left untouched). dtype None = the preset's own dtype, else float32."""
    config = SumiConfig.from_preset(name, **overrides)
    dtype = resolve_dtype(dtype)
    if dtype in (None, "auto"):
        own = getattr(config, "dtype", None)
        dtype = resolve_dtype(str(own)) if own is not None else torch.float32
    kwargs = {"dtype": dtype}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SumiForMaskGeneration._from_config(config, **kwargs)
    return model.eval()


# A tensor converted to another dtype is read in blocks of rows of about 1/64 of the model's bytes
# (at least 1 MiB): a block's source is what a conversion adds to the peak (a few % of the model per
# worker). Not smaller: each block is one parallel torch op, and on a busy 2-core machine each op
# waits several ms for its threads (16 MiB blocks converted a 784 MiB tensor 1.5x slower than 64 MiB).
CONVERT_BLOCK_FRACTION, CONVERT_BLOCK_MIN = 1 / 64, 2**20
# Tensors converted at a time, in worker threads (transformers uses up to 4): their page faults and
# copies overlap; one at a time on the main thread was 4-6x slower than transformers on a busy
# 2-core machine (sumi-57m, fp32 -> bf16), two at a time about as fast. Each adds a block in flight.
CONVERT_WORKERS = 2

# safetensors' names of the float dtypes. `get_slice(name).get_dtype()` tells a tensor's dtype without
# touching it; `get_tensor` maps its first pages (about 1 MiB with a warm page cache) into this process.
SAFETENSORS_DTYPES = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32, "F64": torch.float64}


# the architecture a config.json must state (a missing one would silently take a 7B-sized default)
ARCHITECTURE_KEYS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
# weight files that unpickle (and so can run code) when loaded: refused
PICKLED_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")


def read_json_object(path: Path) -> dict:
    """The JSON object in `path`; a ValueError naming the file when it is not one."""
    try:
        data = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{str(path)!r} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{str(path)!r} holds a JSON {type(data).__name__}, expected an object")
    return data


def read_config(folder: str | os.PathLike) -> SumiConfig:
    """The `SumiConfig` of a checkpoint folder, after checking that config.json is a JSON object
    that states the architecture (`ARCHITECTURE_KEYS`)."""
    path = Path(folder).expanduser() / "config.json"
    if not path.is_file():
        raise ValueError(f"{str(folder)!r} is not a model folder: it has no config.json")
    data = read_json_object(path)
    absent = [k for k in ARCHITECTURE_KEYS if k not in data]
    if absent:
        raise ValueError(f"{str(path)!r} does not describe a model: it lacks {', '.join(absent)}")
    return SumiConfig.from_pretrained(str(path.parent))


def safetensors_files(folder: str | os.PathLike) -> list[Path]:
    """The weight files of a checkpoint folder: `model.safetensors`, else the shards its
    `model.safetensors.index.json` names; [] when it has neither (e.g. only `pytorch_model.bin`).
    A broken index, or one naming a missing shard, is a ValueError naming the file."""
    folder = Path(folder)
    if (folder / "model.safetensors").is_file():
        return [folder / "model.safetensors"]
    index = folder / "model.safetensors.index.json"
    if not index.is_file():
        return []
    weight_map = read_json_object(index).get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise ValueError(f"{str(index)!r} has no valid weight_map (tensor name -> shard file)")
    files = [folder / name for name in sorted(set(weight_map.values()))]
    absent = [f.name for f in files if not f.is_file()]
    if absent:
        raise ValueError(f"{str(index)!r} names shard(s) missing from the folder: {_some(absent)}")
    return files


def _some(names: list[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f", ... ({len(names)} in all)" if len(names) > n else "")


def read_headers(files: list[Path]) -> dict[str, tuple[Path, list[int], str]]:
    """{tensor name: (file, shape, safetensors dtype)} from the files' headers (no data read); a
    ValueError naming the file when one is empty, truncated or not safetensors."""
    from safetensors import SafetensorError

    headers: dict[str, tuple[Path, list[int], str]] = {}
    for file in files:
        try:
            with safe_open(file, framework="pt", device="cpu") as f:
                for name in f.keys():
                    if name in headers:
                        raise ValueError(f"tensor {name!r} is in both {headers[name][0].name} and {file.name}")
                    sl = f.get_slice(name)
                    headers[name] = (file, list(sl.get_shape()), sl.get_dtype())
        except (SafetensorError, OSError) as e:
            raise ValueError(
                f"{str(file)!r} is not a readable safetensors file (empty, truncated or corrupt?): "
                f"{' '.join(str(e).split())[:200]}"
            ) from None
    return headers


def check_weights_match(
    headers: dict[str, tuple[Path, list[int], str]], wanted: dict[str, torch.Tensor], where: str
) -> None:
    """Raise a ValueError naming the tensors unless the files hold exactly the model's weights,
    each with its shape and a floating-point dtype (a config that does not match its weights
    would otherwise load, silently, as a different model)."""
    problems = []
    missing = [n for n in wanted if n not in headers]
    extra = [n for n in headers if n not in wanted]
    shapes = [
        f"{n} {shape} (the config wants {list(wanted[n].shape)})"
        for n, (_, shape, _) in headers.items()
        if n in wanted and shape != list(wanted[n].shape)
    ]
    dtypes = [
        f"{n} ({dtype})" for n, (_, _, dtype) in headers.items() if n in wanted and dtype not in SAFETENSORS_DTYPES
    ]
    if missing:
        problems.append(f"lacks {len(missing)} weight(s) of the model: {_some(missing)}")
    if extra:
        problems.append(f"has {len(extra)} weight(s) the model does not have: {_some(extra)}")
    if shapes:
        problems.append(f"has {len(shapes)} weight(s) of the wrong shape: {_some(shapes, 3)}")
    if dtypes:
        problems.append(f"has {len(dtypes)} weight(s) that are not floating point: {_some(dtypes)}")
    if problems:
        raise ValueError(f"{where}: the checkpoint does not match its config.json: " + "; ".join(problems))


def nonfinite_weights(model: torch.nn.Module) -> list[str]:
    """Names of the parameters and buffers holding NaN or infinity (reads every weight once)."""
    bad = []
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad.append(name)
    return bad


def _refuse_pickles(folder: Path, where: str) -> None:
    pickles = sorted(p.name for pattern in PICKLED_WEIGHTS for p in folder.glob(pattern))
    if pickles:
        raise ValueError(
            f"{where} has only pickled PyTorch weights ({_some(pickles)}), which can run arbitrary "
            "code when loaded; sumi loads safetensors weights only (convert them where you trust "
            "the file: torch.load(...) then safetensors.torch.save_file(...))"
        )
    raise ValueError(f"{where} has no weights (no model.safetensors or model.safetensors.index.json)")


def _read_converted(file: Path, name: str, dtype: torch.dtype, block_bytes: int) -> torch.Tensor:
    """Tensor `name` of `file` converted to `dtype`, in blocks of rows of about `block_bytes` each
    read through a memory map of its own that is closed right after: the source pages a block
    touched then leave this process's RSS, so a conversion costs one block on top of its result
    (not the whole source file)."""
    with safe_open(file, framework="pt", device="cpu") as f:
        out = torch.empty(f.get_slice(name).get_shape(), dtype=dtype)
        if out.dim() == 0 or out.numel() == 0:
            return out.copy_(f.get_tensor(name))
    step = max(1, block_bytes // out[0].nbytes)
    for start in range(0, out.shape[0], step):
        with safe_open(file, framework="pt", device="cpu") as f:
            out[start : start + step].copy_(f.get_slice(name)[start : start + step])
    return out


def load_safetensors_folder(
    folder: str | os.PathLike,
    *,
    dtype: str | torch.dtype | None = None,
    attn_implementation: str | None = None,
    verify: bool = False,
) -> SumiForMaskGeneration:
    """`SumiForMaskGeneration.from_pretrained(folder, dtype=dtype or "auto")` for a local folder of
    safetensors weights (one file or shards with an index), with peak memory about the size of the
    loaded weights for any pair of file and model dtypes:

    * the model is built on the meta device (no memory, no random init);
    * a tensor already in the model's dtype becomes its parameter as is: a zero-copy view into the
      memory-mapped file, whose pages are read on first use and shared with the page cache (the
      mapping is private, copy-on-write: writing to a parameter never changes the file);
    * a tensor in another dtype is converted block by block (`_read_converted`). transformers keeps
      every file mapped, with every source page it touched, until the whole model is in: an fp32
      file loaded as bf16 peaks at 3x the bf16 weights, bf16 loaded as fp32 at 1.5x the fp32 ones.

    The files must hold exactly the model's weights with their shapes (`check_weights_match`):
    a missing, extra, mis-shaped or integer tensor is a ValueError naming it, as is a file that is
    not safetensors. `verify=True` also reads every weight and rejects NaN or infinity (else left
    to `nonfinite_weights`, so that loading stays lazy).
    """
    folder = Path(folder).expanduser()
    files = safetensors_files(folder)
    if not files:
        _refuse_pickles(folder, repr(str(folder)))
    config = read_config(folder)
    headers = read_headers(files)
    torch_dtype = resolve_dtype(dtype)
    if torch_dtype in (None, "auto"):  # as from_pretrained's "auto": the config's, else the weights'
        torch_dtype = config.dtype if config.dtype is not None else _first_float_dtype(files[0])
    kwargs: dict[str, Any] = {"dtype": torch_dtype}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    with torch.device("meta"):
        model = SumiForMaskGeneration._from_config(config, **kwargs)
    wanted = model.state_dict()  # meta tensors: each weight's name, shape and dtype
    check_weights_match(headers, wanted, repr(str(folder)))
    model_bytes = sum(t.numel() * t.element_size() for t in wanted.values())
    block_bytes = max(int(model_bytes * CONVERT_BLOCK_FRACTION), CONVERT_BLOCK_MIN)
    with ThreadPoolExecutor(CONVERT_WORKERS) as pool:
        for file in files:
            with safe_open(file, framework="pt", device="cpu") as f:
                tensors = {}
                for name in f.keys():
                    if SAFETENSORS_DTYPES.get(f.get_slice(name).get_dtype()) == wanted[name].dtype:
                        tensors[name] = f.get_tensor(name)  # a view into the mapping: nothing is copied
                    else:
                        tensors[name] = pool.submit(_read_converted, file, name, wanted[name].dtype, block_bytes)
                tensors = {k: v.result() if isinstance(v, Future) else v for k, v in tensors.items()}
                # assign=True: the tensors become the parameters (no copy into the meta ones)
                model.load_state_dict(tensors, strict=False, assign=True)
    if verify and (bad := nonfinite_weights(model)):
        raise ValueError(f"{str(folder)!r}: {len(bad)} weight(s) hold NaN or infinity: {_some(bad)}")
    model.config.name_or_path = str(folder)
    if (folder / "generation_config.json").is_file():  # transformers would skip a broken one silently
        read_json_object(folder / "generation_config.json")
    # the folder's generation_config.json (sampler defaults), read by the hook from_pretrained calls
    model.adjust_generation_fn(
        generation_config=None, from_auto_class=False, from_pipeline=False, pretrained_model_name_or_path=str(folder)
    )
    return model.eval()


def _first_float_dtype(file: Path) -> torch.dtype:
    """The dtype of the first floating-point tensor of a safetensors file (what transformers' "auto"
    falls back to when the config names no dtype)."""
    with safe_open(file, framework="pt", device="cpu") as f:
        for name in f.keys():
            if (dtype := SAFETENSORS_DTYPES.get(f.get_slice(name).get_dtype())) is not None:
                return dtype
    return torch.get_default_dtype()


# What a model needs from a Hub repo: config and generation config, remote code, tokenizer files,
# safetensors weights (and their index). Other weight formats are left to `from_pretrained`.
HUB_PATTERNS = ["*.json", "*.py", "*.txt", "*.model", "*.safetensors"]


def hub_snapshot(repo_id: str, revision: str | None = None) -> Path:
    """The local folder of a Hub model repo (`huggingface_hub.snapshot_download` of `HUB_PATTERNS`:
    downloaded once, then read from the local cache, also offline). Raises a ValueError that says
    why when the repo is neither reachable nor cached."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=HUB_PATTERNS))
    except Exception as e:  # network, auth, missing repo, offline without a cached copy
        why = "offline (HF_HUB_OFFLINE is set) and not in the local cache" if _offline() else "not found or unreachable"
        raise ValueError(
            f"cannot load the model {repo_id!r}: no such local folder, and from the Hugging Face "
            f"Hub: {why} ({type(e).__name__}: {' '.join(str(e).split())})"
        ) from e


def load(
    name_or_path: str | os.PathLike = DEFAULT_MODEL,
    *,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device | None = None,
    attn_implementation: str | None = None,
    verify: bool = False,
) -> tuple[SumiForMaskGeneration, Any]:
    """Load a Sumi model and its tokenizer: returns `(model, tokenizer or None)`, model in eval mode.

    `name_or_path`:
      * "demo" (or another name in `bundled_models()`): a trained model shipped in the package,
        loaded in float32 unless `dtype` says otherwise;
      * a local folder saved by sumi (`save_pretrained`) or in the official format: safetensors
        weights via `load_safetensors_folder` (as `from_pretrained`, with peak memory about the
        size of the weights), other formats via `SumiForMaskGeneration.from_pretrained`; the
        tokenizer from the same folder if it has tokenizer files, else None;
      * a preset name (`sumi.PRESETS`, e.g. "sumi-tiny", "sumi-7b"): RANDOM weights (seed 0), with
        a logged warning; tokenizer: Sumi's dolma2 for presets with the 100,278-id vocabulary,
        else None;
      * a Hugging Face Hub id ("owner/name"): its config, code, tokenizer and safetensors files
        are fetched into the Hub cache (`hub_snapshot`; offline, the cached copy is used), then
        loaded as a local folder, with the same memory bound; a repo without safetensors
        weights goes through `from_pretrained`. Not reachable and not cached: a clear ValueError.
    `dtype`: "float32" / "bfloat16" / "float16" (or a torch.dtype); None = the checkpoint's dtype.
    `verify`: also read every weight and reject NaN or infinity (see `load_safetensors_folder`).
    Pickled weights (`pytorch_model.bin`, ...) are refused: unpickling can run code.
    `device`: where to put the model (default: CPU). `attn_implementation`: a name of
    `modeling_sumi.ALL_ATTENTION_FUNCTIONS` ("sdpa", "sumi_native") or "eager"; None = "sumi_native"
    (sumi's CPU kernel for bf16 inference where it runs, SDPA elsewhere).
    """
    name = os.fspath(name_or_path)
    source = model_source(name)
    torch_dtype = resolve_dtype(dtype)
    if source == "bundled":  # shipped in bf16 to stay small; computed in fp32 unless asked otherwise
        name, source = str(BUNDLED_DIR / name), "folder"
        torch_dtype = torch.float32 if torch_dtype is None else torch_dtype
    attentions = ("eager", *ALL_ATTENTION_FUNCTIONS)
    if attn_implementation is not None and attn_implementation not in attentions:
        raise ValueError(f"unknown attn_implementation {attn_implementation!r}; choose one of {attentions}")
    tokenizer = None
    if source == "preset":
        model = build_preset(name, dtype=torch_dtype, attn_implementation=attn_implementation)
        logger.warning(
            "sumi.load(%r): preset with random weights (seed %d), not a trained model: its output is "
            "gibberish. Pass a checkpoint folder or Hub id for a trained model.",
            name,
            PRESET_SEED,
        )
        tokenizer = preset_tokenizer(model.config)
    else:
        folder = Path(name).expanduser() if source == "folder" else hub_snapshot(name)
        if source == "folder" and not (folder / "config.json").is_file():
            raise ValueError(f"{name!r} is not a model folder: it has no config.json")
        model = load_safetensors_folder(
            folder, dtype=torch_dtype, attn_implementation=attn_implementation, verify=verify
        )
        if has_tokenizer_files(folder):
            tokenizer = load_tokenizer(folder)
        elif source != "folder":
            logger.warning("sumi.load(%r): the repo has no tokenizer files; returning None", name)
    if device is not None:
        model = model.to(device)
    return model.eval(), tokenizer


__all__ = [
    "DEFAULT_MODEL",
    "BUNDLED_DIR",
    "bundled_models",
    "PRESET_SEED",
    "DTYPES",
    "resolve_dtype",
    "model_source",
    "preset_tokenizer",
    "build_preset",
    "safetensors_files",
    "load_safetensors_folder",
    "read_config",
    "read_headers",
    "check_weights_match",
    "nonfinite_weights",
    "HUB_PATTERNS",
    "hub_snapshot",
    "load",
]
