"""Exactness oracle on every zoo model: pruned == masked, keep-all == original, graphs valid."""

from __future__ import annotations

import numpy as np
import pytest

from mdp_trt.graph import analyze
from mdp_trt.prune import Plan, prune_model
from mdp_trt.zoo import NAMES, build
from tests.oracle import assert_oracle, random_inputs, random_plan, run


@pytest.fixture(scope="module", params=NAMES)
def zoo_model(request):
    model = build(request.param, input_size=64, num_classes=10, batch=None)
    return model, analyze(model)


@pytest.mark.parametrize("seed", [0, 1])
def test_random_plans_match_the_masked_model(zoo_model, seed):
    model, structure = zoo_model
    rng = np.random.default_rng(seed)
    pruned = assert_oracle(model, structure, random_plan(structure, rng), rng)
    assert len(pruned.graph.node) <= len(model.graph.node)


def test_keep_everything_reproduces_the_original_exactly(zoo_model):
    model, structure = zoo_model
    pruned = prune_model(model, structure, Plan())
    feeds = random_inputs(model, np.random.default_rng(3))
    for a, b in zip(run(pruned, feeds), run(model, feeds), strict=True):
        np.testing.assert_array_equal(a, b)


def test_min_plan_keeps_one_channel_everywhere_and_all_blocks_removed(zoo_model):
    """One channel per group, or per part of a group in equal parts; an attention keeps its last head only,
    with one channel in each of its groups."""
    model, structure = zoo_model
    groups = {g.id: tuple(range(g.part_size - 1, g.size, g.part_size)) for g in structure.prunable_groups}
    for tie in structure.heads:
        groups[tie.heads] = (structure.group(tie.heads).size - 1,)
        groups.update({m: (structure.group(m).size - 1,) for m in tie.members})
    plan = Plan(groups, tuple(b.id for b in structure.blocks))
    assert_oracle(model, structure, plan, np.random.default_rng(4))


def test_bn_folded_models_prune_the_same_way():
    rng = np.random.default_rng(5)
    for name in ("resnet18", "mobilenet_v2"):
        model = build(name, input_size=64, num_classes=10, fold_bn=True)
        structure = analyze(model)
        assert not any(n.op_type == "BatchNormalization" for n in model.graph.node)
        assert_oracle(model, structure, random_plan(structure, rng), rng)
