"""One entry point for every solver, so the CLI, the sweep and `build` pick one by name."""

from __future__ import annotations

import math
from typing import Literal

from mdp_trt.errors import InputError
from mdp_trt.solve.budget import raise_if_unreachable
from mdp_trt.solve.deadline import Deadline
from mdp_trt.solve.halp import solve_halp
from mdp_trt.solve.milp import solve_milp
from mdp_trt.solve.minlp import Engine, solve_minlp
from mdp_trt.solve.problem import Problem
from mdp_trt.solve.solution import Solution
from mdp_trt.solve.uniform import solve_uniform

SolverName = Literal["milp", "minlp", "halp", "uniform"]
SOLVERS: tuple[str, ...] = ("milp", "minlp", "halp", "uniform")
ENGINES: tuple[str, ...] = ("scip", "mindtpy")


def check_options(solver: str, minlp_engine: str = "scip", time_limit: float | None = None) -> None:
    """Raise `InputError` for an unknown solver or engine or a time limit that is not a finite number > 0.

    Separate from `solve` so the CLI can refuse bad options before reading a large problem file.
    """
    if solver not in SOLVERS:
        raise InputError(f"unknown solver {solver!r}: choose one of {', '.join(SOLVERS)}")
    if minlp_engine not in ENGINES:
        raise InputError(f"unknown minlp engine {minlp_engine!r}: choose one of {', '.join(ENGINES)}")
    if time_limit is not None and not (math.isfinite(time_limit) and time_limit > 0):
        raise InputError(f"time limit must be a finite number of seconds > 0 (omit it for none), got {time_limit}")


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
    `InputError` for an unknown solver or engine. `time_limit` (seconds) bounds the wall time of the
    whole call, model building, presolve and the final checks included: milp and minlp return their
    best plan so far (with bound and gap), halp stops between rounds; uniform is a bisection over a
    few plans and needs no limit. A solver that found no plan in time returns status "infeasible".
    """
    check_options(solver, minlp_engine, time_limit)
    deadline = Deadline(time_limit)
    if solver == "milp":
        return solve_milp(problem, budget, deadline)
    if solver == "minlp":
        return solve_minlp(problem, budget, deadline, minlp_engine)
    result = solve_halp(problem, budget, deadline) if solver == "halp" else solve_uniform(problem, budget)
    if result.status == "infeasible":  # a heuristic's miss is not proof of an impossible budget
        raise_if_unreachable(problem, result.budget, deadline)
    return result
