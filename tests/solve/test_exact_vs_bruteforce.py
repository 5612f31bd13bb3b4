"""The exact solvers against exhaustive enumeration on small random problems."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mdp_trt.errors import BudgetError
from mdp_trt.solve import Problem, evaluate, min_latency, solve
from tests.solve.mdp_cases import close, exhaustive, plans, problem_docs

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _budget(problem: Problem, fraction: float) -> tuple[float, float]:
    """A budget `fraction` of the way from the fastest plan to the slowest one, and the fastest latency."""
    facts = exhaustive(problem, float("inf"))
    slowest = max(evaluate(problem, lv, kept).latency for lv, kept in plans(problem))
    return facts.min_latency + fraction * (slowest - facts.min_latency), facts.min_latency


@SETTINGS
@given(problem_docs(), st.floats(0.0, 1.0))
def test_milp_matches_exhaustive_optimum_and_baselines_never_beat_it(doc: dict, fraction: float) -> None:
    problem = Problem.from_json(doc)
    budget, _ = _budget(problem, fraction)
    best = exhaustive(problem, budget).best
    assert best is not None
    result = solve(problem, "milp", budget=budget)
    assert result.status == "optimal"
    assert close(result.objective, best), (result.objective, best)
    ev = evaluate(problem, result.levels, result.blocks_kept, budget)
    assert ev.feasible and close(ev.objective, result.objective) and close(ev.latency, result.latency)
    assert result.bound is not None and result.bound >= result.objective - 1e-6
    for baseline in ("halp", "uniform"):
        other = solve(problem, baseline, budget=budget)
        assert evaluate(problem, other.levels, other.blocks_kept, budget).feasible == (other.status != "infeasible")
        if other.status != "infeasible":
            assert other.objective <= result.objective + 1e-6 * max(1.0, abs(result.objective))
        assert set(other.blocks_kept) == {b.id for b in problem.blocks}  # baselines keep every block


@SETTINGS
@given(problem_docs())
def test_min_latency_is_exact_and_budgets_below_it_raise(doc: dict) -> None:
    problem = Problem.from_json(doc)
    fastest = exhaustive(problem, float("inf")).min_latency
    assert close(min_latency(problem), fastest)
    if fastest >= 0.5:
        for solver in ("milp", "halp", "uniform"):
            with pytest.raises(BudgetError) as info:
                solve(problem, solver, budget=fastest - 0.5)
            assert close(info.value.min_latency_ms, fastest)
            assert f"{fastest:.6g}" in str(info.value)
    # exactly the smallest latency is reachable
    assert solve(problem, "milp", budget=fastest).status == "optimal"


@settings(max_examples=8, deadline=None)
@given(problem_docs(), st.floats(0.2, 1.0))
def test_scip_minlp_equals_milp(doc: dict, fraction: float) -> None:
    pytest.importorskip("pyscipopt")
    problem = Problem.from_json(doc)
    budget, _ = _budget(problem, fraction)
    exact = solve(problem, "milp", budget=budget)
    scip = solve(problem, "minlp", budget=budget)
    assert scip.status == "optimal"
    assert close(scip.objective, exact.objective)
    assert evaluate(problem, scip.levels, scip.blocks_kept, budget).feasible
