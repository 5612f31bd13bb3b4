"""Calibration of the whole-model part: what layer tables do not see.

Layer probes miss pooling, residual adds, layout reorders between layers, and per-run launch
overhead, and they include per-probe costs (input/output reorders) the fused model does not pay.
A few whole-model measurements (the dense model and some pruned variants) fit
`total = scale * sum(tables) + offset_ms` by least squares; the fit, its residuals and its points
are stored in the database per (model, grid) and device fingerprint.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import onnx

from latency_db import CalibrationRecord, LatencyDB, content_hash
from mdp_trt.graph.structure import Structure
from mdp_trt.latency.backends.base import Backend
from mdp_trt.latency.grid import DEFAULT_GRID, GridConfig, group_levels
from mdp_trt.latency.predict import layer_sum
from mdp_trt.latency.protocol import BENCH_PROTOCOL, MeasureProtocol
from mdp_trt.latency.tables import LatencyTable
from mdp_trt.prune.plan import Plan

METHOD = "affine"
DEFAULT_POINTS = 8  # dense + 7 pruned variants
DEFAULT_ROUNDS = 3  # round-robin passes over the calibration plans


@dataclass(frozen=True)
class Calibration:
    """`total_ms = scale * layer_sum_ms + offset_ms`, with the data it was fit on."""

    scale: float
    offset_ms: float
    points: tuple[dict[str, Any], ...] = ()
    freeze_inputs: bool = False  # True: a HALP-style fit on tables read at dense input width

    def apply(self, layer_sum_ms: float) -> float:
        return self.scale * layer_sum_ms + self.offset_ms

    @property
    def residuals_pct(self) -> list[float]:
        """Fit error at each point, in percent of the measured latency."""
        return [100.0 * (self.apply(p["layer_sum_ms"]) - p["measured_ms"]) / p["measured_ms"] for p in self.points]

    def to_record(self, key: str) -> CalibrationRecord:
        return CalibrationRecord(
            model_hash=key,
            method=METHOD + ("-halp" if self.freeze_inputs else ""),
            coefficients={"scale": self.scale, "offset_ms": self.offset_ms},
            residuals=self.residuals_pct,
            points=list(self.points),
        )

    @classmethod
    def from_record(cls, record: CalibrationRecord) -> Calibration:
        return cls(
            scale=float(record.coefficients["scale"]),
            offset_ms=float(record.coefficients["offset_ms"]),
            points=tuple(record.points),
            freeze_inputs=record.method.endswith("-halp"),
        )



def fit(points: list[dict[str, Any]], freeze_inputs: bool = False) -> Calibration:
    """Least-squares affine fit of measured_ms on layer_sum_ms, with a non-negative offset.

    The offset is latency no layer table covers (launch overhead, pooling, adds), so it cannot be
    negative; when the free fit says otherwise, the best fit through the origin is used. With fewer
    than two distinct sums the offset cannot be identified, so the fit is a pure scale.
    """
    if not points:
        raise ValueError("calibration needs at least one measured point")
    x = np.array([p["layer_sum_ms"] for p in points], dtype=np.float64)
    y = np.array([p["measured_ms"] for p in points], dtype=np.float64)
    scale, offset = float(np.dot(x, y) / np.dot(x, x)), 0.0
    if len(points) >= 2 and np.ptp(x) > 1e-9 * max(1.0, float(x.max())):
        (free_scale, free_offset), *_ = np.linalg.lstsq(np.stack([x, np.ones_like(x)], axis=1), y, rcond=None)
        if free_offset >= 0:
            scale, offset = float(free_scale), float(free_offset)
    return Calibration(scale, offset, tuple(points), freeze_inputs)


def calibration_key(model: onnx.ModelProto, grid: GridConfig) -> str:
    """Calibrations hold for one model and one grid (the grid changes the interpolated sums)."""
    return content_hash({"model_sha256": hashlib.sha256(model.SerializeToString()).hexdigest(), "grid": asdict(grid)})


def random_plan(
    structure: Structure,
    levels: dict[str, tuple[int, ...]],
    rng: np.random.Generator,
    block_probability: float = 0.25,
) -> Plan:
    """A plan with every prunable group at a random grid level (random channels kept) and some blocks
    removed: the kind of plan a search visits, for calibration and for accuracy benchmarks."""
    groups: dict[str, tuple[int, ...]] = {}
    for group in structure.groups:
        options = levels.get(group.id, (group.size,))
        if not group.prunable or len(options) < 2:
            continue
        k = int(rng.choice(options))
        if k < group.size:
            groups[group.id] = tuple(sorted(int(i) for i in rng.choice(group.size, k, replace=False)))
    removed: list[str] = []
    for block in structure.blocks:
        if block.parent in removed:
            continue
        if rng.random() < block_probability:
            removed.append(block.id)
    return Plan(groups, tuple(removed))


def calibration_plans(
    structure: Structure, grid: GridConfig = DEFAULT_GRID, count: int = DEFAULT_POINTS, seed: int = 0
) -> list[Plan]:
    """The dense plan followed by `count - 1` seeded random plans."""
    rng = np.random.default_rng(seed)
    levels = group_levels(structure, grid)
    return [Plan()] + [random_plan(structure, levels, rng) for _ in range(max(0, count - 1))]


def measure_plans(
    model: onnx.ModelProto,
    structure: Structure,
    plans: list[Plan],
    backend: Backend,
    *,
    batch: int = 1,
    precision: str = "fp32",
    protocol: MeasureProtocol = BENCH_PROTOCOL,
    rounds: int = DEFAULT_ROUNDS,
) -> list[float]:
    """Measured latency (ms) of the model pruned by each plan: the lowest median over `rounds`
    round-robin passes. On a shared machine another process can slow every run for seconds at a
    time; taking the best of passes spread over time keeps such a burst out of the fit."""
    from mdp_trt.prune import prune_model

    pruned = [model if not p.groups and not p.remove_blocks else prune_model(model, structure, p) for p in plans]
    best = [float("inf")] * len(plans)
    for _ in range(max(1, rounds)):
        for index, candidate in enumerate(pruned):
            m = backend.measure(candidate, protocol, batch=batch, precision=precision)
            best[index] = min(best[index], m.median_ms)
    return best


def calibrate(
    model: onnx.ModelProto,
    structure: Structure,
    tables: dict[str, LatencyTable],
    backend: Backend,
    db: LatencyDB | None = None,
    *,
    batch: int = 1,
    precision: str = "fp32",
    grid: GridConfig = DEFAULT_GRID,
    plans: list[Plan] | None = None,
    protocol: MeasureProtocol = BENCH_PROTOCOL,
    rounds: int = DEFAULT_ROUNDS,
) -> Calibration:
    """Measure the model under a few plans (best of `rounds` passes), fit the whole-model part, and
    store it in `db` if given."""
    plans = plans if plans is not None else calibration_plans(structure, grid)
    measured = measure_plans(
        model, structure, plans, backend, batch=batch, precision=precision, protocol=protocol, rounds=rounds
    )
    points = [
        {
            "plan": index,
            "kept_fraction": _kept_fraction(structure, plan),
            "removed_blocks": len(plan.remove_blocks),
            "layer_sum_ms": layer_sum(structure, tables, plan),
            "measured_ms": ms,
        }
        for index, (plan, ms) in enumerate(zip(plans, measured, strict=True))
    ]
    calibration = fit(points)
    if db is not None:
        fp_hash = db.register_fingerprint(backend.fingerprint(batch, precision))
        db.put_calibration(fp_hash, calibration.to_record(calibration_key(model, grid)))
    return calibration


def stored_calibration(
    db: LatencyDB,
    backend: Backend,
    model: onnx.ModelProto,
    grid: GridConfig,
    *,
    batch: int = 1,
    precision: str = "fp32",
) -> Calibration | None:
    """The calibration stored for this model, grid and device, if any."""
    fp_hash = db.register_fingerprint(backend.fingerprint(batch, precision))
    record = db.get_calibration(fp_hash, calibration_key(model, grid))
    return None if record is None else Calibration.from_record(record)


def _kept_fraction(structure: Structure, plan: Plan) -> float:
    prunable = [g for g in structure.groups if g.prunable]
    if not prunable:
        return 1.0
    return float(sum(len(plan.kept(g.id, g.size)) for g in prunable) / sum(g.size for g in prunable))
