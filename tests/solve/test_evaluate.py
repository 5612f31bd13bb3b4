"""The shared grader on hand-checked plans."""

from __future__ import annotations

import pytest

from mdp_trt.errors import InputError
from mdp_trt.solve import Problem, evaluate
from tests.solve.test_problem import BASE


@pytest.fixture
def problem() -> Problem:
    return Problem.from_json(BASE)


def test_latency_and_objective_read_the_tables(problem: Problem) -> None:
    ev = evaluate(problem, {"g0": 2, "g1": 1}, ["b1", "b2"])
    # fixed 1 + conv1[0][2]=3 + conv2[2][1]=4 + fc[1][0]=1 ; importance conv1[2]=7 + fc=3
    assert (ev.latency, ev.objective, ev.feasible) == (9.0, 10.0, True)


def test_a_removed_block_costs_and_earns_nothing(problem: Problem) -> None:
    kept = evaluate(problem, {"g0": 2, "g1": 1}, ["b1", "b2"])
    removed = evaluate(problem, {"g0": 2, "g1": 1}, ["b1"])
    assert kept.latency - removed.latency == 4.0  # exactly conv2's entry
    assert kept.objective == removed.objective  # conv2 has no importance


def test_broken_rules_are_infeasible_with_a_reason(problem: Problem) -> None:
    assert "outside" in evaluate(problem, {"g0": 0, "g1": 1}, []).reason
    assert "parent" in evaluate(problem, {"g0": 1, "g1": 1}, ["b2"]).reason
    over = evaluate(problem, {"g0": 2, "g1": 1}, ["b1", "b2"], budget=8.0)
    assert not over.feasible and "exceeds" in over.reason


def test_depthwise_layers_use_the_diagonal() -> None:
    doc = {
        "format": "mdp-problem/1",
        "budget": 100,
        "groups": [{"id": "g", "levels": [1, 2]}],
        "blocks": [],
        "layers": [
            {
                "id": "dw",
                "in_group": "g",
                "out_group": "g",
                "block": None,
                "latency": [[1, 50], [60, 2]],
                "importance": [0, 1],
            }
        ],
    }
    problem = Problem.from_json(doc)
    assert evaluate(problem, {"g": 0}, []).latency == 1
    assert evaluate(problem, {"g": 1}, []).latency == 2


@pytest.mark.parametrize(
    ("levels", "blocks"),
    [({"g0": 1}, []), ({"g0": 1, "g1": 1, "g2": 0}, []), ({"g0": 3, "g1": 1}, []), ({"g0": 1, "g1": 1}, ["b9"])],
)
def test_malformed_plans_raise(problem: Problem, levels: dict, blocks: list) -> None:
    with pytest.raises(InputError):
        evaluate(problem, levels, blocks)
