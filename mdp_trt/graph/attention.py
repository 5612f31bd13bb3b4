"""Attention cores as timed layers: `softmax(q @ k^T * scale) @ v` costs what its heads and head widths make it cost.

The products hold no weights, but their cost grows with the heads, with the query/key width (contracted in
`q @ k^T`) and with the value width (the rows of `attn @ v`), at the model's token counts. Three widths, so
each attention becomes two layers of the latency model, each a bilayer table MDP prescribes:

* op `AttentionScores`, `softmax(q @ k^T * scale)`: input side its `heads` group, output side its `qk_dim`
  group (the whole width, heads x head dim);
* op `AttentionValues`, `attn @ v`: input side its `heads` group, output side its `v_dim` group.

Where the heads are no group of their own (`nn.MultiheadAttention` with a dynamic batch), the input side is
the fixed head count. Their probes (`latency.probes`) are the same products at the same heads, tokens,
windows and batch.

An attention is found from the product that contracts a head width (`rules/products.py` records it as a
reduction), then along the scores (scale, bias, softmax: one reader each) to the product that reads them.
"""

from __future__ import annotations

import onnx

from mdp_trt.graph.groups import GroupIndex
from mdp_trt.graph.structure import ATTENTION_SCORES, ATTENTION_VALUES, HeadsTie, Layer, Reduction, Segment
from mdp_trt.graph.view import GraphView

# What exporters put between the scores and `attn @ v`: the scale, masks and biases, the softmax, casts, and
# the views that add a mask per window (Swin: `attn.view(-1, windows, H, N, N) + mask`, then back).
SCORE_OPS = frozenset({"Mul", "Div", "Add", "Sub", "Softmax", "Cast", "Where", "Dropout", "Reshape", "Transpose"})


def attention_layers(view: GraphView, index: GroupIndex, reductions: tuple[Reduction, ...],
                     heads: tuple[HeadsTie, ...], block_of: dict[str, str]) -> list[Layer]:
    heads_of = {m: tie.heads for tie in heads for m in tie.members}
    layers = []
    for reduction in reductions:
        scores = view.node_by_name[reduction.node]
        if scores.op_type != "MatMul":
            continue
        found = _values_of_scores(view, scores.output[0])
        if found is None or found[1] not in index.tensors:
            continue
        layers += _layers(view, index, scores, *found, heads_of, block_of)
    return layers


def _windows(view: GraphView, q_shape) -> int:
    """Attention rows per image: Swin's windows (its q is (B * windows, H, N, D)), else 1."""
    if len(q_shape) < 4 or not isinstance(q_shape[0], int) or not view.graph_inputs:
        return 1
    images = (view.shape(view.graph_inputs[0]) or (1,))[0]
    images = images if isinstance(images, int) and images > 0 else 1  # a symbolic batch is analysed at 1
    return max(1, q_shape[0] // images)


def _values_of_scores(view: GraphView, tensor: str) -> tuple[str, str, bool] | None:
    """The MatMul that multiplies the (scaled, softmaxed) scores with v, v, and whether v is its first factor
    (ultralytics' PSA computes `v @ attn^T`)."""
    while True:
        readers = view.consumers.get(tensor, [])
        if len(readers) != 1:
            return None
        node = readers[0]
        if node.op_type == "MatMul":
            return (node.name, node.input[1], False) if node.input[0] == tensor else (node.name, node.input[0], True)
        if node.op_type not in SCORE_OPS:
            return None
        tensor = node.output[0]


def _layers(view: GraphView, index: GroupIndex, scores: onnx.NodeProto, values: str, v: str, v_first: bool,
            heads_of: dict[str, str], block_of: dict[str, str]) -> list[Layer]:
    q = scores.input[0]
    qk_groups, v_groups = set(index.tensors[q].group.tolist()), set(index.tensors[v].group.tolist())
    q_shape, v_shape = view.shape(q), view.shape(v)
    if len(qk_groups) != 1 or len(v_groups) != 1 or q_shape is None or v_shape is None:
        return []
    if any(not isinstance(d, int) for d in (*q_shape[1:], *v_shape[1:])):
        return []
    qk, value = index.groups[qk_groups.pop()], index.groups[v_groups.pop()]
    heads = qk.parts
    if value.parts != heads:
        return []
    heads_group = heads_of.get(qk.id) if heads_of.get(qk.id) == heads_of.get(value.id) else None
    queries, keys = int(q_shape[-2]), int(v_shape[-1] if v_first else v_shape[-2])
    dtype = onnx.helper.tensor_dtype_to_np_dtype(view.dtypes.get(q, onnx.TensorProto.FLOAT)).name
    attrs = {"keys": keys, "windows": _windows(view, q_shape)}

    def layer(name: str, op: str, group, head_width: int) -> Layer:
        return Layer(
            name=name,
            op=op,
            in_group=heads_group,
            out_group=group.id,
            in_channels=heads,
            out_channels=group.size,
            in_segments=(Segment(heads_group, heads),) if heads_group else (),
            out_segments=(Segment(group.id, group.size),),
            in_repeat=1,
            input_shape=(None, heads, queries, head_width),
            output_shape=(None, heads, queries, keys if op == ATTENTION_SCORES else head_width),
            weight_shape=(),
            has_bias=False,
            attrs=attrs,
            epilogue=(),
            block=block_of.get(scores.name),
            dtype=dtype,
        )

    return [layer(scores.name, ATTENTION_SCORES, qk, qk.part_size),
            layer(values, ATTENTION_VALUES, value, value.part_size)]
