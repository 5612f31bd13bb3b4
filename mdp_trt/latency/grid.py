"""Channel grids: the widths at which each group's latency is measured.

Measuring every width is unaffordable (C_in x C_out probes per layer), so each group gets at most G
levels, evenly spaced from a minimum up to the full width and aligned to multiples of A (hardware
kernels run fastest, and most predictably, on aligned widths). The full width is always a level, so
the dense model is exactly on the grid.

An attention whose heads can be removed (`Structure.heads`) chooses three widths at once: heads, and
per head its query/key and its value width. Its solver group takes every combination (`head_levels`),
so each of the three gets half the levels (rounded up), which keeps that group's grid near the square of
an ordinary group's, not its cube. Its heads group's levels are head counts, and each head-width group's
levels are the total widths those combinations give (heads x head width).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

from mdp_trt.errors import InputError
from mdp_trt.graph.structure import HeadsTie, Structure


@dataclass(frozen=True)
class GridConfig:
    """At most `levels` widths per group, multiples of `align`, from `min_channels` (default:
    width / levels rounded up to the alignment) to the full width."""

    levels: int = 8
    align: int = 8
    min_channels: int | None = None

    def __post_init__(self) -> None:
        if self.levels < 1 or self.align < 1 or (self.min_channels is not None and self.min_channels < 1):
            raise InputError("grid levels, alignment and minimum channels must be positive")


DEFAULT_GRID = GridConfig()


def channel_levels(width: int, config: GridConfig = DEFAULT_GRID, prunable: bool = True,
                   parts: int = 1) -> tuple[int, ...]:
    """Ascending widths for a group of `width` channels; just `(width,)` when it cannot be pruned.

    A group narrower than the alignment is stepped by 1 channel instead (full width plus smaller
    levels), since no aligned width below it exists. A group in equal parts (a grouped convolution)
    keeps the same number in each part: its levels are `parts` times the levels of one part, aligned
    so that the whole width is a multiple of the alignment where the part allows it.
    """
    if width < 1:
        raise InputError(f"a channel group must have at least one channel, got {width}")
    if parts > 1:
        part_config = GridConfig(config.levels, max(1, config.align // math.gcd(config.align, parts)),
                                 None if config.min_channels is None else -(-config.min_channels // parts))
        return tuple(parts * k for k in channel_levels(width // parts, part_config, prunable))
    if not prunable or config.levels == 1 or width == 1:
        return (width,)
    align = config.align if width >= config.align else 1
    lowest = config.min_channels if config.min_channels is not None else math.ceil(width / config.levels)
    lowest = min(width, max(align, _round_up(lowest, align)))
    levels = {width}
    for i in range(config.levels - 1):
        target = lowest + (width - lowest) * i / (config.levels - 1)
        levels.add(min(width, max(lowest, align * math.floor(target / align + 0.5))))
    return tuple(sorted(levels))


def group_levels(structure: Structure, config: GridConfig = DEFAULT_GRID) -> dict[str, tuple[int, ...]]:
    """The grid of every group of a structure (non-prunable groups get their full width only)."""
    levels = {g.id: channel_levels(g.size, config, g.prunable, g.parts) for g in structure.groups}
    for tie in structure.heads:
        heads, per_head = head_levels(structure, tie, config)
        if len(heads) < 2:
            continue
        levels[tie.heads] = heads
        for member, widths in per_head.items():
            levels[member] = tuple(sorted({h * w for h in heads for w in widths}))
    return levels


def head_levels(structure: Structure, tie: HeadsTie, config: GridConfig = DEFAULT_GRID
                ) -> tuple[tuple[int, ...], dict[str, tuple[int, ...]]]:
    """An attention's head counts, and per member group its widths per head, at half the levels each."""
    half = replace(config, levels=max(2, -(-config.levels // 2)))
    heads = structure.group(tie.heads)
    counts = channel_levels(heads.size, replace(half, align=1, min_channels=None), heads.prunable)
    per_head = {}
    for member in tie.members:
        group = structure.group(member)
        widths = channel_levels(group.size, half, group.prunable, group.parts)
        per_head[member] = tuple(k // group.parts for k in widths)
    return counts, per_head


def head_combinations(structure: Structure, levels: Mapping[str, tuple[int, ...]]
                     ) -> dict[str, dict[str, tuple[int, ...]]]:
    """Per attention whose heads the grid removes: its combinations, as each group's width per level
    (heads group: heads kept; members: their whole kept width), fewest channels first.

    The combinations are the head counts of the grid times each member's widths per head at every head,
    taken where that many heads of that width are a grid level of the member (`group_levels` makes
    them all levels)."""
    result = {}
    for tie in structure.heads:
        heads = structure.group(tie.heads)
        if not heads.prunable or len(levels.get(tie.heads, ())) < 2:
            continue
        counts = levels[tie.heads]
        per_head = [sorted({k // heads.size for k in levels[m] if k % heads.size == 0}) for m in tie.members]
        combos = [(h, *ws) for h in counts for ws in itertools.product(*per_head)
                  if all(h * w in levels[m] for m, w in zip(tie.members, ws, strict=True))]
        combos.sort(key=lambda c: (c[0] * sum(c[1:]), c))
        result[tie.heads] = {tie.heads: tuple(c[0] for c in combos),
                             **{m: tuple(c[0] * c[1 + i] for c in combos) for i, m in enumerate(tie.members)}}
    return result


def kept_channels(widths: Mapping[str, tuple[int, ...]], tie: HeadsTie) -> list[int]:
    """An attention level's channels kept over its members (the problem group's level values)."""
    return [sum(widths[m][i] for m in tie.members) for i in range(len(widths[tie.heads]))]


def _round_up(value: int, multiple: int) -> int:
    return multiple * math.ceil(value / multiple)
