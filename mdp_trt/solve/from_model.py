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

An attention whose heads can be removed (`Structure.heads`) is one problem group whose levels are its
combinations (heads, width per head of each member group), `Group.widths` saying each. Every table over
its heads group or a member becomes a table over that group (a table over two of them, such as the
attention products', a unary one), so the latency stays bilinear in the solver's choices and the exact
MILP stays exact. A level's importance is that of its heads' best channels, the heads ranked by their
scores (`head_order`), which is also what the plan keeps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from mdp_trt.graph.structure import Group as ChannelGroup
from mdp_trt.graph.structure import HeadsTie, Structure
from mdp_trt.importance.selection import heads_kept, level_importance, part_importance, top_channels
from mdp_trt.latency.calibrate import Calibration
from mdp_trt.latency.decompose import part_tables
from mdp_trt.latency.grid import head_combinations, kept_channels
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
    heads = head_combinations(structure, levels)
    merged = {gid for tie in structure.heads if tie.heads in heads for gid in (tie.heads, *tie.members)}
    # Groups whose channels the problem chooses (an attention's members through its heads group), and the
    # problem groups: the ordinary ones, then one per attention that removes heads.
    prunable = [g for g in structure.groups if g.prunable and len(levels[g.id]) > 1 and g.kind != "heads"]
    ordinary = [g for g in prunable if g.id not in merged]
    groups = tuple(Group(g.id, tuple(float(k) for k in levels[g.id]), 0, len(levels[g.id]) - 1) for g in ordinary)
    groups += tuple(Group(gid, tuple(float(v) for v in kept_channels(widths, structure.heads_tie(gid))), 0,
                          len(widths[gid]) - 1, widths) for gid, widths in heads.items())
    # Each model group's side of a table: the problem group it is, and its level at each of that group's levels.
    sides = {g.id: (g.id, np.arange(len(levels[g.id]))) for g in ordinary}
    for gid, widths in heads.items():
        for member, per_level in widths.items():
            sides[member] = (gid, np.array([levels[member].index(k) for k in per_level]))
    blocks = tuple(Block(b.id, b.parent) for b in structure.blocks) if use_blocks else ()
    layer_block = {la.name: la.block for la in structure.layers} if use_blocks else {}

    layers: list[Layer] = []
    for layer in structure.layers:
        block = layer_block.get(layer.name)
        found = part_tables(layer, tables)
        if found is None:
            layers.append(_table_layer(layer.name, tables[layer.name], sides, block, law.scale))
            continue
        for name, _side, weight in found:  # a side that spans several groups (latency.decompose)
            layers.append(_table_layer(name, tables[name], sides, block, law.scale * weight))

    owners = {g.id: _owning_block(structure, g.producers, layer_block) if use_blocks else None
              for g in structure.groups}
    for tie in structure.heads:  # a heads group has no producer: it lives where its members do
        owners[tie.heads] = _owning_block(structure, tuple(p for m in tie.members
                                                           for p in structure.group(m).producers), layer_block)
    extras = _block_extras(structure, scores, prunable, owners) if use_blocks else {}
    total = sum(float(np.sum(scores[g.id])) for g in prunable) + sum(extras.values()) or 1.0
    importances = [(g.id, level_importance(scores[g.id], levels[g.id], g.parts)) for g in ordinary]
    importances += [(gid, _heads_importance(structure, scores, structure.heads_tie(gid), widths))
                    for gid, widths in heads.items()]
    for gid, importance in importances:
        layers.append(
            Layer(
                f"{IMPORTANCE_PREFIX}{gid}",
                None,
                gid,
                owners[gid],
                np.zeros((1, len(importance))),
                importance / total,
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
    for block in structure.blocks:  # a heads group's score is its members' (with_head_scores): not counted twice
        held = sum(float(np.sum(scores[g.id])) for g in structure.groups
                   if g.kind != "heads" and inside(owners[g.id], block.id))
        own = max(held, float(np.sum(scores[block.id])) if block.id in scores else 0.0)
        lost = sum(float(np.sum(scores[g.id])) for g in prunable if inside(owners[g.id], block.id))
        if own > lost:
            extras[block.id] = own - lost
    return extras


def _table_layer(name: str, table: LatencyTable, sides: Mapping[str, tuple[str, np.ndarray]], block: str | None,
                 scale: float) -> Layer:
    """A problem layer over the groups of `table` the solver chooses; a side it does not choose stays at its
    full width (the table's last row or column). Both sides in one problem group (an attention's products,
    over its heads and a head width) make a unary table: the group's level sets both."""
    full = (None, np.array([-1]))  # no group of the solver's (or a single row or column): the last entry
    in_group, rows = sides.get(table.in_group, full)
    out_group, cols = sides.get(table.out_group, full)
    if in_group is not None and in_group == out_group:
        return Layer(name, None, out_group, block, scale * table.ms[rows, cols][None, :], np.zeros(0))
    return Layer(name, in_group, out_group, block, scale * table.ms[np.ix_(rows, cols)], np.zeros(0))


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


def head_order(scores: Mapping[str, np.ndarray], tie: HeadsTie) -> np.ndarray:
    """An attention's heads, best first, by their scores (`importance.selection.with_head_scores`)."""
    return np.argsort(-np.asarray(scores[tie.heads], dtype=float), kind="stable")


def _heads_importance(structure: Structure, scores: Mapping[str, np.ndarray], tie: HeadsTie,
                      widths: Mapping[str, tuple[int, ...]]) -> np.ndarray:
    """Per attention level: the summed scores of its best heads' best channels in every member."""
    order, heads = head_order(scores, tie), structure.group(tie.heads).size
    values = np.zeros(len(widths[tie.heads]))
    for m in tie.members:
        cumulative = part_importance(scores[m], heads)[order]
        for i, (h, k) in enumerate(zip(widths[tie.heads], widths[m], strict=True)):
            values[i] += cumulative[:h, k // h].sum()
    return values


def plan_from_solution(
    structure: Structure,
    scores: Mapping[str, np.ndarray],
    levels: Mapping[str, tuple[int, ...]],
    solution: Solution,
    problem: Problem,
) -> Plan:
    """Keep each group's top-k channels by score at the chosen level (per part); drop the blocks not kept.
    An attention keeps its best heads (`head_order`), and in each the best channels of every member."""
    groups: dict[str, tuple[int, ...]] = {}
    chosen = problem.group_by_id
    for gid, index in solution.levels.items():
        widths = chosen[gid].widths
        if widths is not None:
            tie = structure.heads_tie(gid)
            best = head_order(scores, tie)[:widths[gid][index]]
            groups.update(heads_kept(structure, tie, widths, index, best,
                                     lambda group, k, kept: top_channels(scores[group.id], k, group.parts, kept)))
            continue
        k = levels[gid][index]
        if k < len(scores[gid]):
            groups[gid] = top_channels(scores[gid], k, structure.group(gid).parts)
    kept = set(solution.blocks_kept)
    removed = tuple(b.id for b in problem.blocks if b.id not in kept)
    return Plan(groups, removed, {"solver": solution.to_json()})

