"""Which channels a group keeps at a width, and what they are worth.

A group keeps its best-scored channels. A group in equal parts (read by a grouped convolution or a
GroupNorm: `Group.parts`) keeps the same number in each part, the best of each part, so its
importance at k channels is the sum over parts of each part's top k / parts scores. A group whose
parts are attention heads may keep channels in some parts only (`Structure.heads`): `in_parts` names
them, and the k channels are spread evenly over those.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from mdp_trt.graph.structure import Group, HeadsTie, Structure


def top_channels(scores: np.ndarray, k: int, parts: int = 1, in_parts: Sequence[int] | None = None
                 ) -> tuple[int, ...]:
    """The k channels to keep (sorted): the k / parts best of every part (of every part in `in_parts`)."""
    size = len(scores)
    if parts == 1:
        return tuple(sorted(int(i) for i in np.argsort(-scores, kind="stable")[:k]))
    chosen = range(parts) if in_parts is None else in_parts
    per_part, part_size = k // len(chosen), size // parts
    kept = []
    for p in chosen:
        local = np.argsort(-scores[p * part_size:(p + 1) * part_size], kind="stable")[:per_part]
        kept.extend(int(i) + p * part_size for i in local)
    return tuple(sorted(kept))


def part_importance(scores: np.ndarray, parts: int = 1) -> np.ndarray:
    """(parts, part size + 1): entry [p, j] is the summed j best scores of part p."""
    ranked = np.sort(np.asarray(scores, dtype=np.float64).reshape(parts, -1), axis=1)[:, ::-1]
    return np.concatenate([np.zeros((parts, 1)), np.cumsum(ranked, axis=1)], axis=1)


def level_importance(scores: np.ndarray, levels: Sequence[int], parts: int = 1) -> np.ndarray:
    """The summed scores kept at each level (width) of a group."""
    cumulative = part_importance(scores, parts).sum(axis=0)
    return np.array([cumulative[k // parts] for k in levels])


def random_channels(rng: np.random.Generator, size: int, k: int, parts: int = 1,
                    in_parts: Sequence[int] | None = None) -> tuple[int, ...]:
    """k random channels (sorted), as many in each part (of `in_parts`): plans for calibration, tests and
    benchmarks."""
    part_size, chosen = size // parts, range(parts) if in_parts is None else in_parts
    return tuple(sorted(p * part_size + int(c) for p in chosen
                        for c in rng.choice(part_size, k // len(chosen), replace=False)))


def first_channels(size: int, k: int, parts: int = 1, in_parts: Sequence[int] | None = None) -> tuple[int, ...]:
    """The first k channels, as many in each part (of `in_parts`)."""
    part_size, chosen = size // parts, range(parts) if in_parts is None else in_parts
    return tuple(p * part_size + c for p in chosen for c in range(k // len(chosen)))


def with_head_scores(structure: Structure, scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`scores` with every attention's heads group scored, where its source gave it nothing: a head is worth
    the summed scores of its channels in each of its groups (queries/keys and values). Solvers keep the best
    heads by these."""
    for tie in structure.heads:
        if not np.any(scores.get(tie.heads, 0.0)):
            heads = structure.group(tie.heads).size
            scores[tie.heads] = sum(np.asarray(scores[m], dtype=np.float64).reshape(heads, -1).sum(axis=1)
                                    for m in tie.members)
    return scores


def heads_kept(structure: Structure, tie: HeadsTie, widths: Mapping[str, tuple[int, ...]], index: int,
               heads: Sequence[int], channels: Callable[[Group, int, tuple[int, ...]], tuple[int, ...]]
               ) -> dict[str, tuple[int, ...]]:
    """A plan's groups for an attention at its combination `index` (`widths`, `latency.grid.head_combinations`)
    keeping `heads`: the heads group (when heads go) and each member's `channels(group, width, heads)`."""
    kept = tuple(sorted(int(h) for h in heads))
    groups = {tie.heads: kept} if len(kept) < structure.group(tie.heads).size else {}
    for member in tie.members:
        group, k = structure.group(member), widths[member][index]
        if k < group.size:
            groups[member] = channels(group, k, kept)
    return groups
