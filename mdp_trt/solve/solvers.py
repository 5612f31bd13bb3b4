"""One entry point for every solver, so the CLI, the sweep and `build` pick one by name."""

from __future__ import annotations

from typing import Literal

from mdp_trt.errors import InputError
from mdp_trt.solve.budget import raise_if_unreachable
from mdp_trt.solve.halp import solve_halp
from mdp_trt.solve.milp import solve_milp
from mdp_trt.solve.minlp import Engine, solve_minlp
from mdp_trt.solve.problem import Problem
from mdp_trt.solve.solution import Solution
from mdp_trt.solve.uniform import solve_uniform

SolverName = Literal["milp", "minlp", "halp", "uniform"]
SOLVERS: tuple[str, ...] = ("milp", "minlp", "halp", "uniform")
ENGINES: tuple[str, ...] = ("scip", "mindtpy")


def solve(
    problem: Problem,
    solver: SolverName = "milp",
    *,
    budget: float | None = None,
    time_limit: float | None = None,
    minlp_engine: Engine = "scip",
) -> Solution:
    """Best plan `solver` finds for `budget` (default: the problem's), graded by `evaluate`.

    Raises `BudgetError` when the budget is below the smallest reachable latency, whatever the solver,
    `InputError` for an unknown solver or engine. `time_limit` (seconds) applies to milp and minlp; the
    heuristics are fast and ignore it.
    """
    if solver not in SOLVERS:
        raise InputError(f"unknown solver {solver!r}: choose one of {', '.join(SOLVERS)}")
    if minlp_engine not in ENGINES:
        raise InputError(f"unknown minlp engine {minlp_engine!r}: choose one of {', '.join(ENGINES)}")
    if time_limit is not None and not time_limit > 0:
        raise InputError(f"time limit must be > 0 seconds, got {time_limit}")
    if solver == "milp":
        return solve_milp(problem, budget, time_limit)
    if solver == "minlp":
        return solve_minlp(problem, budget, time_limit, minlp_engine)
    result = solve_halp(problem, budget) if solver == "halp" else solve_uniform(problem, budget)
    if result.status == "infeasible":
        raise_if_unreachable(problem, result.budget)  # a heuristic's miss is not proof of an impossible budget
    return result
