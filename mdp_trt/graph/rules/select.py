"""Ops that join, split and select along axes: Concat, Split, Slice, Gather.

Patterns covered:
* channel `Concat` (DenseNet, Inception, U-Net skips, YOLO's C2f/SPPF/FPN joins, GhostNet's
  `cat([x1, x2])`): the output's channels are the parts' in order; a Concat along another axis
  (YOLO's anchors, a transformer's tokens) ties the parts' channels, and a constant part there (a
  class token, also behind `Expand`) is cut with them;
* `Split` of the channel axis as every exporter writes it: the `split` attribute (opset < 13), a
  `split` input (13+), `num_outputs` (18+), or equal parts; also of each head's row, where attention
  interleaves q, k and v per head (ultralytics' PSA: `view(B, H, 2 * kd + hd, N).split(...)`);
  `chunk` as `Slice`s whose bounds are computed from `Shape(x)` (TorchScript): bounds are read as static
  values and surgery writes the pruned model's bounds as constants;
* `Slice` of the channel axis with step 1 (GhostNet's `[:, :oup]`, C2f's halves);
* `Gather` of channels by constant indices; a scalar index reads one channel by position, which
  then cannot be pruned.
"""

from __future__ import annotations

import numpy as np
import onnx

from mdp_trt.graph.channelmap import ChannelMap
from mdp_trt.graph.channels import Walker
from mdp_trt.graph.view import GraphView, attributes


def concat(w: Walker, node: onnx.NodeProto) -> None:
    rank = w.rank(node.output[0])
    inputs = [name for name in node.input if name]
    traced = [w.maps[name] for name in inputs if name in w.maps]
    if not traced:
        return
    if rank is None or not all(m.single for m in traced):
        w.unsupported(node, "output rank unknown" if rank is None else "joins tensors with two channel axes")
        return
    axis = int(attributes(node).get("axis", 1)) % rank
    channel_axis = traced[0].axis
    if axis != channel_axis:  # a class token, a register token: constants cut with the channels
        width = len(traced[0].flat) * traced[0].repeat
        fixed = [name for name in inputs if name not in w.maps and w.view.constants.is_static(name)]
        if any(channel_constant(w.view, name, channel_axis, rank, width) is None for name in fixed):
            w.unsupported(node, "joins a computed tensor whose channels cannot be cut")
            return
        inputs = [name for name in inputs if name not in fixed]
    maps = [w.map(name, channel_axis) for name in inputs]
    known = [m for m in maps if m is not None]
    if any(m is None or not m.single or m.axis != channel_axis or m.repeat != known[0].repeat for m in maps):
        w.unsupported(node, "joins tensors whose channels cannot be traced")
        return
    if axis == channel_axis:
        w.set(node.output[0], ChannelMap.on(np.concatenate([m.flat for m in known]), channel_axis, known[0].repeat))
        return
    if any(len(m.flat) != len(known[0].flat) for m in known):
        w.unsupported(node, "joins tensors of different widths")
        return
    for other in known[1:]:
        w.tie(known[0].ids, other.ids)
    w.passthrough(node, known[0])


def split(w: Walker, node: onnx.NodeProto) -> None:
    if (traced := w.traced(node)) is None:
        return
    cmap, rank = traced
    axis = int(attributes(node).get("axis", 0)) % rank
    if axis not in cmap.axes:
        for out in node.output:
            w.set(out, cmap)
        return
    sizes = split_sizes(w.view, node, cmap.length(cmap.axes.index(axis)))
    if sizes is not None and _per_row(cmap, axis):
        _split_rows(w, node, cmap, sizes)
        return
    if not cmap.single or sizes is None or cmap.repeat != 1:
        w.unsupported(node, "split sizes on the channel axis are not constant")
        return
    offset = 0
    for out, size in zip(node.output, sizes, strict=True):
        w.set(out, ChannelMap.on(cmap.flat[offset:offset + size], axis))
        offset += size


def _per_row(cmap: ChannelMap, axis: int) -> bool:
    """A split of the trailing sub-axis of per-head rows the pruned model keeps whole."""
    return not cmap.single and cmap.rows_fixed and axis == cmap.axes[1] and cmap.repeats[1] == 1


def _split_rows(w: Walker, node: onnx.NodeProto, cmap: ChannelMap, sizes: list[int]) -> None:
    """q, k and v cut out of each head's row (`view(B, H, 2 * kd + hd, N).split([kd, kd, hd], 2)`): every
    part keeps as many channels in every row, so the pruned split cuts each row alike."""
    whole = cmap.ids.reshape(cmap.ids.shape[0], -1)
    w.parts = [p for p in w.parts if not np.array_equal(p.ids, whole)]  # the parts' own rows imply it
    offset = 0
    for out, size in zip(node.output, sizes, strict=True):
        part = cmap.ids[:, offset:offset + size]
        w.keep_parts_equal(part, node)
        w.set(out, ChannelMap(part, cmap.axes, cmap.repeats, rows_fixed=True))
        offset += size


def slice_(w: Walker, node: onnx.NodeProto) -> None:
    if (traced := w.traced(node)) is None:
        return
    cmap, rank = traced
    bounds = slice_bounds(w.view, node, rank)
    if bounds is None:
        w.unsupported(node, "slice bounds are not static")
        return
    cut = [b for b in bounds if b[0] in cmap.axes and (b[1], b[2], b[3]) != (0, w.dim(node.input[0], b[0]), 1)]
    if not cut:
        w.passthrough(node, cmap)
        return
    if not cmap.single or len(bounds) != 1:
        w.unsupported(node, "slices the channel axis together with other axes")
        return
    _, start, end, step = cut[0]
    repeat = cmap.repeat
    if step != 1 or start % repeat or end % repeat:
        w.unsupported(node, "slices the channel axis with a step or inside a channel's features")
        return
    w.set(node.output[0], ChannelMap.on(cmap.flat[start // repeat:end // repeat], cmap.axis, repeat))


def gather(w: Walker, node: onnx.NodeProto) -> None:
    if (traced := w.traced(node)) is None:
        return
    cmap, rank = traced
    indices = w.view.static_value(node.input[1])
    if indices is None:
        w.unsupported(node, "indices are not static")
        return
    axis = int(attributes(node).get("axis", 0)) % rank
    if axis not in cmap.axes:
        added = indices.ndim - 1
        w.passthrough(node, ChannelMap(cmap.ids, tuple(a if a < axis else a + added for a in cmap.axes),
                                       cmap.repeats, cmap.rows_fixed))
        return
    if not cmap.single or cmap.repeat != 1 or indices.ndim > 1:
        w.unsupported(node, "gathers channels in a way that cannot be traced")
        return
    picked = np.asarray(indices, dtype=np.int64).reshape(-1) % len(cmap.flat)
    if indices.ndim == 0:
        w.freeze(ChannelMap.on(cmap.flat[picked], axis), f"Gather '{node.name}' reads channel {int(picked[0])} "
                 "by position")
        return
    w.set(node.output[0], ChannelMap.on(cmap.flat[picked], axis))


def channel_constant(view: GraphView, name: str, axis: int, rank: int, width: int) -> tuple[str, int] | None:
    """Where a constant joined to channels along another axis can be cut with them: (tensor, its axis).

    The tensor itself when it is a constant of full width on `axis` (a learned class token); the data of
    an `Expand` that broadcasts such a constant over the batch (`cls.expand(B, -1, -1)`, written with
    `Shape(x)` by the TorchScript exporter) when the Expand leaves that axis alone.
    """
    candidates = [(name, None)]
    producer = view.producer.get(name)
    if producer is not None and producer.op_type == "Expand" and producer.domain in ("", "ai.onnx"):
        candidates.append((producer.input[0], producer.input[1]))
    for tensor, shape_input in candidates:
        shape = view.constant_shape(tensor)
        if shape is None:
            continue
        local = axis - (rank - len(shape))
        if local < 0 or shape[local] != width:
            continue
        if shape_input is not None:
            target = view.static_value(shape_input)
            offset = rank - (target.size if target is not None else rank)
            if target is None or int(target[axis - offset]) not in (-1, 1, width):
                continue
        return tensor, local
    return None


def split_sizes(view: GraphView, node: onnx.NodeProto, length: int) -> list[int] | None:
    """Sizes of a Split's outputs along its axis (attribute, input, num_outputs, or equal parts)."""
    if "split" in attributes(node) or (len(node.input) > 1 and node.input[1]):
        return view.ints(node, "split", 1)
    parts = int(attributes(node).get("num_outputs", len(node.output)))
    chunk = -(-length // parts)
    sizes = [chunk] * (parts - 1)
    return [*sizes, length - chunk * (parts - 1)]


def slice_bounds(view: GraphView, node: onnx.NodeProto, rank: int | None) -> list[tuple[int, int, int, int]] | None:
    """(axis, start, end, step) per sliced axis, clamped to the axis, from attributes or static inputs."""
    shape = view.shape(node.input[0])
    if rank is None or shape is None:
        return None
    if view.opset < 10:
        attrs = attributes(node)
        starts, ends = attrs.get("starts"), attrs.get("ends")
        axes, steps = attrs.get("axes"), None
    else:
        values = [view.static_value(node.input[i]) if len(node.input) > i and node.input[i] else None
                  for i in range(1, 5)]
        if values[0] is None or values[1] is None or any(
                len(node.input) > i and node.input[i] and values[i - 1] is None for i in (3, 4)):
            return None
        starts, ends, axes, steps = (None if v is None else np.asarray(v).reshape(-1).tolist() for v in values)
    if starts is None or ends is None:
        return None
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    bounds = []
    for axis, start, end, step in zip(axes, starts, ends, steps, strict=True):
        axis = int(axis) % rank
        size = shape[axis]
        if not isinstance(size, int):
            return None
        start, end, step = int(start), int(end), int(step)
        if step > 0:
            start = min(max(start + size if start < 0 else start, 0), size)
            end = min(max(end + size if end < 0 else end, 0), size)
        bounds.append((axis, start, end, step))
    return bounds


RULES = {"Concat": concat, "Split": split, "Slice": slice_, "Gather": gather}
