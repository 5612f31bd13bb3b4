"""Property: on random CNN graphs the analysis never crashes and every random plan is exact."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mdp_trt.graph import analyze
from mdp_trt.prune import Plan, prune_model
from tests.oracle import assert_oracle, random_inputs, random_plan, run
from tests.random_graphs import STAGES, cnn_models, stage_kinds


def _prunes_exactly(model: onnx.ModelProto, seed: int) -> None:
    structure = analyze(model)
    # A model drawn without a stage that holds weights (activations, excitations and splits of the input's
    # 3 channels, then the head's Gemm to the output) has no layer with a prunable side: nothing to check.
    # An analysis that found no layers anywhere would discard every example and fail the health check.
    assume(structure.layers)
    for group in structure.groups:
        assert group.prunable or group.reason
    rng = np.random.default_rng(seed)
    assert_oracle(model, structure, random_plan(structure, rng, block_rate=0.5), rng)


def _keeps_all_exactly(model: onnx.ModelProto) -> None:
    structure = analyze(model)
    feeds = random_inputs(model, np.random.default_rng(0))
    for a, b in zip(run(prune_model(model, structure, Plan()), feeds), run(model, feeds), strict=True):
        np.testing.assert_array_equal(a, b)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(model=cnn_models(), seed=st.integers(0, 2**31 - 1))
def test_random_graphs_prune_exactly(model: onnx.ModelProto, seed: int) -> None:
    _prunes_exactly(model, seed)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=cnn_models())
def test_random_graphs_keep_all_is_the_identity(model: onnx.ModelProto) -> None:
    _keeps_all_exactly(model)


@pytest.mark.parametrize("kind", sorted(STAGES))
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data(), seed=st.integers(0, 2**31 - 1))
def test_each_stage_prunes_exactly(kind: str, data: st.DataObject, seed: int) -> None:
    """Every stage, after a Conv (so that its channels are prunable), under a random plan and keeping all."""
    model = data.draw(cnn_models(require=kind), label="model")
    assert kind in stage_kinds(model)
    _prunes_exactly(model, seed)
    _keeps_all_exactly(model)
