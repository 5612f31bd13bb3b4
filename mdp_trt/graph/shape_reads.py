"""Channel counts read at run time: a value computed from `Shape(x)` follows x's channels once pruned.

With a dynamic batch the exporter keeps shape arithmetic in the graph: `B, C, H, W = x.shape` and
then `v.reshape(B, C, H, W)`, `chunk` split points, `F.interpolate` sizes. In the pruned model such a
value is computed from the pruned shapes. That is right where it sizes the tensor whose shape it
reads (a Slice, Split, Gather, Reshape, Resize or Expand of that same tensor, or GroupNorm's
`Reshape(., Shape(x))` back to x's channels: surgery rewrites or the value adapts), and wrong anywhere
else: `v` would be reshaped to the channel count of `x`. So after propagation, every value a node
reads that is computed from shapes is evaluated again with each shape-read tensor's channels
doubled; where the value moves and the node does not size that very tensor, the tensor's channels
are frozen, naming both nodes.
"""

from __future__ import annotations

import numpy as np

from mdp_trt.graph.channelmap import ChannelMap
from mdp_trt.graph.channels import Walker

# Ops whose shape-like inputs size their first input: computed from that tensor's own shape, they
# stay right when it is pruned (surgery rewrites Slice/Split/Gather bounds; the rest adapt).
SIZES_ITS_INPUT = frozenset({"Slice", "Split", "Gather", "Reshape", "Resize", "Expand"})


def freeze_unsafe_shape_reads(w: Walker) -> None:
    constants = w.view.constants
    for node in w.view.nodes:
        if all(constants.is_static(o) for o in node.output if o):
            continue
        sized = [w.maps[t] for t in (node.input[0] if node.input else "", node.output[0]) if t in w.maps]
        for value_name in dict.fromkeys(i for i in node.input if i):
            if constants.is_constant(value_name) or not constants.is_static(value_name):
                continue
            value = constants.static_value(value_name)
            for tensor in sorted(constants.shape_reads(value_name)):
                cmap = w.maps.get(tensor)
                if cmap is None or (node.op_type in SIZES_ITS_INPUT and any(_same(cmap, m) for m in sized)):
                    continue
                if not _moves_with_channels(w, value_name, value, tensor, cmap):
                    continue
                w.freeze(cmap, f"its channel count is read at run time (Shape of '{tensor}') by {node.op_type} "
                         f"'{node.name}', which does not size that tensor")


def _moves_with_channels(w: Walker, value_name: str, value: np.ndarray | None, tensor: str, cmap: ChannelMap) -> bool:
    shape = w.view.shapes.get(tensor)
    if value is None or shape is None:
        return True  # cannot tell: assume it does
    doubled = list(shape)
    axis = cmap.axes[-1]
    if not isinstance(doubled[axis], int):
        return True
    doubled[axis] *= 2
    moved = w.view.constants.with_shape(tensor, tuple(doubled)).static_value(value_name)
    return moved is None or moved.shape != value.shape or not np.array_equal(moved, value)


def _same(a: ChannelMap, b: ChannelMap) -> bool:
    return a.axes == b.axes and a.repeats == b.repeats and np.array_equal(a.ids, b.ids)
