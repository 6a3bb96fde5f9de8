"""The native bf16 CPU attention kernel (sumi.kernels) against float64 attention from the definition.

Reference: scores `s_ij = scale q_i . k_j` in float64 over the unmasked keys, the off-by-one
softmax `exp(s_ij) / (1 + sum_j' exp(s_ij'))` written out, `out_i = sum_j p_ij v_j`. The kernel
rounds its output to bf16 (and its probabilities to bf16 before p.v, as the official eager path
does), so it must be within a few bf16 roundings of the reference, as close as SDPA's bf16 path.
"""

import math
import platform

import pytest
import torch

import sumi.modeling_sumi as modeling
from sumi import kernels

has_cpu = platform.system() == "Linux" and platform.machine() == "x86_64" and kernels._cpu_has_flags()
pytestmark = pytest.mark.skipif(not has_cpu, reason="needs an x86-64 Linux CPU with AVX512-BF16")


def reference(q, k, v, key_mask, scale):
    """float64 `[B, h, S, d]`, by the definition (loops over rows and heads, explicit softmax)."""
    q, k, v = q.double(), k.double(), v.double()
    B, H, S, D = q.shape
    n_rep = H // k.shape[1]
    out = torch.zeros(B, H, S, D, dtype=torch.float64)
    for b in range(B):
        keys = [j for j in range(S) if key_mask is None or bool(key_mask[b, j])]
        for h in range(H):
            if not keys:
                continue  # only the sink: the output is 0
            kk, vv = k[b, h // n_rep, keys], v[b, h // n_rep, keys]
            e = torch.exp(q[b, h] @ kk.T * scale)  # [S, keys]
            p = e / (1.0 + e.sum(-1, keepdim=True))
            out[b, h] = p @ vv
    return out


def test_the_kernel_builds_on_this_cpu():
    # where the CPU has the instructions, a failed build is a bug, not a reason to skip
    assert kernels.available(), kernels.why_not()


@pytest.mark.parametrize(
    "B,H,HK,S,D,masked",
    [
        (1, 8, 2, 300, 64, False),  # GQA, S not a multiple of the 64 x 128 blocks
        (2, 4, 4, 129, 128, True),  # head dim 128, padding masks, one more key than a block
        (3, 2, 1, 7, 64, True),  # tiny S; row 0 has every key masked (the sink takes all the weight)
        (1, 2, 2, 1, 64, False),  # a single position
    ],
)
def test_kernel_matches_float64_reference(B, H, HK, S, D, masked):
    g = torch.Generator().manual_seed(B * 1000 + S)
    q = (torch.randn(B, H, S, D, generator=g) * 2).bfloat16()  # O(1)..O(10) scores
    k = (torch.randn(B, HK, S, D, generator=g) * 2).bfloat16()
    v = torch.randn(B, HK, S, D, generator=g).bfloat16()
    key_mask = None
    if masked:
        key_mask = torch.rand(B, S, generator=g) > 0.3
        key_mask[:, 0] = True
        if B > 2:
            key_mask[0] = False
    scale = 1 / math.sqrt(D)
    ref = reference(q, k, v, key_mask, scale)
    got = kernels.sink_attention(q, k, v, key_mask, scale)
    assert got.dtype == torch.bfloat16 and got.shape == q.shape
    err = (got.double() - ref).abs()
    # rounding p to bf16 errs by up to 2^-9 of each term p_ij v_j, the output's rounding by 2^-9
    # of out_i: the scale of both is sum_j p_ij |v_j|
    size = reference(q, k, v.abs(), key_mask, scale)
    assert bool((err <= 2 * 2**-8 * size + 1e-6).all()), float((err / (size + 1e-6)).max())
    if masked and B > 2:
        assert float(got[0].abs().max()) == 0.0
    # as close as PyTorch's SDPA on the same bf16 inputs (its error: the same output rounding)
    sdpa = modeling.sdpa_sink_attention(q, k, v, key_mask, scale)
    assert float(err.max()) <= 1.5 * float((sdpa.double() - ref).abs().max()) + 1e-3


def test_the_model_uses_it_for_bf16_inference_only(monkeypatch):
    monkeypatch.setenv("SUMI_NATIVE_KERNELS", "1")  # the kernel even on a CPU with AMX (see below)
    calls = []
    real = kernels.sink_attention
    monkeypatch.setattr(kernels, "sink_attention", lambda *a: calls.append(1) or real(*a))
    torch.manual_seed(0)
    config = modeling.SumiConfig.from_preset(
        "sumi-tiny", head_dim=64, hidden_size=128, num_attention_heads=2, num_key_value_heads=1
    )
    model = modeling.SumiForMaskGeneration(config).eval()
    assert model.config._attn_implementation == kernels.ATTENTION_NAME  # the default with sumi installed
    x = torch.randint(0, 256, (2, 40))
    mask = torch.ones(2, 40, dtype=torch.long)
    mask[1, :7] = 0
    with torch.no_grad():
        fp32 = model(input_ids=x, attention_mask=mask).logits
        assert calls == []  # fp32: SDPA
        model16 = model.to(torch.bfloat16)
        with_kernel = model16(input_ids=x, attention_mask=mask).logits.float()
        assert len(calls) == config.num_hidden_layers
        model16.config._attn_implementation = "sdpa"  # asked for by name: SDPA even where the kernel runs
        with_sdpa = model16(input_ids=x, attention_mask=mask).logits.float()
        assert len(calls) == config.num_hidden_layers
    # the two bf16 paths are equally close to the fp32 logits
    e_kernel, e_sdpa = (with_kernel - fp32).norm() / fp32.norm(), (with_sdpa - fp32).norm() / fp32.norm()
    assert float(e_kernel) < 1.5 * float(e_sdpa) + 1e-3, (float(e_kernel), float(e_sdpa))
    # with gradients the model stays on SDPA
    model16.config._attn_implementation = kernels.ATTENTION_NAME
    calls.clear()
    model16(input_ids=x).logits.float().sum().backward()
    assert calls == []


def test_unsupported_inputs_are_refused():
    q = torch.zeros(1, 2, 4, 32, dtype=torch.bfloat16)  # head dim 32
    assert not kernels.supports(q, q, q)
    with pytest.raises(ValueError, match="head dim a multiple of 64"):
        kernels.sink_attention(q, q, q, None, 1.0)
    q = torch.zeros(1, 2, 4, 64)
    assert not kernels.supports(q, q, q)  # fp32
    q = torch.zeros(1, 3, 4, 64, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="do not fit"):
        kernels.sink_attention(
            q, torch.zeros(1, 2, 4, 64, dtype=torch.bfloat16), torch.zeros(1, 2, 4, 64, dtype=torch.bfloat16), None, 1.0
        )


def test_the_model_keeps_sdpa_on_cpus_with_amx(monkeypatch):
    """Where the CPU has AMX, SDPA's bf16 path is the faster one: the model's default attention
    runs it, says why, and SUMI_NATIVE_KERNELS=1 still picks the kernel."""
    q = torch.zeros(1, 2, 8, 64, dtype=torch.bfloat16)
    for flags, env, kernel in (
        ({"amx_bf16"}, None, False),
        ({"amx_bf16"}, "1", True),
        (set(), None, True),
    ):
        monkeypatch.setattr(kernels, "_cpu_flags", lambda flags=flags: frozenset(kernels.CPU_FLAGS) | flags)
        if env is None:
            monkeypatch.delenv("SUMI_NATIVE_KERNELS", raising=False)
        else:
            monkeypatch.setenv("SUMI_NATIVE_KERNELS", env)
        assert kernels.supports(q, q[:, :1], q[:, :1])  # the kernel can run either way
        assert kernels.use_kernel(q, q[:, :1], q[:, :1]) is kernel, (flags, env)
        why = kernels.why_not_for(64)
        assert (why is None) is kernel and (kernel or "AMX" in why), why
        calls = []
        real = kernels.sink_attention
        monkeypatch.setattr(kernels, "sink_attention", lambda *a, real=real, calls=calls: calls.append(1) or real(*a))
        out = kernels.native_or_sdpa_attention(q + 0.1, q[:, :1] + 0.2, q[:, :1] - 0.3, None, 0.125)
        monkeypatch.setattr(kernels, "sink_attention", real)
        assert len(calls) == int(kernel) and out.shape == q.shape
