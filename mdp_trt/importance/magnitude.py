"""Magnitude importance: how large each channel's producing filters are.

A channel's score is the norm of its producing filter after folding the BatchNormalization that
follows it (gamma / sqrt(var + eps) scales the filter), summed over the group's producers. Folding
first makes the score the same for a model exported with BN and one with BN folded into the conv.
"""

from __future__ import annotations

import numpy as np
import onnx

from mdp_trt.graph.analyze import prepare
from mdp_trt.graph.structure import Layer, Structure
from mdp_trt.graph.view import GraphView, attributes
from mdp_trt.importance.selection import with_head_scores


def channel_scores(model: onnx.ModelProto, structure: Structure, norm: str = "l2") -> dict[str, np.ndarray]:
    """Group id -> one non-negative score per channel (canonical order); block id -> one score, the
    summed scores of every filter inside the block (what removing it removes, stream filters included)."""
    if norm not in ("l1", "l2"):
        raise ValueError(f"norm must be 'l1' or 'l2', not {norm!r}")
    view = GraphView(prepare(model), infer_shapes=False)
    scores = {g.id: np.zeros(g.size, dtype=np.float64) for g in structure.groups}
    scores.update({b.id: np.zeros(1) for b in structure.blocks})
    parents = {b.id: b.parent for b in structure.blocks}
    group_ids = [g.id for g in structure.groups]
    for layer in structure.weighted_layers:
        node = view.node_by_name[layer.name]
        per_output = _filter_norms(view, node, layer, norm) * _bn_scale(view, layer)
        tc = structure.channels[node.output[0]]
        for position, (g, c) in enumerate(zip(tc.group.tolist(), tc.channel.tolist(), strict=True)):
            scores[group_ids[g]][c] += per_output[position]
        block = layer.block
        while block is not None:
            scores[block] += per_output.sum()
            block = parents[block]
    return with_head_scores(structure, scores)


def _filter_norms(view: GraphView, node: onnx.NodeProto, layer: Layer, norm: str) -> np.ndarray:
    weight = view.constant(node.input[1]).astype(np.float64)
    if layer.op == "Conv":
        rows = weight.reshape(weight.shape[0], -1)
    elif layer.op == "ConvTranspose":
        group = int(attributes(node).get("group", 1))
        per_group = weight.reshape(group, weight.shape[0] // group, weight.shape[1], -1)
        rows = per_group.transpose(0, 2, 1, 3).reshape(group * weight.shape[1], -1)
    elif layer.op == "Gemm" and attributes(node).get("transB", 0):
        rows = weight
    else:
        rows = weight.T
    return np.abs(rows).sum(axis=1) if norm == "l1" else np.sqrt((rows * rows).sum(axis=1))


def _bn_scale(view: GraphView, layer: Layer) -> np.ndarray | float:
    bn = next((e for e in layer.epilogue if e.op == "BatchNormalization"), None)
    if bn is None:
        return 1.0
    node = view.node_by_name[bn.name]
    gamma, var = view.constant(node.input[1]), view.constant(node.input[4])
    if gamma is None or var is None:
        return 1.0
    eps = float(attributes(node).get("epsilon", 1e-5))
    return np.abs(gamma.astype(np.float64)) / np.sqrt(var.astype(np.float64) + eps)
