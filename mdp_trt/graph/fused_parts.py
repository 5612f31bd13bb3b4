"""Fused projections cut into parts by a reshape are rewritten part by part, before anything else reads them.

Attention computes q, k and v (or k and v) with one projection and cuts its output apart with a reshape
that puts a parts axis in front of the heads:

* timm, and most hand-written ViTs: `qkv(x).reshape(B, N, 3, H, D).permute(2, 0, 3, 1, 4).unbind(0)`
  (TorchScript: `Split` on the parts axis and a `Squeeze` per part; dynamo: a unit `Slice` and a `Squeeze`
  per part), or `qkv[0], qkv[1], qkv[2]` (`Gather` of a scalar index);
* PyTorch's `MultiheadAttention`: `unflatten(-1, (3, E)).unsqueeze(0).transpose(0, -2).squeeze(-2)` then
  `proj[0]`, `proj[1]`, `proj[2]`.

The parts axis is a factor of the channel axis that no pruned model keeps: q, k and v are pruned apart
(their head widths differ once pruned), so one reshape can no longer cut them. Written part by part (a
`Split` of the channel axis, then per part the same reshape and layout ops without the parts axis) the
graph keeps its one projection and computes exactly the same; analysis and surgery both work on that form
(`graph.analyze.prepare`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from mdp_trt.graph.view import GraphView, attributes, has_symbolic_sizes

LAYOUT_OPS = frozenset({"Transpose", "Unsqueeze", "Squeeze"})
SELECTOR_OPS = frozenset({"Gather", "Split", "Slice"})


@dataclass(frozen=True)
class _Part:
    index: int
    output: str  # the tensor the part's rewritten ops must produce
    unit_axis: bool  # the selector kept the parts axis as a unit axis (no Squeeze after it)
    removed: tuple[onnx.NodeProto, ...]  # the selector (and its Squeeze), replaced by the rewrite


@dataclass(frozen=True)
class _Fused:
    reshape: onnx.NodeProto
    parts_axis: int  # in the reshape's output
    parts: int
    chain: tuple[onnx.NodeProto, ...]  # layout ops between the reshape and the selectors
    final_axis: int  # the parts axis after the chain
    selected: tuple[_Part, ...]


def split_fused_parts(model: onnx.ModelProto) -> bool:
    """Rewrite every fused multi-part reshape of `model` (whose node names are unique) in place; True when
    one was found."""
    if not has_fused_parts(model):
        return False
    view = GraphView(model, representative_sizes=has_symbolic_sizes(model))
    found = [f for node in view.nodes if node.op_type == "Reshape" and (f := _fused(view, node)) is not None]
    for fused in found:
        _rewrite(model, view, fused)
    if found:
        _drop_unread(model.graph, {i for f in found for n in _replaced(f) for i in n.input if i})
    return bool(found)


def _replaced(fused: _Fused) -> tuple[onnx.NodeProto, ...]:
    return (fused.reshape, *fused.chain, *(n for part in fused.selected for n in part.removed))


def has_fused_parts(model: onnx.ModelProto) -> bool:
    """Whether `model` may hold one (a cheap look, no shape inference): a Reshape whose layout chain ends in
    two or more selectors, or in a Split."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for node in model.graph.node:
        if node.op_type != "Reshape":
            continue
        readers = consumers.get(node.output[0], [])
        while len(readers) == 1 and readers[0].op_type in LAYOUT_OPS:
            readers = consumers.get(readers[0].output[0], [])
        if readers and all(r.op_type in SELECTOR_OPS for r in readers) and (
                len(readers) > 1 or readers[0].op_type == "Split"):
            return True
    return False


def _fused(view: GraphView, reshape: onnx.NodeProto) -> _Fused | None:
    source, target, out = reshape.input[0], reshape.input[1], reshape.output[0]
    in_shape, out_shape = view.shape(source), view.shape(out)
    value = view.static_value(target)
    if in_shape is None or out_shape is None or value is None or not in_shape:
        return None
    axis = len(in_shape) - 1
    tail = out_shape[axis:]
    if (len(out_shape) < axis + 2 or tuple(out_shape[:axis]) != tuple(in_shape[:axis])
            or not all(isinstance(d, int) for d in (*tail, in_shape[axis])) or tail[0] < 2
            or int(np.prod(tail)) != in_shape[axis] or np.any(np.asarray(value).reshape(-1)[axis:] == 0)):
        return None
    if out in view.graph_outputs:
        return None
    chain: list[onnx.NodeProto] = []
    tensor, position, rank = out, axis, len(out_shape)
    while True:
        readers = view.consumers.get(tensor, [])
        if len(readers) != 1 or readers[0].op_type not in LAYOUT_OPS:
            break
        node = readers[0]
        moved = _moved_axis(view, node, position, rank)
        if moved is None or node.output[0] in view.graph_outputs:
            return None
        position, rank = moved
        chain.append(node)
        tensor = node.output[0]
    readers = view.consumers.get(tensor, [])
    parts: list[_Part] = []
    for reader in readers:
        selected = _selected(view, reader, tensor, position, rank, tail[0])
        if selected is None:
            return None
        parts.extend(selected)
    if not parts:
        return None
    return _Fused(reshape, axis, tail[0], tuple(chain), position, tuple(parts))


def _moved_axis(view: GraphView, node: onnx.NodeProto, axis: int, rank: int) -> tuple[int, int] | None:
    """Where the parts axis `axis` of a rank-`rank` input is after a layout op, and the output's rank."""
    if node.op_type == "Transpose":
        perm = [int(p) for p in attributes(node).get("perm") or list(range(rank))[::-1]]  # type: ignore[union-attr]
        return perm.index(axis), rank
    axes = view.ints(node, "axes", 1)
    if node.op_type == "Unsqueeze":
        if axes is None:
            return None
        out_rank = rank + len(axes)
        added = sorted(a % out_rank for a in axes)
        position = axis
        for a in added:
            if a <= position:
                position += 1
        return position, out_rank
    shape = view.shape(node.input[0])  # Squeeze
    if axes is None:
        if shape is None or any(not isinstance(d, int) for d in shape):
            return None
        axes = [i for i, d in enumerate(shape) if d == 1]
    axes = [a % rank for a in axes]
    if axis in axes:
        return None
    return axis - sum(1 for a in axes if a < axis), rank - len(axes)


def _selected(view: GraphView, node: onnx.NodeProto, tensor: str, axis: int, rank: int,
              parts: int) -> list[_Part] | None:
    """The parts a selector reads along the parts axis, or None when it reads anything else."""
    if node.input[0] != tensor or any(o in view.graph_outputs for o in node.output):
        return None
    attrs = attributes(node)
    if node.op_type == "Gather":
        index = view.constant(node.input[1])
        if int(attrs.get("axis", 0)) % rank != axis or index is None or np.asarray(index).ndim != 0:
            return None
        return [_Part(int(index) % parts, node.output[0], False, (node,))]
    if node.op_type == "Split":
        if int(attrs.get("axis", 0)) % rank != axis or len(node.output) != parts:
            return None
        sizes = attrs.get("split")
        if sizes is None and len(node.input) > 1 and node.input[1]:
            sizes = view.constant(node.input[1])
            if sizes is None:
                return None
        if sizes is not None and any(int(s) != 1 for s in np.asarray(sizes).reshape(-1)):
            return None
        return [_squeezed(view, i, out, axis, (node,)) for i, out in enumerate(node.output) if out]
    bounds = _unit_slice(view, node, axis, rank, parts)
    return None if bounds is None else [_squeezed(view, bounds, node.output[0], axis, (node,))]


def _unit_slice(view: GraphView, node: onnx.NodeProto, axis: int, rank: int, parts: int) -> int | None:
    """The part a Slice reads when it takes exactly one index of the parts axis and nothing else."""
    from mdp_trt.graph.rules.select import slice_bounds

    bounds = slice_bounds(view, node, rank)
    if bounds is None or len(bounds) != 1:
        return None
    sliced, start, end, step = bounds[0]
    if sliced != axis or step != 1 or end != start + 1 or not 0 <= start < parts:
        return None
    return start


def _squeezed(view: GraphView, index: int, output: str, axis: int, removed: tuple[onnx.NodeProto, ...]) -> _Part:
    """A unit part, taken through the Squeeze of the parts axis that follows it when there is one."""
    readers = view.consumers.get(output, [])
    if len(readers) == 1 and readers[0].op_type == "Squeeze" and output not in view.graph_outputs:
        squeeze = readers[0]
        axes = view.ints(squeeze, "axes", 1)
        rank = view.rank(output)
        if axes is not None and rank is not None and [a % rank for a in axes] == [axis]:
            return _Part(index, squeeze.output[0], False, (*removed, squeeze))
    return _Part(index, output, True, removed)


def _rewrite(model: onnx.ModelProto, view: GraphView, fused: _Fused) -> None:
    graph = model.graph
    reshape = fused.reshape
    name = reshape.name
    width = int(np.prod(view.shape(reshape.output[0])[fused.parts_axis + 1:]))
    nodes: list[onnx.NodeProto] = []
    initializers: list[onnx.TensorProto] = []

    def constant(label: str, value) -> str:
        tensor = numpy_helper.from_array(np.asarray(value, dtype=np.int64), f"{name}/{label}")
        initializers.append(tensor)
        return tensor.name

    pieces = [f"{name}/part{i}" for i in range(fused.parts)]
    if view.opset < 13:
        split = onnx.helper.make_node("Split", [reshape.input[0]], pieces, name=f"{name}/split",
                                      axis=fused.parts_axis, split=[width] * fused.parts)
    else:
        split = onnx.helper.make_node("Split", [reshape.input[0], constant("sizes", [width] * fused.parts)], pieces,
                                      name=f"{name}/split", axis=fused.parts_axis)
    nodes.append(split)
    target = _part_target(view, reshape, fused.parts_axis, constant, nodes)
    for part in fused.selected:
        label = f"{name}/part{part.index}"
        tensor = pieces[part.index]
        ops = [("Reshape", reshape, fused.parts_axis)]
        position, rank = fused.parts_axis, len(view.shape(reshape.output[0]))
        for node in fused.chain:
            ops.append((node.op_type, node, position))
            position, rank = _moved_axis(view, node, position, rank)
        for step, (op, original, before) in enumerate(ops):
            last = step == len(ops) - 1 and not part.unit_axis
            out = part.output if last else f"{label}/{step}"
            nodes.append(_without_parts_axis(view, op, original, tensor, out, before, target, constant, name,
                                             f"part{part.index}/{op}{step}"))
            tensor = out
        if part.unit_axis:
            axes = [fused.final_axis]
            if view.opset < 13:
                nodes.append(onnx.helper.make_node("Unsqueeze", [tensor], [part.output], name=f"{label}/unit",
                                                   axes=axes))
            else:
                nodes.append(onnx.helper.make_node("Unsqueeze", [tensor, constant(f"part{part.index}/unit", axes)],
                                                   [part.output], name=f"{label}/unit"))
    removed = {n.name for n in _replaced(fused)}
    at = [n.name for n in graph.node].index(reshape.name)
    kept = [n for n in graph.node if n.name not in removed]
    before = sum(1 for n in list(graph.node)[:at] if n.name not in removed)
    copies = [onnx.NodeProto() for _ in kept]
    for dst, src in zip(copies, kept, strict=True):
        dst.CopyFrom(src)
    copies[before:before] = nodes
    del graph.node[:]
    graph.node.extend(copies)
    graph.initializer.extend(initializers)


def _part_target(view: GraphView, reshape: onnx.NodeProto, axis: int, constant, nodes: list[onnx.NodeProto]) -> str:
    """The reshape's target without the parts axis: a constant, or a Gather of the computed target."""
    value = view.constant(reshape.input[1])
    if value is not None:
        return constant("shape", np.delete(np.asarray(value).reshape(-1), axis))
    length = int(np.asarray(view.static_value(reshape.input[1])).size)
    keep = constant("shape_axes", [i for i in range(length) if i != axis])
    out = f"{reshape.name}/shape"
    nodes.append(onnx.helper.make_node("Gather", [reshape.input[1], keep], [out], name=f"{reshape.name}/shape", axis=0))
    return out


def _without_parts_axis(view: GraphView, op: str, original: onnx.NodeProto, source: str, out: str, axis: int,
                        target: str, constant, prefix: str, label: str) -> onnx.NodeProto:
    """`original` rewritten for one part: the same op on a tensor without the parts axis (at `axis` in its
    input, or, for the reshape, in its output), named `label` under the fused reshape's name `prefix`."""
    attrs = attributes(original)
    name = f"{prefix}/{label}"
    if op == "Reshape":
        return onnx.helper.make_node("Reshape", [source, target], [out], name=name, **attrs)
    if op == "Transpose":
        perm = [int(p) for p in attrs.get("perm") or []]  # type: ignore[union-attr]
        rank = len(perm) if perm else view.rank(original.input[0])
        perm = perm or list(range(rank))[::-1]
        return onnx.helper.make_node("Transpose", [source], [out], name=name,
                                     perm=[p - (p > axis) for p in perm if p != axis])
    axes = view.ints(original, "axes", 1)
    if op == "Unsqueeze":
        rank = (view.rank(original.input[0]) or 0) + len(axes)
        after = _moved_axis(view, original, axis, rank - len(axes))[0]
        new = [a % rank for a in axes]
        new = [a - (a > after) for a in new]
    else:  # Squeeze
        rank = view.rank(original.input[0]) or 0
        if axes is None:
            shape = view.shape(original.input[0])
            axes = [i for i, d in enumerate(shape) if d == 1]
        new = [a % rank for a in axes]
        new = [a - (a > axis) for a in new]
    if view.opset < 13:
        return onnx.helper.make_node(op, [source], [out], name=name, axes=new)
    return onnx.helper.make_node(op, [source, constant(f"{label}/axes", new)], [out], name=name)


def _drop_unread(graph: onnx.GraphProto, names: set[str]) -> None:
    """Remove what only the replaced nodes read: the constants and shape arithmetic that fed them."""
    while True:
        read = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if any(o in names for o in n.output) and not any(o in read for o in n.output)]
        unread = [t for t in graph.initializer if t.name in names and t.name not in read]
        if not dead and not unread:
            return
        for node in dead:
            names |= set(node.input)
            graph.node.remove(node)
        for tensor in unread:
            graph.initializer.remove(tensor)
