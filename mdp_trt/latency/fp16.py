"""FP32 -> FP16 conversion of an ONNX graph, in pure onnx/numpy.

TensorRT 11 builds only strongly typed networks (no `BuilderFlag.FP16`): the precision must be in the
graph itself. Every float32 tensor becomes float16 (initializers, constants, inputs, outputs, value
infos, Cast targets) except the few operands the ONNX spec requires to stay float32.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from mdp_trt.errors import InputError

FP16_MAX = float(np.finfo(np.float16).max)

# (op type, input index) that the ONNX spec types as tensor(float) only.
_FLOAT32_OPERANDS = {("Resize", 2), ("Upsample", 1)}


def _to_fp16(tensor: TensorProto) -> TensorProto:
    """Cast a float32 tensor, clipping to the float16 range so large weights do not become inf."""
    array = numpy_helper.to_array(tensor)
    converted = np.clip(array, -FP16_MAX, FP16_MAX).astype(np.float16)
    return numpy_helper.from_array(converted, tensor.name)


def _float32_operand_names(graph: onnx.GraphProto) -> set[str]:
    return {
        node.input[index]
        for node in graph.node
        for (op, index) in _FLOAT32_OPERANDS
        if node.op_type == op and len(node.input) > index and node.input[index]
    }


def convert_to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """A float16 copy of `model` (the input is not modified); raises InputError on subgraphs."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    keep = _float32_operand_names(graph)

    for index, init in enumerate(graph.initializer):
        if init.data_type == TensorProto.FLOAT and init.name not in keep:
            graph.initializer[index].CopyFrom(_to_fp16(init))

    for node in graph.node:
        for attr in node.attribute:
            if attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
                raise InputError(
                    f"FP16 conversion does not handle subgraphs (node {node.name or node.op_type})"
                )
            if any(name in keep for name in node.output):
                continue  # this node computes a float32-only operand
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == TensorProto.FLOAT:
                attr.t.CopyFrom(_to_fp16(attr.t))
            if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT:
                attr.i = TensorProto.FLOAT16

    for value in (*graph.input, *graph.output, *graph.value_info):
        tensor_type = value.type.tensor_type
        if tensor_type.elem_type == TensorProto.FLOAT and value.name not in keep:
            tensor_type.elem_type = TensorProto.FLOAT16
    return out
