"""Normalisations and reductions: per-channel ones pass channels through; over channels they reduce them.

A normalisation or reduction *over* channels (LayerNorm over C in a channels-last stretch or a
transformer, ConvNeXt's channels-first LayerNorm written as `x.mean(1)` arithmetic, GRN's mean of
norms over C, GroupNorm's statistics per group) stays well defined when channels are pruned: the
pruned model computes it over the channels it keeps. Such nodes are recorded as reductions, so the
masked model (the exactness oracle) computes them over the kept channels too.

Patterns covered:
* `BatchNormalization` on the channel axis, `InstanceNormalization` (per-channel parameters);
* `LayerNormalization` over trailing axes that include the channel axis, or not;
* `GroupNormalization` (opset 18+) and the TorchScript form (Reshape to groups, InstanceNorm,
  Reshape back): the groups stay and keep the same number of channels each;
* `ReduceMean`/`ReduceMax`/`ReduceL2`/... over spatial axes only pass channels through
  (squeeze-excitation written as `x.mean((2, 3))`); over channel axes they reduce them;
* `Softmax`/`LogSoftmax`/`Hardmax` over channels freeze them: those channels are the categories of
  a distribution (a DFL head's bins, class scores), which pruning would change the meaning of.
"""

from __future__ import annotations

import onnx

from mdp_trt.graph.channelmap import ChannelMap
from mdp_trt.graph.channels import Walker
from mdp_trt.graph.view import attributes

REDUCE_OPS = frozenset({
    "ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceProd", "ReduceL1", "ReduceL2",
    "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare",
})
SOFTMAX_OPS = frozenset({"Softmax", "LogSoftmax", "Hardmax"})


def batch_norm(w: Walker, node: onnx.NodeProto) -> None:
    cmap = w.maps.get(node.input[0])
    if cmap is None:
        return
    if not cmap.single or cmap.axis != 1:
        w.unsupported(node, "normalises an axis other than the channel axis")
        return
    w.passthrough(node, cmap)


def instance_norm(w: Walker, node: onnx.NodeProto) -> None:
    """Statistics over axes 2.. per (sample, axis-1 index); parameters along axis 1."""
    cmap = w.maps.get(node.input[0])
    if cmap is None:
        return
    if cmap.single and cmap.axis == 1:
        w.passthrough(node, cmap)
        return
    if min(cmap.axes) < 1 or (cmap.axes[0] == 1 and not cmap.rows_fixed):
        w.unsupported(node, "its per-channel parameters would need pruning along a reshaped channel axis")
        return
    w.reduces_channels(node, node.input[0])
    w.passthrough(node, cmap)


def layer_norm(w: Walker, node: onnx.NodeProto) -> None:
    if (traced := w.traced(node)) is None:
        return
    cmap, rank = traced
    if not cmap.single or any(node.output[1:]):
        w.unsupported(node, "only a single-output LayerNormalization of a one-channel-axis tensor is pruned")
        return
    first = int(attributes(node).get("axis", -1)) % rank
    if cmap.axis >= first:
        w.reduces_channels(node, node.input[0])
    w.passthrough(node, cmap)


def group_norm(w: Walker, node: onnx.NodeProto) -> None:
    cmap = w.maps.get(node.input[0])
    if cmap is None:
        return
    groups = int(attributes(node).get("num_groups", 1))
    if not cmap.single or cmap.axis != 1 or cmap.repeat != 1 or len(cmap.flat) % groups:
        w.unsupported(node, "normalises groups that do not line up with the channel axis")
        return
    w.keep_parts_equal(cmap.flat.reshape(groups, -1), node)
    w.reduces_channels(node, node.input[0])
    w.passthrough(node, cmap)


def reduce(w: Walker, node: onnx.NodeProto) -> None:
    if (traced := w.traced(node)) is None:
        return
    cmap, rank = traced
    axes = w.view.ints(node, "axes", 1)
    if axes is None and len(node.input) > 1 and node.input[1]:
        w.unsupported(node, "reduction axes are not static")
        return
    attrs = attributes(node)
    reduced = sorted({a % rank for a in axes}) if axes else []
    if not reduced and not attrs.get("noop_with_empty_axes", 0):
        reduced = list(range(rank))
    keep = int(attrs.get("keepdims", 1))
    kept_axes = [a for a in cmap.axes if a not in reduced]
    if len(kept_axes) == len(cmap.axes):
        moved = cmap.axes if keep else tuple(a - sum(1 for r in reduced if r < a) for a in cmap.axes)
        w.passthrough(node, ChannelMap(cmap.ids, moved, cmap.repeats, cmap.rows_fixed))
        return
    if kept_axes and not (cmap.rows_fixed and kept_axes == [cmap.axes[0]]):
        w.unsupported(node, "reduces one channel axis of a tensor whose other channel axis is pruned")
        return
    w.reduces_channels(node, node.input[0])  # the output no longer carries channels


def softmax(w: Walker, node: onnx.NodeProto) -> None:
    if (traced := w.traced(node)) is None:
        return
    cmap, rank = traced
    default = -1 if w.view.opset >= 13 else 1
    axis = int(attributes(node).get("axis", default)) % rank
    normalised = {axis} if w.view.opset >= 13 else set(range(axis, rank))
    if normalised & set(cmap.axes):
        w.freeze(cmap, f"{node.op_type} '{node.name}' normalises over these channels: they are the categories "
                 "of a distribution (class scores, a DFL head's bins)")
    w.passthrough(node, cmap)


RULES = {
    "BatchNormalization": batch_norm,
    "InstanceNormalization": instance_norm,
    "LayerNormalization": layer_norm,
    "GroupNormalization": group_norm,
    **dict.fromkeys(REDUCE_OPS, reduce),
    **dict.fromkeys(SOFTMAX_OPS, softmax),
}
