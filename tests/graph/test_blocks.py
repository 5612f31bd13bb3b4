"""Removable residual blocks: which Adds qualify, nesting, and layers' block membership."""

from __future__ import annotations

import numpy as np

from mdp_trt.graph import analyze
from mdp_trt.zoo import build
from tests.onnx_graphs import Graph


def branch(g: Graph, x: str, c: int) -> str:
    return g.conv(g.node("Relu", [g.conv(x, c, 4)]), 4, c)


def finish(g: Graph, y: str, c: int):
    return g.model(g.gemm(g.node("Flatten", [g.node("GlobalAveragePool", [y])]), c, 3))


def test_scaled_branch_is_a_block():
    g = Graph()
    x = g.node("Relu", [g.conv("input", 3, 8)])
    scaled = g.node("Mul", [branch(g, x, 8), g.const(np.array(0.5, np.float32))])
    s = analyze(finish(g, g.node("Add", [x, scaled]), 8))
    assert len(s.blocks) == 1
    assert any(n.startswith("mul") for n in s.blocks[0].nodes)


def test_branch_read_elsewhere_is_not_removable():
    g = Graph()
    x = g.node("Relu", [g.conv("input", 3, 8)])
    f = branch(g, x, 8)
    y = g.node("Add", [x, f])
    z = g.node("Add", [y, g.node("Relu", [f])])  # f also feeds another node
    s = analyze(finish(g, z, 8))
    assert [b.add for b in s.blocks if b.add == y.removesuffix("_out0")] == []


def test_projection_shortcut_is_not_a_block():
    g = Graph()
    x = g.node("Relu", [g.conv("input", 3, 8)])
    y = g.node("Add", [g.conv(x, 8, 8, k=1), branch(g, x, 8)])
    assert analyze(finish(g, y, 8)).blocks == ()


def test_nested_blocks_know_their_parent():
    g = Graph()
    x = g.node("Relu", [g.conv("input", 3, 8)])
    inner_in = g.node("Relu", [g.conv(x, 8, 8)])
    inner = g.node("Add", [inner_in, branch(g, inner_in, 8)])
    outer = g.node("Add", [x, g.conv(inner, 8, 8)])
    s = analyze(finish(g, outer, 8))
    assert len(s.blocks) == 2
    by_add = {b.add: b for b in s.blocks}
    inner_block = by_add[inner.removesuffix("_out0")]
    outer_block = by_add[outer.removesuffix("_out0")]
    assert inner_block.parent == outer_block.id and outer_block.parent is None
    assert {la.block for la in s.layers if la.name in inner_block.nodes} == {inner_block.id}


def test_resnet_blocks_are_the_identity_shortcuts():
    s = analyze(build("resnet50", input_size=64, num_classes=10))
    # 16 bottlenecks, 4 of them with a projection shortcut
    assert len(s.blocks) == 12
    assert all(b.group is not None for b in s.blocks)
    s18 = analyze(build("resnet18", input_size=64, num_classes=10))
    assert len(s18.blocks) == 5


def test_symbolic_image_sizes_keep_blocks_and_prune_exactly():
    from mdp_trt.prune import Plan, mask_model, prune_model
    from tests.oracle import run

    static = build("resnet18", input_size=32)
    dynamic = build("resnet18", input_size=32)
    for axis, name in ((2, "height"), (3, "width")):
        dim = dynamic.graph.input[0].type.tensor_type.shape.dim[axis]
        dim.Clear()
        dim.dim_param = name
    fixed, free = analyze(static), analyze(dynamic)
    assert len(free.blocks) == len(fixed.blocks) > 0
    assert [(g.size, g.prunable) for g in free.groups] == [(g.size, g.prunable) for g in fixed.groups]
    assert free.layers[0].input_shape[2:] == (None, None)  # profiling still needs --input-shape
    plan = Plan({g.id: tuple(range(0, g.size, 2)) for g in free.prunable_groups}, (free.blocks[1].id,))
    x = {"input": np.random.default_rng(0).standard_normal((1, 3, 48, 40)).astype(np.float32)}
    for got, want in zip(run(prune_model(dynamic, free, plan), x), run(mask_model(dynamic, free, plan), x),
                         strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(want).max())))
