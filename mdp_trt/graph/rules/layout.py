"""Layout ops: Reshape, Flatten, Squeeze, Unsqueeze and Transpose move channels between axes.

Patterns covered (see `channelmap.reshape_map` for the algebra):
* `Flatten`/`view(b, -1)` before a classifier (channels spanning H*W features each), YOLO's
  `view(b, no, -1)` (spatial axes merged, channels kept), unit axes added or removed;
* channel shuffle `view(b, g, c/g, h, w) -> transpose(1, 2) -> view(b, c, h, w)` and its inverse:
  the split gives two channel axes; the transpose that swaps them makes the pruned model keep the
  same channels in every one of the g rows (a product of the two axes), so the shuffle stays a
  reshape of the pruned tensor;
* GroupNorm as the TorchScript exporter writes it: `Reshape(x, [0, G, -1])`, InstanceNorm,
  `Reshape(., Shape(x))`: the groups stay, and each keeps the same number of channels;
* DFL heads (`view(b, 4, reg_max, a).transpose(2, 1)`) and NHWC permutes of channels-last stretches.

A Reshape's target must be a constant (surgery rewrites it), or adapt by itself: `Shape(t)` of a
tensor with the output's channels, -1 on every channel axis, or entries computed from the channel
count (`x.view(b, g, c // g, h, w)` with a dynamic batch reads `c` from `x.size(1)`).
"""

from __future__ import annotations

import numpy as np
import onnx

from mdp_trt.graph.channelmap import ChannelMap, reshape_map
from mdp_trt.graph.channels import Walker
from mdp_trt.graph.constants import ConstantResolver
from mdp_trt.graph.view import attributes


def reshape(w: Walker, node: onnx.NodeProto) -> None:
    cmap = w.maps.get(node.input[0])
    if cmap is None:
        return
    mapped = reshape_map(w.shape(node.input[0]), w.shape(node.output[0]), cmap)
    if mapped is None:
        w.unsupported(node, "reshapes the channel axis")
        return
    if not w.view.is_constant(node.input[1]) and not _target_adapts(w, node, mapped):
        # Traced, but the pruned model could not be given its target: these channels stay.
        w.freeze(cmap, f"Reshape '{node.name}': its target shape is computed at run time from more than the "
                 "channel count")
    _set_reshaped(w, node, cmap, mapped)


def flatten(w: Walker, node: onnx.NodeProto) -> None:
    _reshape_like(w, node)


def squeeze(w: Walker, node: onnx.NodeProto) -> None:
    _reshape_like(w, node)


def unsqueeze(w: Walker, node: onnx.NodeProto) -> None:
    _reshape_like(w, node)


def transpose(w: Walker, node: onnx.NodeProto) -> None:
    cmap = w.maps.get(node.input[0])
    rank = w.rank(node.input[0])
    if cmap is None:
        return
    if rank is None:
        w.unsupported(node, "input rank unknown")
        return
    perm = [int(p) for p in attributes(node).get("perm") or list(range(rank))[::-1]]  # type: ignore[union-attr]
    moved, reordered = cmap.moved(tuple(perm.index(a) for a in cmap.axes))
    if reordered:
        # The pruned tensor stays a transpose of the pruned input only if every row keeps the same
        # channels: tie each row to the first.
        for row in cmap.ids[1:]:
            w.tie(cmap.ids[0], row)
    w.passthrough(node, moved)


def _reshape_like(w: Walker, node: onnx.NodeProto) -> None:
    """Flatten, Squeeze, Unsqueeze: reshapes whose output shape inference already knows."""
    cmap = w.maps.get(node.input[0])
    if cmap is None:
        return
    mapped = reshape_map(w.shape(node.input[0]), w.shape(node.output[0]), cmap)
    if mapped is None:
        w.unsupported(node, "moves the channel axis in a way that cannot be traced")
        return
    _set_reshaped(w, node, cmap, mapped)


def _set_reshaped(w: Walker, node: onnx.NodeProto, cmap: ChannelMap, mapped: ChannelMap) -> None:
    if not mapped.single and cmap.single:
        w.keep_parts_equal(mapped.ids, node)
    w.passthrough(node, mapped)


def _target_adapts(w: Walker, node: onnx.NodeProto, mapped: ChannelMap) -> bool:
    """A computed target that gives the right shape in the pruned model without being rewritten.

    Either it is `Shape(t)` of a tensor with the output's channels, or it follows the channel count:
    evaluated again with the channels of the reshaped tensor doubled (on every tensor that carries
    them: `x.view(b, g, c // g, h, w)` reads `c` from `x.size(1)`), each channel axis of the target is
    -1 or doubles with them (a reshape's leading factor, GroupNorm's groups, stays).
    """
    target = node.input[1]
    producer = w.view.producer.get(target)
    if producer is not None and producer.op_type == "Shape" and not producer.attribute:
        source = w.maps.get(producer.input[0])
        if source is not None and source.axes == mapped.axes and source.repeats == mapped.repeats \
                and np.array_equal(source.ids, mapped.ids):
            return True
    value = w.view.static_value(target)
    if value is None or any(a >= value.size for a in mapped.axes):
        return False
    doubled = _with_channels_doubled(w, w.maps[node.input[0]]).static_value(target)
    if doubled is None or doubled.shape != value.shape:
        return False
    fixed_rows = () if mapped.single else (mapped.axes[0],)
    return all(int(value[a]) == int(doubled[a]) == -1
               or int(doubled[a]) == int(value[a]) * (1 if a in fixed_rows else 2) for a in mapped.axes)


def _with_channels_doubled(w: Walker, cmap: ChannelMap) -> ConstantResolver:
    """Static values as they would be with twice the channels on every tensor that carries `cmap`'s."""
    shapes = dict(w.view.shapes)
    for name, other in w.maps.items():
        if name in shapes and other.single and cmap.single and np.array_equal(other.flat, cmap.flat):
            shape = list(shapes[name])
            if isinstance(shape[other.axis], int):
                shape[other.axis] *= 2
                shapes[name] = tuple(shape)
    view = w.view
    return ConstantResolver(view.nodes, view.initializers, shapes, view.model.opset_import, view.model.ir_version)


RULES = {"Reshape": reshape, "Flatten": flatten, "Squeeze": squeeze, "Unsqueeze": unsqueeze, "Transpose": transpose}
