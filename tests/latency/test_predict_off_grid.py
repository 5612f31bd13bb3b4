"""`predict` on plans off the profiled grid: it measures exactly the probes the plan reads between grid
levels (stored in the database like any other), or with --interpolate says which layers it interpolated."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import onnx
import pytest

from latency_db import LatencyDB
from mdp_trt.cli import main
from mdp_trt.graph import analyze
from mdp_trt.latency import GridConfig, get_backend, plan_probes, profile_tables
from mdp_trt.latency.measurement import Measurement
from mdp_trt.latency.predict import layer_sum
from mdp_trt.latency.profile import profile_off_grid
from mdp_trt.latency.protocol import MeasureProtocol
from mdp_trt.prune import Plan
from mdp_trt.zoo import build

GRID = GridConfig(levels=4, align=2)  # the toy's 8-channel groups: levels 2, 4, 6, 8; g5 (16): 4, 8, 12, 16
# g2 keeps 3 (between 2 and 4), g5 keeps 10 (between 8 and 12); each feeds one layer and is fed by one
OFF_GRID = {"g2": {"keep": [0, 1, 2]}, "g5": {"keep": list(range(10))}}
ON_GRID = {"g2": {"keep": [0, 1, 2, 3]}, "g5": {"keep": list(range(8))}}
# the (layer, probe k_in, probe k_out) the off-grid plan reads between levels, written out by hand
# (conv_out reads the Concat of g3 and g4: one table per group, both read at g3 and g4 full, one probe)
EXPECTED = {("block.conv1", 8, 3), ("block.conv2", 3, 8), ("conv_out@in:g3", 16, 10), ("fc", 10, 10)}


class RecordingBackend:
    """A backend that 'measures' (estimate: False, so nothing is treated as an analytic estimate) and records
    the channel counts of every probe it is handed, once per probe (profiling measures each probe until two
    measurements agree: here, twice), and how many probe measurements it made. A probe takes
    0.01 + 0.001 * sqrt(k_in * k_out) ms, which no linear interpolation reproduces between levels; a whole
    model takes the analytic roofline's time."""

    name = "recording"

    def __init__(self) -> None:
        self.inner = get_backend("analytic")
        self.models = 0
        self.clear()

    def clear(self) -> None:
        self.probes: list[tuple[int, int]] = []
        self.probe_measurements = 0
        self._seen: set[bytes] = set()

    def fingerprint(self, batch: int, precision: str) -> dict[str, Any]:
        return {**self.inner.fingerprint(batch, precision), "backend": "recording", "estimate": False}

    def measure(self, model: onnx.ModelProto, protocol: MeasureProtocol, *, batch: int = 1,
                precision: str = "fp32") -> Measurement:
        if model.producer_name == "mdp-trt probe":
            (_, k_in, *_), (_, k_out, *_) = ([d.dim_value for d in v.type.tensor_type.shape.dim]
                                             for v in (*model.graph.input, *model.graph.output))
            self.probe_measurements += 1
            if (key := model.SerializeToString()) not in self._seen:
                self._seen.add(key)
                self.probes.append((k_in, k_out))
            ms = 0.01 + 0.001 * math.sqrt(k_in * k_out)
        else:
            self.models += 1
            ms = self.inner.measure(model, protocol, batch=batch, precision=precision).median_ms
        return Measurement(ms, ms, ms, runs=1, seconds=0.0)


@pytest.fixture()
def toy(tmp_path: Path) -> Path:
    path = tmp_path / "toy.onnx"
    onnx.save(build("toy", input_size=16), path)
    return path


@pytest.fixture()
def recorder(monkeypatch: pytest.MonkeyPatch) -> RecordingBackend:
    backend = RecordingBackend()
    monkeypatch.setattr("mdp_trt.cli.predict_cmd.get_backend", lambda *_args, **_kwargs: backend)
    return backend


def _plan(tmp_path: Path, groups: dict) -> Path:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"format": "mdp-plan/1", "groups": groups}))
    return path


def _predict(toy: Path, plan: Path, db: Path, capsys, *extra: str) -> dict:
    args = ["predict", str(toy), "--plan", str(plan), "--db", str(db), "--grid", "4", "--align", "2", "--json"]
    assert main([*args, *extra]) == 0
    return json.loads(capsys.readouterr().out)


def _stored(db_path: Path) -> set[tuple[str, int, int]]:
    """The probe entries the database holds for the recording backend."""
    with LatencyDB(db_path) as db:
        fp_hash = db.register_fingerprint(RecordingBackend().fingerprint(1, "fp32"))
        return {(e.signature, e.k_in, e.k_out) for e in db.entries(fp_hash)}


def test_off_grid_plan_measures_exactly_the_missing_probes_and_stores_them(
    tmp_path: Path, toy: Path, recorder: RecordingBackend, capsys
) -> None:
    db = tmp_path / "lat.sqlite"
    grid_probes = len(plan_probes(analyze(onnx.load(toy)), GRID).tasks)
    first = _predict(toy, _plan(tmp_path, OFF_GRID), db, capsys)
    assert recorder.probe_measurements == 2 * len(recorder.probes)
    off_grid_probes = recorder.probes[grid_probes:]
    assert sorted(off_grid_probes) == sorted((k_in, k_out) for _, k_in, k_out in EXPECTED)
    assert first["off_grid"] == {"cells": 5, "probes": 4, "measured": 4, "from_db": 0, "interpolated": []}
    signatures = {g.layer: g.spec.signature for g in plan_probes(analyze(onnx.load(toy)), GRID).layers}
    assert {(signatures[layer], k_in, k_out) for layer, k_in, k_out in EXPECTED} <= _stored(db)
    assert len(_stored(db)) == grid_probes + 4

    recorder.clear()
    models = recorder.models
    second = _predict(toy, _plan(tmp_path, OFF_GRID), db, capsys)
    # tables, calibration and off-grid cells cached
    assert recorder.probe_measurements == 0 and recorder.models == models
    assert second["off_grid"]["measured"] == 0 and second["off_grid"]["from_db"] == 4
    assert second["latency_ms"] == pytest.approx(first["latency_ms"])


def test_measured_cells_replace_the_interpolation(tmp_path: Path) -> None:
    model = build("toy", input_size=16)
    structure = analyze(model)
    plan = Plan.from_json({"format": "mdp-plan/1", "groups": OFF_GRID})
    backend = RecordingBackend()
    with LatencyDB(tmp_path / "lat.sqlite") as db:
        profile = profile_tables(structure, backend, db, grid=GRID)
        result = profile_off_grid(structure, profile, plan, backend, db)
        probe = plan_probes(structure, GRID).layers
        for cell in result.cells:
            grid = next(g for g in probe if g.layer == cell.layer)
            task = grid.task(*cell.cell)
            entry = db.get_entries(profile.fingerprint, [task.key])[task.key]
            assert result.tables[cell.layer].lookup(*cell.cell) == entry.median_ms
            assert profile.tables[cell.layer].lookup(*cell.cell) != entry.median_ms  # the grid interpolated it
        assert layer_sum(structure, result.tables, plan) != layer_sum(structure, profile.tables, plan)


def test_interpolate_measures_nothing_and_names_the_layers_and_levels(
    tmp_path: Path, toy: Path, recorder: RecordingBackend, capsys
) -> None:
    db = tmp_path / "lat.sqlite"
    plan = _plan(tmp_path, OFF_GRID)
    grid_probes = len(plan_probes(analyze(onnx.load(toy)), GRID).tasks)
    report = _predict(toy, plan, db, capsys, "--interpolate")
    assert len(recorder.probes) == grid_probes  # the grid only
    assert report["off_grid"]["measured"] == 0
    assert sorted(report["off_grid"]["interpolated"], key=lambda c: c["layer"]) == [
        {"layer": "block.conv1", "k_in": 8, "k_out": 3, "in_levels": [8, 8], "out_levels": [2, 4]},
        {"layer": "block.conv2", "k_in": 3, "k_out": 8, "in_levels": [2, 4], "out_levels": [8, 8]},
        {"layer": "conv_out@in:g3", "k_in": 8, "k_out": 10, "in_levels": [8, 8], "out_levels": [8, 12]},
        {"layer": "conv_out@in:g4", "k_in": 8, "k_out": 10, "in_levels": [8, 8], "out_levels": [8, 12]},
        {"layer": "fc", "k_in": 10, "k_out": 10, "in_levels": [8, 12], "out_levels": [10, 10]},
    ]
    assert main(["predict", str(toy), "--plan", str(plan), "--db", str(db), "--grid", "4", "--align", "2",
                 "--interpolate"]) == 0
    text = capsys.readouterr().out
    assert "4 layer(s) read off the profiled grid" in text and "5 interpolated between grid levels" in text
    assert "block.conv1: k_out 3 between levels 2 and 4" in text and "fc: k_in 10 between levels 8 and 12" in text
    assert len(recorder.probes) == grid_probes

    measured = _predict(toy, plan, db, capsys)  # without --interpolate: measured now, and then...
    assert measured["off_grid"]["measured"] == 4 and measured["latency_ms"] != report["latency_ms"]
    again = _predict(toy, plan, db, capsys, "--interpolate")  # ...read exactly, as nothing is left to interpolate
    assert again["off_grid"]["interpolated"] == [] and again["off_grid"]["from_db"] == 4
    assert again["latency_ms"] == pytest.approx(measured["latency_ms"])


def test_clamped_below_the_grid_is_said_so(tmp_path: Path, toy: Path, recorder: RecordingBackend, capsys) -> None:
    plan = _plan(tmp_path, {"g5": {"keep": [0, 1]}})  # 2 channels, under g5's lowest level 4
    cells = _predict(toy, plan, tmp_path / "lat.sqlite", capsys, "--interpolate")["off_grid"]["interpolated"]
    assert {c["layer"]: c["in_levels" if c["layer"] == "fc" else "out_levels"] for c in cells} == {
        "conv_out@in:g3": [4, 4], "conv_out@in:g4": [4, 4], "fc": [4, 4]}
    main(["predict", str(toy), "--plan", str(plan), "--db", str(tmp_path / "lat.sqlite"), "--grid", "4",
          "--align", "2", "--interpolate"])
    assert "conv_out@in:g3: k_out 2 below the lowest level 4 (clamped to it)" in capsys.readouterr().out


def test_on_grid_plans_measure_nothing_off_the_grid(
    tmp_path: Path, toy: Path, recorder: RecordingBackend, capsys
) -> None:
    db = tmp_path / "lat.sqlite"
    grid_probes = len(plan_probes(analyze(onnx.load(toy)), GRID).tasks)
    for groups in (ON_GRID, {}):
        report = _predict(toy, _plan(tmp_path, groups), db, capsys)
        assert report["off_grid"] == {"cells": 0, "probes": 0, "measured": 0, "from_db": 0, "interpolated": []}
    assert len(recorder.probes) == grid_probes and len(_stored(db)) == grid_probes
    assert main(["predict", str(toy), "--plan", str(_plan(tmp_path, ON_GRID)), "--db", str(db), "--grid", "4",
                 "--align", "2"]) == 0
    assert "off the profiled grid" not in capsys.readouterr().out


def test_analytic_backend_estimates_off_grid_cells_and_says_nothing_is_measured(
    tmp_path: Path, toy: Path, capsys
) -> None:
    args = ["predict", str(toy), "--plan", str(_plan(tmp_path, OFF_GRID)), "--db", str(tmp_path / "lat.sqlite"),
            "--backend", "analytic", "--grid", "4", "--align", "2"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "analytic estimate" in text and "4 layer(s) read off the profiled grid" in text
    assert "analytic backend: nothing is measured, its estimates hold at any width" in text
    assert "interpolated" not in text


def test_depthwise_off_grid_probes_follow_their_output_group(tmp_path: Path) -> None:
    model = build("mobilenet_v2", input_size=32, width=0.25)
    structure = analyze(model)
    depthwise = next(layer for layer in structure.layers if layer.depthwise and layer.out_group)
    group = next(g for g in structure.groups if g.id == depthwise.out_group)
    backend = RecordingBackend()
    with LatencyDB(tmp_path / "lat.sqlite") as db:
        profile = profile_tables(structure, backend, db, grid=GRID)
        grid_levels = profile.tables[depthwise.name].out_levels
        width = next(k for k in range(grid_levels[0] + 1, group.size) if k not in grid_levels)
        levels = (max(k for k in grid_levels if k < width), min(k for k in grid_levels if k > width))
        plan = Plan({group.id: tuple(range(width))})
        backend.clear()
        result = profile_off_grid(structure, profile, plan, backend, db)
        cell = next(c for c in result.cells if c.layer == depthwise.name)
        assert cell.out_between == levels and cell.k_out == width
        assert (width, width) in backend.probes  # a depthwise probe's input is its output group
        assert result.measured == len(backend.probes) == result.unique_probes
        assert profile_off_grid(structure, profile, plan, backend, db).measured == 0
