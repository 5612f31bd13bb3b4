"""Layer records for weighted ops: channel groups on each side, shapes, attributes, fused epilogue."""

from __future__ import annotations

import onnx

from mdp_trt.graph.channels import WeightedUse
from mdp_trt.graph.groups import GroupIndex
from mdp_trt.graph.structure import EpilogueOp, Layer, Segment, TensorChannels
from mdp_trt.graph.view import GraphView, attributes

# Ops a backend fuses into the weighted op before them (TensorRT and ONNX Runtime both fuse
# Conv+BN+activation); the walk stops after the first activation.
FUSED_NORMS = frozenset({"BatchNormalization"})
FUSED_ACTIVATIONS = frozenset({
    "Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu",
    "Softplus", "Gelu", "PRelu",
})


def build_layers(view: GraphView, uses: list[WeightedUse], index: GroupIndex,
                 block_of: dict[str, str]) -> list[Layer]:
    layers = []
    for use in uses:
        node = use.node
        weight_shape = view.constant_shape(node.input[1])
        assert weight_shape is not None  # propagation only records weighted uses with constant weights
        tc_in, tc_out = index.tensors[use.input], index.tensors[use.output]
        in_segments, out_segments = _segments(tc_in, index), _segments(tc_out, index)
        attrs = attributes(node)
        if node.op_type in ("Conv", "ConvTranspose") and "kernel_shape" not in attrs:
            attrs["kernel_shape"] = list(weight_shape[2:])
        layers.append(Layer(
            name=node.name,
            op=node.op_type,
            in_group=in_segments[0].group if len(in_segments) == 1 else None,
            out_group=out_segments[0].group if len(out_segments) == 1 else None,
            in_channels=len(tc_in.group),
            out_channels=len(tc_out.group),
            in_segments=in_segments,
            out_segments=out_segments,
            in_repeat=tc_in.repeat,
            input_shape=_concrete(view.shape(use.input)),
            output_shape=_concrete(view.shape(use.output)),
            weight_shape=weight_shape,
            has_bias=len(node.input) > 2 and bool(node.input[2]),
            attrs=attrs,
            epilogue=tuple(_epilogue(view, node)),
            block=block_of.get(node.name),
            depthwise=use.depthwise,
            dtype=_dtype_name(view, node.input[1]),
        ))
    return layers


def _segments(tc: TensorChannels, index: GroupIndex) -> tuple[Segment, ...]:
    segments: list[Segment] = []
    for g in tc.group.tolist():
        gid = index.groups[g].id
        if segments and segments[-1].group == gid:
            segments[-1] = Segment(gid, segments[-1].size + 1)
        else:
            segments.append(Segment(gid, 1))
    merged: dict[str, int] = {}
    for seg in segments:
        merged[seg.group] = merged.get(seg.group, 0) + seg.size
    if len(merged) == 1:  # one group, possibly permuted: count it once
        return (Segment(segments[0].group, merged[segments[0].group]),)
    return tuple(segments)


# Gates of a self-gated activation, `x * gate(x)`: SiLU/Swish (Sigmoid), hard swish (HardSigmoid) as
# exporters write them when the framework's op has no ONNX counterpart at the opset (PyTorch's SiLU).
SELF_GATES = frozenset({"Sigmoid", "HardSigmoid"})


def _epilogue(view: GraphView, node: onnx.NodeProto) -> list[EpilogueOp]:
    ops: list[EpilogueOp] = []
    tensor = node.output[0]
    while tensor not in view.graph_outputs:
        readers = view.consumers.get(tensor, [])
        gated = _self_gated(view, tensor, readers) or _erf_gelu(view, tensor, readers)
        if gated is not None:
            ops.append(gated)
            break
        if len(readers) != 1:
            break
        nxt = readers[0]
        if not ops and node.op_type == "MatMul" and _bias_add(view, nxt, tensor):
            ops.append(EpilogueOp(nxt.name, "BiasAdd"))  # a Linear on tokens, as exporters write it
        elif nxt.op_type in FUSED_NORMS and not ops:
            ops.append(EpilogueOp(nxt.name, nxt.op_type, attributes(nxt)))
        elif nxt.op_type in FUSED_ACTIVATIONS:
            attrs = attributes(nxt)
            if nxt.op_type == "Clip" and len(nxt.input) > 1:
                for key, slot in (("min", 1), ("max", 2)):
                    if len(nxt.input) > slot and nxt.input[slot]:
                        value = view.constant(nxt.input[slot])
                        if value is not None and value.size == 1:
                            attrs[key] = float(value.reshape(-1)[0])
            ops.append(EpilogueOp(nxt.name, nxt.op_type, attrs))
            break
        else:
            break
        tensor = nxt.output[0]
    return ops


def _self_gated(view: GraphView, tensor: str, readers: list[onnx.NodeProto]) -> EpilogueOp | None:
    """`tensor * gate(tensor)` read by exactly its gate and the Mul (SiLU as PyTorch exports it: `Sigmoid`
    then `Mul`), as one `Swish` epilogue op, named after the Mul, with the gate's op and attributes.

    Backends fuse it after the layer (ONNX Runtime into a QuickGelu kernel, TensorRT into the convolution)
    and its cost grows with the layer's output channels, so its probe must hold it; the Mul reads two
    tensors, which the one-reader walk above cannot follow."""
    if len(readers) != 2:
        return None
    gates = [r for r in readers if r.op_type in SELF_GATES]
    muls = [r for r in readers if r.op_type == "Mul"]
    if len(gates) != 1 or len(muls) != 1:
        return None
    gate, mul = gates[0], muls[0]
    if set(mul.input) != {tensor, gate.output[0]} or view.consumers.get(gate.output[0], []) != [mul]:
        return None
    return EpilogueOp(mul.name, "Swish", {"gate": gate.op_type, **attributes(gate)})


def _bias_add(view: GraphView, node: onnx.NodeProto, tensor: str) -> bool:
    """`MatMul(x, W) + b` with b a constant vector over the output channels: the bias of a Linear that the
    exporter wrote apart (3-D inputs), which backends fuse into the product."""
    if node.op_type != "Add" or len(node.input) != 2:
        return False
    other = node.input[1] if node.input[0] == tensor else node.input[0]
    shape = view.constant_shape(other) if view.is_constant(other) else None
    out = view.shape(tensor)
    return shape is not None and len(shape) == 1 and out is not None and shape[0] == out[-1]


def _erf_gelu(view: GraphView, tensor: str, readers: list[onnx.NodeProto]) -> EpilogueOp | None:
    """GELU as PyTorch exports it below opset 20, `x * 0.5 * (1 + erf(x / sqrt(2)))`, as one `Gelu` epilogue
    op named after its last node. TorchScript multiplies by x then by 0.5 (`Div, Erf, Add, Mul(x), Mul`),
    dynamo by 0.5 then by x (`Div, Erf, Add, Mul, Mul(x)`); ONNX Runtime fuses either into one kernel."""
    if len(readers) != 2 or {r.op_type for r in readers} != {"Div", "Mul"}:
        return None
    node = next(r for r in readers if r.op_type == "Div")
    gate = next(r for r in readers if r.op_type == "Mul")
    for op in ("Erf", "Add", "Mul"):
        following = view.consumers.get(node.output[0], [])
        if len(following) != 1 or following[0].op_type != op:
            return None
        node = following[0]
    if node is not gate:  # dynamo: 0.5 * (1 + erf) first, then x times that
        return EpilogueOp(gate.name, "Gelu") if view.consumers.get(node.output[0], []) == [gate] else None
    after = view.consumers.get(gate.output[0], [])  # TorchScript: x * (1 + erf), then times 0.5
    if len(after) == 1 and after[0].op_type == "Mul" and any(view.is_constant(i) for i in after[0].input):
        return EpilogueOp(after[0].name, "Gelu")
    return None


def _dtype_name(view: GraphView, name: str) -> str:
    if name in view.initializers:
        return onnx.helper.tensor_dtype_to_np_dtype(view.initializers[name].data_type).name
    return str(view.constant(name).dtype)


def _concrete(shape) -> tuple[int | None, ...]:
    return tuple(d if isinstance(d, int) else None for d in shape) if shape is not None else ()
