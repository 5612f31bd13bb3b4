"""`LatencyTable`: one layer's measured latency over its grid of (kept input, kept output) channels.

Rows follow the input group's levels and columns the output group's. A side that is not one prunable
group (a Concat input, the network input, the classifier output) has a single level, its full width.
A depthwise layer has one row: its input and output channels are the same group, so the column's
level is both k_in and k_out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LatencyTable:
    """`ms[i, j]` is the median latency (ms) at `in_levels[i]` inputs and `out_levels[j]` outputs."""

    layer: str
    in_group: str | None  # the group indexing rows; None when the table has a single row
    out_group: str | None  # the group indexing columns; None when the table has a single column
    in_levels: tuple[int, ...]
    out_levels: tuple[int, ...]
    ms: np.ndarray
    depthwise: bool = False
    estimate: bool = False

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

    def lookup(self, k_in: int | None, k_out: int | None) -> float:
        """Latency at (k_in, k_out), linear between grid levels and clamped outside them.

        `None` means "the full width". Clamping below the smallest level overestimates, which keeps a
        latency budget safe. A single-row/column axis ignores its argument.
        """
        row = _weights(self.in_levels, k_in)
        col = _weights(self.out_levels, k_out)
        return float(sum(wr * wc * self.ms[i, j] for i, wr in row for j, wc in col))

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
        )


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
