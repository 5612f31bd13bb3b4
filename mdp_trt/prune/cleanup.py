"""Graph clean-up after surgery: bypass Identity nodes, drop dead nodes and unused initializers."""

from __future__ import annotations

import onnx

from mdp_trt.graph.view import GraphView


def rewire_identities(model: onnx.ModelProto, names: set[str]) -> None:
    """Make readers of the named Identity nodes read their input directly.

    An Identity whose output is a graph output stays (the output name is part of the model's
    interface).
    """
    graph_outputs = {o.name for o in model.graph.output}
    renames: dict[str, str] = {}
    for node in model.graph.node:
        if node.name in names and node.op_type == "Identity" and node.output[0] not in graph_outputs:
            renames[node.output[0]] = node.input[0]
    if not renames:
        return

    def resolve(name: str) -> str:
        while name in renames:
            name = renames[name]
        return name

    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name in renames:
                node.input[i] = resolve(name)


def remove_dead_nodes(model: onnx.ModelProto) -> None:
    """Remove nodes no graph output depends on, then initializers and inputs-as-initializers nothing reads."""
    graph = model.graph
    needed = {o.name for o in graph.output}
    live: list[onnx.NodeProto] = []
    view = GraphView(model, infer_shapes=False)
    for node in reversed(list(graph.node)):
        if any(out in needed for out in node.output if out):
            live.append(node)
            needed.update(i for i in node.input if i)
            needed.update(view.subgraph_references(node))
    live.reverse()
    if len(live) != len(graph.node):
        kept = [onnx.NodeProto() for _ in live]
        for dst, src in zip(kept, live, strict=True):
            dst.CopyFrom(src)
        del graph.node[:]
        graph.node.extend(kept)
    unused = [t for t in graph.initializer if t.name not in needed]
    for tensor in unused:
        graph.initializer.remove(tensor)
    dropped = {t.name for t in unused}
    for value in [i for i in graph.input if i.name in dropped]:
        graph.input.remove(value)
