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
    assert served_bf16[1].batch_invariant is not None


def test_bf16_concurrent_requests_each_equal_the_request_alone(served_bf16):
    assert_concurrent_cases_equal_alone(*served_bf16)


def test_fp32_server_leaves_the_model_as_it_is():
    import sumi
    from sumi.serving import ServeSettings, create_app

    model, tok = sumi.load("demo")
    create_app(model, tok, ServeSettings())
    assert model.batch_invariant is None
    create_app(model, tok, ServeSettings(batch_invariant=True))
    assert model.batch_invariant is not None
