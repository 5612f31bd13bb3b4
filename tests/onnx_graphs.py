"""Tiny hand-written ONNX graphs for analysis and surgery tests."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

IR_VERSION = 10


class Graph:
    """Accumulates nodes and initializers; `model()` makes a checked ModelProto."""

    def __init__(self, shape=(1, 3, 8, 8), seed: int = 0, opset: int = 17) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.shape = shape
        self.opset = opset
        self.count = 0

    def name(self, base: str) -> str:
        self.count += 1
        return f"{base}{self.count}"

    def const(self, value: np.ndarray, base: str = "c") -> str:
        name = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], n_out: int = 1, **attrs) -> list[str] | str:
        name = self.name(op.lower())
        outs = [f"{name}_out{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=name, **attrs))
        return outs[0] if n_out == 1 else outs

    def conv(self, x: str, c_in: int, c_out: int, k: int = 3, group: int = 1, bias: bool = True) -> str:
        w = self.const((self.rng.standard_normal((c_out, c_in // group, k, k)) * 0.3).astype(np.float32), "w")
        inputs = [x, w]
        if bias:
            inputs.append(self.const(self.rng.standard_normal(c_out).astype(np.float32) * 0.1, "b"))
        return self.node("Conv", inputs, pads=[k // 2] * 4, group=group)

    def bn(self, x: str, c: int) -> str:
        p = [self.rng.uniform(0.5, 1.5, c), self.rng.standard_normal(c) * 0.1,
             self.rng.standard_normal(c) * 0.1, self.rng.uniform(0.5, 1.5, c)]
        return self.node("BatchNormalization", [x, *(self.const(v.astype(np.float32), "bn") for v in p)])

    def gemm(self, x: str, k: int, n: int) -> str:
        w = self.const((self.rng.standard_normal((n, k)) * 0.1).astype(np.float32), "fc")
        b = self.const(np.zeros(n, np.float32), "fcb")
        return self.node("Gemm", [x, w, b], transB=1)

    def model(self, output: str, out_shape=None) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, "test",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(self.shape))],
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, out_shape)],
            self.inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        model.ir_version = IR_VERSION
        if out_shape is None:  # take the output's shape from inference
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
            known = {v.name: v for v in (*inferred.graph.value_info, *inferred.graph.output)}
            model.graph.output[0].CopyFrom(known[output])
        onnx.checker.check_model(model, full_check=True)
        return model
