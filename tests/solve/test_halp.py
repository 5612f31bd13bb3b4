"""The HALP baseline at budgets where its frozen-input estimate of even the narrowest plan is over."""

from __future__ import annotations

import numpy as np

from mdp_trt.solve.evaluate import evaluate
from mdp_trt.solve.problem import Group, Layer, Problem
from mdp_trt.solve.solvers import solve

LEVELS = (1.0, 2.0, 3.0, 4.0)


def chain(budget: float) -> Problem:
    """stem -> g1 -> mid -> g2 -> head, latencies in channels: stem k1, mid k1 + k2, head k2.

    HALP reads `mid` at the dense g1 width (4 + k2) and `head` at dense g2 (4), so it estimates the
    narrowest plan at 1 + 5 + 4 = 10 where it truly costs 1 + 2 + 1 = 4; g1 is worth more than g2.
    """
    k = np.array(LEVELS)
    groups = (Group("g1", LEVELS, 0, 3), Group("g2", LEVELS, 0, 3))
    layers = (
        Layer("stem", None, "g1", None, k[None, :], np.zeros(0)),
        Layer("mid", "g1", "g2", None, k[:, None] + k[None, :], np.zeros(0)),
        Layer("head", "g2", None, None, k[:, None], np.zeros(0)),
        Layer("importance:g1", None, "g1", None, np.zeros((1, 4)), 2.0 * k),
        Layer("importance:g2", None, "g2", None, np.zeros((1, 4)), k),
    )
    return Problem(groups, (), layers, budget)


def test_halp_gets_back_from_a_budget_its_estimate_says_nothing_fits():
    problem = chain(7.0)
    narrowest = evaluate(problem, {"g1": 0, "g2": 0}, [], 7.0)
    solution = solve(problem, "halp", budget=7.0)
    assert solution.status == "feasible" and solution.latency <= 7.0
    assert solution.objective > narrowest.objective
    assert solution.levels == {"g1": 1, "g2": 0}  # the best plan that fits: g1 at 2, g2 at 1 (latency 6)
