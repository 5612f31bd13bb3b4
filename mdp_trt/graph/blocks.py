"""Removable residual blocks: `y = x + F(x)` where F is a single-entry single-exit branch from x.

Removing such a block rewires `y` to `x`. The branch F is every node upstream of the Add's other input
back to x; it qualifies when nothing in it reads a tensor other than x, constants or its own outputs,
nothing outside reads its tensors, and it holds at least one weighted op (otherwise there is nothing
to gain by removing it). Scaled branches `x + s * F(x)` are included: the scaling Mul is part of F.
"""

from __future__ import annotations

import onnx

from mdp_trt.graph.structure import WEIGHTED_OPS
from mdp_trt.graph.view import GraphView


def find_blocks(view: GraphView) -> list[tuple[onnx.NodeProto, str, str, list[str]]]:
    """(add node, x, branch output, branch node names in graph order) for every removable block."""
    order = {n.name: i for i, n in enumerate(view.nodes)}
    found = []
    for node in view.nodes:
        if node.op_type != "Add" or node.domain not in ("", "ai.onnx") or len(node.input) != 2:
            continue
        a, b = node.input
        if not a or not b or a == b or view.is_constant(a) or view.is_constant(b):
            continue
        for x, branch in ((a, b), (b, a)):
            nodes = _branch(view, x, branch, node)
            if nodes is not None:
                found.append((node, x, branch, sorted(nodes, key=order.__getitem__)))
                break
    return found


def _branch(view: GraphView, x: str, branch: str, add: onnx.NodeProto) -> set[str] | None:
    if not _same_shape(view, x, branch) or not _same_shape(view, x, add.output[0]):
        return None
    if branch not in view.producer:
        return None
    members: set[str] = set()
    stack = [view.producer[branch]]
    while stack:
        node = stack.pop()
        if node.name in members:
            continue
        members.add(node.name)
        for inp in (*node.input, *view.subgraph_references(node)):
            if not inp or inp == x or view.is_constant(inp):
                continue
            producer = view.producer.get(inp)
            if producer is None:  # a graph input other than x: a second entry
                return None
            stack.append(producer)
    if x in view.producer and view.producer[x].name in members:
        return None
    outputs = set(view.graph_outputs)
    for name in members:
        for out in view.node_by_name[name].output:
            if not out:
                continue
            if out in outputs:
                return None
            readers = view.consumers.get(out, [])
            allowed = {add.name} if out == branch else members
            if any(r.name not in allowed for r in readers):
                return None
    if not any(view.node_by_name[n].op_type in WEIGHTED_OPS for n in members):
        return None
    if not _reads(view, members, x):
        return None
    return members


def _reads(view: GraphView, members: set[str], x: str) -> bool:
    return any(x in view.node_by_name[n].input for n in members)


def _same_shape(view: GraphView, a: str, b: str) -> bool:
    sa, sb = view.shape(a), view.shape(b)
    return sa is not None and sb is not None and len(sa) == len(sb) and all(
        da == db and da is not None for da, db in zip(sa, sb, strict=True)
    )
