"""Channel grids: aligned, bounded in count, always containing the full width."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mdp_trt.errors import InputError
from mdp_trt.latency.grid import GridConfig, channel_levels


@given(width=st.integers(1, 4096), levels=st.integers(1, 16), align=st.sampled_from([1, 4, 8, 16, 32]))
def test_levels_are_sorted_aligned_bounded_and_end_at_full(width: int, levels: int, align: int) -> None:
    grid = channel_levels(width, GridConfig(levels=levels, align=align))
    assert list(grid) == sorted(set(grid))
    assert grid[-1] == width
    assert 1 <= len(grid) <= levels
    assert all(1 <= k <= width for k in grid)
    if width >= align:
        assert all(k % align == 0 for k in grid[:-1])


def test_typical_widths() -> None:
    assert channel_levels(256) == (32, 64, 96, 128, 160, 192, 224, 256)
    assert channel_levels(64) == (8, 16, 24, 32, 40, 48, 56, 64)
    assert channel_levels(256, GridConfig(levels=4)) == (64, 128, 192, 256)
    assert channel_levels(256, GridConfig(min_channels=8))[0] == 8


def test_narrow_and_unprunable_groups() -> None:
    assert channel_levels(6) == (1, 2, 3, 4, 5, 6)
    assert channel_levels(3, GridConfig(levels=2)) == (2, 3)
    assert channel_levels(512, prunable=False) == (512,)


def test_bad_config_is_an_input_error() -> None:
    with pytest.raises(InputError):
        GridConfig(levels=0)
