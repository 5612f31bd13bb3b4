"""Run a Pyomo model on HiGHS (through Pyomo's persistent `appsi_highs` interface, i.e. highspy).

One place for the options every exact solve shares, and for turning HiGHS's answer into the three
facts the callers need: is there a plan, is it proven optimal, what is the dual bound.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pyomo.environ as pyo
from pyomo.contrib.appsi.base import TerminationCondition
from pyomo.contrib.appsi.solvers import Highs

from mdp_trt.errors import BackendUnavailable

# HiGHS's default relative gap (1e-4) would call a plan 0.01% off "optimal"; we mean optimal.
MIP_REL_GAP = 1e-9


_WITH_PLAN = (
    TerminationCondition.optimal,
    TerminationCondition.maxTimeLimit,
    TerminationCondition.maxIterations,
    TerminationCondition.objectiveLimit,
)


@dataclass(frozen=True)
class Outcome:
    """HiGHS's verdict; the model's variables hold the incumbent when `has_plan`."""

    has_plan: bool
    proven: bool
    bound: float | None
    infeasible: bool = False  # proven: the model has no feasible point


def run(
    model: pyo.ConcreteModel,
    *,
    time_limit: float | None = None,
    abs_gap: float = 0.0,
    rel_gap: float = MIP_REL_GAP,
    warm_start: bool = False,
) -> Outcome:
    """Solve `model` and load its incumbent.

    `abs_gap` lets the caller stop at a gap that cannot hide a better plan (e.g. just under 1 when every
    plan's objective is an integer); `rel_gap` defaults to what we call optimal. `warm_start` passes the
    variables' current values as a MIP start.
    HiGHS 1.16 can hand back the MIP start itself while reporting the better objective it reached in
    its presolved space; the loaded values are checked against that objective, and on a mismatch the
    model is solved again without the start.
    """
    objective = next(model.component_data_objects(pyo.Objective, active=True))
    if (
        pyo.is_constant(objective.expr)
        and next(model.component_data_objects(pyo.Constraint, active=True), None) is None
    ):
        return Outcome(has_plan=True, proven=True, bound=None)  # no variable is used: any plan is optimal
    start = time.perf_counter()
    outcome, claimed = _solve_once(model, time_limit, abs_gap, rel_gap, warm_start)
    if warm_start and outcome.has_plan and claimed is not None:
        value = pyo.value(objective.expr)
        if abs(value - claimed) > 1e-6 * max(1.0, abs(claimed)):
            left = None if time_limit is None else time_limit - (time.perf_counter() - start)
            outcome, _ = _solve_once(model, left, abs_gap, rel_gap, False)
    return outcome


def _solve_once(
    model: pyo.ConcreteModel, time_limit: float | None, abs_gap: float, rel_gap: float, warm_start: bool
) -> tuple[Outcome, float | None]:
    """One HiGHS run; also returns the objective HiGHS claims for its incumbent."""
    solver = Highs()
    if not solver.available():
        raise BackendUnavailable("HiGHS is not installed: pip install highspy")
    solver.config.stream_solver = False
    solver.config.load_solution = False
    solver.config.warmstart = warm_start
    solver.config.mip_gap = rel_gap
    if time_limit is not None:
        solver.config.time_limit = max(time_limit, 0.01)
    solver.highs_options = {
        "mip_abs_gap": abs_gap,
        "mip_feasibility_tolerance": 1e-9,
        "primal_feasibility_tolerance": 1e-9,
        "random_seed": 0,
    }
    result = solver.solve(model)
    term = result.termination_condition
    has_plan = term in _WITH_PLAN
    if has_plan:
        try:
            solver.load_vars()
        except RuntimeError:  # stopped by a limit before any plan was found
            has_plan = False
    outcome = Outcome(
        has_plan=has_plan,
        proven=term == TerminationCondition.optimal,
        bound=result.best_objective_bound,
        infeasible=term in (TerminationCondition.infeasible, TerminationCondition.infeasibleOrUnbounded),
    )
    return outcome, result.best_feasible_objective


@dataclass(frozen=True)
class Relaxation:
    """The LP relaxation's optimum: objective, and per variable its value and reduced cost."""

    objective: float
    values: dict[int, float]  # keyed by id() of the Pyomo variable
    reduced_costs: dict[int, float]


def solve_relaxation(model: pyo.ConcreteModel, binaries: list[Any], time_limit: float | None) -> Relaxation | None:
    """Solve `model` with `binaries` relaxed to [0, 1] (restored afterwards); None if not solved to optimality."""
    for var in binaries:
        var.domain = pyo.UnitInterval
    try:
        solver = Highs()
        solver.config.stream_solver = False
        solver.config.load_solution = False
        if time_limit is not None:
            solver.config.time_limit = max(time_limit, 0.01)
        solver.highs_options = {"solver": "simplex", "random_seed": 0}
        result = solver.solve(model)
        if result.termination_condition != TerminationCondition.optimal:
            return None
        values = solver.get_primals()
        costs = solver.get_reduced_costs()
        return Relaxation(
            result.best_feasible_objective,
            {id(v): float(x) for v, x in values.items()},
            {id(v): float(d) for v, d in costs.items()},
        )
    finally:
        for var in binaries:
            var.domain = pyo.Binary
