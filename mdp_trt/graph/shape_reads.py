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
* It moves, it is a scalar that arithmetic applies to data (`Mul`, `Div`, `Add`, `Sub`, `Pow`), and no
  size but channel counts moves it: a softmax temperature `1 / sqrt(Shape(q)[-1])`, as PyTorch's
  `scaled_dot_product_attention` exports it. Pruning must not change it, so surgery writes it as the
  constant it was (`Structure.pinned`).
* It moves, the node is a Reshape, and the target's entries on the output's channel axes move with channel
  counts only while the others move with no channel count: surgery writes the pruned model's extents into
  the first and leaves the others computed (`Structure.channel_targets`; a dynamic batch stays dynamic).
* Anything else would size a tensor with the wrong channel count: those channels, and the channels
  of the tensor the node sizes, are frozen, naming the node.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx

from mdp_trt.graph.channelmap import ChannelMap
from mdp_trt.graph.channels import Walker
from mdp_trt.graph.structure import Pinned

REWRITTEN = frozenset({"Slice", "Split", "Gather"})  # surgery writes their bounds as constants
ARITHMETIC = frozenset({"Mul", "Div", "Add", "Sub", "Pow"})  # a scalar read from a shape is pinned
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
            keys = {classes(w.maps[t]) for t in constants.shape_reads(value_name) if t in w.maps}
            if keys and _pinnable(w, node, value_name, value, keys, carriers):
                w.pinned.append(Pinned(node.name, value_name, value))
                continue
            # A reshape to channels sized by a computed target must have it follow them, whatever it reads.
            sizes_channels = node.op_type == "Reshape" and value_name == node.input[1] and node.output[0] in w.maps
            unsafe = [key for key in keys if not _safe(w, node, value_name, value, key, carriers[key], classes)]
            if not unsafe and (keys or not sizes_channels):
                continue
            if sizes_channels and _channel_entries_apart(w, node, value_name, value, [carriers[key] for key in keys]):
                w.channel_targets.append(node.name)
                continue
            reason = (f"{node.op_type} '{node.name}' sizes a tensor at run time from another tensor's channel "
                      "count: both keep their channels")
            for tensor in (*(t for key in unsafe for t in carriers[key]), *node.input[:1], *node.output[:1]):
                w.freeze(w.maps.get(tensor), reason)  # the read and the sized


def _safe(w: Walker, node: onnx.NodeProto, value_name: str, value: np.ndarray | None, key: frozenset[int],
          tensors: list[str], classes) -> bool:
    if value is None:
        return False
    moved = w.view.constants.with_shapes(_doubled(w, tensors)).static_value(value_name)
    if moved is None or moved.shape != value.shape:
        return False
    out = w.maps.get(node.output[0])
    if np.array_equal(moved, value) and not (node.op_type == "Reshape" and out is not None):
        return True  # it does not move (a reshape to channels must: its entries there are channel counts)
    data = w.maps.get(node.input[0])
    if node.op_type in REWRITTEN:
        return data is not None and classes(data) == key
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


def _pinnable(w: Walker, node: onnx.NodeProto, value_name: str, value: np.ndarray | None,
              keys: set[frozenset[int]], carriers: dict[frozenset[int], list[str]]) -> bool:
    """A scalar applied to data that moves with channel counts and with no other size (see above)."""
    constants = w.view.constants
    data = [name for name in node.input if name and name != value_name and not constants.is_static(name)]
    if value is None or value.size != 1 or node.op_type not in ARITHMETIC or not data:
        return False
    tensors = [t for key in keys for t in carriers[key]]
    if np.array_equal(constants.with_shapes(_doubled(w, tensors)).static_value(value_name), value):
        return False  # it does not move: nothing to pin
    return np.array_equal(_with_other_sizes_doubled(w, value_name), value)


def _channel_entries_apart(w: Walker, node: onnx.NodeProto, value_name: str, value: np.ndarray | None,
                           carriers: list[list[str]]) -> bool:
    """A computed Reshape target whose entries on the output's channel axes move with no size but channel
    counts, and whose other entries (a dynamic batch) move with no channel count: surgery writes the pruned
    extents into the first (`Structure.channel_targets`), the others stay computed.

    PyTorch's MultiheadAttention reads its head width from the query's embedding width, timm's attention
    reshapes its context to the width of its input: both read channels other than the ones they size. The
    rows of a factored axis (heads) count among the others: MultiheadAttention sizes them `B * H`, and
    surgery scales that entry to `B * h` where heads are removed."""
    out = w.maps.get(node.output[0])
    if node.op_type != "Reshape" or out is None or value is None or value.ndim != 1 \
            or value.size != w.rank(node.output[0]):
        return False
    written = [axis for axis in out.axes if not _fixed_rows(out, axis)]
    still = _with_other_sizes_doubled(w, value_name)
    if still is None or still.shape != value.shape or any(still[axis] != value[axis] for axis in written):
        return False
    free = [axis for axis in range(value.size) if axis not in written]
    for tensors in carriers:
        moved = w.view.constants.with_shapes(_doubled(w, tensors)).static_value(value_name)
        if moved is None or moved.shape != value.shape or any(moved[axis] != value[axis] for axis in free):
            return False
    return True


def _with_other_sizes_doubled(w: Walker, value_name: str) -> np.ndarray | None:
    """The value were every size it reads doubled except channel axes (a batch, a token count)."""
    others = {}
    for name in w.view.constants.shape_reads(value_name):
        shape = w.view.shapes.get(name)
        if shape is None or any(not isinstance(d, int) for d in shape):
            return None
        channel_axes = w.maps[name].axes if name in w.maps else ()
        others[name] = tuple(d if axis in channel_axes else d * 2 for axis, d in enumerate(shape))
    return w.view.constants.with_shapes(others).static_value(value_name)


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
