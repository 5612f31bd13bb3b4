"""The smallest latency any plan can reach: the same exact MILP, minimising latency instead.

Needed to tell a user by how much a budget is out of reach, and as the low end of a Pareto sweep.
Importance plays no part here, so presolve drops every level that is never faster than another.
"""

from __future__ import annotations

from dataclasses import dataclass

from mdp_trt.solve.deadline import Deadline
from mdp_trt.solve.evaluate import evaluate
from mdp_trt.solve.formulation import Formulation
from mdp_trt.solve.highs import run
from mdp_trt.solve.problem import Problem
from mdp_trt.solve.reduce import reduce
from mdp_trt.solve.terms import Terms


@dataclass(frozen=True)
class FastestPlan:
    """A plan of minimum latency (graded by `evaluate`)."""

    latency: float
    levels: dict[str, int]
    blocks_kept: tuple[str, ...]


def fastest_within(problem: Problem, deadline: Deadline) -> FastestPlan | None:
    """Solve min latency exactly; None when `deadline` passes before it is proven."""
    if deadline.expired():  # not even the model is worth building
        return None
    terms = Terms.of(problem)
    domains = reduce(problem, terms, "latency", None)
    form = Formulation(problem, terms, domains, "latency", None)
    outcome = run(form.model, deadline)
    if outcome.timed_out:
        return None
    if not outcome.has_plan:  # every plan is feasible here, so this is a solver failure
        raise RuntimeError("HiGHS found no plan for the min-latency problem")
    levels, kept = form.plan()
    return FastestPlan(evaluate(problem, levels, kept).latency, levels, tuple(kept))


def fastest_plan(problem: Problem) -> FastestPlan:
    """Solve min latency exactly (no budget, no time limit)."""
    found = fastest_within(problem, Deadline(None))
    assert found is not None  # only a deadline stops it early
    return found


def min_latency(problem: Problem) -> float:
    """Smallest reachable latency, in the problem's units."""
    return fastest_plan(problem).latency
