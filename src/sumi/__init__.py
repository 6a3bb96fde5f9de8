"""sumi: run, train, evaluate and study uniform diffusion language models (Sumi-7B and kin)."""

from transformers import AutoConfig, AutoModel, AutoModelForMaskGeneration

from .configuration_sumi import PRESETS, SumiConfig
from .generation_sumi import SumiGenerationOutput
from .modeling_sumi import SumiForMaskGeneration, SumiModel, SumiPreTrainedModel

__version__ = "0.1.0"

# Make `AutoModelForMaskGeneration.from_pretrained(sumi_folder)` work without trust_remote_code
# when sumi is installed.
AutoConfig.register("sumi", SumiConfig, exist_ok=True)
AutoModel.register(SumiConfig, SumiModel, exist_ok=True)
AutoModelForMaskGeneration.register(SumiConfig, SumiForMaskGeneration, exist_ok=True)

# sumi's native attention kernel as the attention "sumi_native", the default of Sumi models with sumi
# installed: bf16 inference on AVX512-BF16 CPUs (built on first use; everything else, or
# SUMI_NATIVE_KERNELS=0, goes through SDPA). See sumi/kernels.
from . import kernels  # noqa: E402

kernels.register()

__all__ = [
    "PRESETS",
    "SumiConfig",
    "SumiModel",
    "SumiForMaskGeneration",
    "SumiPreTrainedModel",
    "SumiGenerationOutput",
]

# Loading helpers (appended): `sumi.load(name)` -> (model, tokenizer), `sumi.load_tokenizer(name)`.
from .loading import DEFAULT_MODEL, load  # noqa: E402
from .tokenization import load_tokenizer, make_sumi_tokenizer  # noqa: E402

__all__ += ["load", "load_tokenizer", "make_sumi_tokenizer", "DEFAULT_MODEL"]
