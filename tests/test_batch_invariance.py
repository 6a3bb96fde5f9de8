"""Batch invariance in reduced precision: `SumiLinear` blocks and `set_batch_invariant`.

CPU GEMMs choose their blocking from the number of rows, so in bf16 a canvas row's logits can move
in the last bits with the rows batched beside it. With `set_batch_invariant(block)` every
projection multiplies in fixed blocks of rows and a row's logits must be bit-identical alone or in any batch.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

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
    for block in (None, 1, 8, 64):
        layer.row_block = block
        out = layer(x)
        assert out.shape == (3, 7, 10)
        torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)


def test_set_batch_invariant_reaches_every_projection_and_checks_its_argument():
    import sumi

    model, _ = sumi.load("demo")
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(isinstance(m, SumiLinear) for m in linears)  # the head too
    model.set_batch_invariant(32)
    assert model.batch_invariant == 32 and all(m.row_block == 32 for m in linears)
    model.set_batch_invariant(None)
    assert model.batch_invariant is None
    for bad in (0, -4, 2.5, "64"):
        with pytest.raises(ValueError, match="row_block"):
            model.set_batch_invariant(bad)


@pytest.mark.parametrize("block", [64, 128])
@pytest.mark.parametrize("lengths", [[100, 128, 77, 128, 128, 128, 128, 128], [200, 512, 300, 13], [5] * 16])
def test_bf16_rows_are_bit_identical_alone_or_batched(lengths, block):
    """Rows of different lengths, right-padded and masked into one forward, each equal the row alone."""
    import sumi

    model, _ = sumi.load("demo", dtype=torch.bfloat16)
    model.set_batch_invariant(block)
    g = torch.Generator().manual_seed(sum(lengths))
    rows = [torch.randint(0, model.config.vocab_size, (1, n), generator=g) for n in lengths]
    width = max(lengths)
    batch = torch.cat([F.pad(r, (0, width - r.shape[1])) for r in rows])
    mask = (torch.arange(width)[None] < torch.tensor(lengths)[:, None]).long()
    with torch.no_grad():
        batched = model(input_ids=batch, attention_mask=mask).logits
        for i, r in enumerate(rows):
            assert torch.equal(model(input_ids=r).logits[0], batched[i, : r.shape[1]]), f"row {i} of {lengths}"
