"""Profiling: complete tables, deduplicated probes, db reuse, and calibrated prediction."""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest

from latency_db import LatencyDB
from mdp_trt.graph import analyze
from mdp_trt.graph.structure import Group, Structure
from mdp_trt.latency import (
    Calibration,
    GridConfig,
    calibrate,
    get_backend,
    layer_sum,
    plan_probes,
    predict_latency,
    profile_tables,
    stored_calibration,
)
from mdp_trt.latency.calibrate import calibration_plans, fit, measure_plans
from mdp_trt.latency.grid import group_levels
from mdp_trt.latency.measurement import Measurement
from mdp_trt.latency.predict import kept_widths, layer_reads, plan_reads
from mdp_trt.latency.profile import estimate_seconds
from mdp_trt.latency.protocol import COMPARE_PROTOCOL
from mdp_trt.prune import Plan, prune_model
from mdp_trt.zoo import build
from tests.latency.latency_fakes import CountingBackend, conv_layer

GRID = GridConfig(levels=4, align=2)


@pytest.fixture(scope="module")
def toy() -> tuple[onnx.ModelProto, Structure]:
    model = build("toy", input_size=16)
    return model, analyze(model)


def test_profile_fills_every_table_and_reuses_the_db(tmp_path: Path, toy) -> None:
    _, structure = toy
    backend = CountingBackend(get_backend("analytic"))
    with LatencyDB(tmp_path / "lat.sqlite") as db:
        first = profile_tables(structure, backend, db, grid=GRID)
        assert first.measured == first.unique_probes == backend.calls > 0
        assert first.estimate is True and all(t.estimate for t in first.tables.values())
        # conv_out reads the Concat of g3 and g4: one table per group (latency.decompose)
        concat = structure.layer("conv_out")
        assert set(first.tables) == ({layer.name for layer in structure.layers} - {"conv_out"}
                                     | {"conv_out@in:g3", "conv_out@in:g4"})
        for layer in structure.layers:
            if layer is concat:
                continue
            table = first.tables[layer.name]
            assert table.in_levels[-1] == layer.in_channels and table.out_levels[-1] == layer.out_channels
        for name in ("conv_out@in:g3", "conv_out@in:g4"):
            table = first.tables[name]
            assert table.in_levels[-1] == structure.group(table.in_group).size
            assert table.out_levels[-1] == concat.out_channels
        assert all(np.isfinite(t.ms).all() and (t.ms > 0).all() for t in first.tables.values())
        second = profile_tables(structure, backend, db, grid=GRID)
        assert second.measured == 0 and second.reused == first.unique_probes
        assert backend.calls == first.unique_probes
        assert all((second.tables[n].ms == first.tables[n].ms).all() for n in first.tables)


def test_identical_layers_share_probes() -> None:
    layers = tuple(conv_layer(name=f"c{i}", in_group=f"a{i}", out_group=f"b{i}") for i in range(3))
    groups = tuple(Group(g, 16 if g.startswith("a") else 32, True, None, (), (), ())
                   for i in range(3) for g in (f"a{i}", f"b{i}"))
    plan = plan_probes(Structure(groups, layers, ()), GRID)
    assert plan.cells == 3 * len(plan.tasks)
    assert plan.dedup_ratio == 3.0
    assert estimate_seconds(list(plan.tasks.values())) > 0


def test_depthwise_tables_have_one_row() -> None:
    model = build("mobilenet_v2", input_size=32, width=0.25)
    structure = analyze(model)
    plan = plan_probes(structure, GRID)
    dw = [g for g in plan.layers if g.depthwise]
    assert dw and all(len(g.in_levels) == 1 for g in dw)
    assert all(t.k_in == t.k_out for g in dw for _, _, t in g.cells())


def test_fit_recovers_an_affine_law() -> None:
    points = [{"layer_sum_ms": x, "measured_ms": 1.5 * x + 2.0} for x in (1.0, 2.0, 5.0)]
    cal = fit(points)
    assert cal.scale == pytest.approx(1.5) and cal.offset_ms == pytest.approx(2.0)
    assert max(abs(r) for r in cal.residuals_pct) < 1e-9
    single = fit([{"layer_sum_ms": 4.0, "measured_ms": 6.0}])
    assert (single.scale, single.offset_ms) == (1.5, 0.0)


def test_fit_keeps_a_negative_offset_only_while_predictions_stay_positive() -> None:
    superlinear = fit([{"layer_sum_ms": x, "measured_ms": 3.0 * x - 2.0} for x in (1.0, 2.0, 5.0)])
    assert (superlinear.scale, superlinear.offset_ms) == (pytest.approx(3.0), pytest.approx(-2.0))
    crossing = [(1.0, 0.01), (2.0, 0.01), (10.0, 10.0)]  # the free line is negative at x = 1
    cal = fit([{"layer_sum_ms": x, "measured_ms": y} for x, y in crossing])
    x, y = np.array(crossing).T
    assert cal.offset_ms == 0.0 and cal.scale == pytest.approx(float(np.dot(x, y) / np.dot(x, x)))
    falling = fit([{"layer_sum_ms": 1.0, "measured_ms": 5.0}, {"layer_sum_ms": 2.0, "measured_ms": 4.0}])
    assert falling.offset_ms == 0.0 and falling.scale > 0


def test_local_law_follows_a_curved_calibration() -> None:
    def curve(x: float) -> float:  # superlinear, like a model outgrowing the caches
        return x + 0.02 * x * x

    cal = fit([{"layer_sum_ms": x, "measured_ms": curve(x)} for x in (1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 20.0)])
    for x in (2.5, 5.0, 9.0):
        assert abs(cal.apply(x) - curve(x)) < abs(cal.scale * x + cal.offset_ms - curve(x)) / 3
    law = cal.law(curve(5.0))  # the law a solver gets for a budget of curve(5)
    assert law.scale * 5.0 + law.offset_ms == pytest.approx(curve(5.0), rel=0.01)
    assert len(law.points) == 4
    # a knee: the local law near the top is so steep it would predict a negative latency for the
    # smallest plan, so the global law is used instead
    knee = [(0.22, 0.18), (0.5, 0.43), (0.7, 0.64), (1.34, 1.39), (1.54, 1.54), (2.43, 2.66), (3.44, 4.58),
            (4.21, 5.65)]
    kneed = fit([{"layer_sum_ms": x, "measured_ms": y} for x, y in knee])
    assert kneed.law(2.9) is kneed and kneed.apply(0.22) > 0
    few = fit([{"layer_sum_ms": x, "measured_ms": curve(x)} for x in (1.0, 2.0, 3.0)])
    assert few.law(4.0) is few


def test_calibration_plans_span_dense_to_smallest(toy) -> None:
    _, structure = toy
    plans = calibration_plans(structure, GRID, count=6)
    levels = group_levels(structure, GRID)
    assert plans[0] == Plan()
    smallest = plans[1]
    assert all(len(smallest.kept(g, lv[-1])) == lv[0] for g, lv in levels.items() if len(lv) > 1)
    assert set(smallest.remove_blocks) == {b.id for b in structure.blocks if b.parent is None}
    kept = [sum(len(p.kept(g.id, g.size)) for g in structure.groups) for p in plans]
    assert kept[1] == min(kept) and kept[0] == max(kept)


def test_prediction_follows_the_plan(tmp_path: Path, toy) -> None:
    model, structure = toy
    backend = get_backend("analytic")
    with LatencyDB(tmp_path / "lat.sqlite") as db:
        tables = profile_tables(structure, backend, db, grid=GRID).tables
        dense = layer_sum(structure, tables, Plan())
        # conv_out's two tables are one layer at full width: its dense latency counts once
        assert dense == pytest.approx(sum(t.dense_ms for t in tables.values()) - tables["conv_out@in:g4"].dense_ms)
        no_block = Plan(remove_blocks=("b0",))
        block_layers = [la.name for la in structure.layers if la.block == "b0"]
        assert layer_sum(structure, tables, no_block) == pytest.approx(
            dense - sum(tables[n].dense_ms for n in block_layers))
        narrow = Plan(groups={"g2": (0, 1)})
        assert layer_sum(structure, tables, narrow) < dense
        # HALP-style: the consumer of g2 keeps its dense-input cost
        assert layer_sum(structure, tables, narrow, freeze_inputs=True) > layer_sum(structure, tables, narrow)
        assert predict_latency(structure, tables, Calibration(2.0, 1.0), Plan()) == pytest.approx(2 * dense + 1)

        cal = calibrate(model, structure, tables, backend, db, grid=GRID,
                        plans=calibration_plans(structure, GRID, count=3))
        assert len(cal.points) == 3 and cal.points[0]["kept_fraction"] == 1.0
        again = stored_calibration(db, backend, model, GRID)
        assert again is not None and again.scale == pytest.approx(cal.scale)
        assert stored_calibration(db, backend, model, GridConfig(levels=2)) is None


class Slowing:
    """A shared host: every probe takes 1 ms, but a measurement made while the host is slow takes
    `slow[i]` times that (the i-th measurement of each probe); later measurements are quiet."""

    name = "slowing"

    def __init__(self, slow: list[float]) -> None:
        self.slow = slow
        self.counts: dict[bytes, int] = {}

    def fingerprint(self, batch: int, precision: str) -> dict:
        return {"backend": self.name, "estimate": False}

    def measure(self, model, protocol, *, batch: int = 1, precision: str = "fp32") -> Measurement:
        key = model.SerializeToString()
        index = self.counts[key] = self.counts.get(key, 0) + 1
        ms = self.slow[index - 1] if index <= len(self.slow) else 1.0
        return Measurement(ms, ms, ms, 1, 0.0)


@pytest.mark.parametrize(("slow", "measurements"), [([], 2), ([1.02], 2), ([1.6], 3), ([1.6, 1.9, 1.3], 5)])
def test_probes_are_measured_until_two_measurements_agree_on_the_fastest(tmp_path: Path, toy, slow,
                                                                           measurements) -> None:
    """A slowed measurement never becomes a table entry: a probe is measured again, in later passes, until
    its two lowest medians agree within 3%; the entry is the lowest."""
    _, structure = toy
    host = Slowing(slow)
    with LatencyDB(tmp_path / "lat.sqlite") as db:
        result = profile_tables(structure, host, db, grid=GridConfig(levels=2))
    assert set(host.counts.values()) == {measurements}
    assert {float(v) for table in result.tables.values() for v in table.ms.ravel()} == {1.0}


def _quiet_ms(model: onnx.ModelProto) -> float:
    """A made-up latency on a quiet host: 1 ms per 1000 weights."""
    return sum(int(np.prod(init.dims)) for init in model.graph.initializer) / 1000


def test_calibration_points_are_ratios_to_dense_that_a_drifting_host_cannot_move(toy) -> None:
    """Each plan is timed against the dense model interleaved and scaled by one dense latency: a host that
    slows down 3x during calibration moves no point against the others."""
    model, structure = toy

    class Drifting:
        name = "drifting"

        def __init__(self) -> None:
            self.slowdown = 1.0  # grows with every run of either model

        def fingerprint(self, batch: int, precision: str) -> dict:
            return {"backend": "drifting", "estimate": False}

        def measure(self, model, protocol, *, batch: int = 1, precision: str = "fp32"):
            raise AssertionError("calibration plans are timed against dense, not alone")

        @contextlib.contextmanager
        def open_timer(self, candidate, *, batch: int = 1, precision: str = "fp32"):
            ms = _quiet_ms(candidate)

            def timer(runs: int) -> list[float]:
                times = []
                for _ in range(runs):
                    self.slowdown *= 1.002
                    times.append(ms * self.slowdown)
                return times

            yield timer

    host = Drifting()
    plans = [Plan(), Plan({"g5": tuple(range(8))}), Plan({"g5": tuple(range(8))}, remove_blocks=("b0",))]
    quick = dataclasses.replace(COMPARE_PROTOCOL, warmup_seconds=0.0, max_seconds=60.0)
    measured = measure_plans(model, structure, plans, host, protocol=quick)
    assert host.slowdown > 3.0
    quiet = [_quiet_ms(m) for m in [model, *(prune_model(model, structure, p) for p in plans[1:])]]
    assert quiet[2] < quiet[1] < quiet[0]
    assert [m / measured[0] for m in measured] == pytest.approx([q / quiet[0] for q in quiet], rel=0.01)


def test_a_dense_only_calibration_benches_the_model_once(toy) -> None:
    model, structure = toy
    backend = CountingBackend(get_backend("analytic"))
    assert measure_plans(model, structure, [Plan()], backend) == [backend.inner.measure(model, None).median_ms]
    assert backend.calls == 1


def test_a_transformers_tables_hold_its_attention_products(tmp_path: Path) -> None:
    """The products are layers of the latency model: tables over (heads, query/key width) and (heads, value
    width), read by predictions, so removing heads or pruning a head width shows in the predicted latency
    even where no weight shrinks."""
    structure = analyze(build("vit-tiny", input_size=32, num_classes=10))
    values = [la for la in structure.layers if la.op == "AttentionValues"]
    assert len(values) == 12
    with LatencyDB(tmp_path / "lat.sqlite") as db:
        tables = profile_tables(structure, get_backend("analytic"), db, grid=GRID).tables
    table = tables[values[0].name]
    assert (table.in_group, table.out_group) == (values[0].in_group, values[0].out_group)
    assert table.in_levels == (2, 3) and table.ms[0, 0] < table.ms[-1, -1]  # GRID: 2 levels a dimension
    value, heads = structure.group(values[0].out_group), structure.group(values[0].in_group)
    qk = next(m for m in structure.heads_tie(heads.id).members if m != value.id)
    two_heads = Plan(groups={heads.id: (0, 1),
                             value.id: tuple(h * value.part_size + d for h in (0, 1) for d in range(32)),
                             qk: tuple(h * value.part_size + d for h in (0, 1) for d in range(64))})
    cells = {read.table: read.cell for read in plan_reads(structure, tables, two_heads)}
    assert cells[values[0].name] == (2, 64)


class AffineBackend:
    """Every probe takes 0.01 + 1e-4 * k_in * k_out ms, in its first input's and its output's widths (the last
    axis of a Linear on tokens, axis 1 of anything else): affine in each side's width, where reading a side
    one group at a time is exact."""

    name = "affine"

    def fingerprint(self, batch: int, precision: str) -> dict:
        return {"backend": "affine", "batch": batch, "precision": precision, "estimate": False}

    def measure(self, model: onnx.ModelProto, protocol, *, batch: int = 1, precision: str = "fp32") -> Measurement:
        ms = 0.01 + 1e-4 * self.width(model.graph.input[0]) * self.width(model.graph.output[0])
        return Measurement(ms, ms, ms, runs=1, seconds=0.0)

    @staticmethod
    def width(value: onnx.ValueInfoProto) -> int:
        dims = [d.dim_value for d in value.type.tensor_type.shape.dim]
        return dims[-1] if len(dims) == 3 else dims[1]


def test_a_side_of_several_groups_is_read_one_group_at_a_time(tmp_path: Path) -> None:
    """A fused qkv projection writes q and k (one group) and v (another): one table over each, and a plan
    that prunes both reads the layer at its true width, 2 * qk + v."""
    structure = analyze(build("vit-tiny", input_size=32, num_classes=10))
    qkv = structure.layer("blocks.0.attn.qkv.matmul")
    qk, v = (structure.group(g) for g in dict.fromkeys(s.group for s in qkv.out_segments))
    with LatencyDB(tmp_path / "lat.sqlite") as db:
        tables = profile_tables(structure, AffineBackend(), db, grid=GRID).tables
    assert qkv.name not in tables and {f"{qkv.name}@out:{qk.id}", f"{qkv.name}@out:{v.id}"} <= set(tables)
    keep_qk = tuple(h * qk.part_size + d for h in range(qk.parts) for d in range(qk.part_size // 2))
    keep_v = tuple(h * v.part_size + d for h in range(v.parts) for d in range(v.part_size // 2))
    plan = Plan(groups={qk.id: keep_qk, v.id: keep_v})
    reads = layer_reads(qkv, tables, kept_widths(structure, plan))
    latency = sum(r.weight * tables[r.table].lookup(*r.cell) for r in reads)
    assert latency == pytest.approx(0.01 + 1e-4 * qkv.in_channels * (2 * len(keep_qk) + len(keep_v)))
