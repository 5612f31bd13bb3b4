"""Time limits, the sweep API, the synthetic generator and missing MINLP back-ends."""

from __future__ import annotations

import numpy as np
import pyomo.environ as pyo
import pytest

from mdp_trt.errors import BackendUnavailable
from mdp_trt.solve import Problem, evaluate, min_latency, solve, sweep, sweep_budgets
from mdp_trt.solve.synthetic import mobilenet_v2, resnet
from tests.solve.test_problem import BASE


def _dense(problem: Problem) -> float:
    return evaluate(problem, problem.dense_levels(), [b.id for b in problem.blocks]).latency


def test_time_limited_milp_returns_a_feasible_plan_with_a_bound() -> None:
    problem = resnet(50, levels=16, seed=1)
    budget = 0.5 * _dense(problem)
    result = solve(problem, "milp", budget=budget, time_limit=0.05)
    assert result.status in ("feasible", "optimal")
    assert evaluate(problem, result.levels, result.blocks_kept, budget).feasible
    if result.bound is not None:
        assert result.bound >= result.objective and 0 <= result.gap <= 1


@pytest.mark.parametrize(
    ("make", "dense_ms", "depthwise"), [(lambda: resnet(50, 8), 10.0, False), (lambda: mobilenet_v2(8), 5.0, True)]
)
def test_synthetic_problems_are_valid_and_realistic(make, dense_ms: float, depthwise: bool) -> None:
    problem = make()
    assert Problem.from_json(problem.to_json()).to_json() == problem.to_json()  # passes validation
    assert any(la.in_group == la.out_group for la in problem.layers) == depthwise
    for layer in problem.layers:  # monotone latency, increasing concave importance
        assert (np.diff(layer.latency, axis=0) >= 0).all() and (np.diff(layer.latency, axis=1) >= 0).all()
        steps = np.diff(layer.importance)
        assert (steps >= 0).all() and (np.diff(steps) <= 1e-9 * layer.importance.sum()).all()
    assert _dense(problem) == pytest.approx(dense_ms)


def test_sweep_spans_fastest_to_dense_and_improves_monotonically() -> None:
    problem = Problem.from_json(BASE)
    budgets = sweep_budgets(problem, 5)
    assert budgets[0] == pytest.approx(min_latency(problem)) and budgets[-1] == pytest.approx(_dense(problem))
    results = sweep(problem, 5)
    assert [r.budget for r in results] == budgets
    assert all(r.status == "optimal" for r in results)
    assert [r.objective for r in results] == sorted(r.objective for r in results)


def test_mindtpy_engine_needs_glpk_and_ipopt() -> None:
    problem = Problem.from_json(BASE)
    have = all(pyo.SolverFactory(s).available(exception_flag=False) for s in ("glpk", "ipopt"))
    if have:
        result = solve(problem, "minlp", minlp_engine="mindtpy", time_limit=30)
        assert result.status in ("feasible", "infeasible") and result.bound is None  # OA proves nothing
    else:
        with pytest.raises(BackendUnavailable, match=r"glpk-utils|ipopt"):
            solve(problem, "minlp", minlp_engine="mindtpy")
