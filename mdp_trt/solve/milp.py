"""The default solver: the exact MILP (see `formulation`) on presolved domains, solved by HiGHS.

Steps: aggregate layers into terms; drop dominated and unaffordable levels (`reduce`); build the model;
find a greedy plan; solve the LP relaxation and fix every binary whose reduced cost proves it cannot
lead to a better plan (`rcfix`); solve the much smaller MIP that is left with the greedy plan as MIP
start. When every importance value is an integer, every plan's objective is one too, so we only look
for plans at least 1 better, and a dual bound less than 1 above the incumbent proves it optimal (the
reported bound is then rounded down to an integer).
"""

from __future__ import annotations

import math

import numpy as np

from mdp_trt.solve.budget import raise_if_unreachable, require_budget
from mdp_trt.solve.deadline import Deadline
from mdp_trt.solve.evaluate import evaluate
from mdp_trt.solve.formulation import Formulation
from mdp_trt.solve.greedy import greedy_plan
from mdp_trt.solve.highs import MIP_REL_GAP, Outcome, run
from mdp_trt.solve.problem import Problem
from mdp_trt.solve.rcfix import fix_by_reduced_costs
from mdp_trt.solve.reduce import reduce
from mdp_trt.solve.solution import Solution
from mdp_trt.solve.terms import Terms

Plan = tuple[dict[str, int], set[str]]


def solve_milp(problem: Problem, budget: float | None = None, deadline: Deadline | None = None) -> Solution:
    """Best plan for the budget; status "optimal" when proven, else "feasible" with bound and gap.

    Every stage runs on `deadline`'s clock; when it passes before the MIP, the greedy plan is returned
    (unproven). Raises `BudgetError` when no plan fits the budget.
    """
    deadline = deadline or Deadline(None)

    def graded(plan: Plan, proven: bool, bound: float | None) -> Solution:
        if integral and bound is not None and math.isfinite(bound):
            bound = math.floor(bound + 1e-7)
        return Solution.grade(problem, budget, *plan, solver="milp", seconds=deadline.elapsed(), proven=proven,
                              bound=bound)

    budget = require_budget(problem, budget)
    integral = _integral(problem)
    gap = 1.0 - 1e-6 if integral else 0.0
    terms = Terms.of(problem)
    domains = reduce(problem, terms, "importance", budget)
    if domains.infeasible:
        raise_if_unreachable(problem, budget, deadline, proven=True)
    form = Formulation(problem, terms, domains, "importance", budget)
    warm = greedy_plan(problem, terms, domains, budget)
    if warm is None:  # no incumbent to fix against: the full MIP
        outcome = run(form.model, deadline, abs_gap=gap)
        if not outcome.has_plan:
            raise_if_unreachable(problem, budget, deadline, proven=outcome.infeasible)
            return Solution.none_found(problem, budget, solver="milp", seconds=deadline.elapsed())
        return graded(form.plan(), outcome.proven, outcome.bound)

    incumbent = evaluate(problem, *warm, budget).objective
    wanted = incumbent + (1.0 - 1e-6 if integral else MIP_REL_GAP * max(1.0, abs(incumbent)))
    fixing = fix_by_reduced_costs(problem, form, domains, incumbent, wanted, deadline)
    if fixing is not None and fixing.incumbent_optimal:
        return graded(warm, proven=True, bound=incumbent)
    if deadline.expired():  # no time for the MIP: the greedy plan, with the LP's bound when there was one
        return graded(warm, proven=False, bound=None if fixing is None else fixing.lp_bound)
    if fixing is not None:
        form = Formulation(problem, terms, fixing.domains, "importance", budget)
    use_start = form.admits(*warm)
    if use_start:
        form.set_start(*warm)
    outcome = run(form.model, deadline, abs_gap=gap, warm_start=use_start)
    lp_bound = None if fixing is None else fixing.lp_bound
    return _best(problem, budget, form, warm, outcome, wanted, lp_bound, graded)


def _best(problem: Problem, budget: float, form: Formulation, warm: Plan, outcome: Outcome, wanted: float,
          lp_bound: float | None, graded):
    """The better of the MIP's plan and the greedy one, with a bound valid for the whole problem.

    Fixing removed only regions with nothing >= `wanted`, so the MIP's bound, raised to `wanted`, holds
    for the whole problem, and so does the LP bound of the unfixed model; an infeasible reduced model
    means nothing better than the incumbent exists. A MIP stopped before it had a bound leaves the LP's
    (or none).
    """
    candidates = [warm]
    if outcome.has_plan:
        candidates.append(form.plan())
    plans = [(evaluate(problem, *plan, budget), plan) for plan in candidates]
    best_eval, best = max(plans, key=lambda p: (p[0].feasible, p[0].objective))
    proven = outcome.proven or outcome.infeasible
    mip_bound = outcome.bound if outcome.bound is not None and math.isfinite(outcome.bound) else None
    if proven:
        bound = max(mip_bound if mip_bound is not None and outcome.has_plan else -math.inf, best_eval.objective)
    else:
        valid = [b for b in (None if mip_bound is None else max(mip_bound, wanted), lp_bound) if b is not None]
        bound = min(valid) if valid else None
    return graded(best, proven, bound)


def _integral(problem: Problem) -> bool:
    """Whether every plan's objective is an integer (all importance values are)."""
    return all(np.array_equal(la.importance, np.round(la.importance)) for la in problem.layers)
