"""The exact MILP of an MDP problem as a Pyomo model, without big-M.

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
from typing import Any

import pyomo.environ as pyo

from mdp_trt.solve.problem import Problem
from mdp_trt.solve.reduce import Domains, Goal, ancestors
from mdp_trt.solve.terms import Terms


@dataclass
class _Index:
    """Flat variable numbering (Pyomo indexed by ints builds much faster than by tuples)."""

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
        self.model = pyo.ConcreteModel()
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
        for g, allowed in self.levels.items():
            if g in self.owner:
                for k in range(1, len(allowed)):
                    idx.x[g, k] = len(idx.x)
        idx.z = {b: n for n, b in enumerate(self.blocks)}
        m.x = pyo.Var(range(len(idx.x)), domain=pyo.Binary)
        m.z = pyo.Var(range(len(idx.z)), domain=pyo.Binary)
        m.c = pyo.ConstraintList()
        for (g, k), n in idx.x.items():
            if k >= 2:
                m.c.add(m.x[n] <= m.x[idx.x[g, k - 1]])
        for block in self.problem.blocks:
            if block.id in idx.z and block.parent is not None:
                m.c.add(m.z[idx.z[block.id]] <= m.z[idx.z[block.parent]])
        for g, owner in self.owner.items():
            if owner is not None and (g, 1) in idx.x:
                m.c.add(m.x[idx.x[g, 1]] <= m.z[idx.z[owner]])

        self._gated: dict[tuple[str, str | None], list[Any]] = {}
        needed = {k for k in list(self.unary_lat) + list(self.unary_imp)}
        needed |= {(g, b) for (g, _, b), _ in self.pairs} | {(h, b) for (_, h, b), _ in self.pairs}
        u_keys = [
            (g, b, k)
            for g, b in sorted(needed, key=str)
            if b is not None and b != self.owner[g] and len(self.levels[g]) > 1
            for k in range(len(self.levels[g]))
        ]
        idx.u = {key: n for n, key in enumerate(u_keys)}
        m.u = pyo.Var(range(len(u_keys)), bounds=(0, 1))
        for g, b in needed:
            self._gated[g, b] = self._gated_vector(g, b)

        w_keys = []
        for t, ((g, h, _), _) in enumerate(self.pairs):
            if len(self.levels[g]) > 1 and len(self.levels[h]) > 1:
                w_keys += [(t, i, j) for i in range(len(self.levels[g])) for j in range(len(self.levels[h]))]
        idx.w = {key: n for n, key in enumerate(w_keys)}
        m.w = pyo.Var(range(len(w_keys)), bounds=(0, 1))
        for t, ((g, h, b), _) in enumerate(self.pairs):
            if (t, 0, 0) not in idx.w:
                continue
            ug, uh = self._gated[g, b], self._gated[h, b]
            for i in range(len(self.levels[g])):
                m.c.add(sum(m.w[idx.w[t, i, j]] for j in range(len(self.levels[h]))) == ug[i])
            for j in range(len(self.levels[h])):
                m.c.add(sum(m.w[idx.w[t, i, j]] for i in range(len(self.levels[g]))) == uh[j])

        for b in self.blocks_on:
            if b in idx.z:
                m.z[idx.z[b]].fix(1)
        latency = self._latency_expr()
        if goal == "latency":
            m.obj = pyo.Objective(expr=latency, sense=pyo.minimize)
        else:
            m.obj = pyo.Objective(expr=self._importance_expr(), sense=pyo.maximize)
            if not pyo.is_constant(latency):  # a constant one was checked by presolve
                m.budget = pyo.Constraint(expr=latency <= budget)

    def _y(self, g: str) -> list[Any]:
        """One-hot level indicators of g as expressions of the cumulative binaries."""
        n, m = len(self.levels[g]), self.model
        if g not in self.owner or n == 1:
            return [1] + [0] * (n - 1)
        x = [1] + [m.x[self.idx.x[g, k]] for k in range(1, n)] + [0]
        return [x[k] - x[k + 1] for k in range(n)]

    def _gate(self, b: str | None) -> Any:
        return 1 if b is None else self.model.z[self.idx.z[b]]

    def _gated_vector(self, g: str, b: str | None) -> list[Any]:
        """y[g] * z[b] as linear expressions, adding the copy's constraints when it needs variables."""
        y, m = self._y(g), self.model
        if b is None:
            return y
        if len(y) == 1:
            return [self._gate(b)]
        if b == self.owner[g]:  # pinned to level 0 when b is removed: the copy is y shifted
            return [y[0] + self._gate(b) - 1, *y[1:]]
        u = [m.u[self.idx.u[g, b, k]] for k in range(len(y))]
        m.c.add(sum(u) == self._gate(b))
        for k in range(len(y)):
            m.c.add(u[k] <= y[k])
        return u

    def _latency_expr(self) -> Any:
        m = self.model
        expr = self.problem.fixed_latency + sum(v * self._gate(b) for b, v in self.const_lat.items())
        for (g, b), vec in self.unary_lat.items():
            expr += sum(vec[lv] * u for lv, u in zip(self.levels[g], self._gated[g, b], strict=True))
        for t, ((g, h, b), table) in enumerate(self.pairs):
            lg, lh = self.levels[g], self.levels[h]
            if (t, 0, 0) in self.idx.w:
                expr += sum(
                    table[lg[i], lh[j]] * m.w[self.idx.w[t, i, j]] for i in range(len(lg)) for j in range(len(lh))
                )
            elif len(lg) == 1:
                expr += sum(table[lg[0], lv] * u for lv, u in zip(lh, self._gated[h, b], strict=True))
            else:
                expr += sum(table[lv, lh[0]] * u for lv, u in zip(lg, self._gated[g, b], strict=True))
        return expr

    def _importance_expr(self) -> Any:
        expr = sum(v * self._gate(b) for b, v in self.const_imp.items())
        for (g, b), vec in self.unary_imp.items():
            expr += sum(vec[lv] * u for lv, u in zip(self.levels[g], self._gated[g, b], strict=True))
        return expr

    # --- solutions ------------------------------------------------------------------------------
    def plan(self) -> tuple[dict[str, int], list[str]]:
        """The plan encoded by the current variable values (rounded)."""
        m, levels = self.model, {}
        for g, allowed in self.levels.items():
            pos = sum(1 for k in range(1, len(allowed)) if (g, k) in self.idx.x and _on(m.x[self.idx.x[g, k]]))
            levels[g] = allowed[pos]

        def chosen(block: str) -> bool:
            if block in self.idx.z:
                return _on(m.z[self.idx.z[block]])
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

    def binaries(self) -> list[Any]:
        """The model's binary variables (level thresholds and block gates)."""
        return [*self.model.x.values(), *self.model.z.values()]

    def set_start(self, levels: Mapping[str, int], kept: set[str]) -> None:
        """Write every variable's value for the plan, so the solver gets a complete MIP start."""
        m, idx = self.model, self.idx
        pos = {g: self.levels[g].index(levels[g]) for g in self.levels}
        for g, owner in self.owner.items():
            if owner is not None and owner not in kept:
                pos[g] = 0  # the symmetry-breaking pin: an unused group sits at its first level
        for (g, k), n in idx.x.items():
            m.x[n].value = 1 if pos[g] >= k else 0
        for b, n in idx.z.items():
            m.z[n].value = 1 if b in kept else 0
        for (g, b, k), n in idx.u.items():
            m.u[n].value = 1 if b in kept and pos[g] == k else 0
        for (t, i, j), n in idx.w.items():
            (g, h, b), _ = self.pairs[t]
            on = b is None or b in kept
            m.w[n].value = 1 if on and pos[g] == i and pos[h] == j else 0


def _on(var: Any) -> bool:
    """A binary's rounded value (None when the solver never saw it, i.e. it was free)."""
    return var.value is not None and var.value > 0.5
