"""Checkpoint format: our save/load, sharding, an official-format folder, and the remote code."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoModelForMaskGeneration

from sumi import SumiConfig, SumiForMaskGeneration
from sumi.modeling_sumi import AUTO_MAP, REMOTE_CODE_FILES


def test_save_load_round_trip(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    loaded, info = SumiForMaskGeneration.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    x = torch.randint(0, 256, (2, 17))
    assert torch.equal(tiny_model(x).logits, loaded(x).logits)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"] == AUTO_MAP and config["architectures"] == ["SumiForMaskGeneration"]
    assert config["model_type"] == "sumi"
    for name in REMOTE_CODE_FILES:
        assert (tmp_path / name).exists()
    # the weights are as readable as the config (transformers' temp file would leave them 0600)
    assert (tmp_path / "model.safetensors").stat().st_mode & 0o777 == (tmp_path / "config.json").stat().st_mode & 0o777


def test_sharded_save_writes_an_index(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path, max_shard_size="100KB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    shards = set(index["weight_map"].values())
    assert len(shards) > 1 and all((tmp_path / s).exists() for s in shards)
    loaded = SumiForMaskGeneration.from_pretrained(tmp_path)
    for (k, a), (k2, b) in zip(tiny_model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)


def official_folder(path, config: SumiConfig, seed=0):
    """An official-format folder written by hand (spec §1-2): config.json with auto_map, bf16
    safetensors shards with an index, no code of ours involved."""
    g = torch.Generator().manual_seed(seed)
    H, V, I = config.hidden_size, config.vocab_size, config.intermediate_size
    hq, hkv = config.num_attention_heads * config.head_dim, config.num_key_value_heads * config.head_dim
    shapes = {"model.embed_tokens.weight": (V, H), "model.norm.weight": (H,), "lm_head.weight": (V, H)}
    for i in range(config.num_hidden_layers):
        p = f"model.layers.{i}."
        shapes.update(
            {
                p + "input_layernorm.weight": (H,),
                p + "post_attention_layernorm.weight": (H,),
                p + "self_attn.q_proj.weight": (hq, H),
                p + "self_attn.k_proj.weight": (hkv, H),
                p + "self_attn.v_proj.weight": (hkv, H),
                p + "self_attn.o_proj.weight": (H, hq),
                p + "mlp.gate_proj.weight": (I, H),
                p + "mlp.up_proj.weight": (I, H),
                p + "mlp.down_proj.weight": (H, I),
            }
        )
    tensors = {
        k: (0.05 * torch.randn(s, generator=g) + (1.0 if len(s) == 1 else 0.0)).to(torch.bfloat16)
        for k, s in shapes.items()
    }
    names = sorted(tensors)
    halves = [names[: len(names) // 2], names[len(names) // 2 :]]
    weight_map = {}
    for j, part in enumerate(halves):
        shard = f"model-{j + 1:05d}-of-00002.safetensors"
        save_file({k: tensors[k] for k in part}, str(path / shard), metadata={"format": "pt"})
        weight_map.update({k: shard for k in part})
    total = sum(t.numel() * 2 for t in tensors.values())
    (path / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map})
    )
    cfg = {
        k: getattr(config, k)
        for k in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
            "hidden_act",
            "max_position_embeddings",
            "rms_norm_eps",
            "rope_parameters",
            "attention_bias",
            "add_qkv_bias",
            "mlp_bias",
            "attention_dropout",
            "tie_word_embeddings",
            "bos_token_id",
            "eos_token_id",
            "pad_token_id",
            "initializer_range",
            "pretraining_tp",
            "uniform_diffusion_beta_is",
            "uniform_diffusion_z_loss_strength",
        )
    }
    cfg.update(
        model_type="sumi",
        architectures=["SumiForMaskGeneration"],
        auto_map=AUTO_MAP,
        dtype="bfloat16",
        transformers_version="5.0.0",
    )
    (path / "config.json").write_text(json.dumps(cfg, indent=2))
    return tensors


def test_official_format_folder_loads_with_no_missing_or_unexpected_keys(tmp_path):
    config = SumiConfig.from_preset("sumi-tiny", vocab_size=300, num_hidden_layers=3)
    tensors = official_folder(tmp_path, config)
    for loader in (SumiForMaskGeneration, AutoModelForMaskGeneration):
        model, info = loader.from_pretrained(tmp_path, output_loading_info=True)
        assert isinstance(model, SumiForMaskGeneration)
        assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
        state = model.state_dict()
        assert set(state) == set(tensors)
        assert all(torch.equal(state[k].to(torch.bfloat16), tensors[k]) for k in tensors)
    assert model.config.rope_parameters == {"rope_theta": 10000.0, "rope_type": "default"}


REMOTE_SCRIPT = textwrap.dedent("""
    import sys, json
    sys.modules["sumi"] = None  # any import of sumi now fails: only transformers + the folder's files
    import torch
    from transformers import AutoModelForMaskGeneration, AutoConfig
    folder = sys.argv[1]
    model = AutoModelForMaskGeneration.from_pretrained(folder, trust_remote_code=True)
    assert "transformers_modules" in type(model).__module__, type(model).__module__
    inputs = {"input_ids": torch.tensor([[5, 6, 7]]), "attention_mask": torch.ones(1, 3, dtype=torch.long)}
    out = model.generate(**inputs, max_new_tokens=8, num_denoising_steps=4, canvas_length=32, seed=0,
                         sampler="greedy")
    logits = model(torch.tensor([[5, 6, 7, 8]])).logits
    print(json.dumps({"sequences": out.sequences.tolist(), "logits_sum": logits.double().sum().item(),
                      "config": type(AutoConfig.from_pretrained(folder, trust_remote_code=True)).__name__}))
""")


def test_remote_code_folder_works_without_sumi(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path / "model")
    script = tmp_path / "load.py"
    script.write_text(REMOTE_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "model")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    ours = tiny_model.generate(
        torch.tensor([[5, 6, 7]]), max_new_tokens=8, num_denoising_steps=4, canvas_length=32, seed=0, sampler="greedy"
    )
    assert result["sequences"] == ours.sequences.tolist()
    assert result["logits_sum"] == pytest.approx(
        tiny_model(torch.tensor([[5, 6, 7, 8]])).logits.double().sum().item(), abs=1e-4
    )
    assert result["config"] == "SumiConfig"


def test_remote_code_files_are_the_package_modules(tiny_model, tmp_path):
    import sumi

    tiny_model.save_pretrained(tmp_path)
    pkg = Path(sumi.__file__).parent
    for name in REMOTE_CODE_FILES:
        assert (tmp_path / name).read_bytes() == (pkg / name).read_bytes()
        source = (pkg / name).read_text()
        assert not re.search(r"^\s*(from|import) sumi\b", source, flags=re.M), name


def test_the_7b_shape_builds_on_the_meta_device_without_allocating():
    with torch.device("meta"):
        model = SumiForMaskGeneration(SumiConfig.from_preset("sumi-7b"))
    assert all(p.device.type == "meta" for p in model.parameters())  # no storage behind any weight
    assert all(b.device.type == "meta" for b in model.buffers())
    n = sum(p.numel() for p in model.parameters())
    assert 7.7e9 < n < 7.8e9  # (the exact count against the formula: test_ref_params)


def test_bundled_model_remote_code_is_the_package_modules():
    """The bundled demo folder is a remote-code folder; its copies must not drift from the package.
    Refresh them with `python -c "from sumi.modeling_sumi import write_remote_code;
    write_remote_code('src/sumi/assets/models/demo')"`."""
    import sumi
    from sumi.loading import BUNDLED_DIR

    pkg = Path(sumi.__file__).parent
    bundled = [d for d in BUNDLED_DIR.iterdir() if (d / "config.json").is_file()]
    assert {d.name for d in bundled} >= {"demo", "demo-instruct"}
    for folder in bundled:
        for name in REMOTE_CODE_FILES:
            assert (folder / name).read_bytes() == (pkg / name).read_bytes(), (folder.name, name)
