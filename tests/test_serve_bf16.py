"""`sumi serve` with bf16 weights: batch-invariant by default, so concurrent seeded requests of
different lengths, samplers and step counts each equal `generate()` alone on the same weights."""

from __future__ import annotations

import pytest
import torch
from test_serve import API_KEY, assert_concurrent_cases_equal_alone


@pytest.fixture(scope="module")
def served_bf16():
    import sumi
    from sumi.serving import BackgroundServer, ServeSettings, create_app

    model, tok = sumi.load("demo", dtype=torch.bfloat16)
    app = create_app(model, tok, ServeSettings(model_name="demo", api_key=API_KEY, max_batch_rows=16))
    with BackgroundServer(app) as url:
        yield url, model, tok


def test_bf16_server_turns_batch_invariance_on(served_bf16):
    assert served_bf16[1].batch_invariant


def test_bf16_concurrent_requests_each_equal_the_request_alone(served_bf16):
    assert_concurrent_cases_equal_alone(*served_bf16)


def test_the_server_probes_its_gemm_calls_in_every_dtype_unless_told_not_to():
    # fp32 too: on a CPU with several threads its GEMMs also change a row's bits with the batch
    import sumi
    from sumi.serving import ServeSettings, create_app

    model, tok = sumi.load("demo")
    create_app(model, tok, ServeSettings())
    assert model.batch_invariant
    create_app(model, tok, ServeSettings(batch_invariant=False))
    assert not model.batch_invariant
