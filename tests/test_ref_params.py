"""Parameter counts and state-dict layout (spec §1, §2) against formulas written from the spec."""

import inspect
import re

import pytest
import torch

import sumi.configuration_sumi as configuration_sumi
from sumi import SumiConfig, SumiForMaskGeneration
from sumi.configuration_sumi import PRESETS


def expected_state_dict(cfg) -> dict:
    """Spec §2: every key and its shape."""
    V, H, I = cfg.vocab_size, cfg.hidden_size, cfg.intermediate_size
    nh, nkv, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    out = {"model.embed_tokens.weight": (V, H), "model.norm.weight": (H,), "lm_head.weight": (V, H)}
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        out[p + "input_layernorm.weight"] = (H,)
        out[p + "post_attention_layernorm.weight"] = (H,)
        out[p + "self_attn.q_proj.weight"] = (nh * d, H)
        out[p + "self_attn.k_proj.weight"] = (nkv * d, H)
        out[p + "self_attn.v_proj.weight"] = (nkv * d, H)
        out[p + "self_attn.o_proj.weight"] = (H, nh * d)
        out[p + "mlp.gate_proj.weight"] = (I, H)
        out[p + "mlp.up_proj.weight"] = (I, H)
        out[p + "mlp.down_proj.weight"] = (H, I)
    return out


def formula_counts(cfg) -> tuple[int, int, int]:
    """(total, non-embedding, one embedding matrix) from the config."""
    V, H, I = cfg.vocab_size, cfg.hidden_size, cfg.intermediate_size
    nh, nkv, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    per_layer = H * nh * d + 2 * H * nkv * d + nh * d * H + 3 * H * I + 2 * H
    non_embedding = cfg.num_hidden_layers * per_layer + H
    return 2 * V * H + non_embedding, non_embedding, V * H


def meta_model(name: str, **overrides):
    with torch.device("meta"):
        return SumiForMaskGeneration(SumiConfig.from_preset(name, **overrides))


def counts(model) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    emb = model.model.embed_tokens.weight.numel() + model.lm_head.weight.numel()
    return total, total - emb


def test_sumi_7b_parameter_count():
    model = meta_model("sumi-7b")
    cfg = model.config
    assert (cfg.vocab_size, cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers) == (100278, 4096, 12288, 36)
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim) == (32, 8, 128)
    total, non_emb = counts(model)
    f_total, f_non_emb, f_emb = formula_counts(cfg)
    assert total == f_total == 7_767_543_808
    assert non_emb == f_non_emb
    assert model.lm_head.weight is not model.model.embed_tokens.weight  # untied
    # spec §1: about 6.95B non-embedding + 2 x 410.7M = about 7.77B
    assert round(total / 1e9, 2) == 7.77
    assert round(non_emb / 1e9, 2) == 6.95
    assert round(f_emb / 1e6, 1) == 410.7
    assert not any("inv_freq" in n for n, _ in model.named_buffers())  # RoPE frequencies are not stored


@pytest.mark.parametrize(
    "name,overrides",
    [
        ("sumi-7b", {}),
        ("sumi-tiny", {}),
        ("sumi-tiny", dict(num_hidden_layers=3, num_attention_heads=8, num_key_value_heads=2, head_dim=12)),
    ],
)
def test_state_dict_layout(name, overrides):
    if name == "sumi-7b":
        model = meta_model(name, **overrides)
    else:
        model = SumiForMaskGeneration(SumiConfig.from_preset(name, **overrides))
    expected = expected_state_dict(model.config)
    sd = model.state_dict()
    assert set(sd) == set(expected), (sorted(set(sd) - set(expected)), sorted(set(expected) - set(sd)))
    for key, shape in expected.items():
        assert tuple(sd[key].shape) == shape, key
    assert not any("bias" in k or "inv_freq" in k for k in sd)


def _comment_numbers() -> dict:
    """{preset: (total, non-embedding or None)} from the comments next to each preset, each as
    (value, unit multiplier, decimals)."""
    src = inspect.getsource(configuration_sumi)
    out = {}
    unit = {"B": 1e9, "M": 1e6, "K": 1e3}
    for m in re.finditer(r'"(sumi-[\w.]+)":\s*dict\(\s*#([^\n]*)', src):
        name, comment = m.group(1), m.group(2)
        tot = re.search(r"([\d.]+)\s*([BMK])\s*parameters", comment)
        ne = re.search(r"([\d.]+)\s*([BMK])\s*non-embedding", comment)
        parse = lambda g: (
            None
            if g is None
            else (float(g.group(1)), unit[g.group(2)], len(g.group(1).split(".")[1]) if "." in g.group(1) else 0)
        )
        out[name] = (parse(tot), parse(ne))
    return out


def test_every_preset_has_a_count_comment():
    numbers = _comment_numbers()
    assert set(numbers) == set(PRESETS)
    assert all(total is not None for total, _ in numbers.values())


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_builds_and_matches_its_comment(name):
    model = meta_model(name)
    total, non_emb = counts(model)
    f_total, f_non_emb, _ = formula_counts(model.config)
    assert (total, non_emb) == (f_total, f_non_emb)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected_state_dict(model.config)
    stated_total, stated_non_emb = _comment_numbers()[name]
    for what, actual, stated in (("total", total, stated_total), ("non-embedding", non_emb, stated_non_emb)):
        if stated is None:
            continue
        value, mult, decimals = stated
        assert abs(actual / mult - value) <= 0.5 * 10**-decimals + 1e-9, (
            f"{name}: the comment says {value} x {mult:g} {what} parameters, the model has {actual:,}"
        )
