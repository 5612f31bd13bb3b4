"""Layers folded into the few distinct terms the exact formulations need.

Latency and importance only depend on (in level, out level, kept?) so layers that share
(in_group, out_group, block) add up into one table, a pair (g, h) and (h, g) is one term transposed,
and a table whose in and out group coincide (depthwise) or that has a null side is a vector over one
group. Fewer, larger terms mean fewer product variables in the MILP.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from mdp_trt.solve.problem import Problem

Unary = tuple[str, str | None]  # (group, block)
Pair = tuple[str, str, str | None]  # (group, group, block), groups in problem order


@dataclass(frozen=True)
class Terms:
    """Latency = sum of all terms of kept blocks; importance likewise. Block None is always kept.

    Vectors and matrices are indexed by full level index (not restricted to a group's bounds).
    """

    constant_latency: dict[str | None, float]
    constant_importance: dict[str | None, float]
    unary_latency: dict[Unary, np.ndarray]
    unary_importance: dict[Unary, np.ndarray]
    pair_latency: dict[Pair, np.ndarray]

    @classmethod
    def of(cls, problem: Problem) -> Terms:
        order = {g.id: n for n, g in enumerate(problem.groups)}
        c_lat: dict[str | None, float] = defaultdict(float)
        c_imp: dict[str | None, float] = defaultdict(float)
        u_lat: dict[Unary, np.ndarray] = {}
        u_imp: dict[Unary, np.ndarray] = {}
        p_lat: dict[Pair, np.ndarray] = {}
        for layer in problem.layers:
            b, gi, go, table = layer.block, layer.in_group, layer.out_group, layer.latency
            if gi is None and go is None:
                c_lat[b] += float(table[0, 0])
            elif gi is None or go is None or gi == go:
                group = go if gi is None else gi
                vec = table[0, :] if gi is None else table[:, 0] if go is None else np.diag(table)
                _add(u_lat, (group, b), vec)
            elif order[gi] < order[go]:
                _add(p_lat, (gi, go, b), table)
            else:
                _add(p_lat, (go, gi, b), table.T)
            if layer.importance.size:
                if go is None:
                    c_imp[b] += float(layer.importance[0])
                else:
                    _add(u_imp, (go, b), layer.importance)
        return cls(dict(c_lat), dict(c_imp), u_lat, u_imp, p_lat)

    def blocks_of_group(self, group: str) -> set[str | None]:
        """Gates (blocks, or None for always kept) of every term that reads `group`'s level."""
        gates = {b for (g, b) in self.unary_latency if g == group}
        gates |= {b for (g, b) in self.unary_importance if g == group}
        gates |= {b for (g, h, b) in self.pair_latency if group in (g, h)}
        return gates


def _add(store: dict, key: tuple, value: np.ndarray) -> None:
    store[key] = store[key] + value if key in store else np.array(value, dtype=float)
