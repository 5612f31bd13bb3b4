"""A solver's answer: the plan plus how good it is known to be.

`Solution.grade` is the only constructor solvers use: it takes the plan and the solver's claims
(proven or not, dual bound) and fills latency and objective from `evaluate`, so the figures are the
tables' and never the solver's own.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from mdp_trt.solve.evaluate import evaluate
from mdp_trt.solve.problem import Problem

Status = Literal["optimal", "feasible", "infeasible"]


@dataclass(frozen=True)
class Solution:
    """One level index per group, the kept blocks, and the plan's graded figures.

    `bound` is an upper bound on the best objective (None from heuristics), `gap` the relative distance
    between `objective` and `bound`, `seconds` the wall time of the whole solve.
    """

    status: Status
    objective: float
    bound: float | None
    gap: float | None
    seconds: float
    levels: dict[str, int]
    blocks_kept: tuple[str, ...]
    latency: float
    budget: float
    solver: str

    @classmethod
    def grade(
        cls,
        problem: Problem,
        budget: float,
        levels: Mapping[str, int],
        blocks_kept: Iterable[str],
        *,
        solver: str,
        seconds: float,
        proven: bool = False,
        bound: float | None = None,
    ) -> Solution:
        """Evaluate the plan; `proven` means the solver closed the gap for its (exact) model."""
        chosen = set(blocks_kept)
        kept = tuple(b.id for b in problem.blocks if b.id in chosen)
        ev = evaluate(problem, levels, kept, budget)
        status: Status = "infeasible"
        if ev.feasible:
            status = "optimal" if proven else "feasible"
        gap = None
        if bound is not None and not math.isfinite(bound):
            bound = None  # stopped before the first relaxation: no bound known
        if proven and bound is None:
            bound = ev.objective
        if bound is not None:
            bound = max(bound, ev.objective)  # a bound below a graded plan is solver round-off
            gap = (bound - ev.objective) / max(abs(bound), abs(ev.objective), 1e-12)
        return cls(status, ev.objective, bound, gap, seconds, dict(levels), kept, ev.latency, budget, solver)

    @classmethod
    def none_found(cls, problem: Problem, budget: float, *, solver: str, seconds: float) -> Solution:
        """The solver found no plan (time limit) although one exists: the dense plan, marked infeasible."""
        levels = problem.dense_levels()
        kept = tuple(b.id for b in problem.blocks)
        ev = evaluate(problem, levels, kept, budget)
        return cls("infeasible", ev.objective, None, None, seconds, levels, kept, ev.latency, budget, solver)

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "objective": self.objective,
            "bound": self.bound,
            "gap": self.gap,
            "seconds": self.seconds,
            "levels": dict(self.levels),
            "blocks_kept": list(self.blocks_kept),
            "latency": self.latency,
            "budget": self.budget,
            "solver": self.solver,
        }
