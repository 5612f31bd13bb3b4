"""Every graph `cnn_models()` draws is valid ONNX that onnxruntime runs, and every stage is drawn."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.random_graphs import STAGES, cnn_models, stage_kinds


def _check_and_run(model: onnx.ModelProto) -> None:
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == 10 and model.opset_import[0].version == 17
    names = [n.name for n in model.graph.node]
    assert len(set(names)) == len(names)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # see tests/oracle.py
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16), dtype=np.float32)
    (out,) = session.run(None, {"input": x})
    classes = model.graph.output[0].type.tensor_type.shape.dim[1].dim_value
    assert out.shape == (1, classes)
    assert np.isfinite(out).all()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cnn_models())
def test_drawn_models_check_and_run(model: onnx.ModelProto) -> None:
    _check_and_run(model)


@pytest.mark.parametrize("kind", sorted(STAGES))
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_each_stage_checks_and_runs(kind: str, data: st.DataObject) -> None:
    model = data.draw(cnn_models(require=kind), label="model")
    assert kind in stage_kinds(model)
    _check_and_run(model)


def test_every_stage_is_drawn() -> None:
    """The unrestricted strategy reaches every stage (derandomized: the same draws every run)."""
    seen: set[str] = set()

    @settings(max_examples=300, deadline=None, database=None, derandomize=True, phases=[Phase.generate],
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(cnn_models())
    def draw(model: onnx.ModelProto) -> None:
        seen.update(stage_kinds(model))

    draw()
    assert seen == set(STAGES), f"never drawn: {sorted(set(STAGES) - seen)}"
