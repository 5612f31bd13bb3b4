"""Small random MDP problems (hypothesis) and their exhaustive optimum, shared by the solver tests."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hypothesis import strategies as st

from mdp_trt.solve import Problem, evaluate

INSTANCES = Path(__file__).resolve().parents[2].parent / "shared" / "bench" / "mdp-instances"


@st.composite
def problem_docs(draw: st.DrawFn, integral: bool | None = None) -> dict:
    """An mdp-problem/1 document: 2-4 groups of 2-4 levels, 0-2 blocks (maybe nested), 1-6 layers with
    null groups, depthwise layers (in == out) and empty importance mixed in, and a fixed latency that
    is often negative. Budget left unset."""
    if integral is None:
        integral = draw(st.booleans())
    value = st.integers(0, 20) if integral else st.integers(0, 80).map(lambda v: v / 4)
    groups = []
    for n in range(draw(st.integers(2, 4))):
        count = draw(st.integers(2, 4))
        lo = draw(st.integers(0, count - 1))
        hi = draw(st.integers(lo, count - 1))
        levels = sorted(draw(st.sets(st.integers(1, 64), min_size=count, max_size=count)))
        groups.append({"id": f"g{n}", "levels": levels, "min_level_index": lo, "max_level_index": hi})
    blocks = [{"id": f"b{n}"} for n in range(draw(st.integers(0, 2)))]
    if len(blocks) == 2 and draw(st.booleans()):
        blocks[1]["parent"] = "b0"
    gids = [None] + [g["id"] for g in groups]
    size = {g["id"]: len(g["levels"]) for g in groups} | {None: 1}
    layers = []
    for n in range(draw(st.integers(1, 6))):
        g_in = draw(st.sampled_from(gids))
        g_out = g_in if g_in is not None and draw(st.integers(0, 4)) == 0 else draw(st.sampled_from(gids))
        rows, cols = size[g_in], size[g_out]
        latency = [[draw(value) for _ in range(cols)] for _ in range(rows)]
        importance = [] if draw(st.integers(0, 4)) == 0 else [draw(value) for _ in range(cols)]
        block = draw(st.sampled_from([None] + [b["id"] for b in blocks]))
        layers.append(
            {
                "id": f"l{n}",
                "in_group": g_in,
                "out_group": g_out,
                "block": block,
                "latency": latency,
                "importance": importance,
            }
        )
    # fixed_latency is the affine law's constant and may be negative (a calibration offset); it is drawn
    # so that every plan's total stays >= 1, the positive latency a budget bounds.
    floor = sum(min(map(min, la["latency"])) for la in layers if la["block"] is None)
    fixed = draw(value) + 1 - (floor if draw(st.booleans()) else 0)
    return {
        "format": "mdp-problem/1",
        "units": "ms",
        "budget": None,
        "fixed_latency": fixed,
        "groups": groups,
        "blocks": blocks,
        "layers": layers,
    }


def plans(problem: Problem) -> Iterator[tuple[dict[str, int], list[str]]]:
    """Every plan: levels within bounds, and block subsets where a kept block's parent is kept."""
    parent = {b.id: b.parent for b in problem.blocks}
    subsets = [
        list(sub)
        for r in range(len(parent) + 1)
        for sub in itertools.combinations(parent, r)
        if all(parent[b] is None or parent[b] in sub for b in sub)
    ]
    for combo in itertools.product(*(g.allowed for g in problem.groups)):
        levels = {g.id: i for g, i in zip(problem.groups, combo, strict=True)}
        for kept in subsets:
            yield levels, kept


@dataclass(frozen=True)
class Exhaustive:
    """Brute-force facts about a problem: fastest latency, and best objective within the budget."""

    min_latency: float
    best: float | None  # None when nothing fits


def exhaustive(problem: Problem, budget: float) -> Exhaustive:
    fastest, best = float("inf"), None
    for levels, kept in plans(problem):
        ev = evaluate(problem, levels, kept, budget)
        fastest = min(fastest, ev.latency)
        if ev.feasible and (best is None or ev.objective > best):
            best = ev.objective
    return Exhaustive(fastest, best)


def close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))
