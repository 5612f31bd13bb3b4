"""Pareto sweep: the best importance for evenly spaced budgets, from the fastest plan to the dense one."""

from __future__ import annotations

from typing import Any

import numpy as np

from mdp_trt.errors import InputError
from mdp_trt.solve.evaluate import evaluate
from mdp_trt.solve.min_latency import min_latency
from mdp_trt.solve.minlp import Engine
from mdp_trt.solve.problem import Problem
from mdp_trt.solve.solution import Solution
from mdp_trt.solve.solvers import SolverName, solve

MAX_POINTS = 1000  # each point is a solve of its own; more is a typo, not a curve


def check_points(points: int) -> None:
    """Raise `InputError` unless 2 <= points <= MAX_POINTS."""
    if not 2 <= points <= MAX_POINTS:
        raise InputError(f"a sweep needs between 2 and {MAX_POINTS} points, got {points}")


def sweep_budgets(problem: Problem, points: int) -> list[float]:
    """`points` budgets evenly spaced from the smallest reachable latency to the dense latency.

    Raises `InputError` when the smallest reachable latency is not positive (a negative `fixed_latency`
    larger than any plan's tables): no budget, which is positive, would start the curve there.
    """
    check_points(points)
    dense = evaluate(problem, problem.dense_levels(), [b.id for b in problem.blocks]).latency
    low = min_latency(problem)
    if not low > 0:
        raise InputError(f"the smallest reachable latency is {low:.6g} {problem.units.split()[0]}, not a positive "
                         "latency: fixed_latency outweighs the tables")
    return [float(b) for b in np.linspace(low, max(dense, low), points)]


def sweep(
    problem: Problem,
    points: int,
    solver: SolverName = "milp",
    *,
    time_limit: float | None = None,
    minlp_engine: Engine = "scip",
) -> list[Solution]:
    """One solution per budget of `sweep_budgets` (time_limit applies to each solve)."""
    return [
        solve(problem, solver, budget=b, time_limit=time_limit, minlp_engine=minlp_engine)
        for b in sweep_budgets(problem, points)
    ]


def curve(solutions: list[Solution]) -> list[dict[str, Any]]:
    """The importance-vs-latency curve as printed by `mdp-trt solve --sweep`."""
    return [{"budget": s.budget, "latency": s.latency, "objective": s.objective, "status": s.status} for s in solutions]
