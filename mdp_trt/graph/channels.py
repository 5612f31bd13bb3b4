"""Channel propagation: which channel of which tensor is the same channel as which other.

Every tensor with a channel axis gets a `ChannelMap`: one channel id per position on that axis. Weighted
ops create fresh ids for their outputs; ops that act per channel pass ids through; ops that tie
channels of two tensors (Add, Mul, ...) union their ids; Concat and Split move them around. Anything
we cannot reason about freezes the channels it touches, with the op named in the reason, so an
unknown op can only make the analysis more conservative, never wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx

from mdp_trt.graph.unionfind import UnionFind
from mdp_trt.graph.view import GraphView, attributes

UNARY_OPS = frozenset({
    "Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu", "Celu",
    "Softplus", "Softsign", "Erf", "Gelu", "Mish", "ThresholdedRelu", "Identity", "Dropout", "Cast",
    "Abs", "Neg", "Exp", "Log", "Sqrt", "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Sin", "Cos",
    "Not", "IsNaN", "IsInf", "CastLike", "Shrink",
})
ELEMENTWISE_OPS = frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "PRelu"})
SPATIAL_OPS = frozenset({
    "MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool",
    "Resize", "Upsample", "Pad",
})
NORM_OPS = frozenset({"BatchNormalization", "InstanceNormalization"})
REDUCE_OPS = frozenset({
    "ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceProd", "ReduceL1", "ReduceL2",
    "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare",
})
SHAPE_READERS = frozenset({"Shape", "Size"})


@dataclass
class ChannelMap:
    """Channel ids of one tensor: `ids[i]` is the id of position i on `axis`.

    `repeat` > 1 means each channel spans `repeat` consecutive features on the axis (a Flatten of
    N,C,H,W gives repeat H*W), so the axis length is len(ids) * repeat.
    """

    ids: np.ndarray
    axis: int
    repeat: int = 1


@dataclass
class WeightedUse:
    """A weighted op whose input and output channel maps are known."""

    node: onnx.NodeProto
    input: str
    output: str
    depthwise: bool


@dataclass
class Propagation:
    """The outcome: maps per tensor, the union-find, frozen ids and their reasons, id origins."""

    maps: dict[str, ChannelMap]
    union: UnionFind
    frozen: dict[int, str]
    origin: dict[int, str]  # id -> weighted node that created it
    weighted: list[WeightedUse] = field(default_factory=list)


def propagate(view: GraphView) -> Propagation:
    """Walk the graph in order and assign, pass on, and couple channel ids."""
    walker = _Walker(view)
    for node in view.nodes:
        walker.visit(node)
    for name in view.graph_outputs:
        walker.freeze_tensor(name, "graph output")
    return Propagation(walker.maps, walker.union, walker.frozen, walker.origin, walker.weighted)


class _Walker:
    def __init__(self, view: GraphView) -> None:
        self.view = view
        self.union = UnionFind()
        self.maps: dict[str, ChannelMap] = {}
        self.frozen: dict[int, str] = {}
        self.origin: dict[int, str] = {}
        self.weighted: list[WeightedUse] = []
        self.rules: dict[str, Callable[[onnx.NodeProto], None]] = {
            "Conv": self._conv,
            "ConvTranspose": self._conv,
            "Gemm": self._gemm,
            "MatMul": self._matmul,
            "Concat": self._concat,
            "Split": self._split,
            "Flatten": self._flatten,
            "Reshape": self._reshape,
            "Squeeze": self._squeeze,
            "Unsqueeze": self._unsqueeze,
            "Transpose": self._transpose,
            "Slice": self._slice,
            "Softmax": self._softmax,
            "LogSoftmax": self._softmax,
        }

    # --- bookkeeping -----------------------------------------------------------------------------
    def fresh(self, count: int, origin: str | None = None, frozen: str | None = None) -> np.ndarray:
        ids = self.union.new(count)
        for i in ids.tolist():
            if origin is not None:
                self.origin[i] = origin
            if frozen is not None:
                self.frozen[i] = frozen
        return ids

    def freeze(self, cmap: ChannelMap | None, reason: str) -> None:
        if cmap is None:
            return
        for i in cmap.ids.tolist():
            self.frozen.setdefault(i, reason)

    def freeze_tensor(self, name: str, reason: str) -> None:
        self.freeze(self.maps.get(name), reason)

    def map(self, name: str, axis: int) -> ChannelMap | None:
        """The tensor's map; for a tensor nothing gave channels to, a frozen map on `axis`."""
        if name in self.maps:
            return self.maps[name]
        if not name or self.view.is_constant(name):
            return None
        shape = self.view.shape(name)
        if shape is None or not 0 <= axis < len(shape) or not isinstance(shape[axis], int):
            return None
        producer = self.view.producer.get(name)
        reason = (
            f"channels come from {producer.op_type} '{producer.name}', which is not analysed"
            if producer is not None
            else f"graph input '{name}'"
        )
        cmap = ChannelMap(self.fresh(int(shape[axis]), frozen=reason), axis)
        self.maps[name] = cmap
        return cmap

    def unsupported(self, node: onnx.NodeProto, why: str | None = None) -> None:
        reason = f"{node.op_type} '{node.name}'" + (f": {why}" if why else " is not supported for pruning")
        for name in node.input:
            self.freeze_tensor(name, reason)

    def passthrough(self, node: onnx.NodeProto, cmap: ChannelMap, axis: int | None = None) -> None:
        out = node.output[0]
        self.maps[out] = cmap if axis is None else ChannelMap(cmap.ids, axis, cmap.repeat)

    def _rank(self, name: str) -> int | None:
        return self.view.rank(name)

    def _dim(self, name: str, axis: int) -> int | str | None:
        shape = self.view.shape(name)
        return shape[axis] if shape is not None and 0 <= axis < len(shape) else None

    # --- dispatch --------------------------------------------------------------------------------
    def visit(self, node: onnx.NodeProto) -> None:
        for ref in self.view.subgraph_references(node):
            self.freeze_tensor(ref, f"read inside a subgraph of {node.op_type} '{node.name}'")
        if node.domain not in ("", "ai.onnx"):
            self.unsupported(node, f"custom-domain op '{node.domain}'")
            return
        op = node.op_type
        if op in self.rules:
            self.rules[op](node)
        elif op in UNARY_OPS or op in NORM_OPS:
            self._unary(node)
        elif op in ELEMENTWISE_OPS:
            self._elementwise(node)
        elif op in SPATIAL_OPS:
            self._spatial(node)
        elif op in REDUCE_OPS:
            self._reduce(node)
        elif op in SHAPE_READERS or op == "Constant":
            return
        else:
            self.unsupported(node)

    # --- weighted ops ----------------------------------------------------------------------------
    def _conv(self, node: onnx.NodeProto) -> None:
        weight = self.view.constant_shape(node.input[1]) if len(node.input) > 1 else None
        if weight is None or len(weight) < 3:
            self.unsupported(node, "weights are not a constant")
            return
        group = int(attributes(node).get("group", 1))
        if node.op_type == "Conv":
            c_in, c_out = weight[1] * group, weight[0]
        else:
            c_in, c_out = weight[0], weight[1] * group
        x = self.map(node.input[0], 1)
        out = node.output[0]
        if x is None or x.axis != 1 or x.repeat != 1 or len(x.ids) != c_in:
            reason = f"{node.op_type} '{node.name}': input channels could not be traced"
            self.freeze(x, reason)
            self.maps[out] = ChannelMap(self.fresh(c_out, frozen=reason), 1)
            return
        depthwise = group > 1 and group == c_in == c_out
        if group == 1:
            self.maps[out] = ChannelMap(self.fresh(c_out, origin=node.name), 1)
        elif depthwise:
            self.maps[out] = ChannelMap(x.ids, 1)
        else:
            reason = f"grouped {node.op_type} '{node.name}' (group={group}) is pruned only as a whole"
            if group == c_in:
                reason = f"depthwise {node.op_type} '{node.name}' with a channel multiplier"
            self.freeze(x, reason)
            self.maps[out] = ChannelMap(self.fresh(c_out, frozen=reason), 1)
            return
        self.weighted.append(WeightedUse(node, node.input[0], out, depthwise))

    def _gemm(self, node: onnx.NodeProto) -> None:
        attrs = attributes(node)
        weight = self.view.constant_shape(node.input[1])
        data_is_constant = self.view.is_constant(node.input[0])
        if weight is None or len(weight) != 2 or attrs.get("transA", 0) or data_is_constant:
            self.unsupported(node, "only Gemm with a constant B and untransposed A is pruned")
            return
        k, n = weight[::-1] if attrs.get("transB", 0) else weight
        self._linear(node, 1, int(k), int(n))

    def _matmul(self, node: onnx.NodeProto) -> None:
        weight = self.view.constant_shape(node.input[1])
        rank = self._rank(node.input[0])
        if weight is None or len(weight) != 2 or not rank or rank < 2 or self.view.is_constant(node.input[0]):
            self.unsupported(node, "only MatMul of a tensor by a constant 2-D weight is pruned")
            return
        self._linear(node, rank - 1, weight[0], weight[1])

    def _linear(self, node: onnx.NodeProto, axis: int, k: int, n: int) -> None:
        x = self.map(node.input[0], axis)
        out = node.output[0]
        if x is None or x.axis != axis or len(x.ids) * x.repeat != k:
            reason = f"{node.op_type} '{node.name}': input features could not be traced to channels"
            self.freeze(x, reason)
            self.maps[out] = ChannelMap(self.fresh(n, frozen=reason), axis)
            return
        self.maps[out] = ChannelMap(self.fresh(n, origin=node.name), axis)
        self.weighted.append(WeightedUse(node, node.input[0], out, False))

    # --- per-channel ops -------------------------------------------------------------------------
    def _unary(self, node: onnx.NodeProto) -> None:
        cmap = self.maps.get(node.input[0])
        if cmap is None:
            return
        if node.op_type in NORM_OPS and cmap.axis != 1:
            self.unsupported(node, "normalises an axis other than the channel axis")
            return
        self.passthrough(node, cmap)

    def _spatial(self, node: onnx.NodeProto) -> None:
        cmap = self.maps.get(node.input[0])
        if cmap is None:
            return
        if cmap.axis != 1 or cmap.repeat != 1:
            self.unsupported(node, "acts on the channel axis")
            return
        rank = self._rank(node.input[0])
        if node.op_type in ("Resize", "Upsample", "Pad") and not self._keeps_channels(node, rank):
            self.unsupported(node, "changes the channel axis")
            return
        self.passthrough(node, cmap)

    def _keeps_channels(self, node: onnx.NodeProto, rank: int | None) -> bool:
        """Resize/Upsample/Pad must leave the channel axis (1) alone."""
        in_dim, out_dim = self._dim(node.input[0], 1), self._dim(node.output[0], 1)
        if isinstance(in_dim, int) and isinstance(out_dim, int):
            return in_dim == out_dim
        if node.op_type == "Pad":
            pads = attributes(node).get("pads")
            if pads is None and len(node.input) > 1:
                value = self.view.constant(node.input[1])
                pads = None if value is None else value.tolist()
            return pads is not None and rank is not None and pads[1] == 0 and pads[1 + rank] == 0
        if node.op_type == "Resize" and self.view.opset >= 11:
            scales_at, sizes_at = 2, 3
        else:
            scales_at, sizes_at = 1, None
        for index, expected in ((scales_at, 1.0), (sizes_at, in_dim)):
            if index is not None and len(node.input) > index and node.input[index]:
                value = self.view.constant(node.input[index])
                if value is not None and value.size > 1:
                    return expected is not None and float(value.reshape(-1)[1]) == float(expected)
        return False

    def _softmax(self, node: onnx.NodeProto) -> None:
        cmap = self.maps.get(node.input[0])
        rank = self._rank(node.input[0])
        if cmap is None or rank is None:
            return
        default = -1 if self.view.opset >= 13 else 1
        axis = int(attributes(node).get("axis", default)) % rank
        mixes = axis == cmap.axis if self.view.opset >= 13 else axis <= cmap.axis
        if mixes:
            self.unsupported(node, "normalises over the channel axis")
            return
        self.passthrough(node, cmap)

    def _reduce(self, node: onnx.NodeProto) -> None:
        cmap = self.maps.get(node.input[0])
        rank = self._rank(node.input[0])
        if cmap is None:
            return
        attrs = attributes(node)
        axes = attrs.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            value = self.view.constant(node.input[1])
            if value is None:
                self.unsupported(node, "reduction axes are not constant")
                return
            axes = value.tolist()
        if rank is None:
            self.unsupported(node, "input rank unknown")
            return
        reduced = sorted({int(a) % rank for a in axes}) if axes else []
        if not reduced and not attrs.get("noop_with_empty_axes", 0):
            reduced = list(range(rank))
        if cmap.axis in reduced:
            self.unsupported(node, "reduces over the channel axis")
            return
        keep = int(attrs.get("keepdims", 1))
        axis = cmap.axis if keep else cmap.axis - sum(1 for a in reduced if a < cmap.axis)
        self.passthrough(node, cmap, axis)

    # --- coupling --------------------------------------------------------------------------------
    def _elementwise(self, node: onnx.NodeProto) -> None:
        out = node.output[0]
        inputs = [name for name in node.input if name]
        mapped = [(name, self.maps[name]) for name in inputs if name in self.maps]
        if not mapped:
            return
        out_rank = self._rank(out) or max((self._rank(n) or 0) for n in inputs)
        first_name, first = mapped[0]
        first_rank = self._rank(first_name)
        if first_rank is None:
            self.unsupported(node, "input rank unknown")
            return
        frame_axis = first.axis + out_rank - first_rank
        width = max(len(cmap.ids) for _, cmap in mapped)
        features = width * first.repeat
        participants: list[ChannelMap] = []
        for name in inputs:
            rank = self._rank(name)
            if rank is None:
                self.unsupported(node, f"rank of '{name}' unknown")
                return
            axis = frame_axis - (out_rank - rank)
            if self.view.is_constant(name):
                size = self.view.constant_shape(name)[axis] if axis >= 0 else 1
                if size not in (1, features):
                    self.unsupported(node, f"constant '{name}' does not broadcast per channel")
                    return
                continue
            dim = self._dim(name, axis) if axis >= 0 else 1
            if dim == 1 and width > 1:
                continue  # broadcast along channels: does not tie channels together
            cmap = self.map(name, axis)
            if cmap is None or cmap.axis != axis or cmap.repeat != first.repeat or len(cmap.ids) != width:
                self.unsupported(node, "its inputs' channels do not line up")
                return
            participants.append(cmap)
        if not participants:
            self.unsupported(node, "its inputs' channels do not line up")
            return
        for other in participants[1:]:
            self.union.union(participants[0].ids, other.ids)
        self.maps[out] = ChannelMap(participants[0].ids, frame_axis, first.repeat)

    def _concat(self, node: onnx.NodeProto) -> None:
        rank = self._rank(node.output[0])
        if rank is None:
            self.unsupported(node, "output rank unknown")
            return
        axis = int(attributes(node).get("axis", 1)) % rank
        inputs = [name for name in node.input if name]
        traced = [self.maps[name] for name in inputs if name in self.maps]
        if not traced:
            return
        channel_axis = traced[0].axis
        maps = [self.map(name, channel_axis) for name in inputs]
        known = [m for m in maps if m is not None]
        if any(m is None or m.axis != channel_axis or m.repeat != known[0].repeat for m in maps):
            self.unsupported(node, "joins tensors whose channels cannot be traced")
            return
        if axis == channel_axis:
            ids = np.concatenate([m.ids for m in known])
            self.maps[node.output[0]] = ChannelMap(ids, channel_axis, known[0].repeat)
            return
        if any(len(m.ids) != len(known[0].ids) for m in known):
            self.unsupported(node, "joins tensors of different widths")
            return
        for other in known[1:]:
            self.union.union(known[0].ids, other.ids)
        self.passthrough(node, known[0])

    def _split(self, node: onnx.NodeProto) -> None:
        cmap = self.maps.get(node.input[0])
        rank = self._rank(node.input[0])
        if cmap is None or rank is None:
            return
        attrs = attributes(node)
        axis = int(attrs.get("axis", 0)) % rank
        outputs = list(node.output)
        if axis != cmap.axis:
            for out in outputs:
                self.maps[out] = cmap
            return
        sizes = split_sizes(self.view, node, len(cmap.ids) * cmap.repeat)
        if sizes is None or cmap.repeat != 1:
            self.unsupported(node, "split sizes on the channel axis are not constant")
            return
        offset = 0
        for out, size in zip(outputs, sizes, strict=True):
            if out:
                self.maps[out] = ChannelMap(cmap.ids[offset:offset + size], axis)
            offset += size

    def _slice(self, node: onnx.NodeProto) -> None:
        cmap = self.maps.get(node.input[0])
        rank = self._rank(node.input[0])
        if cmap is None or rank is None:
            return
        axes_value = self.view.constant(node.input[3]) if len(node.input) > 3 and node.input[3] else None
        if self.view.opset < 10:
            axes = attributes(node).get("axes")
        else:
            axes = axes_value.tolist() if axes_value is not None else None
        if axes is None:
            starts = self.view.constant(node.input[1]) if self.view.opset >= 10 else None
            count = len(attributes(node).get("starts", [])) if self.view.opset < 10 else (
                None if starts is None else starts.size)
            axes = list(range(count)) if count is not None else None
        if axes is None or cmap.axis in {int(a) % rank for a in axes}:
            self.unsupported(node, "slices the channel axis")
            return
        self.passthrough(node, cmap)

    # --- layout ops ------------------------------------------------------------------------------
    def _flatten(self, node: onnx.NodeProto) -> None:
        cmap = self.maps.get(node.input[0])
        shape = self.view.shape(node.input[0])
        if cmap is None:
            return
        if shape is None:
            self.unsupported(node, "input shape unknown")
            return
        axis = int(attributes(node).get("axis", 1)) % max(len(shape), 1)
        leading = shape[axis:cmap.axis] if axis > 0 else shape[:cmap.axis]
        if axis > cmap.axis or any(d != 1 for d in leading):
            self.unsupported(node, "flattens the channel axis together with a leading axis")
            return
        trailing = _product(shape[cmap.axis + 1:])
        if trailing is None:
            self.unsupported(node, "spatial size unknown")
            return
        self.maps[node.output[0]] = ChannelMap(cmap.ids, 1, cmap.repeat * trailing)

    def _reshape(self, node: onnx.NodeProto) -> None:
        cmap = self.maps.get(node.input[0])
        if cmap is None:
            return
        mapped = reshape_channel_axis(self.view.shape(node.input[0]), self.view.shape(node.output[0]),
                                      cmap.axis)
        if mapped is None:
            self.unsupported(node, "reshapes the channel axis")
            return
        if not self.view.is_constant(node.input[1]):
            self.unsupported(node, "target shape is computed at run time")
            return
        new_axis, factor = mapped
        self.maps[node.output[0]] = ChannelMap(cmap.ids, new_axis, cmap.repeat * factor)

    def _squeeze(self, node: onnx.NodeProto) -> None:
        self._reaxis(node, squeeze=True)

    def _unsqueeze(self, node: onnx.NodeProto) -> None:
        self._reaxis(node, squeeze=False)

    def _reaxis(self, node: onnx.NodeProto, squeeze: bool) -> None:
        cmap = self.maps.get(node.input[0])
        if cmap is None:
            return
        axes = attributes(node).get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            value = self.view.constant(node.input[1])
            axes = None if value is None else value.tolist()
        in_rank, out_rank = self._rank(node.input[0]), self._rank(node.output[0])
        if axes is None or in_rank is None or out_rank is None:
            self.unsupported(node, "axes or ranks unknown")
            return
        if squeeze:
            removed = {int(a) % in_rank for a in axes}
            if cmap.axis in removed:
                self.unsupported(node, "removes the channel axis")
                return
            axis = cmap.axis - sum(1 for a in removed if a < cmap.axis)
        else:
            inserted = sorted(int(a) % out_rank for a in axes)
            axis = cmap.axis
            for a in inserted:
                if a <= axis:
                    axis += 1
        self.passthrough(node, cmap, axis)

    def _transpose(self, node: onnx.NodeProto) -> None:
        cmap = self.maps.get(node.input[0])
        rank = self._rank(node.input[0])
        if cmap is None or rank is None:
            return
        perm = attributes(node).get("perm") or list(range(rank))[::-1]
        if cmap.repeat != 1:
            self.unsupported(node, "moves flattened channel features")
            return
        self.passthrough(node, cmap, list(perm).index(cmap.axis))


def split_sizes(view: GraphView, node: onnx.NodeProto, length: int) -> list[int] | None:
    """Sizes of a Split's outputs along its axis (attribute, input, num_outputs, or equal parts)."""
    attrs = attributes(node)
    if "split" in attrs:
        return [int(s) for s in attrs["split"]]  # type: ignore[union-attr]
    if len(node.input) > 1 and node.input[1]:
        value = view.constant(node.input[1])
        return None if value is None else [int(s) for s in value.tolist()]
    parts = int(attrs.get("num_outputs", len(node.output)))
    chunk = -(-length // parts)
    sizes = [chunk] * (parts - 1)
    return [*sizes, length - chunk * (parts - 1)]


def reshape_channel_axis(in_shape, out_shape, axis: int) -> tuple[int, int] | None:
    """Where the channel axis lands after a Reshape, and how many features each channel spans.

    Accepts reshapes that keep everything before the channel axis and either keep the channel axis
    (inserting/removing unit axes) or merge it with the axes right after it (N,C,H,W -> N,C*H*W).
    """
    if in_shape is None or out_shape is None or axis >= len(in_shape):
        return None
    in_shape, out_shape = list(in_shape), list(out_shape)
    prefix_in = [d for d in in_shape[:axis] if d != 1]
    for new_axis in range(len(out_shape)):
        prefix_out = [d for d in out_shape[:new_axis] if d != 1]
        if prefix_out != prefix_in:
            continue
        target = out_shape[new_axis]
        if not isinstance(target, int) or not isinstance(in_shape[axis], int) or target % in_shape[axis]:
            continue
        factor, end = 1, axis + 1
        while factor * in_shape[axis] < target and end < len(in_shape) and isinstance(in_shape[end], int):
            factor *= in_shape[end]
            end += 1
        if factor * in_shape[axis] != target:
            continue
        rest_in = [d for d in in_shape[end:] if d != 1]
        rest_out = [d for d in out_shape[new_axis + 1:] if d != 1]
        if rest_in == rest_out:
            return new_axis, factor
    return None


def _product(dims) -> int | None:
    total = 1
    for d in dims:
        if not isinstance(d, int):
            return None
        total *= d
    return total
