"""Constants wherever they come from: aliases, folds and static shape values (mdp_trt/graph/constants.py)."""

from __future__ import annotations

import numpy as np
from onnx import numpy_helper

from mdp_trt.graph import analyze
from mdp_trt.graph.view import GraphView
from mdp_trt.prune import Plan
from tests.onnx_graphs import Graph
from tests.oracle import assert_oracle


def _shared_bias_model():
    """Two convs whose equal biases the exporter stored once, handed out through Identity aliases."""
    g = Graph()
    bias = g.const(np.linspace(-0.2, 0.3, 8).astype(np.float32), "onnx::Conv_")
    alias_a = g.node("Identity", [bias])
    alias_b = g.node("Identity", [bias])
    w1 = g.const((g.rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32), "w")
    w2 = g.const((g.rng.standard_normal((8, 8, 3, 3)) * 0.3).astype(np.float32), "w")
    a = g.node("Relu", [g.node("Conv", ["input", w1, alias_a], pads=[1] * 4)])
    b = g.node("Relu", [g.node("Conv", [a, w2, alias_b], pads=[1] * 4)])
    pooled = g.node("Flatten", [g.node("GlobalAveragePool", [b])])
    return g.model(g.gemm(pooled, 8, 4)), alias_a, alias_b, bias


def test_aliases_and_folds_are_constants_with_values():
    g = Graph()
    w = g.const(np.arange(6, dtype=np.float32), "w")
    cast = g.node("Cast", [g.node("Identity", [w])], to=10)
    shaped = g.node("Reshape", [cast, g.const(np.array([2, 3], np.int64))])
    total = g.node("Cast", [g.node("ReduceSum", [shaped], keepdims=0)], to=1)
    out = g.node("Add", ["input", total])
    view = GraphView(g.model(out))
    assert view.is_constant(shaped) and view.constant(shaped).shape == (2, 3)
    assert view.constant(shaped).dtype == np.float16
    assert not view.is_constant(out)


def test_shape_reads_are_static_not_constant():
    g = Graph()
    x = g.node("Relu", ["input"])
    channels = g.node("Gather", [g.node("Shape", [x]), g.const(np.array(1, np.int64))], axis=0)
    half = g.node("Div", [channels, g.const(np.array(2, np.int64))])
    view = GraphView(g.model(g.node("Add", [x, g.node("Cast", [half], to=1)])))
    assert not view.is_constant(half)
    assert int(view.static_value(half)) == 1  # 3 channels // 2


def test_a_bias_behind_an_alias_is_sliced_and_keeps_its_alias_name():
    model, alias_a, alias_b, bias = _shared_bias_model()
    structure = analyze(model)
    first, second = (structure.group(la.out_group) for la in structure.layers[:2])
    plan = Plan({first.id: (0, 2, 5), second.id: (1, 3, 4, 7)})
    pruned = assert_oracle(model, structure, plan, np.random.default_rng(0))
    stored = {t.name: numpy_helper.to_array(t) for t in pruned.graph.initializer}
    np.testing.assert_array_equal(stored[alias_a], np.linspace(-0.2, 0.3, 8)[[0, 2, 5]].astype(np.float32))
    np.testing.assert_array_equal(stored[alias_b], np.linspace(-0.2, 0.3, 8)[[1, 3, 4, 7]].astype(np.float32))
    assert bias not in stored  # no reader is left for the original


def test_readers_that_need_the_same_slice_keep_sharing_one_initializer():
    g = Graph()
    w = g.const((g.rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32), "tied")
    a = g.node("Conv", ["input", w], pads=[1] * 4)
    b = g.node("Conv", ["input", w], pads=[1] * 4)
    y = g.node("Add", [g.node("Relu", [a]), b])  # ties both outputs: one group, one slice
    model = g.model(g.gemm(g.node("Flatten", [g.node("GlobalAveragePool", [y])]), 8, 4))
    structure = analyze(model)
    stream = structure.group(structure.layers[0].out_group)
    pruned = assert_oracle(model, structure, Plan({stream.id: (1, 4, 6)}), np.random.default_rng(1))
    convs = [n for n in pruned.graph.node if n.op_type == "Conv"]
    assert convs[0].input[1] == convs[1].input[1] == w
    assert sum(t.name.startswith(w) for t in pruned.graph.initializer) == 1
