"""Budget checks shared by every solver: is there a budget, and can any plan meet it."""

from __future__ import annotations

from mdp_trt.errors import BudgetError, InputError
from mdp_trt.solve.deadline import Deadline
from mdp_trt.solve.evaluate import fits
from mdp_trt.solve.min_latency import fastest_within
from mdp_trt.solve.problem import Problem

# First word of `units` -> milliseconds per unit.
_TO_MS = {"ms": 1.0, "milliseconds": 1.0, "us": 1e-3, "µs": 1e-3, "microseconds": 1e-3, "s": 1e3, "seconds": 1e3}


def require_budget(problem: Problem, budget: float | None) -> float:
    """The budget to solve for: the override, else the problem's; InputError when neither is set."""
    if budget is not None:
        return problem.with_budget(budget).budget  # type: ignore[return-value]  # validated, not None
    if problem.budget is None:
        raise InputError("problem has no budget: set 'budget' in the file or pass --budget")
    return problem.budget


def to_ms(value: float, units: str) -> float | None:
    """`value` in milliseconds, or None when the problem's units are not a known time unit."""
    words = units.split()
    factor = _TO_MS.get(words[0].lower()) if words else None
    return None if factor is None else value * factor


def raise_if_unreachable(
    problem: Problem, budget: float, deadline: Deadline | None = None, *, proven: bool = False
) -> None:
    """Raise `BudgetError` naming the smallest reachable latency when it exceeds `budget`.

    Within `deadline` only. When the smallest latency is not found in time, the error is raised without
    it if the caller already `proven` that no plan fits (presolve did), else nothing is raised: the
    caller then reports that no plan was found within the limit, which is true either way.
    """
    unit = problem.units.split()[0]
    found = fastest_within(problem, deadline or Deadline(None))
    if found is None:
        if proven:
            raise BudgetError(f"no plan fits the budget {budget:.6g} {unit} (the smallest reachable latency was "
                              "not computed within the time limit)")
        return
    if not fits(found.latency, budget):
        raise BudgetError(
            f"budget {budget:.6g} {unit} is below the smallest reachable latency {found.latency:.6g} {unit}",
            min_latency_ms=to_ms(found.latency, problem.units),
        )
