"""The exact MILP of an MDP problem as a `LinearModel`, without big-M.

Encoding, per group g with allowed levels l_0 < ... < l_{n-1} (after presolve):
- x[g,k] = "level >= l_k" (k >= 1), monotone binaries; the one-hot y[g,k] = x[g,k] - x[g,k+1] is an
  expression. Same LP relaxation as one-hot binaries, but branching on x splits the level range
  ("narrower than l_k or not"), which balances the search tree on monotone tables.
- z[b] = block kept, z[b] <= z[parent].
- u[b,g,k]: the block-gated copy of y[g] (= y * z_b for integral points): sum_k u = z_b, u <= y.
  This is the disjunctive hull of "block off, or block on at some level", so no big-M.
- w[t,i,j] >= 0 for each pair term t = (g, h, b): row sums u[b,g,i], column sums u[b,h,j]. For one pair
  this transportation polytope is the convex hull of the product of two one-hot vectors.
- A group read only by one block's terms (or its descendants') is irrelevant when that block is
  removed: it is then pinned to its first level (symmetry breaking), and its gated copy for the owner
  block is the shifted y itself, so it needs no variables.
Latency and importance are linear in (constants, z, u, w).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from mdp_trt.solve.linear import Linear, LinearModel, total
from mdp_trt.solve.problem import Problem
from mdp_trt.solve.reduce import Domains, Goal, ancestors
from mdp_trt.solve.terms import Terms


@dataclass
class _Index:
    """Each variable's column in the model."""

    x: dict[tuple[str, int], int] = field(default_factory=dict)
    z: dict[str, int] = field(default_factory=dict)
    u: dict[tuple[str, str, int], int] = field(default_factory=dict)
    w: dict[tuple[int, int, int], int] = field(default_factory=dict)


class Formulation:
    """Builds the model; `plan()` reads a solution back, `set_start()` writes a warm start."""

    def __init__(self, problem: Problem, terms: Terms, domains: Domains, goal: Goal, budget: float | None):
        self.problem = problem
        self.levels = domains.levels
        self.blocks_off = domains.blocks_off
        self.blocks_on = domains.blocks_on
        active = {b.id for b in problem.blocks if b.id not in domains.blocks_off} | {None}
        self.unary_lat = {k: v for k, v in terms.unary_latency.items() if k[1] in active}
        self.unary_imp = {k: v for k, v in terms.unary_importance.items() if k[1] in active}
        self.pairs = [(k, t) for k, t in terms.pair_latency.items() if k[2] in active]
        self.const_lat = {b: v for b, v in terms.constant_latency.items() if b in active}
        self.const_imp = {b: v for b, v in terms.constant_importance.items() if b in active}
        self.owner = self._owners()
        self.blocks = self._gating_blocks()
        self.idx = _Index()
        self.model = LinearModel()
        self._build(goal, budget)

    # --- structure ------------------------------------------------------------------------------
    def _gates(self) -> dict[str, set[str | None]]:
        gates: dict[str, set[str | None]] = {g: set() for g in self.levels}
        for g, b in list(self.unary_lat) + list(self.unary_imp):
            gates[g].add(b)
        for (g, h, b), _ in self.pairs:
            gates[g].add(b)
            gates[h].add(b)
        return gates

    def _owners(self) -> dict[str, str | None]:
        """Per group: the deepest block containing every term that reads it (None if some is ungated).

        Groups read by no active term are absent: their level does not matter.
        """
        owners: dict[str, str | None] = {}
        for g, gates in self._gates().items():
            if not gates:
                continue
            if None in gates:
                owners[g] = None
                continue
            chains = [ancestors(self.problem, b) for b in gates]
            common = set(chains[0]).intersection(*chains[1:])
            owners[g] = next((a for a in chains[0] if a in common), None)
        return owners

    def _gating_blocks(self) -> list[str]:
        """Blocks that gate an active term, and their ancestors: the only ones that need a variable."""
        used: set[str] = set()
        gates = {b for _, b in self.unary_lat} | {b for _, b in self.unary_imp}
        gates |= {b for (_, _, b), _ in self.pairs} | {b for b in self.const_lat} | {b for b in self.const_imp}
        for b in gates:
            used.update(ancestors(self.problem, b))
        return [b.id for b in self.problem.blocks if b.id in used]

    # --- model ----------------------------------------------------------------------------------
    def _build(self, goal: Goal, budget: float | None) -> None:
        m, idx = self.model, self.idx
        x_keys = [(g, k) for g, allowed in self.levels.items() if g in self.owner for k in range(1, len(allowed))]
        idx.x = dict(zip(x_keys, m.add_columns(len(x_keys), integer=True), strict=True))
        idx.z = dict(zip(self.blocks, m.add_columns(len(self.blocks), integer=True), strict=True))
        for (g, k), n in idx.x.items():
            if k >= 2:
                m.at_most(Linear.var(n), Linear.var(idx.x[g, k - 1]))
        for block in self.problem.blocks:
            if block.id in idx.z and block.parent is not None:
                m.at_most(Linear.var(idx.z[block.id]), Linear.var(idx.z[block.parent]))
        for g, owner in self.owner.items():
            if owner is not None and (g, 1) in idx.x:
                m.at_most(Linear.var(idx.x[g, 1]), Linear.var(idx.z[owner]))

        self._gated: dict[tuple[str, str | None], list[Linear]] = {}
        needed = {k for k in list(self.unary_lat) + list(self.unary_imp)}
        needed |= {(g, b) for (g, _, b), _ in self.pairs} | {(h, b) for (_, h, b), _ in self.pairs}
        u_keys = [
            (g, b, k)
            for g, b in sorted(needed, key=str)
            if b is not None and b != self.owner[g] and len(self.levels[g]) > 1
            for k in range(len(self.levels[g]))
        ]
        idx.u = dict(zip(u_keys, m.add_columns(len(u_keys)), strict=True))
        for g, b in needed:
            self._gated[g, b] = self._gated_vector(g, b)

        w_keys = []
        for t, ((g, h, _), _) in enumerate(self.pairs):
            if len(self.levels[g]) > 1 and len(self.levels[h]) > 1:
                w_keys += [(t, i, j) for i in range(len(self.levels[g])) for j in range(len(self.levels[h]))]
        idx.w = dict(zip(w_keys, m.add_columns(len(w_keys)), strict=True))
        for t, ((g, h, b), _) in enumerate(self.pairs):
            if (t, 0, 0) not in idx.w:
                continue
            ug, uh = self._gated[g, b], self._gated[h, b]
            rows, cols = range(len(self.levels[g])), range(len(self.levels[h]))
            for i in rows:
                m.equal(Linear({idx.w[t, i, j]: 1.0 for j in cols}), ug[i])
            for j in cols:
                m.equal(Linear({idx.w[t, i, j]: 1.0 for i in rows}), uh[j])

        for b in self.blocks_on:
            if b in idx.z:
                m.fix(idx.z[b], 1.0)
        latency = self._latency_expr()
        if goal == "latency":
            m.objective, m.maximize = latency, False
        else:
            m.objective, m.maximize = self._importance_expr(), True
            if not latency.is_constant:  # a constant one was checked by presolve
                m.add_row(latency, upper=budget)

    def _y(self, g: str) -> list[Linear]:
        """One-hot level indicators of g as expressions of the cumulative binaries."""
        n = len(self.levels[g])
        if g not in self.owner or n == 1:
            return [Linear(const=1.0)] + [Linear() for _ in range(n - 1)]
        x = [Linear(const=1.0)] + [Linear.var(self.idx.x[g, k]) for k in range(1, n)] + [Linear()]
        return [x[k] - x[k + 1] for k in range(n)]

    def _gate(self, b: str | None) -> Linear:
        return Linear(const=1.0) if b is None else Linear.var(self.idx.z[b])

    def _gated_vector(self, g: str, b: str | None) -> list[Linear]:
        """y[g] * z[b] as linear expressions, adding the copy's constraints when it needs variables."""
        y, m = self._y(g), self.model
        if b is None:
            return y
        if len(y) == 1:
            return [self._gate(b)]
        if b == self.owner[g]:  # pinned to level 0 when b is removed: the copy is y shifted
            return [y[0] + self._gate(b) - 1.0, *y[1:]]
        u = [Linear.var(self.idx.u[g, b, k]) for k in range(len(y))]
        m.equal(total((1.0, v) for v in u), self._gate(b))
        for k in range(len(y)):
            m.at_most(u[k], y[k])
        return u

    def _latency_expr(self) -> Linear:
        expr = total(((v, self._gate(b)) for b, v in self.const_lat.items()), const=self.problem.fixed_latency)
        for (g, b), vec in self.unary_lat.items():
            expr.add(total((vec[lv], u) for lv, u in zip(self.levels[g], self._gated[g, b], strict=True)))
        for t, ((g, h, b), table) in enumerate(self.pairs):
            lg, lh = self.levels[g], self.levels[h]
            if (t, 0, 0) in self.idx.w:
                coefs = table[np.ix_(lg, lh)].ravel().tolist()
                columns = [self.idx.w[t, i, j] for i in range(len(lg)) for j in range(len(lh))]
                expr.add(Linear(dict(zip(columns, coefs, strict=True))))
            elif len(lg) == 1:
                expr.add(total((table[lg[0], lv], u) for lv, u in zip(lh, self._gated[h, b], strict=True)))
            else:
                expr.add(total((table[lv, lh[0]], u) for lv, u in zip(lg, self._gated[g, b], strict=True)))
        return expr

    def _importance_expr(self) -> Linear:
        expr = total((v, self._gate(b)) for b, v in self.const_imp.items())
        for (g, b), vec in self.unary_imp.items():
            expr.add(total((vec[lv], u) for lv, u in zip(self.levels[g], self._gated[g, b], strict=True)))
        return expr

    # --- solutions ------------------------------------------------------------------------------
    def plan(self) -> tuple[dict[str, int], list[str]]:
        """The plan encoded by the solver's values (rounded)."""
        values, levels = self.model.values, {}
        assert values is not None, "plan() needs a solved model"
        for g, allowed in self.levels.items():
            pos = sum(1 for k in range(1, len(allowed)) if (g, k) in self.idx.x and values[self.idx.x[g, k]] > 0.5)
            levels[g] = allowed[pos]

        def chosen(block: str) -> bool:
            if block in self.idx.z:
                return bool(values[self.idx.z[block]] > 0.5)
            return block not in self.blocks_off  # gates nothing: kept, it costs nothing

        kept = [b.id for b in self.problem.blocks if all(chosen(a) for a in ancestors(self.problem, b.id))]
        return levels, kept

    def admits(self, levels: Mapping[str, int], kept: set[str]) -> bool:
        """Whether the plan lies inside this model's domains (so it can be a MIP start)."""
        return (
            all(levels[g] in allowed for g, allowed in self.levels.items())
            and not kept & self.blocks_off
            and self.blocks_on <= kept
        )

    def binaries(self) -> list[int]:
        """The model's binary columns (level thresholds and block gates)."""
        return [*self.idx.x.values(), *self.idx.z.values()]

    def set_start(self, levels: Mapping[str, int], kept: set[str]) -> None:
        """Write every variable's value for the plan, so the solver gets a complete MIP start."""
        idx, start = self.idx, self.model.start
        pos = {g: self.levels[g].index(levels[g]) for g in self.levels}
        for g, owner in self.owner.items():
            if owner is not None and owner not in kept:
                pos[g] = 0  # the symmetry-breaking pin: an unused group sits at its first level
        for (g, k), n in idx.x.items():
            start[n] = 1.0 if pos[g] >= k else 0.0
        for b, n in idx.z.items():
            start[n] = 1.0 if b in kept else 0.0
        for (g, b, k), n in idx.u.items():
            start[n] = 1.0 if b in kept and pos[g] == k else 0.0
        for (t, i, j), n in idx.w.items():
            (g, h, b), _ = self.pairs[t]
            on = b is None or b in kept
            start[n] = 1.0 if on and pos[g] == i and pos[h] == j else 0.0
