"""`--ratio R`: a quick manual plan keeping the top R fraction of every prunable group by L1 magnitude."""

from __future__ import annotations

import numpy as np
import onnx

from mdp_trt.errors import InputError
from mdp_trt.graph.structure import Structure
from mdp_trt.importance import channel_scores
from mdp_trt.prune.plan import Plan


def ratio_plan(model: onnx.ModelProto, structure: Structure, ratio: float) -> Plan:
    if not 0.0 < ratio <= 1.0:
        raise InputError(f"--ratio must be in (0, 1], got {ratio}")
    scores = channel_scores(model, structure, norm="l1")
    groups: dict[str, tuple[int, ...]] = {}
    for group in structure.prunable_groups:
        count = max(1, round(ratio * group.size))
        order = np.argsort(-scores[group.id], kind="stable")[:count]
        groups[group.id] = tuple(sorted(int(i) for i in order))
    return Plan(groups, (), {"ratio": ratio})
