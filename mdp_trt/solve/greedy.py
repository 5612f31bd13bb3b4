"""A fast greedy plan, used as the MILP's MIP start.

From the dense plan, repeatedly take the step (one group one allowed level narrower, or one block
removed with its nested blocks) that loses the least importance per unit of latency saved, until the
budget is met; then spend what is left of the budget on the steps back up that gain the most importance
per unit of latency. Steps only touch a few terms, so their effects are cached and recomputed only for
steps that share a term with the one just taken.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from mdp_trt.solve.evaluate import fits
from mdp_trt.solve.problem import Problem
from mdp_trt.solve.reduce import Domains, descendants
from mdp_trt.solve.terms import Terms

Move = tuple[str, str, int]  # ("group", id, +1/-1) or ("block", id, +1/-1)


@dataclass(frozen=True)
class _Term:
    block: str | None
    row: str | None
    col: str | None
    latency: np.ndarray
    importance: np.ndarray


def _terms(terms: Terms, off: frozenset[str]) -> list[_Term]:
    merged: dict[tuple, list[np.ndarray]] = {}
    for (g, b), vec in terms.unary_latency.items():
        merged[g, b] = [vec[None, :], np.zeros((1, vec.size))]
    for (g, b), vec in terms.unary_importance.items():
        lat = merged.get((g, b), [np.zeros((1, vec.size))])[0]
        merged[g, b] = [lat, vec[None, :]]
    out = [_Term(b, None, g, lat, imp) for (g, b), (lat, imp) in merged.items()]
    out += [_Term(b, g, h, t, np.zeros_like(t)) for (g, h, b), t in terms.pair_latency.items()]
    for b in set(terms.constant_latency) | set(terms.constant_importance):
        lat = np.array([[terms.constant_latency.get(b, 0.0)]])
        out.append(_Term(b, None, None, lat, np.array([[terms.constant_importance.get(b, 0.0)]])))
    return [t for t in out if t.block not in off]


class _State:
    def __init__(self, problem: Problem, terms: Terms, domains: Domains):
        self.domains = domains.levels
        self.terms = _terms(terms, domains.blocks_off)
        self.pos = {g: len(allowed) - 1 for g, allowed in self.domains.items()}
        self.blocks = [b.id for b in problem.blocks if b.id not in domains.blocks_off]
        self.parent = {b.id: b.parent for b in problem.blocks}
        self.nested = {b: descendants(problem, b) for b in self.blocks}
        self.kept = set(self.blocks)
        self.by_group: dict[str, list[int]] = defaultdict(list)
        self.by_block: dict[str, list[int]] = defaultdict(list)
        for n, t in enumerate(self.terms):
            for g in {t.row, t.col} - {None}:
                self.by_group[g].append(n)
            if t.block is not None:
                self.by_block[t.block].append(n)
        lat, imp = self._value(range(len(self.terms)), self.pos, self.kept)
        self.latency = problem.fixed_latency + lat
        self.importance = imp

    def _value(self, ids, pos: dict[str, int], kept: set[str]) -> tuple[float, float]:
        lat = imp = 0.0
        for n in ids:
            t = self.terms[n]
            if t.block is not None and t.block not in kept:
                continue
            r = self.domains[t.row][pos[t.row]] if t.row else 0
            c = self.domains[t.col][pos[t.col]] if t.col else 0
            lat += t.latency[r, c]
            imp += t.importance[r, c]
        return lat, imp

    def touched(self, move: Move) -> list[int]:
        kind, ident, _ = move
        if kind == "group":
            return self.by_group[ident]
        return [n for b in self.nested[ident] for n in self.by_block[b]]

    def legal(self, move: Move) -> bool:
        kind, ident, step = move
        if kind == "group":
            return 0 <= self.pos[ident] + step < len(self.domains[ident])
        if step < 0:
            return ident in self.kept
        return ident not in self.kept and (self.parent[ident] is None or self.parent[ident] in self.kept)

    def after(self, move: Move) -> tuple[dict[str, int], set[str]]:
        kind, ident, step = move
        if kind == "group":
            return {**self.pos, ident: self.pos[ident] + step}, self.kept
        return self.pos, (self.kept - self.nested[ident]) if step < 0 else (self.kept | {ident})

    def delta(self, move: Move) -> tuple[float, float]:
        ids = self.touched(move)
        lat0, imp0 = self._value(ids, self.pos, self.kept)
        lat1, imp1 = self._value(ids, *self.after(move))
        return lat1 - lat0, imp1 - imp0

    def apply(self, move: Move, delta: tuple[float, float]) -> None:
        self.pos, self.kept = self.after(move)
        self.latency += delta[0]
        self.importance += delta[1]

    def moves(self, step: int) -> list[Move]:
        return [("group", g, step) for g in self.domains] + [("block", b, step) for b in self.blocks]


def _descend(state: _State, step: int, budget: float) -> bool:
    """Take steps of direction `step` until none is useful; False if the budget was never met."""
    cache: dict[Move, tuple[float, float]] = {}
    term_moves: dict[int, list[Move]] = defaultdict(list)
    for move in state.moves(step):
        for n in state.touched(move):
            term_moves[n].append(move)
    while True:
        if step < 0 and fits(state.latency, budget):
            return True
        best, best_key = None, None
        for move in state.moves(step):
            if not state.legal(move):
                continue
            if move not in cache:
                cache[move] = state.delta(move)
            d_lat, d_imp = cache[move]
            if step < 0:  # shrink: least importance lost per latency saved
                if d_lat >= 0:
                    continue
                key = -d_imp / -d_lat
            else:  # grow: most importance per latency spent, within the budget
                if d_imp <= 0 or not fits(state.latency + d_lat, budget):
                    continue
                key = -d_imp / max(d_lat, 1e-12)
            if best_key is None or key < best_key:
                best, best_key = move, key
        if best is None:
            return step > 0
        state.apply(best, cache[best])
        for n in state.touched(best):
            for move in term_moves[n]:
                cache.pop(move, None)


def greedy_plan(
    problem: Problem, terms: Terms, domains: Domains, budget: float
) -> tuple[dict[str, int], set[str]] | None:
    """A feasible plan within `domains`, or None when the greedy descent cannot meet the budget."""
    state = _State(problem, terms, domains)
    if not _descend(state, -1, budget):
        return None
    _descend(state, +1, budget)
    levels = {g: state.domains[g][p] for g, p in state.pos.items()}
    return levels, set(state.kept)
