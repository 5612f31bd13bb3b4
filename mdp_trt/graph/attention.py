"""Attention cores as timed layers: `softmax(q @ k^T * scale) @ v` costs what its head widths make it cost.

The products hold no weights, but their cost grows with the query/key width (contracted in `q @ k^T`) and
with the value width (the rows of `attn @ v`), at the model's token counts. So each attention becomes one
layer of the latency model, op `Attention`, whose input side is its `qk_dim` group and whose output side is
its `v_dim` group: the bilayer table MDP prescribes, over the two widths pruning changes. Its probe
(`latency.probes`) is the same core at the same heads, tokens and batch.

An attention is found from the product that contracts a head width (`rules/products.py` records it as a
reduction), then along the scores (scale, bias, softmax: one reader each) to the product that reads them.
"""

from __future__ import annotations

import onnx

from mdp_trt.graph.groups import GroupIndex
from mdp_trt.graph.structure import ATTENTION_OP, Layer, Reduction, Segment
from mdp_trt.graph.view import GraphView

# What exporters put between the scores and `attn @ v`: the scale, masks and biases, the softmax, casts, and
# the views that add a mask per window (Swin: `attn.view(-1, windows, H, N, N) + mask`, then back).
SCORE_OPS = frozenset({"Mul", "Div", "Add", "Sub", "Softmax", "Cast", "Where", "Dropout", "Reshape", "Transpose"})


def attention_layers(view: GraphView, index: GroupIndex, reductions: tuple[Reduction, ...],
                     block_of: dict[str, str]) -> list[Layer]:
    layers = []
    for reduction in reductions:
        scores = view.node_by_name[reduction.node]
        if scores.op_type != "MatMul":
            continue
        found = _values_of_scores(view, scores.output[0])
        if found is None or found[0] not in index.tensors:
            continue
        layer = _layer(view, index, scores, *found, block_of)
        if layer is not None:
            layers.append(layer)
    return layers


def _windows(view: GraphView, q_shape) -> int:
    """Attention rows per image: Swin's windows (its q is (B * windows, H, N, D)), else 1."""
    if len(q_shape) < 4 or not isinstance(q_shape[0], int) or not view.graph_inputs:
        return 1
    images = (view.shape(view.graph_inputs[0]) or (1,))[0]
    images = images if isinstance(images, int) and images > 0 else 1  # a symbolic batch is analysed at 1
    return max(1, q_shape[0] // images)


def _values_of_scores(view: GraphView, tensor: str) -> tuple[str, bool] | None:
    """v, which a MatMul multiplies the (scaled, softmaxed) scores with, and whether v is its first factor
    (ultralytics' PSA computes `v @ attn^T`)."""
    while True:
        readers = view.consumers.get(tensor, [])
        if len(readers) != 1:
            return None
        node = readers[0]
        if node.op_type == "MatMul":
            return (node.input[1], False) if node.input[0] == tensor else (node.input[0], True)
        if node.op_type not in SCORE_OPS:
            return None
        tensor = node.output[0]


def _layer(view: GraphView, index: GroupIndex, scores: onnx.NodeProto, v: str, v_first: bool,
           block_of: dict[str, str]) -> Layer | None:
    q = scores.input[0]
    qk_groups, v_groups = set(index.tensors[q].group.tolist()), set(index.tensors[v].group.tolist())
    q_shape, v_shape = view.shape(q), view.shape(v)
    if len(qk_groups) != 1 or len(v_groups) != 1 or q_shape is None or v_shape is None:
        return None
    if any(not isinstance(d, int) for d in (*q_shape[1:], *v_shape[1:])):
        return None
    qk, value = index.groups[qk_groups.pop()], index.groups[v_groups.pop()]
    heads = qk.parts
    if value.parts != heads:
        return None
    queries, keys = int(q_shape[-2]), int(v_shape[-1] if v_first else v_shape[-2])
    windows = _windows(view, q_shape)
    dtype = onnx.helper.tensor_dtype_to_np_dtype(view.dtypes.get(q, onnx.TensorProto.FLOAT)).name
    return Layer(
        name=scores.name,
        op=ATTENTION_OP,
        in_group=qk.id,
        out_group=value.id,
        in_channels=qk.size,
        out_channels=value.size,
        in_segments=(Segment(qk.id, qk.size),),
        out_segments=(Segment(value.id, value.size),),
        in_repeat=1,
        input_shape=(None, heads, queries, qk.size // heads),
        output_shape=(None, heads, queries, value.size // heads),
        weight_shape=(),
        has_bias=False,
        attrs={"heads": heads, "keys": keys, "windows": windows},
        epilogue=(),
        block=block_of.get(scores.name),
        dtype=dtype,
    )
