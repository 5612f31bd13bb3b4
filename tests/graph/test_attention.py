"""Attention as exporters write it: fused projections cut part by part, q/k and v head dims, pinned scales.

Each graph is a one-block transformer on tokens (1, N, C): an embedding Linear, the attention (its qkv
projection cut into parts the way one exporter writes it), the output projection added to the stream, and
a classifier. The analysis must expose the query/key and value head dims as their own groups (one equal
part per head), the rewrite must compute what the export computes, and random plans must be exact.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest

from mdp_trt.graph import analyze
from mdp_trt.graph.analyze import prepare
from mdp_trt.importance import channel_scores
from mdp_trt.prune import Plan, prune_model
from tests.onnx_graphs import Graph
from tests.oracle import assert_oracle, random_inputs, random_plan, run

N, C, H = 5, 16, 4
D = C // H


def linear(g: Graph, x: str, k: int, n: int) -> str:
    w = g.const((g.rng.standard_normal((k, n)) * 0.3).astype(np.float32), "w")
    return g.node("Add", [g.node("MatMul", [x, w]), g.const((g.rng.standard_normal(n) * 0.1).astype(np.float32))])


def ints(g: Graph, values) -> str:
    return g.const(np.asarray(values, dtype=np.int64), "i")


def fused_parts(g: Graph, qkv: str, style: str) -> tuple[str, str, str]:
    """q, k, v (1, H, N, D) out of a fused (1, N, 3C) projection, as `style` writes the cut."""
    if style == "mha":  # PyTorch's MultiheadAttention: unflatten(-1, (3, E)).unsqueeze(0).transpose(0, -2).squeeze(-2)
        parts = g.node("Reshape", [qkv, ints(g, [1, N, 3, C])])
        parts = g.node("Unsqueeze", [parts, ints(g, [0])])
        parts = g.node("Transpose", [parts], perm=[3, 1, 2, 0, 4])
        parts = g.node("Squeeze", [parts, ints(g, [3])])  # (3, 1, N, C)
        heads = [g.node("Gather", [parts, g.const(np.asarray(i, dtype=np.int64))], axis=0) for i in range(3)]
        return tuple(g.node("Transpose", [g.node("Reshape", [t, ints(g, [1, N, H, D])])], perm=[0, 2, 1, 3])
                     for t in heads)
    parts = g.node("Transpose", [g.node("Reshape", [qkv, ints(g, [1, N, 3, H, D])])], perm=[2, 0, 3, 1, 4])
    if style == "split_squeeze":  # TorchScript's unbind(0)
        pieces = g.node("Split", [parts, ints(g, [1, 1, 1])], n_out=3, axis=0)
        return tuple(g.node("Squeeze", [p, ints(g, [0])]) for p in pieces)
    if style == "slice_squeeze":  # dynamo's unbind(0)
        return tuple(g.node("Squeeze", [g.node("Slice", [parts, ints(g, [i]), ints(g, [i + 1]), ints(g, [0])]),
                                        ints(g, [0])]) for i in range(3))
    assert style == "gather"  # qkv[0], qkv[1], qkv[2]
    return tuple(g.node("Gather", [parts, g.const(np.asarray(i, dtype=np.int64))], axis=0) for i in range(3))


def attention_model(style: str, scale_from_shape: bool = False, head_bias: bool = False) -> onnx.ModelProto:
    g = Graph(shape=(1, N, C))
    x = linear(g, "input", C, C)
    if style == "separate":
        q, k, v = (g.node("Transpose", [g.node("Reshape", [linear(g, x, C, C), ints(g, [1, N, H, D])])],
                          perm=[0, 2, 1, 3]) for _ in range(3))
    else:
        q, k, v = fused_parts(g, linear(g, x, C, 3 * C), style)
    if scale_from_shape:  # scaled_dot_product_attention in TorchScript: 1 / sqrt(Shape(q)[-1])
        width = g.node("Cast", [g.node("Slice", [g.node("Shape", [q]), ints(g, [-1]), ints(g, [2 ** 62])])], to=1)
        scale = g.node("Div", [g.const(np.ones(1, np.float32)), g.node("Sqrt", [width])])
    else:
        scale = g.const(np.asarray(D ** -0.5, dtype=np.float32))
    scores = g.node("MatMul", [g.node("Mul", [q, scale]), g.node("Transpose", [k], perm=[0, 1, 3, 2])])
    if head_bias:  # a bias per head on the scores (Swin's relative position bias, LeViT's attention biases)
        scores = g.node("Add", [scores, g.const(g.rng.standard_normal((H, N, N)).astype(np.float32), "bias")])
    context = g.node("MatMul", [g.node("Softmax", [scores], axis=-1), v])
    merged = g.node("Reshape", [g.node("Transpose", [context], perm=[0, 2, 1, 3]), ints(g, [1, N, C])])
    y = g.node("Add", [x, linear(g, merged, C, C)])
    return g.model(linear(g, y, C, 3))


STYLES = ["split_squeeze", "slice_squeeze", "gather", "mha", "separate"]


@pytest.mark.parametrize("style", STYLES)
def test_the_part_by_part_form_computes_what_the_export_computes(style: str) -> None:
    model = attention_model(style)
    rewritten = prepare(model)
    onnx.checker.check_model(rewritten, full_check=True)
    feeds = random_inputs(model, np.random.default_rng(0))
    np.testing.assert_array_equal(run(rewritten, feeds)[0], run(model, feeds)[0])
    reshapes = [n for n in rewritten.graph.node if n.op_type == "Reshape"]
    assert all(len(onnx.numpy_helper.to_array(t)) != 5 for t in rewritten.graph.initializer
               if t.name in {n.input[1] for n in reshapes}), "a reshape still cuts q, k and v apart"


@pytest.mark.parametrize("style", STYLES)
def test_query_key_and_value_head_dims_are_groups_of_their_own(style: str) -> None:
    structure = analyze(attention_model(style))
    kinds = {g.kind: g for g in structure.groups if g.prunable}
    assert {"qk_dim", "v_dim"} <= set(kinds), [(g.id, g.kind, g.reason) for g in structure.groups]
    for kind in ("qk_dim", "v_dim"):
        assert (kinds[kind].size, kinds[kind].parts) == (C, H)  # one equal part per head
    for seed in range(3):
        rng = np.random.default_rng(seed)
        assert_oracle(attention_model(style), structure, random_plan(structure, rng), rng)


def test_query_key_and_value_are_pruned_to_different_head_dims() -> None:
    model = attention_model("split_squeeze")
    structure = analyze(model)
    qk = next(g for g in structure.groups if g.kind == "qk_dim")
    v = next(g for g in structure.groups if g.kind == "v_dim")
    keep_qk = np.concatenate([np.arange(h * D, h * D + 1) for h in range(H)])  # 1 of 4 per head
    keep_v = np.concatenate([np.arange(h * D, h * D + 3) for h in range(H)])  # 3 of 4 per head
    plan = Plan({qk.id: tuple(keep_qk.tolist()), v.id: tuple(keep_v.tolist())}, ())
    pruned = assert_oracle(model, structure, plan, np.random.default_rng(0))
    initializers = {t.name: list(t.dims) for t in pruned.graph.initializer}
    weights = [initializers[n.input[1]] for n in pruned.graph.node
               if n.op_type == "MatMul" and n.input[1] in initializers]
    assert weights == [[C, C], [C, H * (1 + 1 + 3)], [H * 3, C], [C, 3]]  # embedding, qkv, output projection, head


def test_a_softmax_temperature_read_from_the_head_width_keeps_its_value() -> None:
    model = attention_model("split_squeeze", scale_from_shape=True)
    structure = analyze(model)
    assert len(structure.pinned) == 1
    assert structure.pinned[0].value == pytest.approx(D ** -0.5)
    qk = next(g for g in structure.groups if g.kind == "qk_dim")
    assert qk.prunable, qk.reason
    plan = Plan({qk.id: tuple(h * D + d for h in range(H) for d in range(2))}, ())
    pruned = assert_oracle(model, structure, plan, np.random.default_rng(0))
    assert "Sqrt" not in {n.op_type for n in pruned.graph.node}  # the computed scale became its constant


def test_parts_read_any_other_way_are_not_rewritten_and_freeze() -> None:
    g = Graph(shape=(1, N, C))
    qkv = linear(g, linear(g, "input", C, C), C, 3 * C)
    parts = g.node("Reshape", [qkv, ints(g, [1, N, 3, C])])
    summed = g.node("ReduceSum", [parts, ints(g, [2])], keepdims=0)
    model = g.model(linear(g, summed, C, 3))
    rewritten = prepare(model)
    assert [n.op_type for n in rewritten.graph.node] == [n.op_type for n in model.graph.node]
    structure = analyze(model)
    frozen = [grp for grp in structure.groups if grp.size == 3 * C]
    assert frozen and not frozen[0].prunable and "ReduceSum" in frozen[0].reason


def test_pruned_attention_runs_at_the_reduced_widths() -> None:
    model = attention_model("gather")
    structure = analyze(model)
    plan = random_plan(structure, np.random.default_rng(3), block_rate=0.0)
    pruned = prune_model(model, structure, plan)
    feeds = random_inputs(model, np.random.default_rng(1))
    assert run(pruned, feeds)[0].shape == (1, N, 3)


def test_the_zoo_vit_exposes_every_attention_and_prunes_exactly() -> None:
    from mdp_trt import zoo

    model = zoo.build("vit-tiny", input_size=32, batch="N", num_classes=10)
    structure = analyze(model)
    kinds = Counter(g.kind for g in structure.groups if g.prunable)
    assert (kinds["qk_dim"], kinds["v_dim"], kinds["mlp_hidden"], kinds["embedding"]) == (12, 12, 12, 1)
    assert len(structure.blocks) == 24  # attention and MLP of every block, apart
    rng = np.random.default_rng(0)
    assert_oracle(model, structure, random_plan(structure, rng, block_rate=0.3), rng)


def test_each_attention_is_timed_as_two_layers_over_its_heads_and_head_widths() -> None:
    from mdp_trt.graph.structure import ATTENTION_OPS, ATTENTION_SCORES, ATTENTION_VALUES

    structure = analyze(attention_model("split_squeeze"))
    scores, values = [la for la in structure.layers if la.op in ATTENTION_OPS]
    kinds = {g.kind: g for g in structure.groups}
    assert (scores.op, scores.in_group, scores.out_group) == (ATTENTION_SCORES, kinds["heads"].id, kinds["qk_dim"].id)
    assert (values.op, values.in_group, values.out_group) == (ATTENTION_VALUES, kinds["heads"].id, kinds["v_dim"].id)
    assert (scores.in_channels, scores.out_channels) == (H, C)
    assert scores.attrs == {"keys": N, "windows": 1} and scores.input_shape == (None, H, N, D)
    assert len(structure.weighted_layers) == len(structure.layers) - 2


@pytest.mark.parametrize("style", STYLES)
def test_whole_heads_are_a_group_tied_to_both_head_widths(style: str) -> None:
    """Removing heads 1 and 3 of 4 removes them from q, k and v and from the per-head bias, keeps the other
    heads' widths as the plan says, and computes what the masked model computes."""
    model = attention_model(style, head_bias=True)
    structure = analyze(model)
    kinds = {g.kind: g for g in structure.groups}
    heads, qk, v = kinds["heads"], kinds["qk_dim"], kinds["v_dim"]
    assert (heads.size, heads.prunable) == (H, True), heads.reason
    assert [(t.heads, t.members) for t in structure.heads] == [(heads.id, (qk.id, v.id))]
    assert structure.to_json()["heads"] == [{"heads": heads.id, "members": [qk.id, v.id]}]  # analyze --json
    kept = (0, 2)
    plan = Plan({heads.id: kept, qk.id: tuple(h * D + d for h in kept for d in (0, 3)),
                 v.id: tuple(h * D + d for h in kept for d in (0, 1, 2))}, ())
    pruned = assert_oracle(model, structure, plan, np.random.default_rng(0))
    shapes = [list(t.dims) for t in pruned.graph.initializer]
    assert [len(kept), N, N] in shapes  # the bias lost the removed heads
    matmuls = {tuple(t.dims) for t in pruned.graph.initializer if len(t.dims) == 2}
    out_projection = (len(kept) * 3, C)
    assert out_projection in matmuls, matmuls
    scores = channel_scores(model, structure)  # a head is worth its query/key and value channels
    np.testing.assert_allclose(scores[heads.id], scores[qk.id].reshape(H, D).sum(1) + scores[v.id].reshape(H, D).sum(1))


def test_a_plan_must_remove_a_head_from_all_its_groups_at_once() -> None:
    from mdp_trt.errors import InputError

    structure = analyze(attention_model("gather"))
    kinds = {g.kind: g for g in structure.groups}
    no_head_1 = tuple(h * D + d for h in (0, 2, 3) for d in range(D))
    with pytest.raises(InputError, match=r"keeps no channel in head 1|keeps channels in head 1"):
        Plan({kinds["qk_dim"].id: no_head_1}, ()).validate(structure)
    with pytest.raises(InputError, match="keeps channels in head 1, which"):
        Plan({kinds["heads"].id: (0, 2, 3), kinds["qk_dim"].id: no_head_1}, ()).validate(structure)
    Plan({kinds["heads"].id: (0, 2, 3), kinds["qk_dim"].id: no_head_1,
          kinds["v_dim"].id: no_head_1}, ()).validate(structure)


@pytest.mark.parametrize("dynamo_order", [False, True], ids=["torchscript", "dynamo"])
def test_a_linears_bias_and_erf_gelu_are_its_epilogue(dynamo_order: bool) -> None:
    """`MatMul + Add(bias)` then GELU as `x * 0.5 * (1 + erf(x / sqrt(2)))`, in either exporter's order of the
    two products: the layer's probe holds them, as ONNX Runtime fuses them with it."""
    g = Graph(shape=(1, N, C))
    h = linear(g, linear(g, "input", C, C), C, 4 * C)
    erf = g.node("Erf", [g.node("Div", [h, g.const(np.asarray(2 ** 0.5, dtype=np.float32))])])
    shifted = g.node("Add", [erf, g.const(np.ones((), np.float32))])
    half = g.const(np.asarray(0.5, dtype=np.float32))
    gelu = (g.node("Mul", [h, g.node("Mul", [half, shifted])]) if dynamo_order
            else g.node("Mul", [g.node("Mul", [h, shifted]), half]))
    structure = analyze(g.model(linear(g, gelu, 4 * C, 3)))
    fc1 = structure.weighted_layers[1]
    assert [e.op for e in fc1.epilogue] == ["BiasAdd", "Gelu"]
    assert fc1.epilogue[-1].name == next(n.name for n in g.nodes if n.output[0] == gelu)


def test_windowed_attention_is_timed_at_its_windows(tmp_path) -> None:
    """Swin attends within windows: q is (B * windows, H, N, D), and the probe holds as many rows."""
    pytest.importorskip("torch")
    from mdp_trt.latency.probes import ProbeSpec, build_probe
    from tests import families as fam

    path = fam.export(fam.make("swin"), tmp_path / "swin.onnx", fam.input_shape("swin"), fold_bn=True)
    cores = [la for la in analyze(onnx.load(path)).layers if la.op == "AttentionScores"]
    assert [la.attrs["windows"] for la in cores] == [16, 16, 4, 4]  # 16x16 tokens, then 8x8, in 4x4 windows
    probe = build_probe(ProbeSpec.from_layer(cores[0]), 2, 32, batch=2)  # 2 heads of 16 channels
    assert [d.dim_value for d in probe.graph.input[0].type.tensor_type.shape.dim] == [32, 2, 16, 16]


def test_q_k_and_v_interleaved_in_each_head_are_cut_per_head(tmp_path) -> None:
    """ultralytics' PSA attention, 4 heads: one qkv conv viewed as (B, H, 2 * kd + hd, N) and split per head.
    q/k and v are groups of their own, one part per head, and random plans (their widths apart) are exact."""
    torch = pytest.importorskip("torch")
    from tests import families as fam

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = torch.nn.Conv2d(3, 64, 3, 2, 1)
            self.attn = fam.Attention(64, num_heads=4)
            self.head = torch.nn.Linear(64, 5)

        def forward(self, x):
            x = torch.relu(self.stem(x))
            return self.head((x + self.attn(x)).mean((2, 3)))

    torch.manual_seed(0)
    path = fam.export(Net().eval(), tmp_path / "psa.onnx", (1, 3, 16, 16), fold_bn=True)
    model = onnx.load(path)
    structure = analyze(model)
    kinds = {g.kind: g for g in structure.groups if g.prunable}
    assert (kinds["qk_dim"].size, kinds["qk_dim"].parts, kinds["v_dim"].size, kinds["v_dim"].parts) == (32, 4, 64, 4)
    for seed in range(3):
        rng = np.random.default_rng(seed)
        assert_oracle(model, structure, random_plan(structure, rng, block_rate=0.0), rng)
