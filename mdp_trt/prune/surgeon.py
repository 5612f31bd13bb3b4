"""The per-node half of surgery: every node slices the constants it holds along the axes that carry channels.

What each op rewrites (the analysis rules in `mdp_trt.graph.rules` decide which ops may carry channels):
weights on both axes (grouped weights per part), biases, BatchNorm/InstanceNorm/LayerNorm/GroupNorm
parameters, per-channel constants of elementwise ops, Split sizes, Slice bounds and Gather indices
on the channel axis, Reshape targets (both axes of a split channel axis), Resize sizes and Expand
shapes. Bounds that the exporter computed from `Shape(x)` become constants of the pruned model, and so do
the scalars analysis pinned (a softmax temperature read from a head width).
"""

from __future__ import annotations

import numpy as np
import onnx

from mdp_trt.graph.rules.elementwise import ELEMENTWISE_OPS
from mdp_trt.graph.rules.select import channel_constant, slice_bounds, split_sizes
from mdp_trt.graph.structure import Pinned, Structure, TensorChannels
from mdp_trt.graph.view import GraphView, attributes
from mdp_trt.prune.constants import ConstantEditor
from mdp_trt.prune.grouped import slice_grouped
from mdp_trt.prune.positions import features


class Surgeon:
    def __init__(self, view: GraphView, structure: Structure, kept: dict[str, np.ndarray],
                 editor: ConstantEditor) -> None:
        self.view = view
        self.structure = structure
        self.kept = kept
        self.editor = editor
        self.channel_targets = set(structure.channel_targets)
        self.inserted: list[tuple[str, onnx.NodeProto]] = []  # (before node, new node), for the caller to place
        self.pins: dict[str, list[Pinned]] = {}
        for pin in structure.pinned:
            self.pins.setdefault(pin.node, []).append(pin)
        self.handlers = {
            "Conv": self._conv, "ConvTranspose": self._conv, "Gemm": self._linear, "MatMul": self._linear,
            "BatchNormalization": self._batch_norm, "InstanceNormalization": self._instance_norm,
            "LayerNormalization": self._layer_norm, "GroupNormalization": self._group_norm,
            "Concat": self._concat, "Split": self._split, "Slice": self._slice, "Gather": self._gather,
            "Reshape": self._reshape, "Resize": self._resize, "Expand": self._expand,
            **dict.fromkeys(ELEMENTWISE_OPS, self._elementwise),
        }

    def slice(self, node: onnx.NodeProto) -> None:
        for pin in self.pins.get(node.name, ()):
            self.write(node, list(node.input).index(pin.input), pin.value)
        handler = self.handlers.get(node.op_type)
        if handler is not None and node.domain in ("", "ai.onnx"):
            handler(node)

    # --- helpers ---------------------------------------------------------------------------------
    def channels(self, tensor: str) -> TensorChannels | None:
        return self.structure.channels.get(tensor)

    def feature_keep(self, tensor: str) -> np.ndarray | None:
        """Kept feature indices along a one-channel-axis tensor's channel axis; None when it keeps all."""
        positions = self.kept.get(tensor)
        tc = self.channels(tensor)
        if positions is None or tc is None or not tc.single:
            return None
        return features(positions, tc.repeat)

    def width(self, tensor: str) -> int:
        tc = self.structure.channels[tensor]
        return len(tc.group) * tc.repeat

    def take(self, node: onnx.NodeProto, index: int, keep: np.ndarray | None, axis: int) -> None:
        if keep is None:
            return
        value = self.editor.get(node, index)
        if value is not None:
            self.editor.set(node, index, np.take(value, keep, axis=axis))

    def write(self, node: onnx.NodeProto, index: int, value: np.ndarray) -> None:
        """Replace input `index` with a constant (a new one when the input was computed)."""
        if len(node.input) > index and node.input[index]:
            if self.view.is_constant(node.input[index]):
                self.editor.set(node, index, value)
                return
            node.input[index] = self.editor.add(f"{node.name}.input{index}", value)
            return
        while len(node.input) < index:
            node.input.append("")
        node.input.append(self.editor.add(f"{node.name}.input{index}", value))

    # --- weighted ops ----------------------------------------------------------------------------
    def _conv(self, node: onnx.NodeProto) -> None:
        if node.input[0] not in self.structure.channels:
            return
        keep_in, keep_out = self.feature_keep(node.input[0]), self.feature_keep(node.output[0])
        group = int(attributes(node).get("group", 1))
        transposed = node.op_type == "ConvTranspose"
        weight = self.editor.get(node, 1)
        c_in = weight.shape[0] if transposed else weight.shape[1] * group
        if group > 1 and group == c_in:  # depthwise: whole filters follow their input channel
            if keep_in is not None:
                self.take(node, 1, keep_in if transposed else keep_out, 0)
                _set_int_attribute(node, "group", len(keep_in))
        elif group > 1 and (keep_in is not None or keep_out is not None):
            in_all = np.arange(self.width(node.input[0]))
            out_all = np.arange(self.width(node.output[0]))
            keep_in = in_all if keep_in is None else keep_in
            keep_out = out_all if keep_out is None else keep_out
            rows, cols, total = (keep_in, keep_out, len(out_all)) if transposed else (keep_out, keep_in, len(in_all))
            self.editor.set(node, 1, slice_grouped(weight, rows, cols, total, group))
        elif transposed:
            self.take(node, 1, keep_in, 0)
            self.take(node, 1, keep_out, 1)
        else:
            self.take(node, 1, keep_out, 0)
            self.take(node, 1, keep_in, 1)
        self.take(node, 2, keep_out, 0)

    def _linear(self, node: onnx.NodeProto) -> None:
        if node.input[0] not in self.structure.channels or node.output[0] not in self.structure.channels:
            return
        keep_in, keep_out = self.feature_keep(node.input[0]), self.feature_keep(node.output[0])
        transposed = node.op_type == "Gemm" and bool(attributes(node).get("transB", 0))
        self.take(node, 1, keep_in, 1 if transposed else 0)
        self.take(node, 1, keep_out, 0 if transposed else 1)
        if node.op_type == "Gemm" and len(node.input) > 2 and keep_out is not None:
            bias = self.editor.get(node, 2)
            if bias is not None and bias.ndim >= 1 and bias.shape[-1] > 1:
                self.take(node, 2, keep_out, bias.ndim - 1)

    # --- normalisations --------------------------------------------------------------------------
    def _on_axis_one(self, tensor: str) -> np.ndarray | None:
        tc = self.channels(tensor)
        return self.feature_keep(tensor) if tc is not None and tc.single and tc.axis == 1 else None

    def _batch_norm(self, node: onnx.NodeProto) -> None:
        keep = self._on_axis_one(node.input[0])
        for index in range(1, 5):
            self.take(node, index, keep, 0)

    def _instance_norm(self, node: onnx.NodeProto) -> None:
        keep = self._on_axis_one(node.input[0])  # a reshaped GroupNorm keeps its groups: nothing to cut
        for index in (1, 2):
            self.take(node, index, keep, 0)

    def _group_norm(self, node: onnx.NodeProto) -> None:
        keep = self._on_axis_one(node.input[0])
        if keep is None:
            return
        for index in (1, 2):  # per channel since opset 21; per group (nothing to cut) before
            value = self.editor.get(node, index)
            if value is not None and value.shape == (self.width(node.input[0]),):
                self.take(node, index, keep, 0)

    def _layer_norm(self, node: onnx.NodeProto) -> None:
        self._per_channel_constants(node, node.input[0], (1, 2))

    def _elementwise(self, node: onnx.NodeProto) -> None:
        self._per_channel_constants(node, node.output[0], range(len(node.input)))

    def _per_channel_constants(self, node: onnx.NodeProto, reference: str, indices) -> None:
        """Slice constants that broadcast against `reference` and vary along its channel axis."""
        keep = self.feature_keep(reference)
        rank = self.view.rank(reference)
        if keep is None or rank is None:
            return
        tc = self.structure.channels[reference]
        width = self.width(reference)
        for index in indices:
            value = self.editor.get(node, index)
            computed = value is None and index < len(node.input) and self.view.constants.is_static(node.input[index])
            if computed:  # computed from shapes, and checked not to depend on the batch (`rules.elementwise`)
                value = self.view.static_value(node.input[index])
            if value is None:
                continue
            axis = tc.axis - (rank - value.ndim)
            if axis >= 0 and value.shape[axis] == width and width > 1:
                if computed:
                    self.write(node, index, np.take(value, keep, axis=axis))
                else:
                    self.take(node, index, keep, axis)

    # --- joins, cuts and layout ------------------------------------------------------------------
    def _concat(self, node: onnx.NodeProto) -> None:
        """Constants joined to channels along another axis (a class token) lose the pruned channels."""
        out = node.output[0]
        keep, tc, rank = self.feature_keep(out), self.channels(out), self.view.rank(out)
        if keep is None or rank is None or int(attributes(node).get("axis", 1)) % rank == tc.axis:
            return
        for index, name in enumerate(node.input):
            if not name or name in self.structure.channels:
                continue
            found = channel_constant(self.view, name, tc.axis, rank, self.width(out))
            if found is None:
                continue
            tensor, axis = found
            holder = node if tensor == name else self.view.producer[name]
            self.take(holder, index if tensor == name else 0, keep, axis)

    def _split(self, node: onnx.NodeProto) -> None:
        source = node.input[0]
        tc = self.channels(source)
        if source not in self.kept:
            return
        rank = self.view.rank(source)
        axis = int(attributes(node).get("axis", 0)) % (rank or 1)
        if tc.single and axis == tc.axis:
            old, kept = split_sizes(self.view, node, len(tc.group) * tc.repeat), self.kept[source]
        elif not tc.single and axis == tc.axes[1]:  # each head's row cut alike: count along the first row
            rows, columns = np.unravel_index(self.kept[source], tc.shape)
            old, kept = split_sizes(self.view, node, tc.shape[1]), columns[rows == rows.min()]
        else:
            return
        kept = set(kept.tolist())
        sizes, offset = [], 0
        for size in old or []:
            sizes.append(sum(1 for p in range(offset, offset + size) if p in kept))
            offset += size
        for attr in list(node.attribute):
            if attr.name in ("split", "num_outputs"):
                node.attribute.remove(attr)
        if self.view.opset < 13:
            node.attribute.append(onnx.helper.make_attribute("split", sizes))
        else:
            self.write(node, 1, np.asarray(sizes, dtype=np.int64))

    def _slice(self, node: onnx.NodeProto) -> None:
        source = node.input[0]
        tc = self.channels(source)
        if source not in self.kept or not tc.single:
            return
        bounds = slice_bounds(self.view, node, self.view.rank(source))
        cut = [b for b in bounds or [] if b[0] == tc.axis and (b[1], b[2], b[3]) != (0, self.width(source), 1)]
        if not cut:
            return
        kept = features(self.kept[source], tc.repeat)
        axis, start, end, _ = cut[0]
        new_start, new_end = int(np.searchsorted(kept, start)), int(np.searchsorted(kept, end))
        if self.view.opset < 10:
            for attr in list(node.attribute):
                if attr.name in ("starts", "ends", "axes"):
                    node.attribute.remove(attr)
            node.attribute.extend([onnx.helper.make_attribute("starts", [new_start]),
                                   onnx.helper.make_attribute("ends", [new_end]),
                                   onnx.helper.make_attribute("axes", [axis])])
            return
        for index, value in ((1, new_start), (2, new_end), (3, axis), (4, 1)):
            if index <= 3 or (len(node.input) > index and node.input[index]):
                self.write(node, index, np.asarray([value], dtype=np.int64))

    def _gather(self, node: onnx.NodeProto) -> None:
        source, out = node.input[0], node.output[0]
        tc = self.channels(source)
        pruned = source in self.kept or out in self.kept
        if tc is None or not tc.single or self.channels(out) is None or not pruned:
            return
        axis = int(attributes(node).get("axis", 0)) % (self.view.rank(source) or 1)
        if axis != tc.axis:
            return
        indices = np.asarray(self.view.static_value(node.input[1]), dtype=np.int64).reshape(-1) % self.width(source)
        kept_in = self.kept.get(source, np.arange(self.width(source)))
        kept_out = self.kept.get(out, np.arange(len(indices)))
        self.write(node, 1, np.searchsorted(kept_in, indices[kept_out]).astype(np.int64))

    def _reshape(self, node: onnx.NodeProto) -> None:
        out = node.output[0]
        if node.name in self.channel_targets:
            self._channel_target(node)
            return
        positions = self.kept.get(out)
        shape = self.editor.get(node, 1)
        if positions is None or shape is None:
            return
        shape = shape.copy()
        for axis, count in _kept_extents(self.structure.channels[out], positions).items():
            if axis < shape.size and shape[axis] > 0:
                shape[axis] = count
        self.editor.set(node, 1, shape)

    def _channel_target(self, node: onnx.NodeProto) -> None:
        """A computed target gets the pruned extents on the output's channel axes, its other entries as
        computed: `Where(on_channel_axis, extents, target)`, placed before the Reshape (`inserted`).

        A factored map's rows (heads) stay computed: `nn.MultiheadAttention` sizes them `B * H` from a dynamic
        batch. Where heads are removed, that entry becomes `entry / H * h` (B * h), which is h where it was H
        (an entry -1 is left to infer it)."""
        out = node.output[0]
        tc = self.structure.channels[out]
        extents = _kept_extents(tc, self.kept.get(out, np.arange(len(tc.group))))
        rank = self.view.rank(out)
        on_axis, values = np.zeros(rank, dtype=bool), np.zeros(rank, dtype=np.int64)
        full, kept = np.ones(rank, dtype=np.int64), np.ones(rank, dtype=np.int64)
        inferred = self.view.static_value(node.input[1])  # as analysed: an entry -1 stays -1 at any batch
        for axis, count in extents.items():
            if tc.single or axis != tc.axes[0]:
                on_axis[axis], values[axis] = True, count
            elif inferred is None or inferred[axis] > 0:
                full[axis], kept[axis] = tc.shape[0] * tc.repeats[0], count
        target, computed = f"{node.name}.channel_target", node.input[1]
        if (kept < full).any():
            rows, per_head = f"{node.name}.heads_target", f"{node.name}.per_head"
            heads, kept_heads = self.editor.add(f"{node.name}.heads", full), self.editor.add(f"{node.name}.kept", kept)
            self.inserted += [
                (node.name, onnx.helper.make_node("Div", [computed, heads], [per_head], name=per_head)),
                (node.name, onnx.helper.make_node("Mul", [per_head, kept_heads], [rows], name=rows)),
            ]
            computed = rows
        self.inserted.append((node.name, onnx.helper.make_node(
            "Where", [self.editor.add(f"{node.name}.on_channel_axis", on_axis),
                      self.editor.add(f"{node.name}.extents", values), computed], [target], name=target)))
        node.input[1] = target

    def _resize(self, node: onnx.NodeProto) -> None:
        keep = self._on_axis_one(node.input[0])
        index = 3 if self.view.opset >= 11 else None
        if keep is None or index is None or len(node.input) <= index or not node.input[index]:
            return
        sizes = self.editor.get(node, index)
        if sizes is not None and sizes.size > 1:
            sizes = sizes.copy()
            sizes[1] = len(keep)
            self.editor.set(node, index, sizes)

    def _expand(self, node: onnx.NodeProto) -> None:
        out = node.output[0]
        tc = self.channels(out)
        shape = self.editor.get(node, 1)
        if out not in self.kept or tc is None or shape is None:
            return
        shape = shape.copy()
        offset = (self.view.rank(out) or shape.size) - shape.size
        for axis in tc.axes:
            if 0 <= axis - offset < shape.size:
                shape[axis - offset] = 1  # broadcasting keeps the input's (pruned) extent
        self.editor.set(node, 1, shape)


def _kept_extents(tc: TensorChannels, positions: np.ndarray) -> dict[int, int]:
    """Tensor axis -> pruned extent, for each channel axis of a tensor under the kept positions."""
    if tc.single:
        return {tc.axis: len(positions) * tc.repeat}
    rows = np.unravel_index(positions, tc.shape)[0]
    kept_rows = len(np.unique(rows))
    return {tc.axes[0]: kept_rows * tc.repeats[0], tc.axes[1]: len(positions) // kept_rows * tc.repeats[1]}


def _set_int_attribute(node: onnx.NodeProto, name: str, value: int) -> None:
    for attr in node.attribute:
        if attr.name == name:
            attr.i = value
            return
    node.attribute.append(onnx.helper.make_attribute(name, value))
