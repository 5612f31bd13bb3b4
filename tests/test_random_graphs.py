"""Every graph `cnn_models()` draws is valid ONNX that onnxruntime runs."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from hypothesis import HealthCheck, given, settings

from tests.random_graphs import cnn_models


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cnn_models())
def test_drawn_models_check_and_run(model: onnx.ModelProto) -> None:
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
