"""Choose a level per channel group and which blocks to keep, maximising importance within a latency budget.

Public API (everything else in this package is internal):
- `Problem` (`load`, `save`, `from_json`, `to_json`, `with_budget`): the `mdp-problem/1` input.
- `solve(problem, solver="milp", budget=..., time_limit=...) -> Solution`; the time limit bounds the
  whole call (model building and presolve included), not just the solver's search.
- `evaluate(problem, levels, blocks_kept, budget=None) -> Evaluation`: the one grader of plans.
- `min_latency(problem)` / `fastest_plan(problem)`: the smallest reachable latency, exactly.
- `sweep(problem, points, solver=...) -> list[Solution]` and `curve(solutions)`: the Pareto curve.
"""

from mdp_trt.solve.evaluate import Evaluation, evaluate
from mdp_trt.solve.min_latency import FastestPlan, fastest_plan, min_latency
from mdp_trt.solve.problem import Block, Group, Layer, Problem
from mdp_trt.solve.solution import Solution
from mdp_trt.solve.solvers import SOLVERS, solve
from mdp_trt.solve.sweep import curve, sweep, sweep_budgets

__all__ = [
    "SOLVERS",
    "Block",
    "Evaluation",
    "FastestPlan",
    "Group",
    "Layer",
    "Problem",
    "Solution",
    "curve",
    "evaluate",
    "fastest_plan",
    "min_latency",
    "solve",
    "sweep",
    "sweep_budgets",
]
