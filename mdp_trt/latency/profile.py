"""Profiling: fill every layer's latency table, measuring only what the database does not hold yet.

Identical probes (same signature and channel counts) across layers share one entry, measured in passes
until two measurements agree (`measure_into`). Each result is committed as soon as it is measured, so an
interrupted run leaves a consistent database and the next run resumes where it stopped.
`profile_off_grid` measures, the same way, the cells a given plan reads between grid levels; they are
stored like any other probe, so the next plan that needs them reuses them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import onnx
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from latency_db import Entry, EntryKey, LatencyDB
from mdp_trt.graph.structure import Layer, Structure
from mdp_trt.latency.backends.base import Backend, measure_probe
from mdp_trt.latency.decompose import parts
from mdp_trt.latency.grid import DEFAULT_GRID, GridConfig, group_levels
from mdp_trt.latency.measurement import Measurement
from mdp_trt.latency.predict import OffGridCell, off_grid_cells
from mdp_trt.latency.probes import DEFAULT_OPSET, ProbeSpec, build_probe
from mdp_trt.latency.protocol import PROBE_PROTOCOL, MeasureProtocol
from mdp_trt.latency.tables import Cell, LatencyTable
from mdp_trt.prune.plan import Plan

# Measuring a probe in passes (see `measure_into`): at most MAX_PASSES measurements, until the two fastest
# agree within AGREE (relative) or AGREE_MS (absolute).
MAX_PASSES = 6
AGREE = 0.03
AGREE_MS = 0.002

# Per-probe cost besides timed runs (build the probe, create the session, write the entry): 0.06 s
# idle to 0.15 s under load on a 2-core EPYC with ONNX Runtime (resnet50, 1312 probes). Used only
# for the dry-run estimate.
PROBE_SETUP_S = 0.08


@dataclass(frozen=True)
class ProbeTask:
    """One probe to measure: a spec at given channel counts."""

    spec: ProbeSpec
    k_in: int
    k_out: int

    @property
    def key(self) -> EntryKey:
        return (self.spec.signature, self.k_in, self.k_out)


@dataclass(frozen=True)
class LayerGrid:
    """Which probes make up one layer's table."""

    layer: str
    spec: ProbeSpec
    in_group: str | None
    out_group: str | None
    in_levels: tuple[int, ...]
    out_levels: tuple[int, ...]
    depthwise: bool
    # Layer channels per group channel on each side: more than 1 where a group's channels appear
    # several times in the layer's input (SPPF's Concat of pooled copies, a shuffled stream) or, for a
    # depthwise conv with a channel multiplier, in its output.
    in_scale: float = 1.0
    out_scale: float = 1.0

    def task(self, k_in: int, k_out: int) -> ProbeTask:
        """The probe of the cell (k_in, k_out), in group widths, on the grid or off it; a depthwise probe's
        input follows its output group."""
        level_in = k_out if self.depthwise else k_in
        return ProbeTask(self.spec, max(1, round(level_in * self.in_scale)), max(1, round(k_out * self.out_scale)))

    def cells(self) -> Iterator[tuple[int, int, ProbeTask]]:
        """(row, column, probe) for every table cell."""
        for i, k_in in enumerate(self.in_levels):
            for j, k_out in enumerate(self.out_levels):
                yield i, j, self.task(k_in, k_out)


@dataclass(frozen=True)
class ProbePlan:
    """All layer grids of a structure and the unique probes they need."""

    layers: tuple[LayerGrid, ...]
    tasks: dict[EntryKey, ProbeTask]

    @property
    def cells(self) -> int:
        return sum(len(g.in_levels) * len(g.out_levels) for g in self.layers)

    @property
    def dedup_ratio(self) -> float:
        """Table cells per unique probe (how much sharing saved)."""
        return self.cells / max(1, len(self.tasks))


@dataclass
class ProfileResult:
    tables: dict[str, LatencyTable]
    fingerprint: str
    unique_probes: int
    measured: int
    reused: int
    seconds: float
    probes: ProbePlan  # which probe makes each cell, for cells measured later off the grid
    estimate: bool = False


@dataclass
class OffGridResult:
    """The cells a plan reads off the grid and what became of them."""

    tables: dict[str, LatencyTable]  # the input tables, with every off-grid cell the database holds as a point
    cells: list[OffGridCell]  # every off-grid cell the plan reads, in layer order
    unique_probes: int  # distinct probes behind them (identical layers share one)
    measured: int
    reused: int  # found in the database
    estimate: bool = False  # the backend estimates (analytic): nothing ran
    interpolated: list[OffGridCell] = field(default_factory=list)  # cells left to interpolation


def model_opset(model: onnx.ModelProto) -> int:
    """The default-domain opset of a model (probes are built at the same opset)."""
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return DEFAULT_OPSET


def _axis(
    group: str | None, levels: dict[str, tuple[int, ...]], full: int
) -> tuple[str | None, tuple[int, ...]]:
    if group is not None and len(levels.get(group, ())) > 1:
        return group, levels[group]
    return None, (full,)


def layer_grids(layer: Layer, levels: dict[str, tuple[int, ...]], opset: int = DEFAULT_OPSET
                ) -> tuple[LayerGrid, ...]:
    """The layer's table, or one per group of a side that spans several (`latency.decompose`)."""
    varying = {g for g, lv in levels.items() if len(lv) > 1}
    found = parts(layer, varying, {g: lv[-1] for g, lv in levels.items()})
    if not found:
        return (layer_grid(layer, levels, opset),)
    whole = layer_grid(layer, levels, opset)
    grids = []
    for part in found:
        if part.side == "out":
            grids.append(replace(whole, layer=part.table, out_group=part.group, out_levels=levels[part.group],
                                 out_scale=part.scale))
        else:
            grids.append(replace(whole, layer=part.table, in_group=part.group, in_levels=levels[part.group],
                                 in_scale=part.scale))
    return tuple(grids)


def layer_grid(layer: Layer, levels: dict[str, tuple[int, ...]], opset: int = DEFAULT_OPSET) -> LayerGrid:
    out_group, out_levels = _axis(layer.out_group, levels, layer.out_channels)
    if layer.depthwise:
        in_group, in_levels = None, (layer.in_channels,)
        in_scale = layer.in_channels / out_levels[-1]
    else:
        in_group, in_levels = _axis(layer.in_group, levels, layer.in_channels)
        in_scale = layer.in_channels / in_levels[-1]
    return LayerGrid(
        layer.name,
        ProbeSpec.from_layer(layer, opset),
        in_group,
        out_group,
        in_levels,
        out_levels,
        layer.depthwise,
        in_scale,
        layer.out_channels / out_levels[-1],
    )


def plan_probes(
    structure: Structure, grid: GridConfig = DEFAULT_GRID, opset: int = DEFAULT_OPSET
) -> ProbePlan:
    levels = group_levels(structure, grid)
    grids = tuple(grid for layer in structure.layers for grid in layer_grids(layer, levels, opset))
    tasks: dict[EntryKey, ProbeTask] = {}
    for g in grids:
        for _, _, task in g.cells():
            tasks.setdefault(task.key, task)
    return ProbePlan(grids, tasks)


def assemble_tables(
    plan: ProbePlan, entries: dict[EntryKey, Entry], estimate: bool = False
) -> dict[str, LatencyTable]:
    """Tables from stored entries; every cell's probe must be present."""
    tables: dict[str, LatencyTable] = {}
    for g in plan.layers:
        ms = np.empty((len(g.in_levels), len(g.out_levels)))
        for i, j, task in g.cells():
            ms[i, j] = entries[task.key].median_ms
        tables[g.layer] = LatencyTable(
            g.layer, g.in_group, g.out_group, g.in_levels, g.out_levels, ms, g.depthwise, estimate
        )
    return tables


def progress_bar(console: Console | None, enabled: bool) -> Progress:
    """A Rich progress bar with count, elapsed time and ETA (silent when disabled)."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
        transient=False,
    )


def profile_tables(
    structure: Structure,
    backend: Backend,
    db: LatencyDB,
    *,
    batch: int = 1,
    precision: str = "fp32",
    grid: GridConfig = DEFAULT_GRID,
    protocol: MeasureProtocol = PROBE_PROTOCOL,
    opset: int = DEFAULT_OPSET,
    show_progress: bool = False,
    console: Console | None = None,
) -> ProfileResult:
    """Latency tables for every layer of `structure`, measuring (and storing) only missing probes."""
    t0 = time.perf_counter()
    fingerprint = backend.fingerprint(batch, precision)
    fp_hash = db.register_fingerprint(fingerprint)
    plan = plan_probes(structure, grid, opset)
    db.put_probes({task.spec.signature: task.spec.description() for task in plan.tasks.values()})
    entries = db.get_entries(fp_hash, plan.tasks)
    reused = len(entries)
    missing = [task for key, task in plan.tasks.items() if key not in entries]
    measure_into(entries, task_jobs(missing, batch), backend, db, fp_hash, batch=batch, precision=precision,
                 protocol=protocol, progress=progress_bar(console, show_progress and bool(missing)),
                 label=f"profiling on {backend.name}")
    estimate = bool(fingerprint.get("estimate", False))
    return ProfileResult(
        tables=assemble_tables(plan, entries, estimate),
        fingerprint=fp_hash,
        unique_probes=len(plan.tasks),
        measured=len(missing),
        reused=reused,
        seconds=time.perf_counter() - t0,
        probes=plan,
        estimate=estimate,
    )


def profile_off_grid(
    structure: Structure,
    profile: ProfileResult,
    plan: Plan,
    backend: Backend,
    db: LatencyDB,
    *,
    batch: int = 1,
    precision: str = "fp32",
    protocol: MeasureProtocol = PROBE_PROTOCOL,
    measure: bool = True,
    show_progress: bool = False,
    console: Console | None = None,
) -> OffGridResult:
    """`profile`'s tables with the cells `plan` reads off the grid added as measured points.

    The probes are those of the grid's cells, at the plan's widths, measured and stored as `profile_tables`
    does, so a second call measures nothing. With `measure=False` nothing is measured: cells the database
    already holds are still read exactly, the others are left to interpolation and listed in `interpolated`.
    `batch` and `precision` must be those `profile` was made with (its fingerprint).
    """
    cells = off_grid_cells(structure, profile.tables, plan)
    grids = {grid.layer: grid for grid in profile.probes.layers}
    tasks = {(cell.layer, cell.cell): grids[cell.layer].task(*cell.cell) for cell in cells}
    unique = {task.key: task for task in tasks.values()}
    entries = db.get_entries(profile.fingerprint, unique)
    reused = len(entries)
    missing = [task for key, task in unique.items() if key not in entries] if measure else []
    measure_into(entries, task_jobs(missing, batch), backend, db, profile.fingerprint, batch=batch,
                 precision=precision, protocol=protocol,
                 progress=progress_bar(console, show_progress and bool(missing)),
                 label=f"measuring off-grid probes on {backend.name}")
    points: dict[str, dict[Cell, float]] = {}
    for (layer, cell), task in tasks.items():
        if task.key in entries:
            points.setdefault(layer, {})[cell] = entries[task.key].median_ms
    tables = {name: table.with_points(points[name]) if name in points else table
              for name, table in profile.tables.items()}
    return OffGridResult(
        tables=tables,
        cells=cells,
        unique_probes=len(unique),
        measured=len(missing),
        reused=reused,
        estimate=profile.estimate,
        interpolated=[cell for cell in cells if cell.cell not in points.get(cell.layer, {})],
    )


# One probe to measure: its database key and how to get its model (built, or read from a bundle).
ProbeJob = tuple[EntryKey, Callable[[], onnx.ModelProto]]


def measure_into(
    entries: dict[EntryKey, Entry],
    jobs: list[ProbeJob],
    backend: Backend,
    db: LatencyDB,
    fp_hash: str,
    *,
    batch: int,
    precision: str,
    protocol: MeasureProtocol,
    progress: Progress,
    label: str,
) -> None:
    """Measure `jobs` in passes until each probe is known (`_known`), committing each entry as it comes (an
    interrupt loses at most one measurement; a probe measured once then stays at that) into `db` and
    `entries`.

    A shared host slows down, never speeds up: measured here, one probe took 1.29 ms and 2.7 ms ten minutes
    apart, and whole tables profiled minutes apart predicted the same plans' speed-ups with errors of 3% to
    19% (MobileNetV3, batch 1 and 8, 1 thread). Their lowest values agree: the minimum over four passes
    predicted within 3.4-3.8%. So a probe's entry is its fastest measurement, and a probe is measured again,
    in a later pass, until two of its measurements agree: on a quiet host that is the second pass. Each pass
    goes through its probes in a new random order, so that one burst of load inflates scattered cells of
    many tables (errors that average out in a sum) instead of every cell of one layer's table, and a probe's
    measurements lie a pass apart. A backend that only estimates is asked once."""
    rng = np.random.default_rng(int(fp_hash[:8], 16))
    passes = 1 if backend.fingerprint(batch, precision).get("estimate") else MAX_PASSES
    measured: dict[EntryKey, list[Measurement]] = {}
    pending = list(jobs)
    done = 0
    with progress:
        bar = progress.add_task(label, total=len(pending) * min(2, passes))
        for index in range(passes):
            rng.shuffle(pending)  # type: ignore[arg-type]
            for key, load in pending:
                m = measure_probe(backend, load(), protocol, batch=batch, precision=precision)
                samples = measured.setdefault(key, [])
                samples.append(m)
                best = min(samples, key=lambda sample: sample.median_ms)
                entry = Entry(*key, best.median_ms, best.p10_ms, best.p90_ms, sum(x.runs for x in samples),
                              sum(x.seconds for x in samples))
                db.put_entries(fp_hash, [entry])
                entries[key] = entry
                done += 1
                progress.advance(bar)
            pending = [job for job in pending if not _known(measured[job[0]])] if index + 1 < passes else []
            progress.update(bar, total=done + len(pending))
            if not pending:
                break


def task_jobs(tasks: list[ProbeTask], batch: int) -> list[ProbeJob]:
    """Jobs that build each task's probe at `batch` when it is measured."""
    return [(task.key, lambda task=task: build_probe(task.spec, task.k_in, task.k_out, batch)) for task in tasks]


def _known(samples: list[Measurement]) -> bool:
    """Two measurements of a probe agree on its fastest: the two lowest medians within `AGREE` of each other
    (or `AGREE_MS`, the profiler's resolution, for kernels of a few microseconds)."""
    if len(samples) < 2:
        return False
    low, second = sorted(sample.median_ms for sample in samples)[:2]
    return second - low <= max(AGREE * low, AGREE_MS)


def estimate_seconds(
    tasks: list[ProbeTask],
    protocol: MeasureProtocol = PROBE_PROTOCOL,
    *,
    batch: int = 1,
    precision: str = "fp32",
) -> float:
    """Rough wall time to measure `tasks` on a quiet host (a roofline guess of each probe's latency, the
    protocol's expected run count, a fixed setup cost, two passes; a busy host takes more, see
    `measure_into`): an estimate for `--dry-run`, never a measurement."""
    from mdp_trt.latency.backends.analytic import AnalyticBackend

    analytic = AnalyticBackend()
    total = 0.0
    for task in tasks:
        run_s = (
            analytic.estimate_ms(build_probe(task.spec, task.k_in, task.k_out, batch), batch, precision) / 1e3
        )
        warmup_s = max(protocol.warmup_seconds, protocol.warmup_runs * run_s)
        sampling_s = min(protocol.max_seconds, 2 * protocol.min_runs * run_s)
        total += PROBE_SETUP_S + warmup_s + sampling_s
    return 2 * total
