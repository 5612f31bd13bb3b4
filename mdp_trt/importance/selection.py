"""Which channels a group keeps at a width, and what they are worth.

A group keeps its best-scored channels. A group in equal parts (read by a grouped convolution or a
GroupNorm: `Group.parts`) keeps the same number in each part, the best of each part, so its
importance at k channels is the sum over parts of each part's top k / parts scores.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def top_channels(scores: np.ndarray, k: int, parts: int = 1) -> tuple[int, ...]:
    """The k channels to keep (sorted): the k / parts best of every part."""
    size = len(scores)
    if parts == 1:
        return tuple(sorted(int(i) for i in np.argsort(-scores, kind="stable")[:k]))
    per_part, part_size = k // parts, size // parts
    kept = []
    for p in range(parts):
        local = np.argsort(-scores[p * part_size:(p + 1) * part_size], kind="stable")[:per_part]
        kept.extend(int(i) + p * part_size for i in local)
    return tuple(sorted(kept))


def level_importance(scores: np.ndarray, levels: Sequence[int], parts: int = 1) -> np.ndarray:
    """The summed scores kept at each level (width) of a group."""
    part_size = len(scores) // parts
    ranked = np.sort(scores.reshape(parts, part_size), axis=1)[:, ::-1]
    cumulative = np.concatenate([np.zeros((parts, 1)), np.cumsum(ranked, axis=1)], axis=1).sum(axis=0)
    return np.array([cumulative[k // parts] for k in levels])


def random_channels(rng: np.random.Generator, size: int, k: int, parts: int = 1) -> tuple[int, ...]:
    """k random channels (sorted), as many in each part: plans for calibration, tests and benchmarks."""
    part_size = size // parts
    return tuple(sorted(p * part_size + int(c) for p in range(parts)
                        for c in rng.choice(part_size, k // parts, replace=False)))


def first_channels(size: int, k: int, parts: int = 1) -> tuple[int, ...]:
    """The first k channels, as many in each part."""
    part_size = size // parts
    return tuple(p * part_size + c for p in range(parts) for c in range(k // parts))
