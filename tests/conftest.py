import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# Test models are tiny: one intra-op thread is as fast, and immune to stalls on a busy shared CPU
# (two threads made small matmuls up to ~100x slower there). Subprocess tests set their own.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def shared_path(*parts: str) -> Path:
    """A file under ../shared: fails in CI (CI=true) when missing, skips elsewhere."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{path} is missing; CI must have ../shared")
        pytest.skip(f"{path} not present (../shared is absent outside the project machines)")
    return path


def torchrun_args(module: str, *args: str, nproc: int = 2) -> list[str]:
    """The arguments after `python` that run `python -m module args` on `nproc` local gloo ranks."""
    from sumi.training.distributed import free_port

    return [
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={nproc}",
        "--master_addr=127.0.0.1",
        f"--master_port={free_port()}",
        "-m",
        module,
        *args,
    ]


@pytest.fixture
def tiny_model():
    from sumi import SumiConfig, SumiForMaskGeneration

    torch.manual_seed(0)
    model = SumiForMaskGeneration(SumiConfig.from_preset("sumi-tiny"))
    return model.eval()
