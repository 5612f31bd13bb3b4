"""Predicted latency of a pruning plan: the sum of the active layers' table entries, calibrated.

For each layer not inside a removed block, the table is read at (kept input channels, kept output
channels) — the bilayer model of MDP, where a layer's cost depends on both neighbouring groups. The
HALP-style variant freezes the input at the dense width (`freeze_inputs=True`), as methods that
model each layer by its own output channels alone do; it is kept for comparison.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mdp_trt.graph.structure import Layer, Structure
from mdp_trt.latency.tables import LatencyTable

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


def layer_sum(
    structure: Structure, tables: dict[str, LatencyTable], plan: Plan, *, freeze_inputs: bool = False
) -> float:
    """Sum of the active layers' table latencies (ms) under `plan`."""
    widths = kept_widths(structure, plan)
    skip = removed_layers(structure, plan)
    total = 0.0
    for layer in structure.layers:
        if layer.name in skip:
            continue
        k_in, k_out = layer_channels(layer, widths)
        table = tables[layer.name]
        if table.depthwise:
            total += table.lookup(None, k_out)
        else:
            total += table.lookup(None if freeze_inputs else k_in, k_out)
    return total


def predict_latency(
    structure: Structure, tables: dict[str, LatencyTable], calibration: Calibration, plan: Plan
) -> float:
    """Predicted whole-model latency (ms) of `plan`: calibrated sum of layer tables."""
    return calibration.apply(layer_sum(structure, tables, plan, freeze_inputs=calibration.freeze_inputs))
