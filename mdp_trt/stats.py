"""Parameter and FLOP counts of a model, for the report's dense-vs-pruned table.

FLOPs count the weighted ops (Conv, ConvTranspose, Gemm, MatMul; a multiply-add is 2), the figure
papers quote; parameters count floating-point initializers.
"""

from __future__ import annotations

import math

import onnx

from mdp_trt.graph.batch import with_batch
from mdp_trt.graph.structure import WEIGHTED_OPS
from mdp_trt.graph.view import GraphView, skeleton
from mdp_trt.latency.backends.analytic import node_cost

_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16,
                onnx.TensorProto.DOUBLE}


def parameter_count(model: onnx.ModelProto) -> int:
    return sum(math.prod(t.dims) for t in model.graph.initializer if t.data_type in _FLOAT_TYPES)


def flop_count(model: onnx.ModelProto, batch: int) -> int:
    view = GraphView(with_batch(skeleton(model), batch))
    shapes = {name: tuple(shape) for name, shape in view.shapes.items()
              if all(isinstance(d, int) for d in shape)}
    for tensor in model.graph.initializer:
        shapes[tensor.name] = tuple(tensor.dims)
    total = sum(node_cost(node, shapes, 4).flops for node in view.nodes if node.op_type in WEIGHTED_OPS)
    return int(total)
