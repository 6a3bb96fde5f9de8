"""Batch invariance: `SumiLinear` blocks, `set_batch_invariant` and the probed plans of
`sumi.batch_invariance`.

CPU GEMMs choose their blocking from the number of rows, so in bf16 (and in fp32 with several
threads) a canvas row's logits can move in the last bits with the rows batched beside it. With
`set_batch_invariant(block)` every projection multiplies in fixed blocks of rows; with
`make_batch_invariant` in the largest calls a probe found exact. Either way a row's logits must be
bit-identical alone or in any batch.
"""

from __future__ import annotations

import pytest
import torch

from sumi.modeling_sumi import SumiLinear


def test_blocked_linear_is_the_product_written_out():
    """The blocked product equals x @ W^T + b computed in float64 from the definition."""
    g = torch.Generator().manual_seed(0)
    layer = SumiLinear(24, 10, bias=True)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(10, 24, generator=g))
        layer.bias.copy_(torch.randn(10, generator=g))
    x = torch.randn(3, 7, 24, generator=g)  # 21 rows: blocks of 8 leave a padded last block
    w, b = layer.weight.double(), layer.bias.double()
    expected = torch.stack(
        [torch.stack([sum(x[i, j, k].double() * w[:, k] for k in range(24)) + b for j in range(7)]) for i in range(3)]
    )
    for block, multiple in ((None, None), (1, None), (8, None), (64, None), (8, 4), (16, 2), (32, 32)):
        layer.row_block, layer.row_multiple = block, multiple
        out = layer(x)
        assert out.shape == (3, 7, 10)
        torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)


def test_set_batch_invariant_reaches_every_projection_and_checks_its_argument():
    import sumi

    model, _ = sumi.load("demo")
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(isinstance(m, SumiLinear) for m in linears)  # the head too
    model.set_batch_invariant(32)
    assert model.batch_invariant and all((m.row_block, m.row_multiple) == (32, None) for m in linears)
    model.set_batch_invariant(64, 16)
    assert all((m.row_block, m.row_multiple) == (64, 16) for m in linears)
    model.set_batch_invariant(None)
    assert not model.batch_invariant and all(m.row_block is None and m.row_multiple is None for m in linears)
    for bad in (0, -4, 2.5, "64", True):
        with pytest.raises(ValueError, match="row_block"):
            model.set_batch_invariant(bad)
        with pytest.raises(ValueError, match="row_multiple"):
            model.set_batch_invariant(64, bad)
    with pytest.raises(ValueError, match="multiple of row_multiple"):
        model.set_batch_invariant(64, 24)


@pytest.mark.parametrize("plan", [64, 128, "probed", "probed, 2 threads", "probed fp32, 2 threads"])
@pytest.mark.parametrize("keys", [[100, 128, 77, 128, 128, 128, 128, 128], [200, 512, 300, 13], [5] * 16])
def test_rows_are_bit_identical_alone_or_batched(keys, plan):
    """Rows of one width with different key masks (a row's first `keys[i]` positions attend), in one
    forward, each equal the row alone at that width. (Rows of different widths do not share a
    forward in exact mode: `tests/test_denoising_engine.py`.)"""
    import sumi
    from sumi.batch_invariance import make_batch_invariant

    threads = torch.get_num_threads()
    torch.set_num_threads(2 if "2 threads" in str(plan) else 1)
    try:
        model, _ = sumi.load("demo", dtype=torch.float32 if "fp32" in str(plan) else torch.bfloat16)
        if isinstance(plan, int):
            model.set_batch_invariant(plan)
        else:
            make_batch_invariant(model)
        g = torch.Generator().manual_seed(sum(keys))
        width = max(keys)
        batch = torch.randint(0, model.config.vocab_size, (len(keys), width), generator=g)
        mask = (torch.arange(width)[None] < torch.tensor(keys)[:, None]).long()
        with torch.no_grad():
            batched = model(input_ids=batch, attention_mask=mask).logits
            for i, n in enumerate(keys):
                alone = model(input_ids=batch[i : i + 1], attention_mask=None if n == width else mask[i : i + 1])
                assert torch.equal(alone.logits[0], batched[i]), f"row {i} of {keys}"
        assert model.batch_invariant
    finally:
        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- the probe
def fake_gemm(changes_past: int | None = None, odd_at: tuple[int, ...] = ()):
    """A stand-in for F.linear whose summation order follows the call's row count M, as a real
    CPU GEMM's does: exact fp64 products summed in fp32, then (for M past `changes_past`, or M in
    `odd_at`) one more bit of rounding noise that depends on the row's place in the call."""

    def linear(x, weight, bias=None):
        out = (x.double() @ weight.double().T).float()
        m = x.shape[0]
        if (changes_past is not None and m > changes_past) or m in odd_at:
            out = out + torch.arange(m, dtype=out.dtype)[:, None] * out.abs() * 2**-20
        return out if bias is None else out + bias

    return linear


class _FakeF:
    def __init__(self, linear):
        self.linear = linear


@pytest.mark.parametrize(
    "changes_past, odd_at, expected",
    [
        (None, (), (256, 32)),  # one kernel for every size: the largest candidate
        (100, (), (64, 32)),  # a new order past 100 rows: blocks of 64
        (None, (32,), (256, 64)),  # only 32-row calls differ (as the real bf16 down projection): multiples of 64
        (None, (32, 64), (128, 128)),  # none passes: fixed 128-row calls, exact by construction
    ],
)
def test_the_probe_finds_the_calls_a_kernel_keeps_exact(monkeypatch, changes_past, odd_at, expected):
    from sumi import batch_invariance

    monkeypatch.setattr(batch_invariance, "F", _FakeF(fake_gemm(changes_past, odd_at)))
    layer = SumiLinear(16, 8, bias=False)
    candidates = ((256, 32), (256, 64), (64, 32))
    assert batch_invariance.choose_block(layer, candidates) == expected


def test_the_probe_stays_within_its_budget(monkeypatch):
    """A shape whose probe would pass the FLOP budget falls back to fixed calls without probing."""
    from sumi import batch_invariance

    calls = []
    monkeypatch.setattr(batch_invariance, "consistent", lambda *a: calls.append(a) or True)
    monkeypatch.setattr(batch_invariance, "PROBE_FLOP_BUDGET", batch_invariance.probe_flops(128, 32, 16, 8))
    layer = SumiLinear(16, 8, bias=False)
    assert batch_invariance.choose_block(layer, ((1024, 32), (128, 32))) == (128, 32) and len(calls) == 1
    monkeypatch.setattr(batch_invariance, "PROBE_FLOP_BUDGET", 0.0)
    assert batch_invariance.choose_block(layer, ((1024, 32), (128, 32))) == (128, 128) and len(calls) == 1


def test_make_batch_invariant_probes_each_shape_once_and_reports_the_plan(monkeypatch):
    import sumi
    from sumi import batch_invariance

    model, _ = sumi.load("demo")
    monkeypatch.setattr(batch_invariance, "_PLANS", {})  # (plans found earlier in this process)
    probed = []
    real = batch_invariance.choose_block
    monkeypatch.setattr(batch_invariance, "choose_block", lambda layer, c: probed.append(layer) or real(layer, c))
    plan = batch_invariance.make_batch_invariant(model)
    shapes = {(m.in_features, m.out_features) for m in model.modules() if isinstance(m, SumiLinear)}
    assert len(probed) == len(shapes) == len(plan) == 5  # q/o, k/v, gate/up, down, head
    assert set(plan) == {f"{i}->{o} float32" for i, o in shapes}
    for m in model.modules():
        if isinstance(m, SumiLinear):
            assert (m.row_block, m.row_multiple) == plan[f"{m.in_features}->{m.out_features} float32"]
    # a second model of the same shapes in this process: the plans found, no probe
    again, _ = sumi.load("demo")
    assert batch_invariance.make_batch_invariant(again) == plan and len(probed) == 5
