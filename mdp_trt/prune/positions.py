"""From a plan to kept positions on every tensor's channel axis."""

from __future__ import annotations

import numpy as np

from mdp_trt.graph.structure import Structure
from mdp_trt.prune.plan import Plan


def kept_positions(structure: Structure, plan: Plan) -> dict[str, np.ndarray]:
    """Tensor name -> sorted positions kept on its channel axis, for tensors that lose channels."""
    masks = []
    for group in structure.groups:
        mask = np.zeros(group.size, dtype=bool)
        mask[list(plan.kept(group.id, group.size))] = True
        masks.append(mask)
    result: dict[str, np.ndarray] = {}
    for tensor, tc in structure.channels.items():
        keep = np.fromiter((masks[g][c] for g, c in zip(tc.group.tolist(), tc.channel.tolist(), strict=True)),
                           dtype=bool, count=len(tc.group))
        if not keep.all():
            result[tensor] = np.flatnonzero(keep)
    return result


def features(positions: np.ndarray, repeat: int) -> np.ndarray:
    """Feature indices of kept channels when each channel spans `repeat` consecutive features."""
    if repeat == 1:
        return positions
    return (positions[:, None] * repeat + np.arange(repeat)[None, :]).reshape(-1)

