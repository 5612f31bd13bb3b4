"""`problem_from_model`: importance normalised to the fraction kept, and block scores as a floor on
what removing a block costs."""

from __future__ import annotations

import numpy as np
import pytest

from mdp_trt.graph import analyze
from mdp_trt.importance.selection import with_head_scores
from mdp_trt.latency.backends import get_backend
from mdp_trt.latency.calibrate import Calibration
from mdp_trt.latency.grid import GridConfig, group_levels
from mdp_trt.latency.predict import layer_sum
from mdp_trt.latency.profile import profile_tables
from mdp_trt.latency.store import LatencyDB
from mdp_trt.solve import Problem
from mdp_trt.solve.evaluate import evaluate
from mdp_trt.solve.from_model import plan_from_solution, problem_from_model
from mdp_trt.solve.solution import Solution
from mdp_trt.zoo import build

GRID = GridConfig(levels=3, align=2)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """The toy model: one removable block b0 whose only internal group is g2."""
    structure = analyze(build("toy", input_size=16))
    with LatencyDB(tmp_path_factory.mktemp("db") / "lat.sqlite") as db:
        tables = profile_tables(structure, get_backend("analytic"), db, grid=GRID).tables
    rng = np.random.default_rng(0)
    scores = {g.id: rng.uniform(0.5, 1.5, g.size) for g in structure.groups}
    return structure, tables, group_levels(structure, GRID), scores


def solve_inputs(toy, scores):
    structure, tables, levels, _ = toy
    return problem_from_model(structure, scores, tables, levels, Calibration(1.0, 0.0))


def dense_levels(problem):
    return {g.id: g.max_index for g in problem.groups}


def test_dense_keeps_all_importance_and_a_block_loses_its_groups(toy):
    scores = toy[3]
    problem = solve_inputs(toy, scores)
    prunable = [g.id for g in problem.groups]
    total = sum(scores[g].sum() for g in prunable)
    dense = evaluate(problem, dense_levels(problem), ["b0"])
    assert dense.objective == pytest.approx(1.0)
    without = evaluate(problem, dense_levels(problem), [])
    assert without.objective == pytest.approx(1.0 - scores["g2"].sum() / total)


def test_a_block_score_above_its_groups_scores_is_what_removing_it_costs(toy):
    _, _, _, scores = toy
    internal = scores["g2"].sum()
    problem = solve_inputs(toy, scores | {"b0": np.array([3.0 * internal])})
    total = sum(scores[g.id].sum() for g in problem.groups) + 2.0 * internal
    assert evaluate(problem, dense_levels(problem), ["b0"]).objective == pytest.approx(1.0)
    without = evaluate(problem, dense_levels(problem), [])
    assert without.objective == pytest.approx(1.0 - 3.0 * internal / total)


def test_a_block_score_below_its_groups_scores_changes_nothing(toy):
    _, _, _, scores = toy
    plain = solve_inputs(toy, scores)
    scored = solve_inputs(toy, scores | {"b0": np.array([0.5 * scores["g2"].sum()])})
    assert [la.id for la in scored.layers] == [la.id for la in plain.layers]
    for kept in (["b0"], []):
        assert (evaluate(scored, dense_levels(scored), kept).objective
                == pytest.approx(evaluate(plain, dense_levels(plain), kept).objective))


def test_a_block_whose_groups_have_no_term_of_their_own_still_costs_them(toy):
    """The default grid's alignment leaves g2 (8 channels) one level: no term, yet removing b0 loses it."""
    structure, tables, _, scores = toy
    coarse = group_levels(structure, GridConfig(levels=3, align=8))
    assert len(coarse["g2"]) == 1
    problem = problem_from_model(structure, scores, tables, coarse, Calibration(1.0, 0.0))
    assert "g2" not in {g.id for g in problem.groups}
    kept = evaluate(problem, dense_levels(problem), ["b0"]).objective
    removed = evaluate(problem, dense_levels(problem), []).objective
    total = sum(scores[g.id].sum() for g in problem.groups) + scores["g2"].sum()
    assert kept == pytest.approx(1.0)
    assert kept - removed == pytest.approx(scores["g2"].sum() / total)


def test_magnitude_prices_a_block_at_all_of_its_filters():
    from mdp_trt.importance import channel_scores

    model = build("toy", input_size=16)
    structure = analyze(model)
    scores = channel_scores(model, structure)
    inner = scores["g2"].sum()  # block.conv1's filters
    assert scores["b0"][0] > inner > 0  # block.conv2 writes the stream: its filters count too


@pytest.fixture(scope="module")
def vit(tmp_path_factory):
    structure = analyze(build("vit_tiny", input_size=32, num_classes=10))
    with LatencyDB(tmp_path_factory.mktemp("db") / "lat.sqlite") as db:
        tables = profile_tables(structure, get_backend("analytic"), db, grid=GRID).tables
    rng = np.random.default_rng(1)
    scores = {g.id: rng.uniform(0.5, 1.5, g.size) for g in structure.groups if g.kind != "heads"}
    return structure, tables, group_levels(structure, GRID), with_head_scores(structure, scores)


def test_an_attention_that_removes_heads_is_one_group_of_combinations_read_exactly(vit):
    """Its levels are (heads, query/key width, value width) combinations; at any of them, the problem's
    latency and importance are those of the plan it becomes (the prediction of the same tables), and the
    plan removes whole heads, the best ones kept."""
    structure, tables, levels, scores = vit
    problem = problem_from_model(structure, scores, tables, levels, Calibration(1.0, 0.0), use_blocks=False)
    tie = structure.heads[0]
    group = problem.group_by_id[tie.heads]
    assert set(group.widths) == {tie.heads, *tie.members} and not set(tie.members) & set(problem.group_by_id)
    assert len(set(zip(*group.widths.values(), strict=True))) == len(group.levels)  # every combination once
    assert Problem.from_json(problem.to_json()).group_by_id[tie.heads].widths == group.widths
    total = sum(float(scores[g.id].sum()) for g in structure.prunable_groups if g.kind != "heads")
    rng = np.random.default_rng(0)
    blocks = [b.id for b in problem.blocks]
    for _ in range(4):
        chosen = {g.id: int(rng.integers(len(g.levels))) for g in problem.groups}
        solution = Solution.grade(problem, 1e9, chosen, blocks, solver="test", seconds=0.0)
        plan = plan_from_solution(structure, scores, levels, solution, problem)
        plan.validate(structure)
        assert solution.latency == pytest.approx(layer_sum(structure, tables, plan), rel=1e-9)
        kept = sum(float(scores[g.id][list(plan.kept(g.id, g.size))].sum())
                   for g in structure.prunable_groups if g.kind != "heads")
        assert solution.objective == pytest.approx(kept / total, rel=1e-9)
    heads = group.widths[tie.heads][0]
    fewest = Solution.grade(problem, 1e9, {**problem.dense_levels(), tie.heads: 0}, blocks, solver="test",
                            seconds=0.0)
    plan = plan_from_solution(structure, scores, levels, fewest, problem)
    best = tuple(sorted(np.argsort(-scores[tie.heads], kind="stable")[:heads].tolist()))
    assert heads < structure.group(tie.heads).size and plan.groups[tie.heads] == best


def test_removing_an_attention_loses_its_heads_channels_once(vit):
    """A heads group's score is the sum of its members': removing the attention sub-block that holds them
    loses the members' share, not that share and the heads' again."""
    structure, tables, levels, scores = vit
    problem = problem_from_model(structure, scores, tables, levels, Calibration(1.0, 0.0))
    tie = structure.heads[0]
    block = next(b for b in structure.blocks if structure.layer(structure.group(tie.members[0]).producers[0]).block
                 == b.id)
    total = sum(float(scores[g.id].sum()) for g in structure.prunable_groups if g.kind != "heads")
    kept = [b.id for b in problem.blocks]
    dense = evaluate(problem, problem.dense_levels(), kept).objective
    without = evaluate(problem, problem.dense_levels(), [b for b in kept if b != block.id]).objective
    assert dense == pytest.approx(1.0)
    assert dense - without == pytest.approx(sum(float(scores[m].sum()) for m in tie.members) / total)
