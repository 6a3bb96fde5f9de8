"""`sumi.load`: presets (random weights), saved folders (with or without a tokenizer), Hub ids."""

import json
import logging

import pytest
import torch

import sumi
from sumi import SumiConfig, SumiForMaskGeneration, load, load_tokenizer
from sumi.loading import DEFAULT_MODEL, build_preset, model_source, preset_tokenizer, resolve_dtype


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def dolma2_folder(tmp_path_factory):
    """A tiny model with the dolma2 vocabulary, saved with Sumi's tokenizer."""
    config = SumiConfig.from_preset(
        "sumi-tiny",
        vocab_size=100278,
        bos_token_id=100256,
        eos_token_id=100257,
        pad_token_id=100277,
        hidden_size=16,
        intermediate_size=32,
        head_dim=8,
    )
    torch.manual_seed(0)
    model = SumiForMaskGeneration(config)
    folder = tmp_path_factory.mktemp("tiny_dolma2")
    model.save_pretrained(folder)
    load_tokenizer("dolma2").save_pretrained(folder)
    return folder


def test_exports():
    assert sumi.load is load and sumi.load_tokenizer is load_tokenizer
    assert {"load", "load_tokenizer"} <= set(sumi.__all__)
    assert DEFAULT_MODEL == "demo" == sumi.DEFAULT_MODEL


def test_preset_is_seeded_random_weights(caplog):
    state = torch.random.get_rng_state()
    with caplog.at_level(logging.WARNING, logger="sumi.loading"):
        model, tok = load("sumi-tiny")
    assert "random weights" in caplog.text
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is left alone
    assert isinstance(model, SumiForMaskGeneration) and not model.training
    assert model.config.vocab_size == 256 and tok is None  # sumi-tiny has no tokenizer
    assert next(model.parameters()).dtype == torch.float32
    again, _ = load("sumi-tiny")
    assert _same_weights(model, again)
    torch.manual_seed(0)
    assert _same_weights(model, SumiForMaskGeneration(SumiConfig.from_preset("sumi-tiny")))


def test_preset_options():
    model, _ = load("sumi-tiny", dtype="bfloat16", device="cpu", attn_implementation="eager")
    assert next(model.parameters()).dtype == torch.bfloat16
    assert model.config._attn_implementation == "eager"
    assert next(model.parameters()).device.type == "cpu"
    model, _ = load("sumi-tiny", dtype=torch.float16)
    assert next(model.parameters()).dtype == torch.float16
    # the preset's own dtype is the default (sumi-7b is bfloat16); checked on a shrunken copy
    small = build_preset(
        "sumi-7b",
        num_hidden_layers=1,
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=8,
        vocab_size=300,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    assert next(small.parameters()).dtype == torch.bfloat16


def test_preset_tokenizers():
    tok = preset_tokenizer(SumiConfig.from_preset("sumi-1b"))  # no need to build 1.35B weights
    assert tok is not None and tok.bos_token_id == 100256 and len(tok) == 100278
    assert preset_tokenizer(SumiConfig.from_preset("sumi-57m")) is None
    assert preset_tokenizer(SumiConfig.from_preset("sumi-tiny")) is None


def test_saved_folder_without_tokenizer(tmp_path):
    model, _ = load("sumi-tiny")
    model.save_pretrained(tmp_path)
    loaded, tok = load(tmp_path)
    assert tok is None and not loaded.training
    assert _same_weights(model, loaded)
    loaded, _ = load(str(tmp_path), dtype="bf16")
    assert next(loaded.parameters()).dtype == torch.bfloat16


def test_saved_folder_with_tokenizer(dolma2_folder):
    model, tok = load(dolma2_folder)
    assert model.config.vocab_size == 100278
    assert tok is not None and tok.bos_token_id == 100256 and tok.pad_token_id == 100277
    assert tok("Hello world").input_ids == [9906, 1917]


def test_official_format_folder(tmp_path):
    """Official layout: sharded safetensors + index, `torch_dtype` spelled the transformers-4 way,
    auto_map to the remote code shipped in the folder."""
    model, _ = load("sumi-tiny")
    model.save_pretrained(tmp_path, max_shard_size="100KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    assert (tmp_path / "modeling_sumi.py").is_file()
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["torch_dtype"] = cfg.pop("dtype", "float32")
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    loaded, tok = load(tmp_path)
    assert tok is None and _same_weights(model, loaded)
    assert loaded.config.auto_map["AutoModelForMaskGeneration"] == "modeling_sumi.SumiForMaskGeneration"


def test_hub_id_offline_is_a_clear_error(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert model_source("sumi-test-owner/no-such-model") == "hub"
    with pytest.raises(ValueError, match="offline"):
        load("sumi-test-owner/no-such-model")


def test_bad_names(tmp_path):
    with pytest.raises(ValueError, match="unknown model 'nope'.*sumi-tiny"):
        load("nope")
    with pytest.raises(ValueError, match="no config.json"):
        load(tmp_path)
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="is a file"):
        load(tmp_path / "weights.bin")
    with pytest.raises(ValueError, match="dtype"):
        load("sumi-tiny", dtype="int8")
    with pytest.raises(ValueError, match="attn_implementation"):
        load("sumi-tiny", attn_implementation="flash")


def test_model_source_and_dtypes(tmp_path):
    assert model_source(tmp_path) == "folder"
    assert model_source("sumi-7b") == "preset"
    assert model_source("tohoku-nlp/sumi-7b") == "hub"
    assert resolve_dtype("bfloat16") is torch.bfloat16 and resolve_dtype("torch.float16") is torch.float16
    assert resolve_dtype(None) is None and resolve_dtype("auto") == "auto"


def test_bundled_demo_model_loads_with_its_tokenizer():
    from sumi.loading import BUNDLED_DIR, bundled_models

    assert "demo" in bundled_models() and model_source("demo") == "bundled"
    model, tok = sumi.load("demo")
    assert model.dtype == torch.float32 and tok is not None
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (
        model.config.bos_token_id,
        model.config.eos_token_id,
        model.config.pad_token_id,
    )
    assert model.generation_config.canvas_length == 256  # shipped sampler defaults
    size = sum(f.stat().st_size for f in (BUNDLED_DIR / "demo").iterdir())
    assert size < 30 * 2**20
    ids = tok("def add(a, b):", return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=8, num_denoising_steps=4, seed=0)
    assert torch.equal(out.sequences[0, : ids.shape[1]], ids[0])


def test_hub_id_loads_from_the_cache_through_the_safetensors_loader(tmp_path, monkeypatch):
    # A Hub cache holding one snapshot of a repo, as huggingface_hub lays it out; offline, the
    # snapshot is found by its ref and loaded like a local folder (not by from_pretrained).
    import huggingface_hub.constants

    torch.manual_seed(3)
    model = SumiForMaskGeneration(SumiConfig.from_preset("sumi-tiny")).to(torch.bfloat16)
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--sumi-test-owner--tiny"
    model.save_pretrained(repo / "snapshots" / commit, max_shard_size="100KB")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))

    def refuse(*args, **kwargs):
        raise AssertionError("from_pretrained was called")

    monkeypatch.setattr(SumiForMaskGeneration, "from_pretrained", refuse)
    loaded, tok = load("sumi-test-owner/tiny", dtype="float32")
    assert tok is None and next(loaded.parameters()).dtype == torch.float32
    got = loaded.state_dict()
    assert got.keys() == model.state_dict().keys()
    for name, a in model.state_dict().items():
        assert torch.equal(a.float(), got[name]), name
    with pytest.raises(ValueError, match="offline"):
        load("sumi-test-owner/not-cached")
