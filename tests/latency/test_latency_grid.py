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


def test_an_attention_that_removes_heads_is_gridded_at_half_the_levels_per_dimension() -> None:
    """DeiT-tiny: 3 heads of 64. Default grid (8 levels): heads 1-3, 4 widths per head for q/k and for v, so
    the head-width groups' levels are every heads x width, and calibration's plans keep whole heads."""
    import numpy as np

    from mdp_trt.graph import analyze
    from mdp_trt.latency.calibrate import calibration_plans, random_plan
    from mdp_trt.latency.grid import group_levels, head_combinations, head_levels
    from mdp_trt.zoo import build

    structure = analyze(build("vit_tiny", input_size=32, num_classes=10))
    tie = structure.heads[0]
    heads, per_head = head_levels(structure, tie)
    assert heads == (1, 2, 3) and set(per_head.values()) == {(16, 32, 48, 64)}
    levels = group_levels(structure)
    assert levels[tie.heads] == heads
    assert all(levels[m] == tuple(sorted({h * w for h in heads for w in per_head[m]})) for m in tie.members)
    combos = head_combinations(structure, levels)[tie.heads]
    assert len(combos[tie.heads]) == 3 * 4 * 4 and max(combos[tie.heads]) == 3
    plans = calibration_plans(structure, count=6) + [random_plan(structure, levels, np.random.default_rng(s))
                                                     for s in range(4)]
    for plan in plans:
        plan.validate(structure)  # a head kept or removed in all its groups at once
    assert any(tie.heads in plan.groups for plan in plans)
