"""The one place that grades a plan: latency, objective and feasibility straight from the tables.

Solvers work on reduced, aggregated or approximate models; none of them reports its own numbers. Every
plan goes through `evaluate`, which reads the raw layer tables only, so a bug in a formulation shows up
as a wrong or infeasible plan instead of a silently wrong figure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from mdp_trt.errors import InputError
from mdp_trt.solve.problem import Problem

# Solvers work in floating point; a plan over the budget by less than this (relative) still fits.
BUDGET_RTOL = 1e-9


@dataclass(frozen=True)
class Evaluation:
    """What a plan costs and earns; `reason` says why it is infeasible (None when feasible)."""

    latency: float
    objective: float
    feasible: bool
    reason: str | None = None


def fits(latency: float, budget: float) -> bool:
    """Whether `latency` meets `budget` up to the shared floating-point tolerance."""
    return latency <= budget + BUDGET_RTOL * max(1.0, abs(budget))


def evaluate(
    problem: Problem,
    levels: Mapping[str, int],
    blocks_kept: Iterable[str],
    budget: float | None = None,
) -> Evaluation:
    """Latency and importance of the plan, and whether it is feasible for `budget`.

    `budget` defaults to the problem's. A malformed plan (unknown or missing ids, an index outside the
    group's levels) raises `InputError`; a well-formed plan that breaks a rule (level outside the
    group's bounds, a block kept without its parent, over budget) is returned as infeasible.
    """
    groups = problem.group_by_id
    if set(levels) != set(groups):
        missing = sorted(set(groups) - set(levels))
        unknown = sorted(set(levels) - set(groups))
        raise InputError(f"plan: missing groups {missing}" if missing else f"plan: unknown groups {unknown}")
    kept = set(blocks_kept)
    unknown_blocks = sorted(kept - set(problem.block_by_id))
    if unknown_blocks:
        raise InputError(f"plan: unknown blocks {unknown_blocks}")
    for gid, index in levels.items():
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(groups[gid].levels):
            raise InputError(f"plan: group {gid!r} level index {index!r} out of range")

    latency = problem.fixed_latency
    objective = 0.0
    for layer in problem.layers:
        if layer.block is not None and layer.block not in kept:
            continue
        row = levels[layer.in_group] if layer.in_group else 0
        col = levels[layer.out_group] if layer.out_group else 0
        latency += float(layer.latency[row, col])
        objective += layer.importance_at(col)

    reason = _rule_broken(problem, levels, kept)
    limit = problem.budget if budget is None else budget
    if reason is None and limit is not None and not fits(latency, limit):
        reason = f"latency {latency:.6g} exceeds budget {limit:.6g}"
    return Evaluation(latency, objective, reason is None, reason)


def _rule_broken(problem: Problem, levels: Mapping[str, int], kept: set[str]) -> str | None:
    for group in problem.groups:
        if levels[group.id] not in group.allowed:
            return f"group {group.id!r} level index {levels[group.id]} outside [{group.min_index}, {group.max_index}]"
    for block in problem.blocks:
        if block.id in kept and block.parent is not None and block.parent not in kept:
            return f"block {block.id!r} kept without its parent {block.parent!r}"
    return None
