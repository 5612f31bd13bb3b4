"""Channel groups on hand-written graphs: each test pins one coupling rule."""

from __future__ import annotations

import numpy as np

from mdp_trt.graph import analyze
from tests.onnx_graphs import Graph


def group_of(structure, layer_name: str, side: str = "out"):
    layer = structure.layer(layer_name)
    gid = layer.out_group if side == "out" else layer.in_group
    return structure.group(gid)


def head(g: Graph, x: str, c: int) -> str:
    return g.gemm(g.node("Flatten", [g.node("GlobalAveragePool", [x])]), c, 5)


def test_residual_add_couples_both_producers():
    g = Graph()
    a = g.node("Relu", [g.bn(g.conv("input", 3, 8), 8)])
    b = g.conv(g.node("Relu", [g.conv(a, 8, 6)]), 6, 8)
    y = g.node("Add", [a, b])
    s = analyze(g.model(head(g, y, 8)))
    conv_a, conv_b = s.layers[0].name, s.layers[2].name
    assert group_of(s, conv_a) == group_of(s, conv_b)
    stream = group_of(s, conv_a)
    assert stream.prunable and stream.size == 8
    assert set(stream.producers) == {conv_a, conv_b}
    assert len(s.blocks) == 1 and s.blocks[0].group == stream.id
    inner = group_of(s, s.layers[1].name)
    assert inner.id != stream.id and inner.size == 6


def test_depthwise_conv_ties_input_and_output():
    g = Graph()
    a = g.conv("input", 3, 8)
    d = g.conv(a, 8, 8, group=8)
    s = analyze(g.model(head(g, g.conv(d, 8, 4), 4)))
    dw = s.layer(s.layers[1].name)
    assert dw.depthwise and dw.in_group == dw.out_group == s.layers[0].out_group


def test_grouped_conv_keeps_equal_parts_on_both_sides():
    g = Graph()
    a = g.conv("input", 3, 8)
    s = analyze(g.model(head(g, g.conv(a, 8, 12, group=4), 12)))
    before, after = s.group(s.layers[0].out_group), s.group(s.layers[1].out_group)
    assert before.prunable and (before.parts, before.part_size) == (4, 2)
    assert after.prunable and (after.parts, after.part_size) == (4, 3)


def test_concat_keeps_parts_as_separate_groups():
    g = Graph()
    a, b = g.conv("input", 3, 4), g.conv("input", 3, 6)
    cat = g.node("Concat", [a, b], axis=1)
    s = analyze(g.model(head(g, g.conv(cat, 10, 5), 5)))
    consumer = s.layers[2]
    assert consumer.in_group is None
    assert [(seg.group, seg.size) for seg in consumer.in_segments] == [
        (s.layers[0].out_group, 4), (s.layers[1].out_group, 6)]


def test_split_on_channels_maps_offsets_and_couples_a_part():
    g = Graph()
    a = g.conv("input", 3, 8)
    p, q = g.node("Split", [a, g.const(np.array([3, 5], np.int64))], n_out=2, axis=1)
    other = g.conv("input", 3, 3)
    joined = g.node("Add", [p, other])
    cat = g.node("Concat", [joined, q], axis=1)
    s = analyze(g.model(head(g, cat, 8)))
    first = group_of(s, s.layers[1].name)  # the conv added to the first part
    assert first.size == 3 and s.layers[0].name in first.producers
    sizes = sorted(grp.size for grp in s.groups if s.layers[0].name in grp.producers)
    assert sizes == [3, 5]


def test_squeeze_excitation_couples_the_excitation_with_the_stream():
    g = Graph()
    x = g.node("Relu", [g.conv("input", 3, 8)])
    squeeze = g.node("GlobalAveragePool", [x])
    excite = g.node("Sigmoid", [g.conv(g.node("Relu", [g.conv(squeeze, 8, 2, k=1)]), 2, 8, k=1)])
    y = g.node("Mul", [x, excite])
    s = analyze(g.model(head(g, y, 8)))
    assert group_of(s, s.layers[0].name) == group_of(s, s.layers[2].name)
    assert group_of(s, s.layers[1].name).size == 2


def test_flatten_into_gemm_expands_each_channel_over_space():
    g = Graph(shape=(1, 3, 4, 4))
    x = g.node("MaxPool", [g.conv("input", 3, 6)], kernel_shape=[2, 2], strides=[2, 2])
    y = g.gemm(g.node("Flatten", [x], axis=1), 6 * 2 * 2, 7)
    s = analyze(g.model(y))
    fc = s.layer(s.layers[1].name)
    assert fc.in_group == s.layers[0].out_group and fc.in_repeat == 4 and fc.in_channels == 6


def test_per_channel_constants_do_not_freeze():
    g = Graph()
    x = g.conv("input", 3, 8)
    y = g.node("Mul", [x, g.const(np.ones((1, 8, 1, 1), np.float32))])
    y = g.node("Add", [y, g.const(np.ones((8, 1, 1), np.float32))])
    y = g.node("PRelu", [y, g.const(np.full((8, 1, 1), 0.1, np.float32))])
    s = analyze(g.model(head(g, y, 8)))
    assert group_of(s, s.layers[0].name).prunable


def test_unknown_op_freezes_with_the_op_named():
    g = Graph()
    x = g.conv("input", 3, 8)
    y = g.node("LRN", [x], size=3)
    s = analyze(g.model(head(g, y, 8)))
    frozen = group_of(s, s.layers[0].name)
    assert not frozen.prunable and "LRN" in frozen.reason


def test_softmax_over_channels_freezes_but_over_space_does_not():
    for axis, prunable in ((1, False), (3, True)):
        g = Graph()
        x = g.conv("input", 3, 8)
        s = analyze(g.model(head(g, g.node("Softmax", [x], axis=axis), 8)))
        assert group_of(s, s.layers[0].name).prunable is prunable


def test_graph_input_and_output_are_frozen():
    g = Graph()
    y = g.conv(g.node("Relu", [g.conv("input", 3, 8)]), 8, 4)
    s = analyze(g.model(y))
    assert not group_of(s, s.layers[0].name, "in").prunable
    out = group_of(s, s.layers[1].name)
    assert not out.prunable and out.reason == "graph output"
    assert group_of(s, s.layers[0].name).prunable


def test_ids_are_stable_across_runs():
    g = Graph()
    a = g.node("Relu", [g.conv("input", 3, 8)])
    y = g.node("Add", [a, g.conv(g.node("Relu", [g.conv(a, 8, 4)]), 4, 8)])
    model = g.model(head(g, y, 8))
    assert analyze(model).to_json() == analyze(model).to_json()


def test_json_document_shape():
    g = Graph()
    a = g.node("Relu", [g.conv("input", 3, 8)])
    y = g.node("Add", [a, g.conv(g.node("Relu", [g.conv(a, 8, 4)]), 4, 8)])
    doc = analyze(g.model(head(g, y, 8))).to_json()
    assert set(doc) == {"groups", "layers", "blocks", "heads"} and doc["heads"] == []
    assert set(doc["groups"][0]) == {"id", "size", "parts", "kind", "prunable", "reason", "producers", "consumers"}
    assert {grp["kind"] for grp in doc["groups"]} == {"channels"}  # a CNN: no attention, no token stream
    assert set(doc["layers"][0]) == {"name", "op", "in_group", "out_group"}
    assert set(doc["blocks"][0]) == {"id", "nodes", "group"}
