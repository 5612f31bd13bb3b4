"""Channel grids: the widths at which each group's latency is measured.

Measuring every width is unaffordable (C_in x C_out probes per layer), so each group gets at most G
levels, evenly spaced from a minimum up to the full width and aligned to multiples of A (hardware
kernels run fastest, and most predictably, on aligned widths). The full width is always a level, so
the dense model is exactly on the grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mdp_trt.errors import InputError
from mdp_trt.graph.structure import Structure


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
    return {g.id: channel_levels(g.size, config, g.prunable, g.parts) for g in structure.groups}


def _round_up(value: int, multiple: int) -> int:
    return multiple * math.ceil(value / multiple)
