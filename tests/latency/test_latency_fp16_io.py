"""FP16 conversion that keeps FP32 graph inputs and outputs (TensorRT 11's fp16 whole models), checked on CPU."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from mdp_trt.latency.fp16 import convert_to_fp16
from mdp_trt.latency.probes import ProbeSpec, build_probe
from tests.latency.latency_fakes import BN, RELU, conv_layer


def _types(values: object) -> list[int]:
    return [v.type.tensor_type.elem_type for v in values]  # type: ignore[attr-defined]


def test_keep_io_types_casts_at_the_edges_and_computes_the_same_function() -> None:
    fp32 = build_probe(ProbeSpec.from_layer(conv_layer(epilogue=(BN, RELU))), 8, 8, batch=1)
    kept = convert_to_fp16(fp32, keep_io_types=True)
    onnx.checker.check_model(kept, full_check=True)
    assert _types(kept.graph.input) == _types(kept.graph.output) == [TensorProto.FLOAT]
    assert [kept.graph.node[0].op_type, kept.graph.node[-1].op_type] == ["Cast", "Cast"]
    assert all(init.data_type == TensorProto.FLOAT16 for init in kept.graph.initializer)
    x = np.random.default_rng(0).standard_normal((1, 8, 8, 8)).astype(np.float32)
    (y32,) = ReferenceEvaluator(fp32).run(None, {"X": x})
    (y_kept,) = ReferenceEvaluator(kept).run(None, {"X": x})
    (y16,) = ReferenceEvaluator(convert_to_fp16(fp32)).run(None, {"X": x.astype(np.float16)})
    assert y_kept.dtype == np.float32
    np.testing.assert_array_equal(y_kept, y16.astype(np.float32))  # the same FP16 arithmetic inside
    np.testing.assert_allclose(y_kept, y32, rtol=2e-2, atol=2e-2)


def test_keep_io_types_leaves_weights_listed_as_inputs_and_passthroughs_alone() -> None:
    w = numpy_helper.from_array(np.array([2.0, 3.0], dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "w"], ["y"]), helper.make_node("Relu", ["y"], ["z"])], "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2]) for n in ("x", "w")],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2]) for n in ("y", "z", "x")], initializer=[w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    kept = convert_to_fp16(model, keep_io_types=True)
    onnx.checker.check_model(kept, full_check=True)
    assert _types(kept.graph.input) == [TensorProto.FLOAT, TensorProto.FLOAT16]  # w is a weight, in FP16
    assert _types(kept.graph.output) == [TensorProto.FLOAT] * 3
    x = np.array([1.5, -1.0], dtype=np.float32)
    y, z, x_out = ReferenceEvaluator(kept).run(None, {"x": x})
    np.testing.assert_array_equal(y, [3.0, -3.0])
    np.testing.assert_array_equal(z, [3.0, 0.0])
    np.testing.assert_array_equal(x_out, x)
