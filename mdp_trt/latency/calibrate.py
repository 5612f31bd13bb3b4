"""Calibration of the whole-model part: what layer tables do not see.

Layer probes miss pooling, residual adds, layout reorders between layers, and per-run launch
overhead, and they include per-probe costs (input/output reorders) the fused model does not pay.
A few whole-model measurements (the dense model, the smallest plan and some in between) fit
`total = scale * sum(tables) + offset_ms` by least squares, globally and locally (the law near a
given latency, from the nearest points); the fit, its residuals and its points are stored in the
database per (model, grid) and device fingerprint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import onnx

from latency_db import CalibrationRecord, LatencyDB, content_hash
from mdp_trt.graph.structure import Group, HeadsTie, Structure
from mdp_trt.importance.selection import first_channels, heads_kept, random_channels
from mdp_trt.latency.backends.base import Backend
from mdp_trt.latency.bench import bench_model, compare_models
from mdp_trt.latency.grid import DEFAULT_GRID, GridConfig, group_levels, head_combinations, kept_channels
from mdp_trt.latency.predict import layer_sum
from mdp_trt.latency.protocol import COMPARE_PROTOCOL, InterleavedProtocol
from mdp_trt.latency.tables import LatencyTable
from mdp_trt.prune.plan import Plan

METHOD = "affine"
DEFAULT_POINTS = 8  # dense, the smallest plan, and 6 in between
LOCAL_POINTS = 4  # points in a local law (`Calibration.law`)


@dataclass(frozen=True)
class Calibration:
    """`total_ms = scale * layer_sum_ms + offset_ms`, with the data it was fit on."""

    scale: float
    offset_ms: float
    points: tuple[dict[str, Any], ...] = ()
    freeze_inputs: bool = False  # True: a HALP-style fit on tables read at dense input width

    def apply(self, layer_sum_ms: float) -> float:
        """Predicted latency (ms): the local law (see `law`) around the global fit's prediction."""
        return self.law(self._line(layer_sum_ms))._line(layer_sum_ms)

    def law(self, near_ms: float) -> Calibration:
        """The affine law that holds for plans measuring about `near_ms`: a fit on the LOCAL_POINTS
        calibration points nearest to it in measured latency (the global fit when there are fewer).

        A whole model is not quite affine in its layer sum: weights and activations stream from
        memory in the model but sit in cache in a probe, so the slope grows with the model's size
        (MobileNetV2 on ONNX Runtime CPU: measured / sum runs from 0.93 at the smallest plan to 1.08
        dense). One line through all points is then off by a few percent in the middle; the solver
        only needs the law near its budget, and a local law is still a sum over layers. A local law
        that would predict a non-positive latency at any calibrated point (the smallest plan lies far
        below a steep local slope) is not used: the solver would think such plans cost nothing.
        """
        if len(self.points) <= LOCAL_POINTS:
            return self
        nearest = sorted(self.points, key=lambda p: abs(p["measured_ms"] - near_ms))[:LOCAL_POINTS]
        local = fit(list(nearest), self.freeze_inputs)
        if any(local._line(p["layer_sum_ms"]) <= 0 for p in self.points):
            return self
        return local

    def _line(self, layer_sum_ms: float) -> float:
        return self.scale * layer_sum_ms + self.offset_ms

    @property
    def residuals_pct(self) -> list[float]:
        """Fit error at each point, in percent of the measured latency."""
        return [100.0 * (self._line(p["layer_sum_ms"]) - p["measured_ms"]) / p["measured_ms"] for p in self.points]

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
    """Least-squares affine fit of measured_ms on layer_sum_ms.

    The offset may come out negative: a whole model is slightly superlinear in its layer sum (its
    weights and activations outgrow the caches that hold a probe's), and a line through points from
    the smallest plan to the dense model then crosses zero below them. That is an interpolation over
    the range the solver picks from, so it is kept as long as it predicts a positive latency at every
    calibrated point and has a positive slope; otherwise (or with fewer than two distinct sums) the
    fit is the best line through the origin. A model with no layer in its tables (every sum zero) is
    all offset: scale 1 and the mean measurement, never the 0 / 0 a line through the origin would be.
    """
    if not points:
        raise ValueError("calibration needs at least one measured point")
    x = np.array([p["layer_sum_ms"] for p in points], dtype=np.float64)
    y = np.array([p["measured_ms"] for p in points], dtype=np.float64)
    if not np.dot(x, x) > 0:
        return Calibration(1.0, float(np.mean(y)), tuple(points), freeze_inputs)
    scale, offset = float(np.dot(x, y) / np.dot(x, x)), 0.0
    if len(points) >= 2 and np.ptp(x) > 1e-9 * max(1.0, float(x.max())):
        (free_scale, free_offset), *_ = np.linalg.lstsq(np.stack([x, np.ones_like(x)], axis=1), y, rcond=None)
        if free_scale > 0 and free_scale * x.min() + free_offset > 0:
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
    """A plan with every prunable group (every attention's combination of heads and head widths) at a
    uniformly random grid level, random channels kept, and each block removed with `block_probability`:
    test plans for the latency model's benchmark."""
    return sampled_plan(structure, levels, rng, lambda _group, options: int(rng.choice(options)), block_probability)


def spread_plan(
    structure: Structure, levels: dict[str, tuple[int, ...]], rng: np.random.Generator, fraction: float
) -> Plan:
    """A plan keeping about `fraction` of every prunable group (the grid level nearest to it, moved
    one level up or down at random) and removing each block with probability (1 - fraction) / 2."""

    def nearest(size: int, options: Sequence[int]) -> int:
        index = int(np.argmin([abs(k - fraction * size) for k in options]))
        return int(np.clip(index + rng.integers(-1, 2), 0, len(options) - 1))

    return sampled_plan(structure, levels, rng, lambda group, options: options[nearest(group.size, options)],
                        (1.0 - fraction) / 2, lambda full, kept: nearest(full, kept))


def sampled_plan(
    structure: Structure,
    levels: dict[str, tuple[int, ...]],
    rng: np.random.Generator,
    width: Callable[[Group, tuple[int, ...]], int],
    block_probability: float,
    combination: Callable[[int, list[int]], int] | None = None,
) -> Plan:
    """Each prunable group keeps `width(group, levels)` random channels; an attention whose heads the grid
    removes takes its combination number `combination(channels, channels kept at each)` (default: one at
    random) of random heads and channels; each block (whose parent stays) is removed with `block_probability`."""
    groups: dict[str, tuple[int, ...]] = {}
    combos = head_combinations(structure, levels)
    for gid, widths in combos.items():
        tie = structure.heads_tie(gid)
        kept = kept_channels(widths, tie)
        index = combination(kept[-1], kept) if combination else int(rng.integers(len(kept)))
        groups.update(_heads_kept(structure, tie, widths, index, rng))
    tied = _tied(structure, combos)
    for group in structure.groups:
        options = levels.get(group.id, (group.size,))
        if not group.prunable or len(options) < 2 or group.id in tied:
            continue
        k = width(group, options)
        if k < group.size:
            groups[group.id] = random_channels(rng, group.size, k, group.parts)
    removed: list[str] = []
    for block in structure.blocks:
        if block.parent not in removed and rng.random() < block_probability:
            removed.append(block.id)
    return Plan(groups, tuple(removed))


def _tied(structure: Structure, combos: dict[str, dict[str, tuple[int, ...]]]) -> set[str]:
    """The groups that attentions choosing heads (`combos`) set: their heads groups and members."""
    return {gid for heads in combos for gid in (heads, *structure.heads_tie(heads).members)}


def _heads_kept(structure: Structure, tie: HeadsTie, widths: dict[str, tuple[int, ...]], index: int,
                rng: np.random.Generator | None) -> dict[str, tuple[int, ...]]:
    """An attention at its combination `index`: random heads and channels (the first ones without `rng`)."""
    size, h = structure.group(tie.heads).size, widths[tie.heads][index]
    if rng is None:
        return heads_kept(structure, tie, widths, index, range(h),
                          lambda group, k, kept: first_channels(group.size, k, group.parts, kept))
    return heads_kept(structure, tie, widths, index, rng.choice(size, h, replace=False),
                      lambda group, k, kept: random_channels(rng, group.size, k, group.parts, kept))


def smallest_plan(structure: Structure, levels: dict[str, tuple[int, ...]]) -> Plan:
    """Every prunable group (attention) at its lowest grid level and every outermost block removed."""
    combos = head_combinations(structure, levels)
    tied = _tied(structure, combos)
    groups = {
        g.id: first_channels(g.size, levels[g.id][0], g.parts)
        for g in structure.groups
        if g.prunable and len(levels.get(g.id, ())) >= 2 and levels[g.id][0] < g.size and g.id not in tied
    }
    for gid, widths in combos.items():
        groups.update(_heads_kept(structure, structure.heads_tie(gid), widths, 0, None))
    return Plan(groups, tuple(b.id for b in structure.blocks if b.parent is None))


def calibration_plans(
    structure: Structure, grid: GridConfig = DEFAULT_GRID, count: int = DEFAULT_POINTS, seed: int = 0
) -> list[Plan]:
    """The dense plan, the smallest plan, and `count - 2` seeded plans spread evenly in kept fraction
    between them, so the fit covers the whole range a solver picks from (random plans cluster around
    half the widths and leave the span up to dense unmeasured)."""
    rng = np.random.default_rng(seed)
    levels = group_levels(structure, grid)
    plans = [Plan()]
    if count >= 2:
        plans.append(smallest_plan(structure, levels))
    inner = max(0, count - 2)
    fractions = np.linspace(0.2, 0.9, inner) if inner > 1 else [0.55] * inner
    return plans + [spread_plan(structure, levels, rng, float(f)) for f in fractions]


def measure_plans(
    model: onnx.ModelProto,
    structure: Structure,
    plans: list[Plan],
    backend: Backend,
    *,
    batch: int = 1,
    precision: str = "fp32",
    protocol: InterleavedProtocol = COMPARE_PROTOCOL,
) -> list[float]:
    """Measured latency (ms) of the model pruned by each plan: its ratio to the dense model, timed against it
    interleaved as the build judges every plan (`compare_models`), times the dense model's median over all
    the comparisons.

    The host is shared and its speed moves by tens of percent within a minute (2x seen on one 2-core VM
    over ten minutes). Medians timed one after the other carry that drift into the fit as if it were the
    plans' doing (a plan at 90% of the channels measured 1.2x dense); each ratio is taken in one window,
    where the drift cancels, and all points share one dense latency."""
    from mdp_trt.prune import prune_model

    ratios: list[float] = []
    dense_ms: list[float] = []
    for plan in plans:
        if not plan.groups and not plan.remove_blocks:
            ratios.append(1.0)
            continue
        comparison = compare_models(model, prune_model(model, structure, plan), backend, batch=batch,
                                    precision=precision, protocol=protocol)
        ratios.append(comparison.ratio)
        dense_ms.append(comparison.reference.median_ms)
    if not dense_ms:  # the dense plan alone
        dense_ms.append(bench_model(model, backend, batch=batch, precision=precision).measurement.median_ms)
    dense = float(np.median(dense_ms))
    return [ratio * dense for ratio in ratios]


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
    protocol: InterleavedProtocol = COMPARE_PROTOCOL,
) -> Calibration:
    """Measure the model under a few plans (each against the dense model, see `measure_plans`), fit the
    whole-model part, and store it in `db` if given."""
    plans = plans if plans is not None else calibration_plans(structure, grid)
    measured = measure_plans(model, structure, plans, backend, batch=batch, precision=precision, protocol=protocol)
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
