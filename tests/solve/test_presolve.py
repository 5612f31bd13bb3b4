"""Presolve and the greedy start: what they remove and that they keep an optimum."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mdp_trt.solve import Problem, evaluate
from mdp_trt.solve.greedy import greedy_plan
from mdp_trt.solve.reduce import reduce
from mdp_trt.solve.terms import Terms
from tests.solve.mdp_cases import exhaustive, plans, problem_docs


def _doc(latency: list[list[float]], importance: list[float], budget: float = 100.0, gated: float = 5) -> dict:
    return {
        "format": "mdp-problem/1",
        "budget": budget,
        "groups": [{"id": "a", "levels": [1, 2, 3]}, {"id": "b", "levels": [1, 2]}],
        "blocks": [{"id": "k"}],
        "layers": [
            {"id": "l", "in_group": "b", "out_group": "a", "block": None, "latency": latency, "importance": importance},
            {
                "id": "m",
                "in_group": None,
                "out_group": "b",
                "block": "k",
                "latency": [[gated, 90]],
                "importance": [1, 2],
            },
        ],
    }


def test_a_level_never_better_than_a_wider_one_is_dropped() -> None:
    # level 1 of `a` is slower than level 2 for every level of `b` and earns less: it goes
    problem = Problem.from_json(_doc([[1, 4, 3], [2, 6, 5]], [0, 1, 2]))
    domains = reduce(problem, Terms.of(problem), "importance", None)
    assert domains.levels["a"] == (0, 2)


def test_unaffordable_levels_and_blocks_are_dropped() -> None:
    # a at level 2 costs at least 30 > 20; keeping k costs at least 1 + 25 > 20
    problem = Problem.from_json(_doc([[1, 2, 30], [2, 3, 40]], [0, 1, 2], budget=20, gated=25))
    domains = reduce(problem, Terms.of(problem), "importance", 20)
    assert domains.levels["a"] == (0, 1) and domains.blocks_off == {"k"}
    assert not domains.infeasible
    assert reduce(problem, Terms.of(problem), "importance", 0.5).infeasible


@settings(max_examples=60, deadline=None)
@given(problem_docs(), st.floats(0.0, 1.0))
def test_presolve_keeps_an_optimal_plan_and_greedy_is_feasible(doc: dict, fraction: float) -> None:
    problem = Problem.from_json(doc)
    latencies = [evaluate(problem, lv, kept).latency for lv, kept in plans(problem)]
    budget = min(latencies) + fraction * (max(latencies) - min(latencies))
    domains = reduce(problem, Terms.of(problem), "importance", budget)
    assert not domains.infeasible
    best_inside = max(
        evaluate(problem, lv, kept, budget).objective
        for lv, kept in plans(problem)
        if evaluate(problem, lv, kept, budget).feasible
        and all(lv[g] in allowed for g, allowed in domains.levels.items())
        and not set(kept) & domains.blocks_off
    )
    assert best_inside == exhaustive(problem, budget).best
    start = greedy_plan(problem, Terms.of(problem), domains, budget)
    if start is not None:
        assert evaluate(problem, start[0], start[1], budget).feasible
