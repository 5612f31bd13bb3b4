"""HALP baseline: the latency-saliency augmented knapsack (Shen et al., NeurIPS 2022), as published.

Each group's levels are its channel chunks in importance order; taking chunk k (going from level k-1
to k) gains the importance difference and costs the latency difference of every layer the group feeds
as output, read along the out axis with the layer's input frozen at its current, dense width (the
largest allowed level of the in-group). A group's chunks are taken as a prefix (top-k), so the
knapsack picks one level per group. It is solved as a small MILP on HiGHS, to a 1e-4 relative gap.
All blocks are kept: HALP prunes channels only.

The frozen-input cost ignores that inputs shrink too, so the plan is then graded on the true tables
and the knapsack budget is corrected by the difference (tightened by the shortfall when the plan does
not fit, loosened by the slack when it leaves budget unused), bisected once one knapsack budget gave a
plan that fits and another one a plan that does not, for a few rounds, keeping the best plan that
fits: what an honest user of HALP would do in one shot. At tight budgets the frozen-input estimate of
even the narrowest plan can exceed the budget; the knapsack then has no solution, the round takes the
narrowest plan, and the correction by its true latency loosens the next round's budget.
"""

from __future__ import annotations

import numpy as np

from mdp_trt.solve.budget import require_budget
from mdp_trt.solve.deadline import Deadline
from mdp_trt.solve.evaluate import evaluate, fits
from mdp_trt.solve.highs import run
from mdp_trt.solve.linear import Linear, LinearModel
from mdp_trt.solve.problem import Problem
from mdp_trt.solve.solution import Solution

ROUNDS = 8
# The knapsack has thousands of near-equal chunks on fine grids; closing its gap below HiGHS's default
# costs minutes (ResNet-101, 32 levels: > 2 min at 1e-6, 1.7 s at 1e-4). HALP itself solves it by DP
# on a coarse latency grid, no more exact than this.
KNAPSACK_REL_GAP = 1e-4


def _halp_costs(problem: Problem) -> tuple[float, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """HALP's estimate: (constant latency, per-group latency by level, per-group importance by level)."""
    groups = problem.group_by_id
    constant = problem.fixed_latency
    cost = {g.id: np.zeros(len(g.levels)) for g in problem.groups}
    gain = {g.id: np.zeros(len(g.levels)) for g in problem.groups}
    for layer in problem.layers:
        dense_in = groups[layer.in_group].max_index if layer.in_group else 0
        if layer.out_group is None:
            constant += float(layer.latency[dense_in, 0])
            continue
        if layer.in_group == layer.out_group:  # depthwise: the input is the same group, it cannot stay dense
            cost[layer.out_group] += np.diag(layer.latency)
        else:
            cost[layer.out_group] += layer.latency[dense_in, :]
        if layer.importance.size:
            gain[layer.out_group] += layer.importance
    return constant, cost, gain


def _knapsack(problem: Problem, budget: float, deadline: Deadline) -> dict[str, int] | None:
    """Prefix-constrained knapsack over chunks; None when even the narrowest plan is over (or out of time)."""
    constant, cost, gain = _halp_costs(problem)
    chunks = [(g.id, k) for g in problem.groups for k in range(g.min_index + 1, g.max_index + 1)]
    base = constant + sum(cost[g.id][g.min_index] for g in problem.groups)
    narrowest = {g.id: g.min_index for g in problem.groups}
    if not chunks:  # every group is fixed: nothing to choose
        return narrowest if fits(base, budget) else None
    m = LinearModel(maximize=True)
    take = dict(zip(chunks, m.add_columns(len(chunks), integer=True), strict=True))
    for (g, k), n in take.items():
        if (g, k - 1) in take:
            m.at_most(Linear.var(n), Linear.var(take[g, k - 1]))
    m.objective = Linear({n: gain[g][k] - gain[g][k - 1] for (g, k), n in take.items()})
    m.add_row(Linear({n: cost[g][k] - cost[g][k - 1] for (g, k), n in take.items()}), upper=budget - base)
    outcome = run(m, deadline, rel_gap=KNAPSACK_REL_GAP)
    if not outcome.has_plan:
        return None
    levels = narrowest
    for (g, _), n in take.items():
        levels[g] += round(float(m.values[n]))  # type: ignore[index]  # loaded with the plan
    return levels


def solve_halp(problem: Problem, budget: float | None = None, deadline: Deadline | None = None) -> Solution:
    """HALP's plan graded on the true tables ("infeasible" if no round made it fit).

    A round that would start after `deadline` is not run: the best plan of the rounds before is returned.
    """
    deadline = deadline or Deadline(None)
    budget = require_budget(problem, budget)
    blocks = [b.id for b in problem.blocks]
    narrowest = {g.id: g.min_index for g in problem.groups}
    levels, best, target = narrowest, None, budget
    fitting, over = 0.0, float("inf")  # knapsack budgets whose plans fit / did not fit the true tables
    for _ in range(ROUNDS):
        if best is not None and deadline.expired():
            break
        # Below the knapsack's own estimate of the narrowest plan the narrowest plan is the answer; its
        # true latency is lower still, and correcting by it is how HALP gets back to a plan that fits.
        plan = _knapsack(problem, target, deadline) or dict(narrowest)
        ev = evaluate(problem, plan, blocks, budget)
        if best is None or (ev.feasible, ev.objective) > best:
            best, levels = (ev.feasible, ev.objective), plan
        if ev.feasible:
            fitting = max(fitting, target)
        else:
            over = min(over, target)
        # The estimate's error changes with the plan, so corrections alone can cycle: bisect once bracketed.
        target = (fitting + over) / 2 if fitting > 0 and over < float("inf") else target + budget - ev.latency
    return Solution.grade(problem, budget, levels, blocks, solver="halp", seconds=deadline.elapsed())
