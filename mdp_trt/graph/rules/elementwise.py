"""Per-element ops: activations pass channels through; binary ops tie the channels they combine.

Patterns covered:
* activations and casts of any exporter (ReLU/ReLU6 as Clip, SiLU as x * Sigmoid(x), hard-swish,
  GELU as Erf arithmetic or Gelu, Mish, ...): the output carries the input's channels;
* residual `Add`, gating `Mul` (squeeze-excitation), `x * s` layer scale, ConvNeXt V2's GRN
  arithmetic, `Where`, comparisons: inputs that carry the same channel axes are tied position by
  position; an input with extent 1 on those axes broadcasts (a per-sample gate, a mean over
  channels) and ties nothing; a constant must be per channel (sliced with the channels) or broadcast;
* `Expand` that leaves the channel axes alone.
"""

from __future__ import annotations

import numpy as np
import onnx

from mdp_trt.graph.channelmap import ChannelMap
from mdp_trt.graph.channels import Walker

UNARY_OPS = frozenset({
    "Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu", "Celu",
    "Softplus", "Softsign", "Erf", "Gelu", "Mish", "ThresholdedRelu", "Identity", "Dropout", "Cast",
    "Abs", "Neg", "Exp", "Log", "Sqrt", "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Sin", "Cos",
    "Not", "IsNaN", "IsInf", "CastLike", "Shrink", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh",
    "Acosh", "Atanh",
})
ELEMENTWISE_OPS = frozenset({
    "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "PRelu", "Where", "Mod", "Equal",
    "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "And", "Or", "Xor", "BitShift",
})


def unary(w: Walker, node: onnx.NodeProto) -> None:
    cmap = w.maps.get(node.input[0])
    if cmap is not None:
        w.passthrough(node, cmap)


def elementwise(w: Walker, node: onnx.NodeProto) -> None:
    out = node.output[0]
    inputs = [name for name in node.input if name]
    mapped = [name for name in inputs if name in w.maps]
    if not mapped:
        return
    ranks = {name: w.rank(name) for name in inputs}
    if any(r is None for r in ranks.values()):
        w.unsupported(node, "input rank unknown")
        return
    out_rank = w.rank(out) or max(ranks.values())
    frame = [w.maps[name].shifted(out_rank - ranks[name]) for name in mapped]
    reference = max(frame, key=lambda m: m.ids.size)
    participants: list[ChannelMap] = []
    for name in inputs:
        offset = out_rank - ranks[name]
        dims = [w.dim(name, a - offset) if a >= offset else 1 for a in reference.axes]
        if w.view.constants.is_static(name):
            full = [d == reference.length(j) for j, d in enumerate(dims)]
            if any(d != 1 and not f for d, f in zip(dims, full, strict=True)):
                w.unsupported(node, f"constant '{name}' does not broadcast per channel")
                return
            if any(d != 1 for d in dims) and (not reference.single or not _fixed(w, name)):
                w.unsupported(node, f"'{name}' varies along a channel axis that cannot be sliced")
                return
            continue
        if all(d == 1 for d in dims) and reference.ids.size > 1:
            continue  # broadcast along the channels: ties nothing
        cmap = w.maps.get(name) if name in w.maps else (
            w.map(name, reference.axis - offset) if reference.single else None)
        shifted = None if cmap is None else cmap.shifted(offset)
        if shifted is None or shifted.axes != reference.axes or shifted.repeats != reference.repeats \
                or shifted.ids.shape != reference.ids.shape:
            w.unsupported(node, "its inputs' channels do not line up")
            return
        participants.append(shifted)
    if not participants:
        w.unsupported(node, "its inputs' channels do not line up")
        return
    for other in participants[1:]:
        w.tie(participants[0].ids, other.ids)
    w.set(out, participants[0])


def expand(w: Walker, node: onnx.NodeProto) -> None:
    cmap = w.maps.get(node.input[0])
    rank, out_rank = w.rank(node.input[0]), w.rank(node.output[0])
    if cmap is None:
        return
    if rank is None or out_rank is None:
        w.unsupported(node, "ranks unknown")
        return
    shifted = cmap.shifted(out_rank - rank)
    if any(w.dim(node.output[0], a) != shifted.length(j) for j, a in enumerate(shifted.axes)):
        w.unsupported(node, "expands a channel axis")
        return
    w.passthrough(node, shifted)


def _fixed(w: Walker, name: str) -> bool:
    """A constant, or a value computed from shapes that does not depend on the batch (a per-head bias gathered
    with token counts read from a dynamic-batch tensor): surgery slices it as the constant it is. With a
    symbolic batch, the value is computed again with the batch at 2 (`Walker.at_batch_two`); in a model of
    static shapes any such value is one."""
    if w.view.is_constant(name):
        return True
    value = w.view.static_value(name)
    if value is None or not w.view.representative_sizes:
        return value is not None  # a model of static shapes computes it the same at every run
    other = w.at_batch_two().static_value(name)
    return other is not None and other.shape == value.shape and bool(np.array_equal(other, value))


RULES = {**dict.fromkeys(UNARY_OPS, unary), **dict.fromkeys(ELEMENTWISE_OPS, elementwise), "Expand": expand}
