"""FP32 -> FP16 conversion of an ONNX graph, in pure onnx/numpy.

TensorRT 11 builds only strongly typed networks (no `BuilderFlag.FP16`): the precision must be in the
graph itself. Every float32 tensor becomes float16 (initializers, constants, inputs, outputs, value
infos, Cast targets) except the few operands the ONNX spec requires to stay float32.

`keep_io_types=True` keeps float32 graph inputs and outputs (a Cast to float16 after each input, one
back to float32 before each output), as NVIDIA's recommended TensorRT 11 path does (ModelOpt AutoCast
`keep_io_types`): a TensorRT 10 engine built with the FP16 flag keeps float32 I/O too, so engines of
both versions take the same inputs and their latencies include the same conversions.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

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


def convert_to_fp16(model: onnx.ModelProto, keep_io_types: bool = False) -> onnx.ModelProto:
    """A float16 copy of `model` (the input is not modified); raises InputError on subgraphs.

    With `keep_io_types`, float32 graph inputs and outputs stay float32 and are cast at the edges."""
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

    converted = set()
    for value in (*graph.input, *graph.output, *graph.value_info):
        tensor_type = value.type.tensor_type
        if tensor_type.elem_type == TensorProto.FLOAT and value.name not in keep:
            tensor_type.elem_type = TensorProto.FLOAT16
            converted.add(value.name)
    if keep_io_types:
        _cast_io_to_fp32(graph, converted)
    return out


def _cast_io_to_fp32(graph: onnx.GraphProto, converted: set[str]) -> None:
    """Give the converted graph inputs and outputs back their float32 type: the float16 graph reads a Cast of
    each input and computes a renamed tensor that a Cast turns into each output. Initializers listed as
    inputs (older exporters) are weights, not inputs, and stay float16."""
    initializers = {init.name for init in graph.initializer}
    names = {name for node in graph.node for name in (*node.input, *node.output)}
    names |= {v.name for v in (*graph.input, *graph.output)} | initializers

    def fresh(name: str) -> str:
        candidate, index = f"{name}_fp16", 1
        while candidate in names:
            candidate, index = f"{name}_fp16_{index}", index + 1
        names.add(candidate)
        return candidate

    inputs = {v.name for v in graph.input}
    head, tail = [], []
    for value in graph.input:
        if value.name not in converted or value.name in initializers:
            continue
        inner = fresh(value.name)
        for node in graph.node:
            node.input[:] = [inner if name == value.name else name for name in node.input]
        for info in graph.value_info:
            if info.name == value.name:
                info.name = inner
        head.append(helper.make_node("Cast", [value.name], [inner], name=f"{inner}_cast", to=TensorProto.FLOAT16))
        value.type.tensor_type.elem_type = TensorProto.FLOAT
    for value in graph.output:
        if value.name not in converted:
            continue
        if value.name in inputs:  # a graph input passed through: typed as that input now is
            if value.name not in initializers:
                value.type.tensor_type.elem_type = TensorProto.FLOAT
            continue
        inner = fresh(value.name)
        for node in graph.node:
            node.input[:] = [inner if name == value.name else name for name in node.input]
            node.output[:] = [inner if name == value.name else name for name in node.output]
        for item in (*graph.initializer, *graph.value_info):
            if item.name == value.name:
                item.name = inner
        tail.append(helper.make_node("Cast", [inner], [value.name], name=f"{inner}_cast", to=TensorProto.FLOAT))
        value.type.tensor_type.elem_type = TensorProto.FLOAT
    nodes = [*head, *graph.node, *tail]
    graph.ClearField("node")
    graph.node.extend(nodes)
