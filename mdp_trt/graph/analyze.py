"""`analyze`: from an ONNX model to its Structure (groups, layers, blocks)."""

from __future__ import annotations

import copy
from dataclasses import replace

import onnx

from mdp_trt.graph.attention import attention_layers
from mdp_trt.graph.blocks import find_blocks
from mdp_trt.graph.channels import propagate
from mdp_trt.graph.fused_parts import has_fused_parts, split_fused_parts
from mdp_trt.graph.groups import build_groups
from mdp_trt.graph.heads import tie_heads
from mdp_trt.graph.layers import build_layers
from mdp_trt.graph.load import check_supported
from mdp_trt.graph.structure import Block, Structure
from mdp_trt.graph.view import GraphView, ensure_node_names, has_symbolic_sizes


def prepare(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of the model with unique node names and fused projections written part by part
    (`graph.fused_parts`): the form analysis and surgery both work on."""
    model = copy.deepcopy(model)
    ensure_node_names(model)
    split_fused_parts(model)
    return model


def _named(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model itself when it is already in `prepare`'s form (no copy of the weights), else `prepare`."""
    names = [n.name for n in model.graph.node]
    unique = all(names) and len(set(names)) == len(names)
    return model if unique and not has_fused_parts(model) else prepare(model)


def analyze(model: onnx.ModelProto) -> Structure:
    """Find channel groups, weighted layers and removable residual blocks.

    Node names in the result are the model's own; nameless or duplicate-named nodes get deterministic
    names (`prepare`), so ids are stable for one model file. A model with symbolic image sizes is
    analysed at a representative size (see `GraphView`), so it keeps its removable blocks.
    """
    check_supported(model)
    named = _named(model)
    sized = has_symbolic_sizes(named)
    view = GraphView(named, representative_sizes=sized)
    prop = propagate(view)
    node_order = {n.name: i for i, n in enumerate(view.nodes)}
    weighted_names = {use.node.name for use in prop.weighted}
    index = build_groups(prop, node_order, weighted_names)
    index, heads = tie_heads(prop, index)

    raw_blocks = find_blocks(view)
    group_of = {g_index: g.id for g_index, g in enumerate(index.groups)}
    blocks: list[Block] = []
    for b_index, (add, x, branch, nodes) in enumerate(raw_blocks):
        stream = index.tensors.get(x)
        stream_groups = {group_of[g] for g in stream.group.tolist()} if stream is not None else set()
        blocks.append(Block(
            id=f"b{b_index}",
            add=add.name,
            input=x,
            branch_output=branch,
            nodes=tuple(nodes),
            group=stream_groups.pop() if len(stream_groups) == 1 else None,
        ))
    blocks = _with_parents(blocks)
    block_of = _innermost_block(blocks)
    # Layers record the model's own shapes (a symbolic size stays unknown, for profiling to refuse).
    layers = build_layers(GraphView(named) if sized else view, prop.weighted, index, block_of)
    layers += attention_layers(view, index, tuple(prop.reductions), heads, block_of)
    groups = _transformer_kinds(index.groups, layers, blocks, {r.node for r in prop.reductions
                                                               if view.node_by_name[r.node].op_type == "MatMul"})
    return Structure(groups, tuple(layers), tuple(blocks), dict(index.tensors), tuple(prop.reductions),
                     tuple(prop.pinned), tuple(dict.fromkeys(prop.channel_targets)), heads)


def _transformer_kinds(groups, layers: list, blocks: list[Block], attentions: set[str]) -> tuple:
    """Name a transformer's residual stream (`embedding`: the stream of a block that holds an attention) and
    its MLPs' hidden widths (`mlp_hidden`: what a linear layer of such a block writes from the stream, q, k and v
    aside)."""
    streams = {b.group for b in blocks if b.group is not None and attentions & set(b.nodes)}
    inside = {b.id for b in blocks if b.group in streams}
    hidden = {la.out_group for la in layers
              if la.op in ("Gemm", "MatMul") and la.in_group in streams and la.block in inside}
    kinds = {**dict.fromkeys(hidden - streams, "mlp_hidden"), **dict.fromkeys(streams, "embedding")}
    return tuple(replace(g, kind=kinds[g.id]) if g.kind == "channels" and g.id in kinds else g for g in groups)


def _with_parents(blocks: list[Block]) -> list[Block]:
    """Set each block's parent: the smallest other block whose branch holds its Add node."""
    result = []
    for block in blocks:
        holders = [b for b in blocks if b.id != block.id and block.add in b.nodes]
        parent = min(holders, key=lambda b: len(b.nodes)).id if holders else None
        result.append(Block(block.id, block.add, block.input, block.branch_output, block.nodes,
                            block.group, parent))
    return result


def _innermost_block(blocks: list[Block]) -> dict[str, str]:
    block_of: dict[str, str] = {}
    for block in sorted(blocks, key=lambda b: -len(b.nodes)):
        for name in block.nodes:
            block_of[name] = block.id
    return block_of
