"""FP16 graph conversion (used for TensorRT 11's strongly typed networks), checked on CPU."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from mdp_trt.latency.fp16 import convert_to_fp16
from mdp_trt.latency.probes import ProbeSpec, build_probe
from tests.latency.latency_fakes import BN, RELU, conv_layer


def test_probe_converts_and_computes_the_same_function() -> None:
    fp32 = build_probe(ProbeSpec.from_layer(conv_layer(epilogue=(BN, RELU))), 8, 8, batch=1)
    fp16 = convert_to_fp16(fp32)
    onnx.checker.check_model(fp16, full_check=True)
    assert fp32.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT  # input untouched
    assert fp16.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT16
    assert fp16.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT16
    assert all(init.data_type == TensorProto.FLOAT16 for init in fp16.graph.initializer)
    x = np.random.default_rng(0).standard_normal((1, 8, 8, 8)).astype(np.float32)
    (y32,) = ReferenceEvaluator(fp32).run(None, {"X": x})
    (y16,) = ReferenceEvaluator(fp16).run(None, {"X": x.astype(np.float16)})
    assert y16.dtype == np.float16
    np.testing.assert_allclose(y16.astype(np.float32), y32, rtol=2e-2, atol=2e-2)


def test_out_of_range_weights_are_clipped_not_inf() -> None:
    big = numpy_helper.from_array(np.array([1e6, -1e6, 1.0], dtype=np.float32), "w")
    graph = helper.make_graph([helper.make_node("Mul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])], initializer=[big])
    out = convert_to_fp16(helper.make_model(graph))
    values = numpy_helper.to_array(out.graph.initializer[0])
    assert np.isfinite(values).all() and values[0] == np.finfo(np.float16).max


def test_resize_scales_and_cast_targets() -> None:
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], dtype=np.float32), "scales")
    nodes = [helper.make_node("Resize", ["x", "", "scales"], ["r"], mode="nearest"),
             helper.make_node("Cast", ["r"], ["y"], to=TensorProto.FLOAT)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])],
                              initializer=[scales])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    out = convert_to_fp16(model)
    onnx.checker.check_model(out, full_check=True)
    assert out.graph.initializer[0].data_type == TensorProto.FLOAT  # the spec requires float scales
    assert out.graph.node[1].attribute[0].i == TensorProto.FLOAT16
