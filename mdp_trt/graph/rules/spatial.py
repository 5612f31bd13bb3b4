"""Spatial ops: pooling, resizing and padding act per channel as long as they leave the channel axis alone.

Patterns covered: max/average/Lp pooling and their global forms (SPPF's chained MaxPools, GAP
heads), `Resize`/`Upsample` by scales or sizes (FPN/PAN top-down paths, `F.interpolate` to a skip's
size, DeepLab's pooled branch), `Pad` (constant, reflect, edge) on spatial axes.
"""

from __future__ import annotations

import onnx

from mdp_trt.graph.channels import Walker
from mdp_trt.graph.view import attributes

POOL_OPS = frozenset({"MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"})
RESIZE_OPS = frozenset({"Resize", "Upsample"})


def pool(w: Walker, node: onnx.NodeProto) -> None:
    cmap = w.maps.get(node.input[0])
    if cmap is None:
        return
    if not cmap.single or cmap.axis != 1 or cmap.repeat != 1:
        w.unsupported(node, "acts on the channel axis")
        return
    w.passthrough(node, cmap)


def resize(w: Walker, node: onnx.NodeProto) -> None:
    cmap = w.maps.get(node.input[0])
    if cmap is None:
        return
    if not cmap.single or cmap.repeat != 1 or not _keeps_extent(w, node, cmap.axis):
        w.unsupported(node, "changes the channel axis")
        return
    w.passthrough(node, cmap)


def pad(w: Walker, node: onnx.NodeProto) -> None:
    if (traced := w.traced(node)) is None:
        return
    cmap, rank = traced
    pads = w.view.ints(node, "pads", 1)
    axes = w.view.ints(node, "axes", 3) or list(range(rank))
    if pads is None or len(pads) != 2 * len(axes):
        w.unsupported(node, "pads are not static")
        return
    padded = {int(a) % rank for a, before, after in zip(axes, pads[:len(axes)], pads[len(axes):], strict=True)
              if before or after}
    if padded & set(cmap.axes):
        w.unsupported(node, "pads the channel axis")
        return
    w.passthrough(node, cmap)


def _keeps_extent(w: Walker, node: onnx.NodeProto, axis: int) -> bool:
    """Resize/Upsample must leave the channel axis's extent alone."""
    in_dim, out_dim = w.dim(node.input[0], axis), w.dim(node.output[0], axis)
    if isinstance(in_dim, int) and isinstance(out_dim, int):
        return in_dim == out_dim
    if node.op_type == "Resize" and w.view.opset >= 11:
        scales_at, sizes_at = 2, 3
    else:
        scales_at, sizes_at = 1, None
    attrs = attributes(node)
    if "scales" in attrs:  # Upsample before opset 9
        return float(attrs["scales"][axis]) == 1.0  # type: ignore[index]
    for index, expected in ((scales_at, 1.0), (sizes_at, in_dim)):
        if index is not None and len(node.input) > index and node.input[index]:
            value = w.view.static_value(node.input[index])
            if value is not None and value.size > axis:
                return expected is not None and float(value.reshape(-1)[axis]) == float(expected)
    return False


RULES = {**dict.fromkeys(POOL_OPS, pool), **dict.fromkeys(RESIZE_OPS, resize), "Pad": pad}
