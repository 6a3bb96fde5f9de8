"""Batch invariance at the lowest cost this machine allows: probe each projection's GEMM once.

`SumiLinear` gives a token row the same bits alone or batched when every GEMM call has one fixed
number of rows (`row_block`). Fixed calls cost: a lone 96-token canvas is padded to 128 rows, and
eight canvases take six calls instead of one, repacking the weight each time (on the 2-core CPU the
blocked bf16 forward of eight rows took 1.5x the plain one). But a GEMM library keeps one kernel,
and so one summation order, over wide ranges of M: for the bundled model in bf16 only the 864-wide
down projection changed its order at all (at 32 rows and past 300). Which calls keep it is a
property of the library, the CPU, the thread count and the weight's shape, not of the data, so one
random probe per shape settles it: `make_batch_invariant` gives every projection the first
`(block, multiple)` of `CANDIDATES` for which every call of a multiple of `multiple` rows up to
`block` reproduces each row of the full call bit for bit wherever the row sits, and fixed 128-row
calls where none passes or the probe would cost too much. Probe under the thread count that will
serve: the kernel choice can follow it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .modeling_sumi import SumiLinear

# (row_block, row_multiple), most preferred first: large blocks share the weight among the most
# rows; small multiples pad a lone canvas least.
CANDIDATES = ((1024, 32), (1024, 64), (512, 32), (512, 64), (256, 32), (256, 64), (128, 32), (128, 64))
FALLBACK_BLOCK = 128  # fixed-size calls: invariant by construction, no probe needed
PROBE_FLOP_BUDGET = 4e11  # per weight shape (~1 s on a CPU core); larger shapes try smaller blocks

# plans found in this process, by (in, out, bias, dtype, device, torch threads, candidates): the
# probe's answer depends on those and on the library and machine, which a process does not change
_PLANS: dict[tuple, tuple[int, int]] = {}


def probe_flops(block: int, multiple: int, in_features: int, out_features: int) -> float:
    """Multiply-adds x 2 of `consistent` for one block: the full call plus two windows per size."""
    rows = block + 2 * sum(range(multiple, block, multiple))
    return 2.0 * rows * in_features * out_features


def consistent(weight: torch.Tensor, bias: torch.Tensor | None, block: int, multiple: int, seed: int = 0) -> bool:
    """Whether every call of `m` rows (m a multiple of `multiple` below `block`) gives each row the
    bits that row has in one call of `block` rows, both for the first and for the last `m` rows of
    the probe (so a row is checked at several places in a call). weight `[out, in]`."""
    g = torch.Generator().manual_seed(seed)
    probe = torch.randn(block, weight.shape[1], generator=g).to(weight.device, weight.dtype)
    full = F.linear(probe, weight, bias)
    return all(
        torch.equal(F.linear(probe[:m], weight, bias), full[:m])
        and torch.equal(F.linear(probe[block - m :], weight, bias), full[block - m :])
        for m in range(multiple, block, multiple)
    )


def choose_block(layer: SumiLinear, candidates=CANDIDATES) -> tuple[int, int]:
    """`(row_block, row_multiple)` for this layer: the first consistent candidate within the probe
    budget, else `(FALLBACK_BLOCK, FALLBACK_BLOCK)`."""
    for block, multiple in candidates:
        if block % multiple or probe_flops(block, multiple, layer.in_features, layer.out_features) > PROBE_FLOP_BUDGET:
            continue
        if consistent(layer.weight, layer.bias, block, multiple):
            return block, multiple
    return FALLBACK_BLOCK, FALLBACK_BLOCK


@torch.inference_mode()
def make_batch_invariant(model: torch.nn.Module, candidates=CANDIDATES) -> dict[str, tuple[int, int]]:
    """Turn on batch invariance in every `SumiLinear` of `model` with the cheapest calls this
    machine keeps exact (one probe per distinct weight shape, dtype, device and thread count in a
    process). Returns the plan, `{"in->out dtype": (row_block, row_multiple)}`, for logs."""
    plans: dict[tuple, tuple[int, int]] = {}
    for module in model.modules():
        if isinstance(module, SumiLinear):
            w = module.weight
            key = (module.in_features, module.out_features, module.bias is not None, w.dtype, w.device)
            if key not in plans:
                cached = key + (torch.get_num_threads(), tuple(candidates))
                if cached not in _PLANS:
                    _PLANS[cached] = choose_block(module, candidates)
                plans[key] = _PLANS[cached]
            module.row_block, module.row_multiple = plans[key]
    return {f"{k[0]}->{k[1]} {str(k[3]).removeprefix('torch.')}": plan for k, plan in plans.items()}


__all__ = ["make_batch_invariant", "choose_block", "consistent", "CANDIDATES", "FALLBACK_BLOCK"]
