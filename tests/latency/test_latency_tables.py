"""LatencyTable lookups: exact on the grid and at cells measured off it, linear between levels, clamped outside."""

from __future__ import annotations

import numpy as np
import pytest

from mdp_trt.latency.tables import LatencyTable, neighbours


def _table() -> LatencyTable:
    ms = np.array([[1.0, 2.0, 4.0], [2.0, 4.0, 8.0]])
    return LatencyTable("l", "a", "b", (8, 16), (8, 16, 32), ms)


def test_lookup_on_and_between_levels() -> None:
    t = _table()
    assert t.lookup(8, 8) == 1.0 and t.lookup(16, 32) == 8.0 and t.dense_ms == 8.0
    assert t.lookup(None, None) == 8.0
    assert t.lookup(12, 8) == pytest.approx(1.5)
    assert t.lookup(12, 24) == pytest.approx(0.5 * 3.0 + 0.5 * 6.0)


def test_lookup_clamps_outside_the_grid() -> None:
    t = _table()
    assert t.lookup(1, 1) == 1.0
    assert t.lookup(100, 100) == 8.0


def test_single_row_ignores_k_in_and_json_round_trip() -> None:
    t = LatencyTable("dw", None, "g", (32,), (8, 32), np.array([[1.0, 3.0]]), depthwise=True)
    assert t.lookup(5, 8) == 1.0 and t.lookup(None, 20) == pytest.approx(2.0)
    back = LatencyTable.from_json(t.to_json())
    assert back.to_json() == t.to_json()


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(ValueError):
        LatencyTable("l", None, None, (1,), (1, 2), np.zeros((1, 1)))


def test_cells_measured_off_the_grid_are_read_exactly() -> None:
    t = _table()
    assert t.on_grid(16, 8) and t.on_grid(None, None) and not t.on_grid(12, 8) and not t.on_grid(4, 8)
    measured = t.with_points({(12, 8): 1.2})
    assert measured.lookup(12, 8) == 1.2 and t.lookup(12, 8) == pytest.approx(1.5)  # the original is unchanged
    assert measured.lookup(12, 24) == pytest.approx(t.lookup(12, 24))  # other cells still interpolate
    back = LatencyTable.from_json(measured.to_json())
    assert back.points == {(12, 8): 1.2} and back.to_json() == measured.to_json()


def test_a_single_level_axis_is_one_coordinate() -> None:
    t = LatencyTable("dw", None, "g", (32,), (8, 32), np.array([[1.0, 3.0]]), depthwise=True)
    assert t.cell(5, 20) == (32, 20) and t.cell(None, None) == (32, 32)
    assert t.on_grid(5, 8) and not t.on_grid(5, 20)
    assert t.with_points({(32, 20): 2.5}).lookup(7, 20) == 2.5


def test_neighbours_name_the_levels_a_width_is_read_between() -> None:
    levels = (8, 16, 32)
    assert neighbours(levels, 12) == (8, 16) and neighbours(levels, 16) == (16, 16)
    assert neighbours(levels, 3) == (8, 8) and neighbours(levels, 32) == (32, 32)
