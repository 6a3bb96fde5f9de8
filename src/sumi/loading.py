"""`sumi.load`: one call from a name to a ready model (and its tokenizer).

```python
>>> import sumi
>>> model, tok = sumi.load("path/to/checkpoint")      # a folder saved by sumi or in the official format
>>> model, tok = sumi.load("sumi-tiny")               # a preset: random weights (seed 0), for smoke tests
>>> model, tok = sumi.load("tohoku-nlp/sumi-7b", dtype="bfloat16", device="cuda")  # the Hub, when online
```

Names resolve in this order: an existing local path, then a preset name (`sumi.PRESETS`), then a
Hugging Face Hub id ("owner/name").
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from .configuration_sumi import PRESETS, SumiConfig
from .modeling_sumi import SumiForMaskGeneration
from .tokenization import VOCAB_SIZE as DOLMA2_VOCAB_SIZE
from .tokenization import _looks_like_hub_id, _offline, has_tokenizer_files, load_tokenizer

logger = logging.getLogger(__name__)

# The model `sumi generate` (and `load()`) use when none is named. Switch it here (one place) when a
# bundled trained demo model exists.
DEFAULT_MODEL = "demo"

# Seed of the random weights of a preset: the same preset always gives the same model.
PRESET_SEED = 0

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
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
    raise ValueError(f"unknown model {name!r}: not a local folder, not a preset (one of {', '.join(PRESETS)}), "
                     "not a Hub id (owner/name)")


def preset_tokenizer(config: SumiConfig):
    """The tokenizer of a preset: Sumi's dolma2 tokenizer when the vocabulary is dolma2's, else None."""
    return load_tokenizer("dolma2") if config.vocab_size == DOLMA2_VOCAB_SIZE else None


def build_preset(name: str, *, dtype: str | torch.dtype | None = None, attn_implementation: str | None = None,
                 seed: int = PRESET_SEED, **overrides: Any) -> SumiForMaskGeneration:
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


def load(
    name_or_path: str | os.PathLike = DEFAULT_MODEL,
    *,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device | None = None,
    attn_implementation: str | None = None,
) -> tuple[SumiForMaskGeneration, Any]:
    """Load a Sumi model and its tokenizer: returns `(model, tokenizer or None)`, model in eval mode.

    `name_or_path`:
      * "demo" (or another name in `bundled_models()`): a trained model shipped in the package,
        loaded in float32 unless `dtype` says otherwise;
      * a local folder saved by sumi (`save_pretrained`) or in the official format: weights and
        config via `SumiForMaskGeneration.from_pretrained`; the tokenizer from the same folder if
        it has tokenizer files, else None;
      * a preset name (`sumi.PRESETS`, e.g. "sumi-tiny", "sumi-7b"): RANDOM weights (seed 0), with
        a logged warning; tokenizer: Sumi's dolma2 for presets with the 100,278-id vocabulary,
        else None;
      * a Hugging Face Hub id ("owner/name"), downloaded by `from_pretrained` (needs network or
        the local cache; offline this raises a clear ValueError).
    `dtype`: "float32" / "bfloat16" / "float16" (or a torch.dtype); None = the checkpoint's dtype.
    `device`: where to put the model (default: CPU). `attn_implementation`: "sdpa" (default) or "eager".
    """
    name = os.fspath(name_or_path)
    source = model_source(name)
    torch_dtype = resolve_dtype(dtype)
    if source == "bundled":  # shipped in bf16 to stay small; computed in fp32 unless asked otherwise
        name, source = str(BUNDLED_DIR / name), "folder"
        torch_dtype = torch.float32 if torch_dtype is None else torch_dtype
    if attn_implementation not in (None, "sdpa", "eager"):
        raise ValueError(f"unknown attn_implementation {attn_implementation!r}; choose 'sdpa' or 'eager'")
    tokenizer = None
    if source == "preset":
        model = build_preset(name, dtype=torch_dtype, attn_implementation=attn_implementation)
        logger.warning("sumi.load(%r): preset with random weights (seed %d), not a trained model: its output is "
                       "gibberish. Pass a checkpoint folder or Hub id for a trained model.", name, PRESET_SEED)
        tokenizer = preset_tokenizer(model.config)
    else:
        kwargs: dict[str, Any] = {"dtype": torch_dtype if torch_dtype is not None else "auto"}
        if attn_implementation is not None:
            kwargs["attn_implementation"] = attn_implementation
        if source == "folder":
            if not (Path(name).expanduser() / "config.json").is_file():
                raise ValueError(f"{name!r} is not a model folder: it has no config.json")
            model = SumiForMaskGeneration.from_pretrained(str(Path(name).expanduser()), **kwargs)
            if has_tokenizer_files(Path(name).expanduser()):
                tokenizer = load_tokenizer(Path(name).expanduser())
        else:
            try:
                model = SumiForMaskGeneration.from_pretrained(name, **kwargs)
            except OSError as e:
                why = ("offline (HF_HUB_OFFLINE is set) and not in the local cache" if _offline()
                       else "not found or unreachable")
                raise ValueError(f"cannot load the model {name!r}: no such local folder, and from the Hugging Face "
                                 f"Hub: {why} ({' '.join(str(e).split())})") from e
            try:
                tokenizer = load_tokenizer(name)
            except ValueError:
                logger.warning("sumi.load(%r): the repo has no loadable tokenizer; returning None", name)
    if device is not None:
        model = model.to(device)
    return model.eval(), tokenizer


__all__ = ["DEFAULT_MODEL", "BUNDLED_DIR", "bundled_models", "PRESET_SEED", "DTYPES", "resolve_dtype", "model_source", "preset_tokenizer",
           "build_preset", "load"]
