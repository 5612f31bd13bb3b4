"""A layer whose input or output spans several groups, timed as a sum of bilayer tables, one per group.

MDP's latency of a layer is one table `C[k_in, k_out]` over its input and output groups. A layer that reads
a Concat of several groups (DenseNet, YOLO's joins), or whose output is cut into several (a fused qkv
projection: q and k one group, v another; C2f's split), has a side no one group indexes: its width is a sum,
w = sum_g w_g of the groups' parts (W_g at full width, W in all). Each group gets its own table, the layer's
latency with the whole side scaled as that group is, weighted by the group's share of the side:

    T(w_1, ..., w_n) ~= sum_g (W_g / W) * T(W * w_g / W_g)

exact wherever T is affine in the side's width (a GEMM's output width, a Conv's input width, with a fixed
per-call cost: the shares of that cost add up to one), and equal to T when the groups keep the same
fraction. Every table is a bilayer table over the other side's group and g, with entries >= 0, so the exact
MILP stays exact. The tables are named `layer@out:g` (or `@in:g`); a group's probes at the same fraction
coincide, so the parts share their probes.

A layer whose two sides both span several groups is decomposed on its output and keeps its input at its
full width, as a side no group indexes always is.
"""

from __future__ import annotations

from dataclasses import dataclass

from mdp_trt.graph.structure import Layer, Segment

SIDES = ("out", "in")


@dataclass(frozen=True)
class Part:
    """The table of one group of a layer's decomposed side: at k of the group's channels it holds the layer
    with the side's width scaled as the group is, `scale * k` (W over the group's size), and it counts
    `weight` (W_g / W) of the layer's latency."""

    table: str
    side: str  # "in" or "out"
    group: str
    scale: float
    weight: float


def decomposed_side(layer: Layer, varying: set[str]) -> tuple[str, list[str]] | None:
    """The side to read one group at a time and its groups (in order), counting the groups in `varying`
    (those the solver chooses a width for); None when the layer is one table."""
    if layer.depthwise:
        return None
    for side in SIDES:
        groups = _groups(layer.out_segments if side == "out" else layer.in_segments, varying)
        if len(groups) >= 2:
            return side, groups
    return None


def parts(layer: Layer, varying: set[str], sizes: dict[str, int]) -> list[Part]:
    """The tables of a decomposed layer (empty for a layer timed as one table); `sizes` are group sizes."""
    found = decomposed_side(layer, varying)
    if found is None:
        return []
    side, groups = found
    segments = layer.out_segments if side == "out" else layer.in_segments
    total = sum(s.size for s in segments)
    result = []
    for group in groups:
        own = sum(s.size for s in segments if s.group == group)
        result.append(Part(f"{layer.name}@{side}:{group}", side, group, total / sizes[group], own / total))
    return result


def part_tables(layer: Layer, tables) -> list[tuple[str, str, float]] | None:
    """(table, side, weight) of each part table `tables` holds for `layer` (as `profile` made them), or None
    when the layer is one table."""
    if layer.name in tables:
        return None
    for side in SIDES:
        segments = layer.out_segments if side == "out" else layer.in_segments
        total = sum(s.size for s in segments)
        found = [(f"{layer.name}@{side}:{g}", side, sum(s.size for s in segments if s.group == g) / total)
                 for g in dict.fromkeys(s.group for s in segments)]
        found = [part for part in found if part[0] in tables]
        if found:
            return found
    raise KeyError(f"no latency table for layer {layer.name}")


def layer_name(table: str) -> str:
    """The layer a table belongs to (a part table's name is `layer@side:group`)."""
    for side in SIDES:
        head, marker, _ = table.rpartition(f"@{side}:")
        if marker:
            return head
    return table


def _groups(segments: tuple[Segment, ...], varying: set[str]) -> list[str]:
    return [g for g in dict.fromkeys(s.group for s in segments) if g in varying]

