"""Presolve: shrink each group's levels and fix blocks before the exact models see them.

Two reductions, both keep at least one optimal plan:
- dominance: level i of a group can go if another level i' is never worse for any term that reads the
  group (latency <= for every level of the other group, importance >=). Real latency tables are not
  monotone (cuDNN picks kernels per shape), so a wider level is often no slower and a narrower one is
  then useless. Exact ties keep the wider level.
- budget: a level (or a block) goes if even with every other term at its cheapest the latency would
  exceed the budget (a cheap lower bound, summed term by term; gated terms can cost 0).
Both are repeated until nothing changes, since removing levels of one group tightens the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from mdp_trt.solve.evaluate import fits
from mdp_trt.solve.problem import Problem
from mdp_trt.solve.terms import Terms

Goal = Literal["importance", "latency"]


class _Infeasible(Exception):
    """Raised inside presolve when even the cheapest plan cannot fit."""


@dataclass(frozen=True)
class Domains:
    """Allowed level indices per group (ascending) and the blocks that must be removed."""

    levels: dict[str, tuple[int, ...]]
    blocks_off: frozenset[str]
    infeasible: bool  # presolve proved that no plan fits the budget
    blocks_on: frozenset[str] = frozenset()  # blocks that must be kept (set by reduced-cost fixing)


def reduce(problem: Problem, terms: Terms, goal: Goal, budget: float | None) -> Domains:
    """Domains after dominance (for `goal`) and, when `budget` is given, budget presolve."""
    levels = {g.id: tuple(g.allowed) for g in problem.groups}
    blocks_off: set[str] = set()
    changed = True
    while changed:
        changed = _drop_dominated(terms, goal, levels)
        if budget is not None:
            try:
                changed |= _drop_over_budget(problem, terms, budget, levels, blocks_off)
            except _Infeasible:
                return Domains(levels, frozenset(blocks_off), infeasible=True)
    return Domains(levels, frozenset(blocks_off), infeasible=False)


def descendants(problem: Problem, block: str) -> set[str]:
    """`block` and every block nested in it."""
    children: dict[str, list[str]] = {}
    for b in problem.blocks:
        if b.parent is not None:
            children.setdefault(b.parent, []).append(b.id)
    found, todo = set(), [block]
    while todo:
        cur = todo.pop()
        found.add(cur)
        todo.extend(children.get(cur, []))
    return found


def ancestors(problem: Problem, block: str | None) -> list[str]:
    """`block` and its parents up to the root (empty for None)."""
    parent = {b.id: b.parent for b in problem.blocks}
    chain = []
    while block is not None:
        chain.append(block)
        block = parent[block]
    return chain


def _profile(terms: Terms, goal: Goal, group: str, levels: dict[str, tuple[int, ...]]) -> tuple:
    """Per allowed level of `group`: a row of costs (lower is better) and of gains (higher is better)."""
    idx = list(levels[group])
    costs: list[np.ndarray] = [np.zeros((len(idx), 0))]
    gains: list[np.ndarray] = [np.zeros((len(idx), 0))]
    for (g, _), vec in terms.unary_latency.items():
        if g == group:
            costs.append(vec[idx][:, None])
    if goal == "importance":
        for (g, _), vec in terms.unary_importance.items():
            if g == group:
                gains.append(vec[idx][:, None])
    for (g, h, _), table in terms.pair_latency.items():
        if g == group:
            costs.append(table[np.ix_(idx, levels[h])])
        elif h == group:
            costs.append(table[np.ix_(levels[g], idx)].T)
    return np.hstack(costs), np.hstack(gains)


def _drop_dominated(terms: Terms, goal: Goal, levels: dict[str, tuple[int, ...]]) -> bool:
    changed = False
    for group in levels:
        if len(levels[group]) < 2:
            continue
        costs, gains = _profile(terms, goal, group, levels)
        alive = list(range(len(levels[group])))
        for i in range(len(levels[group])):
            others = [j for j in alive if j != i]
            dominated = (costs[others] <= costs[i]).all(axis=1) & (gains[others] >= gains[i]).all(axis=1)
            if dominated.any():
                alive.remove(i)
        if len(alive) < len(levels[group]):
            levels[group] = tuple(levels[group][k] for k in alive)
            changed = True
    return changed


def _drop_over_budget(
    problem: Problem,
    terms: Terms,
    budget: float,
    levels: dict[str, tuple[int, ...]],
    blocks_off: set[str],
) -> bool:
    changed = False
    unary_min = {key: vec[list(levels[key[0]])].min() for key, vec in terms.unary_latency.items()}
    pair_min = {key: table[np.ix_(levels[key[0]], levels[key[1]])].min() for key, table in terms.pair_latency.items()}
    base = problem.fixed_latency + terms.constant_latency.get(None, 0.0)
    base += sum(v for (_, b), v in unary_min.items() if b is None)
    base += sum(v for (_, _, b), v in pair_min.items() if b is None)
    if not fits(base, budget):
        raise _Infeasible

    for group, allowed in levels.items():
        if len(allowed) < 2:
            continue
        bound = np.full(len(allowed), base)
        for (g, b), vec in terms.unary_latency.items():
            if g == group and b is None:
                bound += vec[list(allowed)] - unary_min[g, b]
        for (g, h, b), table in terms.pair_latency.items():
            if b is None and group in (g, h):
                sub = table[np.ix_(levels[g], levels[h])]
                bound += (sub.min(axis=1) if g == group else sub.min(axis=0)) - pair_min[g, h, b]
        keep = tuple(level for level, lb in zip(allowed, bound, strict=True) if fits(lb, budget))
        if not keep:
            raise _Infeasible
        if keep != allowed:
            levels[group] = keep
            changed = True

    gated = {b.id: terms.constant_latency.get(b.id, 0.0) for b in problem.blocks}
    for (_, b), v in unary_min.items():
        if b is not None:
            gated[b] += v
    for (_, _, b), v in pair_min.items():
        if b is not None:
            gated[b] += v
    for block in problem.blocks:
        if block.id in blocks_off:
            continue
        if not fits(base + sum(gated[a] for a in ancestors(problem, block.id)), budget):
            blocks_off |= descendants(problem, block.id)
            changed = True
    return changed
