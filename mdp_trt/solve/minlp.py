"""The paper's formulation handed to a MINLP solver as it stands, without our linearisation.

One-hot binaries y per group, z per block; latency = sum over layers of z_b * sum_ij T[i,j] y_in[i] y_out[j]
(trilinear for gated layers) and importance = sum of z_b * I[j] y_out[j]. Two engines:
- `scip` (default): SCIP through pyscipopt, products of binaries as polynomial expressions. SCIP is a
  global solver, so "optimal" is a proof and its dual bound is valid.
- `mindtpy`: Pyomo's MindtPy Outer Approximation with a feasibility-pump start, GLPK for the MILPs and
  Ipopt for the NLPs, exactly as the MDP authors ran it. OA is only a heuristic on this non-convex
  problem, so its plans are never reported as proven.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from mdp_trt.errors import BackendUnavailable
from mdp_trt.solve.budget import raise_if_unreachable, require_budget
from mdp_trt.solve.deadline import MIN_RUN_SECONDS, Deadline
from mdp_trt.solve.problem import Problem
from mdp_trt.solve.solution import Solution
from mdp_trt.solve.stoppable import Report, ignore, run_until

Engine = Literal["scip", "mindtpy"]
_NLP_HEURISTICS = ("mpec", "subnlp", "nlpdiving", "multistart")


class _OutOfTime(Exception):
    """The deadline passed while the model was being built: there is no plan to report."""


def _objective_and_latency(problem: Problem, y: dict, z: dict, deadline: Deadline) -> tuple[Any, Any]:
    """Importance and latency as polynomials of the binaries (products of y's and z's, not linearised).

    Building them is the slow part on large tables, so the deadline is checked layer by layer.
    """
    importance: Any = 0
    latency: Any = problem.fixed_latency
    for layer in problem.layers:
        if deadline.expired():
            raise _OutOfTime
        gate = [] if layer.block is None else [z[layer.block]]
        rows = [(0, [])] if layer.in_group is None else [(i, [v]) for i, v in y[layer.in_group].items()]
        cols = [(0, [])] if layer.out_group is None else [(j, [v]) for j, v in y[layer.out_group].items()]
        for j, col in cols:
            if layer.importance.size and layer.importance[j]:
                importance += float(layer.importance[j]) * math.prod(col + gate, start=1)
            for i, row in rows:
                if layer.in_group is not None and layer.in_group == layer.out_group and i != j:
                    continue  # depthwise: one group, so only the diagonal is reachable
                coef = float(layer.latency[i, j])
                if coef:
                    factors = row + col if layer.in_group != layer.out_group else col
                    latency += coef * math.prod(factors + gate, start=1)
    return importance, latency


@dataclass(frozen=True)
class _Found:
    levels: dict[str, int]
    kept: list[str]
    proven: bool
    bound: float | None


def _solve_scip(problem: Problem, budget: float, deadline: Deadline) -> _Found | None:
    """SCIP in a worker stopped at the deadline (see `stoppable`); killed, it gives its last incumbent."""
    try:
        import pyscipopt  # noqa: F401 - checked here, in this process, so a missing SCIP is one line
    except ImportError as exc:
        raise BackendUnavailable("the minlp solver needs SCIP: pip install pyscipopt") from exc
    found, latest = run_until(lambda report: _scip(problem, budget, deadline, report), deadline)
    return found if found is not None else latest


def _scip(problem: Problem, budget: float, deadline: Deadline, report: Report) -> _Found | None:
    from pyscipopt import SCIP_EVENTTYPE, Eventhdlr, Model, quicksum

    m = Model("mdp")
    m.hideOutput()
    # Every nonlinearity is a product of binaries, so SCIP's NLP-based heuristics have nothing to
    # solve; one of them (MPEC, through the bundled Ipopt) aborts the process on the ResNet-101 instance.
    for heuristic in _NLP_HEURISTICS:
        m.setParam(f"heuristics/{heuristic}/freq", -1)
    y = {g.id: {i: m.addVar(f"y_{g.id}_{i}", vtype="B") for i in g.allowed} for g in problem.groups}
    z = {b.id: m.addVar(f"z_{b.id}", vtype="B") for b in problem.blocks}

    def found(sol, proven: bool, bound: float) -> _Found:
        levels = {g: next(i for i, v in vs.items() if m.getSolVal(sol, v) > 0.5) for g, vs in y.items()}
        kept = [b for b, v in z.items() if m.getSolVal(sol, v) > 0.5]
        return _Found(levels, kept, proven, bound if math.isfinite(bound) else None)

    class Incumbents(Eventhdlr):
        """Reports each new best plan, which is what a worker killed at the deadline hands back."""

        def eventinit(self) -> None:
            self.model.catchEvent(SCIP_EVENTTYPE.BESTSOLFOUND, self)

        def eventexec(self, event) -> None:
            report(found(self.model.getBestSol(), False, self.model.getDualbound()))

    if report is not ignore:
        m.includeEventhdlr(Incumbents(), "incumbents", "reports each new best plan")
    for g in problem.groups:
        m.addCons(quicksum(y[g.id].values()) == 1)
    for b in problem.blocks:
        if b.parent is not None:
            m.addCons(z[b.id] <= z[b.parent])
    try:
        importance, latency = _objective_and_latency(problem, y, z, deadline)
    except _OutOfTime:
        return None
    if isinstance(latency, float):  # no layer depends on a choice
        if latency > budget:
            return None
    else:
        m.addCons(latency <= budget)
    t = m.addVar("importance", lb=0, ub=None)
    m.addCons(t <= importance)
    m.setObjective(t, "maximize")
    if deadline.expired():
        return None
    left = deadline.left()
    if left is not None:  # what is left after building the polynomials (SCIP's range ends at 1e20)
        m.setParam("limits/time", min(max(left, MIN_RUN_SECONDS), 1e20))
    m.optimize()
    if m.getNSols() == 0:
        return None
    return found(m.getBestSol(), m.getStatus() == "optimal", m.getDualbound())


def _solve_mindtpy(problem: Problem, budget: float, deadline: Deadline) -> _Found | None:
    """MindtPy in this process (killing a worker would orphan its glpsol and ipopt processes)."""
    import pyomo.environ as pyo  # only here: importing Pyomo costs every CLI start 0.16 s

    missing = [
        need
        for name, need in (
            ("glpk", "glpsol (apt install glpk-utils)"),
            ("ipopt", "an ipopt executable (e.g. conda-forge ipopt)"),
        )
        if not pyo.SolverFactory(name).available(exception_flag=False)
    ]
    if missing:
        raise BackendUnavailable(f"the mindtpy engine needs {' and '.join(missing)} on PATH")
    m = pyo.ConcreteModel()
    keys = [(g.id, i) for g in problem.groups for i in g.allowed]
    m.y = pyo.Var(keys, domain=pyo.Binary)
    m.z = pyo.Var([b.id for b in problem.blocks], domain=pyo.Binary)
    y = {g.id: {i: m.y[g.id, i] for i in g.allowed} for g in problem.groups}
    m.c = pyo.ConstraintList()
    for g in problem.groups:
        m.c.add(sum(y[g.id].values()) == 1)
    for b in problem.blocks:
        if b.parent is not None:
            m.c.add(m.z[b.parent] >= m.z[b.id])
    try:
        importance, latency = _objective_and_latency(problem, y, m.z, deadline)
    except _OutOfTime:
        return None
    if not pyo.is_constant(latency):
        m.c.add(latency <= budget)
    elif pyo.value(latency) > budget:
        return None
    m.obj = pyo.Objective(expr=importance, sense=pyo.maximize)
    options: dict[str, Any] = {"strategy": "OA", "init_strategy": "FP", "mip_solver": "glpk", "nlp_solver": "ipopt"}
    if deadline.expired():
        return None
    left = deadline.left()
    if left is not None:  # MindtPy takes whole seconds
        options["time_limit"] = max(math.floor(left), 1)
    result = pyo.SolverFactory("mindtpy").solve(m, **options)
    if result.solver.termination_condition == pyo.TerminationCondition.infeasible:
        return None
    if any(m.y[k].value is None for k in keys):
        return None
    levels = {g: next(i for i, v in vs.items() if v.value > 0.5) for g, vs in y.items()}
    kept = [b.id for b in problem.blocks if m.z[b.id].value > 0.5]
    return _Found(levels, kept, proven=False, bound=None)  # OA proves nothing on a non-convex problem


def solve_minlp(
    problem: Problem, budget: float | None = None, deadline: Deadline | None = None, engine: Engine = "scip"
) -> Solution:
    """Solve the untransformed MINLP with `engine`; raises `BackendUnavailable` when it is missing."""
    deadline = deadline or Deadline(None)
    budget = require_budget(problem, budget)
    run = {"scip": _solve_scip, "mindtpy": _solve_mindtpy}[engine]
    found = run(problem, budget, deadline)
    if found is None:
        raise_if_unreachable(problem, budget, deadline)
        return Solution.none_found(problem, budget, solver=f"minlp-{engine}", seconds=deadline.elapsed())
    return Solution.grade(
        problem,
        budget,
        found.levels,
        found.kept,
        solver=f"minlp-{engine}",
        seconds=deadline.elapsed(),
        proven=found.proven,
        bound=found.bound,
    )
