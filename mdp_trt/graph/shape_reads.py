"""Channel counts read at run time: a value computed from `Shape(x)` follows x's channels once pruned.

With a dynamic batch the exporter keeps shape arithmetic in the graph: `B, C, H, W = x.shape` and
then `v.reshape(B, C, H, W)`, `y.view(b, c, 1, 1)`, `chunk` split points, `F.interpolate` sizes. In
the pruned model such a value is computed from the pruned shapes. Whether that is right is decided
here, after propagation, when every tie is known: each such value a node reads is evaluated again
with the channels it depends on doubled, on every tensor that carries them (as pruning shrinks them
all together).

* The value does not move: it does not depend on those channels.
* It moves, and the node is a Slice, Split or Gather of those channels: surgery writes the pruned
  model's bounds as constants.
* It moves, and the node is a Reshape, Resize or Expand whose output carries those channels, and the
  value follows them: every channel axis of the output doubles with them (a reshape's leading factor,
  GroupNorm's groups, stays) or is -1, and no other axis moves. The pruned model computes it right.
* Anything else would size a tensor with the wrong channel count: those channels, and the channels
  of the tensor the node sizes, are frozen, naming the node.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx

from mdp_trt.graph.channelmap import ChannelMap
from mdp_trt.graph.channels import Walker

REWRITTEN = frozenset({"Slice", "Split", "Gather"})  # surgery writes their bounds as constants
SHAPED = frozenset({"Reshape", "Resize", "Expand"})  # the value is the output's shape


def freeze_unsafe_shape_reads(w: Walker) -> None:
    constants = w.view.constants
    roots = w.union.roots()

    def classes(cmap: ChannelMap) -> frozenset[int]:
        return frozenset(roots[cmap.flat].tolist())

    carriers: dict[frozenset[int], list[str]] = defaultdict(list)
    for name, cmap in w.maps.items():
        carriers[classes(cmap)].append(name)
    for node in w.view.nodes:
        if all(constants.is_static(o) for o in node.output if o):
            continue
        for value_name in dict.fromkeys(i for i in node.input if i):
            if constants.is_constant(value_name) or not constants.is_static(value_name):
                continue
            value = constants.static_value(value_name)
            for key in {classes(w.maps[t]) for t in constants.shape_reads(value_name) if t in w.maps}:
                if _safe(w, node, value_name, value, key, carriers[key], classes):
                    continue
                reason = (f"{node.op_type} '{node.name}' sizes a tensor at run time from another tensor's channel "
                          "count: both keep their channels")
                for tensor in (*carriers[key], *node.input[:1], *node.output[:1]):  # the read and the sized
                    w.freeze(w.maps.get(tensor), reason)


def _safe(w: Walker, node: onnx.NodeProto, value_name: str, value: np.ndarray | None, key: frozenset[int],
          tensors: list[str], classes) -> bool:
    if value is None:
        return False
    moved = w.view.constants.with_shapes(_doubled(w, tensors)).static_value(value_name)
    if moved is None or moved.shape != value.shape:
        return False
    if np.array_equal(moved, value):
        return True
    data = w.maps.get(node.input[0])
    if node.op_type in REWRITTEN:
        return data is not None and classes(data) == key
    out = w.maps.get(node.output[0])
    if node.op_type not in SHAPED or out is None or classes(out) != key or value.ndim != 1:
        return False
    offset = (w.rank(node.output[0]) or value.size) - value.size  # Expand's shape aligns to the right
    for index, (before, after) in enumerate(zip(value.tolist(), moved.tolist(), strict=True)):
        axis = index + offset
        if axis not in out.axes:
            if after != before:
                return False
        elif before not in (-1, 0) and after != before * (1 if _fixed_rows(out, axis) else 2):
            return False
    return True


def _fixed_rows(cmap: ChannelMap, axis: int) -> bool:
    return not cmap.single and axis == cmap.axes[0]


def _doubled(w: Walker, tensors: list[str]) -> dict[str, tuple]:
    """Shapes with the channels of these tensors doubled (the trailing channel axis of a reshaped one)."""
    shapes = {}
    for name in tensors:
        shape = w.view.shapes.get(name)
        axis = w.maps[name].axes[-1]
        if shape is not None and axis < len(shape) and isinstance(shape[axis], int):
            shapes[name] = (*shape[:axis], shape[axis] * 2, *shape[axis + 1:])
    return shapes
