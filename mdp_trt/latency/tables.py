"""`LatencyTable`: one layer's measured latency over its grid of (kept input, kept output) channels.

Rows follow the input group's levels and columns the output group's. A side that is not one prunable
group (a Concat input, the network input, the classifier output) has a single level, its full width.
A depthwise layer has one row: its input and output channels are the same group, so the column's
level is both k_in and k_out.

A plan whose widths fall between levels is read by linear interpolation, unless the cell it needs was
measured on its own (`points`, filled by `profile.profile_off_grid` for `predict`): the grid is what the
solver chooses from, and a probe at an off-grid width is worth measuring only for the plan that uses it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Cell = tuple[int, int]  # (k_in, k_out) in table units: group widths, the fixed level on a single-level axis


@dataclass(frozen=True)
class LatencyTable:
    """`ms[i, j]` is the median latency (ms) at `in_levels[i]` inputs and `out_levels[j]` outputs;
    `points` holds cells measured off the grid, {(k_in, k_out): ms}."""

    layer: str
    in_group: str | None  # the group indexing rows; None when the table has a single row
    out_group: str | None  # the group indexing columns; None when the table has a single column
    in_levels: tuple[int, ...]
    out_levels: tuple[int, ...]
    ms: np.ndarray
    depthwise: bool = False
    estimate: bool = False
    points: dict[Cell, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.ms.shape != (len(self.in_levels), len(self.out_levels)):
            raise ValueError(
                f"table {self.layer}: ms has shape {self.ms.shape}, levels say "
                f"{(len(self.in_levels), len(self.out_levels))}"
            )

    @property
    def dense_ms(self) -> float:
        """Latency with every channel kept (the last level on both axes)."""
        return float(self.ms[-1, -1])

    def cell(self, k_in: int | None, k_out: int | None) -> Cell:
        """The table's coordinates for a layer at (k_in, k_out): `None` (the full width) and any width on a
        single-level axis become that axis's one level, which the table reads whatever the plan keeps."""
        return _coordinate(self.in_levels, k_in), _coordinate(self.out_levels, k_out)

    def on_grid(self, k_in: int | None, k_out: int | None) -> bool:
        """Whether (k_in, k_out) is a measured grid cell (no interpolation, no clamping)."""
        cell_in, cell_out = self.cell(k_in, k_out)
        return cell_in in self.in_levels and cell_out in self.out_levels

    def lookup(self, k_in: int | None, k_out: int | None) -> float:
        """Latency at (k_in, k_out): a cell measured off the grid if there is one, else linear between grid
        levels and clamped outside them.

        `None` means "the full width". Clamping below the smallest level overestimates, which keeps a
        latency budget safe. A single-row/column axis ignores its argument.
        """
        exact = self.points.get(self.cell(k_in, k_out))
        if exact is not None:
            return exact
        row = _weights(self.in_levels, k_in)
        col = _weights(self.out_levels, k_out)
        return float(sum(wr * wc * self.ms[i, j] for i, wr in row for j, wc in col))

    def with_points(self, points: dict[Cell, float]) -> LatencyTable:
        """This table with more off-grid cells measured (a new table: tables are shared read-only)."""
        return dataclasses.replace(self, points={**self.points, **points})

    def to_json(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "in_group": self.in_group,
            "out_group": self.out_group,
            "in_levels": list(self.in_levels),
            "out_levels": list(self.out_levels),
            "ms": self.ms.tolist(),
            "depthwise": self.depthwise,
            "estimate": self.estimate,
            "points": [[k_in, k_out, ms] for (k_in, k_out), ms in sorted(self.points.items())],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LatencyTable:
        return cls(
            layer=data["layer"],
            in_group=data["in_group"],
            out_group=data["out_group"],
            in_levels=tuple(data["in_levels"]),
            out_levels=tuple(data["out_levels"]),
            ms=np.asarray(data["ms"], dtype=np.float64),
            depthwise=bool(data.get("depthwise", False)),
            estimate=bool(data.get("estimate", False)),
            points={(int(k_in), int(k_out)): float(ms) for k_in, k_out, ms in data.get("points", [])},
        )


def neighbours(levels: tuple[int, ...], k: int) -> tuple[int, int]:
    """The grid levels width `k` is read between: (k, k) on a level, the lowest (highest) level twice
    when it is clamped below (above) the grid, else the levels just below and above it."""
    if k <= levels[0]:
        return levels[0], levels[0]
    if k >= levels[-1]:
        return levels[-1], levels[-1]
    hi = int(np.searchsorted(levels, k))
    return (k, k) if levels[hi] == k else (levels[hi - 1], levels[hi])


def _coordinate(levels: tuple[int, ...], k: int | None) -> int:
    return levels[-1] if k is None or len(levels) == 1 else k


def _weights(levels: tuple[int, ...], k: int | None) -> list[tuple[int, float]]:
    """Interpolation weights over `levels` for width `k` (clamped to the grid's range)."""
    if k is None or len(levels) == 1:
        return [(len(levels) - 1, 1.0)]
    if k <= levels[0]:
        return [(0, 1.0)]
    if k >= levels[-1]:
        return [(len(levels) - 1, 1.0)]
    hi = int(np.searchsorted(levels, k))
    if levels[hi] == k:
        return [(hi, 1.0)]
    lo = hi - 1
    t = (k - levels[lo]) / (levels[hi] - levels[lo])
    return [(lo, 1.0 - t), (hi, t)]
