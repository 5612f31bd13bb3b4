"""From a model's Structure, channel scores and latency tables to the solver's Problem, and back to a Plan.

Importance belongs to channel groups, not layers: keeping k channels of a group gains the sum of its k
best channel scores, once, however many layers produce the group. So each prunable group gets its
own zero-latency "importance" entry, gated by the innermost block that holds every producer of the
group (a group living inside a residual branch is lost with the branch; a residual stream is not).

Removing a block costs at least what it holds: every group it owns, prunable or not (a frozen group or
one too narrow for a second grid level has no term of its own), and its own score where the importance
source gives one (`scores[block id]`, one value: the loss change measured with the block removed, as
`mdp_trt.torch.taylor_importance` gives, or the magnitude of all its layers' filters, as
`channel_scores` gives). Channel scores are first-order estimates that add up well for a few channels
and badly for a whole branch, so this is the floor of what removing the block costs: the block gets a
constant term, kept with it, of whatever the floor exceeds the summed scores of the problem's groups
lost with it. No block is ever removed for free.
Scores are normalised so the objective is the fraction of the model's importance kept (1 when dense).
Latency tables enter scaled by the whole-model calibration law near the budget
(`total = scale * sum + offset`, `Calibration.law`), with the offset as the fixed part, so the solver's
latency is the calibrated prediction where it matters: at the budget.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from mdp_trt.graph.structure import Group as ChannelGroup
from mdp_trt.graph.structure import Structure
from mdp_trt.importance.selection import level_importance, top_channels
from mdp_trt.latency.calibrate import Calibration
from mdp_trt.latency.decompose import part_tables
from mdp_trt.latency.tables import LatencyTable
from mdp_trt.prune.plan import Plan
from mdp_trt.solve.problem import Block, Group, Layer, Problem
from mdp_trt.solve.solution import Solution

IMPORTANCE_PREFIX = "importance:"


def problem_from_model(
    structure: Structure,
    scores: Mapping[str, np.ndarray],
    tables: Mapping[str, LatencyTable],
    levels: Mapping[str, tuple[int, ...]],
    calibration: Calibration,
    budget_ms: float | None = None,
    *,
    use_blocks: bool = True,
) -> Problem:
    law = calibration.law(budget_ms) if budget_ms is not None else calibration
    prunable = [g for g in structure.groups if g.prunable and len(levels[g.id]) > 1]
    in_problem = {g.id for g in prunable}
    groups = tuple(Group(g.id, tuple(float(k) for k in levels[g.id]), 0, len(levels[g.id]) - 1) for g in prunable)
    blocks = tuple(Block(b.id, b.parent) for b in structure.blocks) if use_blocks else ()
    layer_block = {la.name: la.block for la in structure.layers} if use_blocks else {}

    layers: list[Layer] = []
    for layer in structure.layers:
        block = layer_block.get(layer.name)
        found = part_tables(layer, tables)
        if found is None:
            layers.append(_table_layer(layer.name, tables[layer.name], in_problem, block, law.scale))
            continue
        for name, _side, weight in found:  # a side that spans several groups (latency.decompose)
            layers.append(_table_layer(name, tables[name], in_problem, block, law.scale * weight))

    owners = {g.id: _owning_block(structure, g.producers, layer_block) if use_blocks else None
              for g in structure.groups}
    extras = _block_extras(structure, scores, prunable, owners) if use_blocks else {}
    total = sum(float(np.sum(scores[g.id])) for g in prunable) + sum(extras.values()) or 1.0
    for group in prunable:
        importance = level_importance(scores[group.id], levels[group.id], group.parts) / total
        owner = owners[group.id]
        layers.append(
            Layer(
                f"{IMPORTANCE_PREFIX}{group.id}",
                None,
                group.id,
                owner,
                np.zeros((1, len(levels[group.id]))),
                importance,
            )
        )
    for block_id, extra in extras.items():
        layers.append(Layer(f"{IMPORTANCE_PREFIX}{block_id}", None, None, block_id, np.zeros((1, 1)),
                            np.array([extra / total])))
    return Problem(groups, blocks, tuple(layers), budget_ms, fixed_latency=law.offset_ms, units="ms")


def _block_extras(structure: Structure, scores: Mapping[str, np.ndarray], prunable: Sequence[ChannelGroup],
                  owners: Mapping[str, str | None]) -> dict[str, float]:
    """Block id -> what removing it costs beyond the problem's groups that go with it (if anything).

    Removing a block costs at least everything inside it: the scores of every group it owns, prunable
    or not, in the problem or not (a group too narrow for a second grid level has no term of its own),
    and its own score where the importance source gives one (an ablation, the magnitude of its layers).
    The part not already counted by the problem's groups lost with it becomes the block's constant term.
    """
    parents = {b.id: b.parent for b in structure.blocks}

    def inside(block: str | None, ancestor: str) -> bool:
        while block is not None and block != ancestor:
            block = parents[block]
        return block == ancestor

    extras = {}
    for block in structure.blocks:
        held = sum(float(np.sum(scores[g.id])) for g in structure.groups if inside(owners[g.id], block.id))
        own = max(held, float(np.sum(scores[block.id])) if block.id in scores else 0.0)
        lost = sum(float(np.sum(scores[g.id])) for g in prunable if inside(owners[g.id], block.id))
        if own > lost:
            extras[block.id] = own - lost
    return extras


def _table_layer(name: str, table: LatencyTable, in_problem: set[str], block: str | None, scale: float) -> Layer:
    """A problem layer over the groups of `table` the solver chooses; a side it does not choose stays at its
    full width (the table's last row or column)."""
    ms = table.ms
    in_group = table.in_group if table.in_group in in_problem else None
    out_group = table.out_group if table.out_group in in_problem else None
    if in_group is None:
        ms = ms[-1:, :]
    if out_group is None:
        ms = ms[:, -1:]
    return Layer(name, in_group, out_group, block, scale * ms, np.zeros(0))


def _owning_block(
    structure: Structure, producers: tuple[str, ...], layer_block: Mapping[str, str | None]
) -> str | None:
    """The innermost block that contains every producer (None if some producer is outside all blocks)."""
    parents = {b.id: b.parent for b in structure.blocks}

    def chain(block: str | None) -> list[str]:
        out = []
        while block is not None:
            out.append(block)
            block = parents[block]
        return out[::-1]  # outermost first

    chains = [chain(layer_block.get(name)) for name in producers]
    if not chains:
        return None
    common: str | None = None
    for position, block in enumerate(chains[0]):
        if all(len(c) > position and c[position] == block for c in chains):
            common = block
        else:
            break
    return common


def plan_from_solution(
    structure: Structure,
    scores: Mapping[str, np.ndarray],
    levels: Mapping[str, tuple[int, ...]],
    solution: Solution,
    problem: Problem,
) -> Plan:
    """Keep each group's top-k channels by score at the chosen level (per part); drop the blocks not kept."""
    groups: dict[str, tuple[int, ...]] = {}
    for gid, index in solution.levels.items():
        k = levels[gid][index]
        if k < len(scores[gid]):
            groups[gid] = top_channels(scores[gid], k, structure.group(gid).parts)
    kept = set(solution.blocks_kept)
    removed = tuple(b.id for b in problem.blocks if b.id not in kept)
    return Plan(groups, removed, {"solver": solution.to_json()})
