"""`--ratio R`: a quick manual plan keeping the top R fraction of every prunable group by L1 magnitude.

Attentions keep every head (at R of each head width): which heads to remove is a choice for the solver."""

from __future__ import annotations

import onnx

from mdp_trt.errors import InputError
from mdp_trt.graph.structure import Structure
from mdp_trt.importance import channel_scores
from mdp_trt.importance.selection import top_channels
from mdp_trt.prune.plan import Plan


def ratio_plan(model: onnx.ModelProto, structure: Structure, ratio: float) -> Plan:
    if not 0.0 < ratio <= 1.0:
        raise InputError(f"--ratio must be in (0, 1], got {ratio}")
    scores = channel_scores(model, structure, norm="l1")
    groups: dict[str, tuple[int, ...]] = {}
    for group in structure.prunable_groups:
        if group.kind == "heads":
            continue
        count = group.parts * max(1, round(ratio * group.part_size))
        groups[group.id] = top_channels(scores[group.id], count, group.parts)
    return Plan(groups, (), {"ratio": ratio})
