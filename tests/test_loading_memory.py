"""Peak memory of `sumi.load` on a sharded safetensors checkpoint (issue 7, item 5).

The mechanism the sumi-7b load relies on (meta-device model; weights of the model's dtype used in
place from the memory-mapped shards; other dtypes converted block by block) is checked here on a
~300 MB bf16 checkpoint of the sumi-7b layout; `benchmarks/bench_load.py` measures the full shape.

Peak = growth of the child process's VmHWM (anonymous memory + touched pages of file mappings)
from just before the load through a first read of every weight, so that weights left lazily in the
file mapping count too. The child first loads a tiny checkpoint, so imports and first-call set-up
are not counted. What a load adds beside the weights, measured on this project's CPU machine: Python
and allocator bookkeeping, 0-1.5 MiB whatever the model's size (loads of a 0.3-0.6 MiB model); and
for a conversion, the blocks in flight (at most 2/64 of the model times the source/result size
ratio: 2-11 MiB here), which the 1.2x covers. ALLOWANCE is ten times the fixed part, so that a
loader holding an extra ~100 MiB shard still fails.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from sumi import SumiConfig, SumiForMaskGeneration
from sumi.loading import _read_converted, load_safetensors_folder

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 1.2  # peak / weights, the target
ALLOWANCE = 16 * 2**20  # bytes beside the weights (measured 0-1.5 MiB, see the module docstring)
# ~152M parameters: 304 MB in bf16, 12 layers of ~22 MB each + a 16 MB embedding and head.
SHAPE = dict(
    hidden_size=1024,
    intermediate_size=2816,
    num_hidden_layers=12,
    num_attention_heads=8,
    num_key_value_heads=2,
    head_dim=128,
    vocab_size=8192,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")

CHILD = r"""
import gc, importlib, json, sys, torch
from safetensors import safe_open

def status():
    with open("/proc/self/status") as f:
        return {k: int(v.split()[0]) * 1024 for k, _, v in (l.partition(":") for l in f)
                if k in ("VmRSS", "VmHWM")}

module, _, name = sys.argv[1].partition(":")
load = getattr(importlib.import_module(module), name)
spec = json.loads(sys.argv[2])
torch.set_num_threads(1)
load(spec["warmup"])  # imports and first-call set-up, not counted
out = []
for case in spec["cases"]:
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:  # VmHWM := VmRSS, so that each case has its own peak
        f.write("5")
    base = status()["VmRSS"]
    model = load(case["path"], dtype=case["dtype"])
    model = model[0] if isinstance(model, tuple) else model
    for p in model.parameters():  # fault in every page of weights left in the file mapping
        p.detach().reshape(-1)[:: max(1, 4096 // p.element_size())].sum()
    peak = status()["VmHWM"] - base
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    state, mismatched = model.state_dict(), []
    for file in case["files"]:
        with safe_open(file, framework="pt", device="cpu") as f:
            for key in f.keys():
                want = f.get_tensor(key).to(getattr(torch, case["dtype"]))
                if key not in state or state[key].dtype != want.dtype or not torch.equal(state[key], want):
                    mismatched.append(key)
    out.append(dict(case, peak=peak, weights=weights, mismatched=mismatched, n_tensors=len(state)))
    del model, state
print("RESULT " + json.dumps(out), flush=True)
"""


def write_sharded(folder: Path, config: SumiConfig, tensors: dict, shards: int) -> list[str]:
    """An official-style folder: config.json, `shards` safetensors files and their index."""
    folder.mkdir()
    names = list(tensors)
    files, weight_map = [], {}
    for i in range(shards):
        part = names[i * len(names) // shards : (i + 1) * len(names) // shards]
        file = folder / f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        save_file({k: tensors[k] for k in part}, str(file), metadata={"format": "pt"})
        weight_map.update({k: file.name for k in part})
        files.append(str(file))
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map})
    )
    config.dtype = next(iter(tensors.values())).dtype
    config.save_pretrained(folder)
    return files


def measure(cases: list[dict], warmup: Path, loader: str = "sumi:load") -> list[dict]:
    """Run CHILD with `loader` ("module:function", called as f(path, dtype=...)) over `cases`."""
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
        TQDM_DISABLE="1",
        HF_HUB_OFFLINE="1",
        # a fixed glibc mmap threshold: every tensor is its own mapping, returned to the system
        # when freed, so a case cannot reuse (and hide) memory that the previous one freed
        MALLOC_MMAP_THRESHOLD_="65536",
    )
    spec = dict(warmup=str(warmup), cases=cases)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, loader, json.dumps(spec)], capture_output=True, text=True, env=env, timeout=120
    )
    result = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
    assert proc.returncode == 0 and result, f"stdout:\n{proc.stdout[-2000:]}\nstderr:\n{proc.stderr[-3000:]}"
    return json.loads(result[len("RESULT ") :])


def check(results: list[dict]) -> None:
    for r in results:
        what = f"{r['name']}: peak {r['peak'] / 2**20:.0f} MiB for {r['weights'] / 2**20:.0f} MiB of weights"
        assert r["n_tensors"] > 100 and not r["mismatched"], f"{what}; tensors differ: {r['mismatched'][:5]}"
        assert r["peak"] <= LIMIT * r["weights"] + ALLOWANCE, f"{what} = {r['peak'] / r['weights']:.2f}x > {LIMIT}x"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """The same random weights as bf16 shards (the official layout) and as fp32 shards, plus a
    tiny checkpoint for the child's warm-up."""
    root = tmp_path_factory.mktemp("lean_load")
    config = SumiConfig.from_preset("sumi-7b", **SHAPE)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in SumiForMaskGeneration(config).state_dict().items()}
    g = torch.Generator().manual_seed(0)
    bf16 = {k: torch.empty(s, dtype=torch.bfloat16).normal_(0.0, 0.02, generator=g) for k, s in shapes.items()}
    files = {"bf16": write_sharded(root / "bf16", config, bf16, shards=3)}
    files["fp32"] = write_sharded(root / "fp32", config, {k: v.float() for k, v in bf16.items()}, shards=3)
    tiny = SumiForMaskGeneration(
        SumiConfig.from_preset(
            "sumi-7b",
            **dict(SHAPE, hidden_size=32, intermediate_size=64, num_hidden_layers=1, head_dim=8, vocab_size=300),
        )
    )
    tiny.save_pretrained(root / "tiny")
    return root, files


def test_sharded_load_peak_memory_is_the_weights(checkpoints):
    """bf16 shards as bf16 (the official case), as fp32, and fp32 shards as bf16: peak <= 1.2x the
    loaded weights, and every tensor equal to the file's (converted exactly: bf16 -> fp32 -> bf16
    is lossless)."""
    root, files = checkpoints
    cases = [
        dict(name="bf16 shards -> bf16", path=str(root / "bf16"), files=files["bf16"], dtype="bfloat16"),
        dict(name="bf16 shards -> fp32", path=str(root / "bf16"), files=files["bf16"], dtype="float32"),
        dict(name="fp32 shards -> bf16", path=str(root / "fp32"), files=files["fp32"], dtype="bfloat16"),
    ]
    results = measure(cases, root / "tiny")
    for r in results:
        print(
            f"{r['name']}: peak {r['peak'] / 2**20:.1f} MiB, weights {r['weights'] / 2**20:.1f} MiB, "
            f"{r['peak'] / r['weights']:.3f}x"
        )
    check(results)


def test_block_wise_conversion(tmp_path):
    """Blocks of rows (the last one partial), a scalar and an empty tensor convert exactly."""
    g = torch.Generator().manual_seed(0)
    tensors = {"m": torch.randn(7, 3, generator=g), "s": torch.tensor(1.5), "e": torch.zeros(0, 3)}
    save_file(tensors, str(tmp_path / "t.safetensors"))
    for name, want in tensors.items():
        got = _read_converted(tmp_path / "t.safetensors", name, torch.bfloat16, block_bytes=2 * 3 * 2)  # 2 rows
        assert got.dtype == torch.bfloat16 and torch.equal(got, want.to(torch.bfloat16))


def test_missing_and_unexpected_weights(tmp_path):
    """Weights the model lacks and weights the files lack are both errors naming them (not random
    weights, as `from_pretrained` would give; more cases in test_loading_checks.py)."""
    torch.manual_seed(0)
    SumiForMaskGeneration(SumiConfig.from_preset("sumi-tiny")).save_pretrained(tmp_path)
    file = tmp_path / "model.safetensors"
    state = {k: v.clone() for k, v in load_file(file).items()}  # not views into the file rewritten below
    save_file(dict(state, **{"extra.weight": torch.zeros(2)}), str(file), metadata={"format": "pt"})
    with pytest.raises(ValueError, match="1 weight.*the model does not have: extra.weight"):
        load_safetensors_folder(tmp_path, dtype="bfloat16")
    del state["lm_head.weight"]
    save_file(state, str(file), metadata={"format": "pt"})
    with pytest.raises(ValueError, match="lacks 1 weight.*lm_head.weight"):
        load_safetensors_folder(tmp_path)
