"""The Sumi network (spec §3) against a naive float64 forward written from the spec.

The reference reads the model's weights and redoes everything with explicit loops: RMSNorm,
rotate-half RoPE from `inv_freq = theta^(-(0,2,..,d-2)/d)`, GQA with query head h reading KV head
h // (heads / kv_heads), the off-by-one softmax `exp(s_i) / (1 + sum_j exp(s_j))` written
literally over the non-padded keys, SwiGLU and the untied head.
"""

import math

import pytest
import torch

import sumi
import sumi.modeling_sumi as modeling


# ----------------------------------------------------------------------------- reference
def ref_forward(model, input_ids, attention_mask=None, position_ids=None):
    """Logits `[B, S, V]` float64 of the whole network, by loops over rows, positions and heads."""
    cfg = model.config
    W = {k: v.detach().double() for k, v in model.state_dict().items()}
    B, S = input_ids.shape
    nh, nkv, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    group = nh // nkv
    eps, theta = cfg.rms_norm_eps, float(cfg.rope_parameters["rope_theta"])
    if position_ids is None:
        position_ids = torch.arange(S).expand(B, S)
    position_ids = position_ids.expand(B, S)
    inv_freq = [theta ** (-(2 * i) / d) for i in range(d // 2)]

    def rmsnorm(vec, weight):
        ms = sum(float(c) ** 2 for c in vec) / len(vec)
        return vec / math.sqrt(ms + eps) * weight

    def rope(vec, pos):
        out = vec.clone()
        half = d // 2
        for i in range(half):
            ang = pos * inv_freq[i]
            c, s = math.cos(ang), math.sin(ang)
            out[i] = vec[i] * c - vec[i + half] * s
            out[i + half] = vec[i + half] * c + vec[i] * s
        return out

    def silu(a):
        return a / (1.0 + torch.exp(-a))

    logits = torch.zeros(B, S, cfg.vocab_size, dtype=torch.float64)
    for b in range(B):
        keep = [True] * S if attention_mask is None else [bool(attention_mask[b, j]) for j in range(S)]
        h = [W["model.embed_tokens.weight"][int(input_ids[b, s])].clone() for s in range(S)]
        for li in range(cfg.num_hidden_layers):
            p = f"model.layers.{li}."
            xn = [rmsnorm(h[s], W[p + "input_layernorm.weight"]) for s in range(S)]
            q = [(W[p + "self_attn.q_proj.weight"] @ xn[s]).view(nh, d) for s in range(S)]
            k = [(W[p + "self_attn.k_proj.weight"] @ xn[s]).view(nkv, d) for s in range(S)]
            v = [(W[p + "self_attn.v_proj.weight"] @ xn[s]).view(nkv, d) for s in range(S)]
            pos = [int(position_ids[b, s]) for s in range(S)]
            q = [torch.stack([rope(q[s][hh], pos[s]) for hh in range(nh)]) for s in range(S)]
            k = [torch.stack([rope(k[s][g], pos[s]) for g in range(nkv)]) for s in range(S)]
            new_h = []
            for i in range(S):
                heads_out = []
                for hh in range(nh):
                    g = hh // group
                    keys = [j for j in range(S) if keep[j]]
                    e = {j: math.exp(float(q[i][hh] @ k[j][g]) / math.sqrt(d)) for j in keys}
                    denom = 1.0 + sum(e.values())
                    o = torch.zeros(d, dtype=torch.float64)
                    for j in keys:
                        o = o + (e[j] / denom) * v[j][g]
                    heads_out.append(o)
                attn = W[p + "self_attn.o_proj.weight"] @ torch.cat(heads_out)
                new_h.append(h[i] + attn)
            h = new_h
            for i in range(S):
                xn = rmsnorm(h[i], W[p + "post_attention_layernorm.weight"])
                mlp = W[p + "mlp.down_proj.weight"] @ (
                    silu(W[p + "mlp.gate_proj.weight"] @ xn) * (W[p + "mlp.up_proj.weight"] @ xn)
                )
                h[i] = h[i] + mlp
        for s in range(S):
            logits[b, s] = W["lm_head.weight"] @ rmsnorm(h[s], W["model.norm.weight"])
    return logits


# ----------------------------------------------------------------------------- fixtures
def build_model(seed=0, **overrides):
    """A float32 model with O(1) attention scores (the default init's 0.02 would make attention
    nearly uniform and the test insensitive), random norm weights and distinct lm_head/embedding."""
    torch.manual_seed(seed)
    config = sumi.SumiConfig.from_preset("sumi-tiny", **overrides)
    model = sumi.SumiForMaskGeneration(config).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=g))
            else:  # Linear [out, in]: unit-variance outputs for unit-RMS inputs, scores O(1)..O(few)
                p.copy_(torch.randn(p.shape, generator=g) * (1.5 / math.sqrt(p.shape[1])))
    return model


@pytest.fixture(scope="module")
def tiny():
    return build_model(seed=0, vocab_size=64)


def logits_of(model, impl, **kw):
    model.config._attn_implementation = impl
    with torch.no_grad():
        return model(**kw).logits


def assert_close_rel(got, ref, rel=1e-5):
    """|got - ref| <= rel * max|ref| everywhere (a relative tolerance on the logit scale)."""
    scale = float(ref.abs().max())
    err = float((got.double() - ref).abs().max())
    assert err <= rel * scale, f"max abs error {err:.3e} > {rel:g} * {scale:.3e}"


def ids(B, S, V, seed):
    return torch.randint(0, V, (B, S), generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- tests
def test_attention_switch_dispatches(tiny, monkeypatch):
    """Setting `config._attn_implementation` really selects the eager / SDPA path, the latter by name
    from `ALL_ATTENTION_FUNCTIONS` (otherwise the comparisons below would compare one path with itself)."""
    calls = {"eager": 0, "sdpa": 0}
    eager, sdpa = modeling.eager_sink_attention, modeling.sdpa_sink_attention
    monkeypatch.setattr(
        modeling,
        "eager_sink_attention",
        lambda *a, **k: (calls.__setitem__("eager", calls["eager"] + 1), eager(*a, **k))[1],
    )
    monkeypatch.setitem(
        modeling.ALL_ATTENTION_FUNCTIONS,
        "sdpa",
        lambda *a, **k: (calls.__setitem__("sdpa", calls["sdpa"] + 1), sdpa(*a, **k))[1],
    )
    x = ids(1, 4, 64, 0)
    logits_of(tiny, "eager", input_ids=x)
    assert calls == {"eager": tiny.config.num_hidden_layers, "sdpa": 0}
    logits_of(tiny, "sdpa", input_ids=x)
    assert calls == {"eager": tiny.config.num_hidden_layers, "sdpa": tiny.config.num_hidden_layers}


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_forward_matches_reference_no_mask(tiny, impl):
    x = ids(2, 9, 64, 1)
    ref = ref_forward(tiny, x)
    got = logits_of(tiny, impl, input_ids=x)
    assert got.shape == (2, 9, 64) and got.dtype == torch.float32
    assert_close_rel(got, ref)
    # an all-ones mask is the same as no mask
    assert_close_rel(logits_of(tiny, impl, input_ids=x, attention_mask=torch.ones_like(x)), ref)


def _padding_mask():
    # row 0: left padding; row 1: right padding; row 2: all pad but one token; row 3: no padding
    return torch.tensor(
        [
            [0, 0, 0, 1, 1, 1, 1, 1],
            [1, 1, 1, 1, 1, 0, 0, 0],
            [0, 0, 0, 0, 1, 0, 0, 0],
            [1, 1, 1, 1, 1, 1, 1, 1],
        ]
    )


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_forward_matches_reference_padding(tiny, impl):
    mask = _padding_mask()
    x = ids(*mask.shape, 64, 2)
    ref = ref_forward(tiny, x, attention_mask=mask)
    got = logits_of(tiny, impl, input_ids=x, attention_mask=mask)
    assert_close_rel(got, ref)  # every position, padded queries included (only keys are masked)
    # the mask really matters: the unmasked logits differ from the masked ones
    assert float((logits_of(tiny, impl, input_ids=x)[:3] - got[:3]).abs().max()) > 1e-2
    # padded keys are removed: changing the tokens under padding leaves real positions unchanged
    x2 = torch.where(mask.bool(), x, (x + 7) % 64)
    got2 = logits_of(tiny, impl, input_ids=x2, attention_mask=mask)
    torch.testing.assert_close(got2[mask.bool()], got[mask.bool()], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_forward_all_padded_row(tiny, impl):
    """A row with no key at all: the sink takes all the weight, attention outputs are 0."""
    mask = torch.tensor([[0, 0, 0, 0, 0], [1, 1, 0, 1, 1]])
    x = ids(2, 5, 64, 3)
    ref = ref_forward(tiny, x, attention_mask=mask)
    got = logits_of(tiny, impl, input_ids=x, attention_mask=mask)
    assert bool(torch.isfinite(got).all())
    assert_close_rel(got, ref)


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_forward_matches_reference_position_ids(tiny, impl):
    mask = _padding_mask()
    x = ids(*mask.shape, 64, 4)
    # left-padded positions shifted to start at 0, an offset row and a permutation
    pos = torch.stack(
        [
            (mask[0].cumsum(0) - 1).clamp(min=0),
            torch.arange(8) + 37,
            torch.tensor([5, 0, 7, 2, 2, 1, 6, 3]),
            torch.arange(8) * 13,
        ]
    )
    ref = ref_forward(tiny, x, attention_mask=mask, position_ids=pos)
    got = logits_of(tiny, impl, input_ids=x, attention_mask=mask, position_ids=pos)
    assert_close_rel(got, ref)
    default = logits_of(tiny, impl, input_ids=x, attention_mask=mask)
    # positions matter (row 2 is permuted) ...
    assert float((default - got)[2].abs().max()) > 1e-2
    # ... but only through their differences: RoPE attention is invariant to a constant offset
    assert_close_rel(got[1], default[1].double())


def test_forward_reference_gqa_and_theta():
    """A different head layout (8 query heads on 2 KV heads, head_dim != hidden/heads) and theta,
    one layer, through both paths."""
    model = build_model(
        seed=5,
        vocab_size=32,
        hidden_size=48,
        num_attention_heads=8,
        num_key_value_heads=2,
        head_dim=8,
        intermediate_size=40,
        num_hidden_layers=1,
        rope_parameters={"rope_theta": 500000.0, "rope_type": "default"},
    )
    x = ids(2, 7, 32, 6)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1]])
    ref = ref_forward(model, x, attention_mask=mask)
    for impl in ("eager", "sdpa"):
        assert_close_rel(logits_of(model, impl, input_ids=x, attention_mask=mask), ref)


@pytest.fixture(scope="module")
def bigger():
    return build_model(
        seed=9,
        vocab_size=300,
        hidden_size=128,
        intermediate_size=256,
        num_attention_heads=8,
        num_key_value_heads=2,
        head_dim=32,
        num_hidden_layers=3,
    )


@pytest.mark.parametrize("masked", [False, True])
def test_eager_vs_sdpa_bigger(bigger, masked):
    B, S = 3, 64
    x = ids(B, S, 300, 7)
    kw = dict(input_ids=x)
    if masked:
        mask = torch.ones(B, S, dtype=torch.long)
        mask[0, :20] = 0
        mask[1, 50:] = 0
        mask[2, ::3] = 0
        kw["attention_mask"] = mask
    eager = logits_of(bigger, "eager", **kw)
    sdpa = logits_of(bigger, "sdpa", **kw)
    scale = float(eager.abs().max())
    assert float((eager - sdpa).abs().max()) <= 2e-5 * scale


def test_bf16_sdpa_close_to_fp32(bigger):
    B, S = 2, 48
    x = ids(B, S, 300, 8)
    mask = torch.ones(B, S, dtype=torch.long)
    mask[1, :10] = 0
    ref = logits_of(bigger, "sdpa", input_ids=x, attention_mask=mask)
    model16 = build_model(
        seed=9,
        vocab_size=300,
        hidden_size=128,
        intermediate_size=256,
        num_attention_heads=8,
        num_key_value_heads=2,
        head_dim=32,
        num_hidden_layers=3,
    ).to(torch.bfloat16)
    got = logits_of(model16, "sdpa", input_ids=x, attention_mask=mask)
    assert got.dtype == torch.bfloat16
    rel = float((got.float() - ref).norm() / ref.norm())
    assert rel < 6e-2, rel  # measured 2.8e-2 (bf16 eps is 7.8e-3; three layers, O(1) weights)
    agree = float((got.float().argmax(-1) == ref.argmax(-1)).float().mean())
    assert agree > 0.9, agree


def test_training_path_matches_reference_and_eager_gradients(tiny):
    """With gradients on (training): the SDPA path gives the reference logits and the same weight
    gradients as the eager path's explicit softmax."""
    mask = _padding_mask()
    x = ids(*mask.shape, 64, 9)
    ref = ref_forward(tiny, x, attention_mask=mask)
    grads = {}
    for impl in ("eager", "sdpa"):
        tiny.config._attn_implementation = impl
        tiny.zero_grad()
        logits = tiny(input_ids=x, attention_mask=mask).logits
        assert logits.requires_grad
        assert_close_rel(logits.detach(), ref)
        (logits * torch.linspace(-1, 1, 64)).sum().backward()
        grads[impl] = {n: p.grad.clone() for n, p in tiny.named_parameters() if "self_attn" in n}
    tiny.zero_grad()
    for name, g in grads["eager"].items():
        torch.testing.assert_close(grads["sdpa"][name], g, rtol=1e-4, atol=1e-5 * float(g.abs().max()))


def test_without_the_registration_a_model_defaults_to_sdpa(monkeypatch):
    """What a checkpoint's standalone remote code does: "sumi_native" is not in its registry."""
    monkeypatch.delitem(modeling.SinkAttentionInterface._global_mapping, "sumi_native")
    model = modeling.SumiForMaskGeneration(modeling.SumiConfig.from_preset("sumi-tiny"))
    assert model.config._attn_implementation == "sdpa"
    with pytest.raises(ValueError, match="not an attention of Sumi models"):
        modeling.SumiForMaskGeneration(modeling.SumiConfig.from_preset("sumi-tiny", attn_implementation="sumi_native"))
