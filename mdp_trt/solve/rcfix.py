"""Reduced-cost fixing: shrink the domains with the LP relaxation and the greedy incumbent, before the MIP.

The LP relaxation of the formulation is tight on these problems (its bound is usually within a
fraction of a percent of the greedy plan), but on the full model HiGHS spends most of its time in the
root LP of the MIP, which runs much slower than a plain simplex solve of the same LP. So we solve the
LP once ourselves, then use LP duality: if a binary sits at a bound with reduced cost d, every plan
that flips it has objective <= LP bound - |d|. When that is below what we are looking for (anything
better than the incumbent), the binary is fixed. A fixed threshold x[g,k] cuts a whole range of the
group's levels; a fixed block gate keeps or removes the block. The MIP then runs on the much smaller
model, and the incumbent stays the answer if nothing better is left.
"""

from __future__ import annotations

from dataclasses import dataclass

from mdp_trt.solve.deadline import Deadline
from mdp_trt.solve.formulation import Formulation
from mdp_trt.solve.highs import solve_relaxation
from mdp_trt.solve.problem import Problem
from mdp_trt.solve.reduce import Domains, descendants

# LP values and reduced costs carry solver tolerances; never fix on a margin thinner than this (relative).
NUMERIC_MARGIN = 1e-6


@dataclass(frozen=True)
class Fixing:
    """Result of fixing: the shrunk domains, and the LP bound on the whole problem.

    `incumbent_optimal` means no plan better than the incumbent survives (or the LP bound already
    proves it): the incumbent is optimal without any MIP.
    """

    domains: Domains
    lp_bound: float
    incumbent_optimal: bool


def fix_by_reduced_costs(
    problem: Problem,
    form: Formulation,
    domains: Domains,
    incumbent: float,
    wanted: float,
    deadline: Deadline,
) -> Fixing | None:
    """Domains that still hold every plan with objective >= `wanted` (> incumbent); None if the LP failed."""
    lp = solve_relaxation(form.model, deadline)
    if lp is None:
        return None
    threshold = wanted - NUMERIC_MARGIN * max(1.0, abs(lp.objective))
    if lp.objective < threshold:
        return Fixing(domains, lp.objective, incumbent_optimal=True)

    def fixed(column: int) -> int | None:
        value, cost = lp.values[column], abs(lp.reduced_costs[column])
        if lp.objective - cost >= threshold:
            return None
        if value <= 1e-9:
            return 0
        if value >= 1 - 1e-9:
            return 1
        return None

    idx = form.idx
    levels = dict(domains.levels)
    for g, allowed in domains.levels.items():
        lo, hi = 0, len(allowed) - 1
        for k in range(1, len(allowed)):
            if (g, k) not in idx.x:
                continue
            side = fixed(idx.x[g, k])
            if side == 1:
                lo = max(lo, k)
            elif side == 0:
                hi = min(hi, k - 1)
        if lo > hi:
            return Fixing(domains, lp.objective, incumbent_optimal=True)
        levels[g] = allowed[lo : hi + 1]
    off, on = set(domains.blocks_off), set(domains.blocks_on)
    for b, n in idx.z.items():
        side = fixed(n)
        if side == 0:
            off |= descendants(problem, b)
        elif side == 1:
            on.add(b)
    if off & on:
        return Fixing(domains, lp.objective, incumbent_optimal=True)
    return Fixing(Domains(levels, frozenset(off), False, frozenset(on)), lp.objective, incumbent_optimal=False)
