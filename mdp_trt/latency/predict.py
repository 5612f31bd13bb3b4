"""Predicted latency of a pruning plan: the sum of the active layers' table entries, calibrated.

For each layer not inside a removed block, the table is read at (kept input channels, kept output
channels) — the bilayer model of MDP, where a layer's cost depends on both neighbouring groups. A side that
spans several groups is read one group at a time (`latency.decompose`). The
HALP-style variant freezes the input at the dense width (`freeze_inputs=True`), as methods that
model each layer by its own output channels alone do; it is kept for comparison.

A plan the solver made keeps grid widths; a plan written by hand, or by another tool, may not.
`off_grid_cells` names the cells such a plan reads between grid levels, so that `predict` can measure
them (`profile.profile_off_grid`) or say that it interpolates them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mdp_trt.graph.structure import Layer, Structure
from mdp_trt.latency.decompose import part_tables
from mdp_trt.latency.tables import Cell, LatencyTable, neighbours

if TYPE_CHECKING:
    from mdp_trt.latency.calibrate import Calibration
    from mdp_trt.prune.plan import Plan


def removed_layers(structure: Structure, plan: Plan) -> set[str]:
    """Layers inside a removed block, directly or through a removed ancestor block."""
    removed = set(plan.remove_blocks)
    if not removed:
        return set()
    parents = {b.id: b.parent for b in structure.blocks}

    def gone(block: str | None) -> bool:
        while block is not None:
            if block in removed:
                return True
            block = parents.get(block)
        return False

    return {layer.name for layer in structure.layers if gone(layer.block)}


def kept_widths(structure: Structure, plan: Plan) -> dict[str, int]:
    """Kept channels per group under the plan (unnamed groups keep all)."""
    return {g.id: len(plan.kept(g.id, g.size)) for g in structure.groups}


def _segments_width(segments, widths: dict[str, int], full: int) -> int:
    return sum(widths.get(s.group, s.size) for s in segments) if segments else full


def layer_channels(layer: Layer, widths: dict[str, int]) -> tuple[int, int]:
    """(k_in, k_out) of a layer under the given group widths."""
    k_out = _segments_width(layer.out_segments, widths, layer.out_channels)
    if layer.depthwise:
        return k_out, k_out
    return _segments_width(layer.in_segments, widths, layer.in_channels), k_out


@dataclass(frozen=True)
class Read:
    """One table entry a prediction adds: `weight` times table `table` at `cell`."""

    table: str
    cell: Cell
    weight: float = 1.0


def layer_reads(layer: Layer, tables: dict[str, LatencyTable], widths: dict[str, int], *,
                freeze_inputs: bool = False) -> list[Read]:
    """The table entries a layer's latency sums under group `widths`: its table at (k_in, k_out), or, for a
    side that spans several groups, each group's table at its width, weighted by its share of the side
    (`latency.decompose`)."""
    k_in, k_out = layer_channels(layer, widths)
    found = part_tables(layer, tables)
    if found is None:
        table = tables[layer.name]
        return [Read(layer.name, table.cell(None if freeze_inputs or table.depthwise else k_in, k_out))]
    reads = []
    for name, side, weight in found:
        table = tables[name]
        if side == "out":
            cell = table.cell(None if freeze_inputs else k_in, widths.get(table.out_group))
        else:
            cell = table.cell(None if freeze_inputs else widths.get(table.in_group), k_out)
        reads.append(Read(name, cell, weight))
    return reads


def plan_reads(
    structure: Structure, tables: dict[str, LatencyTable], plan: Plan, *, freeze_inputs: bool = False
) -> list[Read]:
    """The table entries the active layers (not inside a removed block) read under `plan`."""
    widths = kept_widths(structure, plan)
    skip = removed_layers(structure, plan)
    return [read for layer in structure.layers if layer.name not in skip
            for read in layer_reads(layer, tables, widths, freeze_inputs=freeze_inputs)]


def layer_sum(
    structure: Structure, tables: dict[str, LatencyTable], plan: Plan, *, freeze_inputs: bool = False
) -> float:
    """Sum of the active layers' table latencies (ms) under `plan`."""
    reads = plan_reads(structure, tables, plan, freeze_inputs=freeze_inputs)
    return sum((r.weight * tables[r.table].lookup(*r.cell) for r in reads), 0.0)


@dataclass(frozen=True)
class OffGridCell:
    """A table cell a plan reads that is not on the profiled grid, with the levels interpolation reads it
    between on each axis ((k, k) on an axis where k is a level; the lowest level twice when clamped)."""

    layer: str
    k_in: int
    k_out: int
    in_between: tuple[int, int]
    out_between: tuple[int, int]

    @property
    def cell(self) -> Cell:
        return self.k_in, self.k_out

    def describe(self) -> str:
        """`layer: k_in 40 between 32 and 48, k_out 12 below the lowest level 16`, naming the off-grid axes."""
        parts = [
            _axis_text(label, k, between)
            for label, k, between in (("k_in", self.k_in, self.in_between), ("k_out", self.k_out, self.out_between))
            if between != (k, k)
        ]
        return f"{self.layer}: {', '.join(parts)}"

    def to_json(self) -> dict[str, Any]:
        return {"layer": self.layer, "k_in": self.k_in, "k_out": self.k_out,
                "in_levels": list(self.in_between), "out_levels": list(self.out_between)}


def _axis_text(label: str, k: int, between: tuple[int, int]) -> str:
    low, high = between
    if low != high:
        return f"{label} {k} between levels {low} and {high}"
    return f"{label} {k} below the lowest level {low} (clamped to it)"  # a plan keeps at most the full width


def off_grid_cells(structure: Structure, tables: dict[str, LatencyTable], plan: Plan) -> list[OffGridCell]:
    """Every cell `plan` reads off its layer's grid (measured as a point or not), in layer order."""
    cells = []
    for read in dict.fromkeys((r.table, r.cell) for r in plan_reads(structure, tables, plan)):
        name, (k_in, k_out) = read
        table = tables[name]
        if not table.on_grid(k_in, k_out):
            cells.append(OffGridCell(name, k_in, k_out, neighbours(table.in_levels, k_in),
                                     neighbours(table.out_levels, k_out)))
    return cells


def predict_latency(
    structure: Structure, tables: dict[str, LatencyTable], calibration: Calibration, plan: Plan
) -> float:
    """Predicted whole-model latency (ms) of `plan`: calibrated sum of layer tables."""
    return calibration.apply(layer_sum(structure, tables, plan, freeze_inputs=calibration.freeze_inputs))
