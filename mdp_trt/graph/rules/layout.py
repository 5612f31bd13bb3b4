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

A Reshape's target is a constant (surgery rewrites it) or computed from shapes (a dynamic batch), in
which case `graph/shape_reads.py` checks that it follows the channels it reshapes.
"""

from __future__ import annotations

import onnx

from mdp_trt.graph.channelmap import reshape_map
from mdp_trt.graph.channels import Walker
from mdp_trt.graph.view import attributes


def reshape(w: Walker, node: onnx.NodeProto) -> None:
    """Reshape, Flatten, Squeeze, Unsqueeze: the map follows the shapes inference gives both sides.

    A computed Reshape target is checked once all ties are known (`graph/shape_reads.py`).
    """
    cmap = w.maps.get(node.input[0])
    if cmap is None:
        return
    mapped = reshape_map(w.shape(node.input[0]), w.shape(node.output[0]), cmap)
    if mapped is None:
        w.unsupported(node, "reshapes the channel axis in a way that cannot be traced")
        return
    if not mapped.single and cmap.single:
        w.keep_parts_equal(mapped.ids, node)
    w.passthrough(node, mapped)


def transpose(w: Walker, node: onnx.NodeProto) -> None:
    if (traced := w.traced(node)) is None:
        return
    cmap, rank = traced
    perm = [int(p) for p in attributes(node).get("perm") or list(range(rank))[::-1]]  # type: ignore[union-attr]
    moved, reordered = cmap.moved(tuple(perm.index(a) for a in cmap.axes))
    if reordered:
        # The pruned tensor stays a transpose of the pruned input only if every row keeps the same
        # channels: tie each row to the first.
        for row in cmap.ids[1:]:
            w.tie(cmap.ids[0], row)
    w.passthrough(node, moved)


RULES = {"Reshape": reshape, "Flatten": reshape, "Squeeze": reshape, "Unsqueeze": reshape, "Transpose": transpose}
