"""`build`: from model.onnx and a throughput target to a pruned model and a verified engine.

Stages: analyse, score, profile (only what the database lacks), calibrate, solve, prune, measure,
compile. The loop is closed on the device: each pruned model is timed against the dense model interleaved
(`mdp_trt.closed_loop`), and when it misses the target the budget is corrected by the measured ratio and
the problem solved again (a few rounds at most). The chosen plan is then timed against dense once more
(`final_verification`): that verdict, an interval with 95% confidence, is what the report calls measured,
and whether the target was met is decided there, never by prediction.

Outcomes (the CLI's exit codes, README "Exit codes"): bad options, paths or models are `InputError`s
raised before any profiling (2); a target below the smallest latency the tables predict is a
`BudgetError` and nothing is written (3); a target the closed loop does not meet by measurement still
writes OUT/ with the plan the loop kept, and `run_build` returns its Report with `met` False (the CLI then
raises `TargetNotMet`, 3), also when the final verification's interval straddles the target (the host too
noisy to decide: `measured.decision` "undecided"); a model of ours that fails its check is a
`VerificationError` (4).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from rich.console import Console

from mdp_trt import plots
from mdp_trt.closed_loop import NOT_MET, ROUNDS, closed_loop, dense_verdict, final_verification, first_budget
from mdp_trt.compile import compile_model
from mdp_trt.errors import BudgetError, InputError
from mdp_trt.graph import Structure, analyze, load_model
from mdp_trt.graph.input_shapes import with_input_shapes
from mdp_trt.importance import channel_scores, load_scores
from mdp_trt.importance.from_file import read_scores
from mdp_trt.io import check_writable, save_model_atomic, write_json_atomic
from mdp_trt.latency.backends import get_backend
from mdp_trt.latency.backends.base import channel_multiple, check_precision
from mdp_trt.latency.bench import bench_model, check_batch
from mdp_trt.latency.calibrate import calibrate, stored_calibration
from mdp_trt.latency.grid import GridConfig, group_levels
from mdp_trt.latency.predict import kept_widths, layer_channels, layer_reads, predict_latency, removed_layers
from mdp_trt.latency.profile import model_opset, profile_tables
from mdp_trt.latency.store import open_db, resolve_db_path
from mdp_trt.latency.tables import LatencyTable
from mdp_trt.outdir import check_output, staged_output
from mdp_trt.prune import Plan
from mdp_trt.prune.verify import verify_pruned
from mdp_trt.report import ModelStats, Report
from mdp_trt.solve.from_model import problem_from_model
from mdp_trt.solve.min_latency import min_latency
from mdp_trt.solve.solvers import SOLVERS
from mdp_trt.solve.sweep import sweep
from mdp_trt.stats import flop_count, parameter_count


@dataclass(frozen=True)
class BuildConfig:
    fps: float | None = None
    latency_ms: float | None = None
    speedup: float | None = None  # target = measured dense latency / speedup
    batch: int = 1
    backend: str = "auto"
    precision: str = "fp32"
    db: Path | None = None
    solver: str = "milp"
    importance: str = "magnitude"  # or the path of an .npz file
    grid: int = 8
    align: int | None = None  # None: the backend's channel multiple (`base.channel_multiple`)
    blocks: bool = True
    threads: int | None = None
    rounds: int = ROUNDS
    sweep_points: int = 8
    time_limit: float | None = 60.0
    make_plots: bool = True
    # `--input-shape`: static sizes for inputs that are symbolic off the batch axis (None: the only input)
    input_shapes: Mapping[str | None, tuple[int, ...]] = field(default_factory=dict)

    def check(self) -> None:
        """Reject bad options before any work is done (exit code 2), so that no profiling is wasted on a
        build that would fail at its end, and no non-finite target reaches report.json or problem.json."""
        if sum(t is not None for t in (self.fps, self.latency_ms, self.speedup)) != 1:
            raise InputError("give exactly one target: --fps F, --latency-ms L or --speedup S")
        if self.batch < 1:
            raise InputError(f"--batch must be at least 1, got {self.batch}")
        for option, value in (("--fps", self.fps), ("--latency-ms", self.latency_ms), ("--speedup", self.speedup)):
            if value is not None and not math.isfinite(value):
                raise InputError(f"{option} must be a finite number, got {value}")
        if self.speedup is not None and not self.speedup >= 1:
            raise InputError(f"--speedup must be at least 1, got {self.speedup}")
        if self.fps is not None and not self.fps > 0:
            raise InputError(f"--fps must be positive, got {self.fps}")
        if self.latency_ms is not None and not self.latency_ms > 0:
            raise InputError(f"--latency-ms must be positive, got {self.latency_ms}")
        if self.rounds < 1:
            raise InputError(f"--rounds must be at least 1 (one solve-prune-measure round), got {self.rounds}")
        if self.solver not in SOLVERS:
            raise InputError(f"unknown solver {self.solver!r}: choose one of {', '.join(SOLVERS)}")
        check_precision(self.precision)
        if self.importance != "magnitude":
            read_scores(Path(self.importance))  # a missing or unreadable file, before the analysis
        self.target_ms(1.0)  # `--speedup` is checked again at the measured dense latency

    def target_ms(self, dense_ms: float) -> float:
        """The latency target for one batch; `--speedup` is relative to the measured dense latency.

        A target whose latency or FPS is not a finite positive number (`--latency-ms 1e-320`,
        `--fps 1e-320`) is refused: the report states both.
        """
        if self.speedup is not None:
            target = dense_ms / self.speedup
        elif self.fps is not None:
            target = 1000.0 * self.batch / self.fps
        else:
            target = float(self.latency_ms)
        if not (0 < target < math.inf and math.isfinite(1000.0 * self.batch / target)):
            raise InputError(f"the target works out to {target:g} ms per batch, which cannot be stated in ms "
                             "and FPS as finite numbers")
        return target


# Every name build writes into OUT/ (a model there under one of them would be overwritten).
OUTPUT_NAMES = frozenset({
    "model.pruned.onnx", "model.pruned.onnx.data", "plan.json", "problem.json", "report.json", "model.engine",
    "model.engine.json", "model.ort.onnx", "model.ort.json", "kept_channels.png", "layer_latency.png", "pareto.png",
})


# How far the dense latency may move between the build's first bench and its final verification before the
# build says that the host changed under it.
HOST_SHIFT = 0.10


def host_shift(first_ms: float, final_ms: float) -> str | None:
    """One line when the dense model ran more than `HOST_SHIFT` slower or faster in the final verification
    than when it was benched at the start, else None.

    The verdict is unaffected (a ratio timed interleaved), but the tables and the calibration describe the
    host as it was: on a shared machine with several threads the same dense model was measured at 0.73 and
    1.39 ms minutes apart (README "Measured figures"), and a plan's ratio moves with such a change."""
    change = final_ms / first_ms - 1 if first_ms > 0 else 0.0
    if abs(change) <= HOST_SHIFT:
        return None
    return (f"the dense model ran at {final_ms:.3f} ms in the final verification against {first_ms:.3f} ms when "
            f"benched at the start ({100 * change:+.0f}%): the host's speed changed during the build. The verdict "
            "is a ratio timed interleaved and holds; the predicted latencies describe the host as it was, and "
            "the same target may need another plan on the host as it is now")


def check_output_folder(model_path: Path, out_dir: Path) -> None:
    """Refuse an OUT/ that is a file, below a file or unwritable, or where build would overwrite the
    input model, before any work."""
    check_writable(out_dir, "-o", folder=True)
    check_output(out_dir)
    source = model_path.resolve()
    if source.parent == out_dir.resolve() and source.name in OUTPUT_NAMES:
        raise InputError(f"the model {model_path} is inside -o {out_dir} under a name build writes ({source.name}), "
                         "so it would be overwritten; choose another output folder")


class Stages:
    """Times each stage and prints one line per stage as it finishes."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str, detail: str = "") -> Iterator[dict[str, str]]:
        note: dict[str, str] = {"detail": detail}
        start = time.perf_counter()
        with self.console.status(f"{name}..."):
            yield note
        took = time.perf_counter() - start
        self.seconds[name] = self.seconds.get(name, 0.0) + took
        extra = f"  {note['detail']}" if note["detail"] else ""
        self.console.print(f"[green]✓[/] {name:<10} {took:7.2f} s{extra}", highlight=False)


def run_build(model_path: Path, out_dir: Path, config: BuildConfig, console: Console) -> Report:
    """The whole job; see the module docstring. The pruned model is written at the input sizes it was
    profiled, measured and verified at (`--input-shape`), with the batch axis left as the model has it.

    Returns the Report also when the final verification does not find the target met (missed, or the host
    too noisy to decide): OUT/ then holds the plan the loop kept, and `report.met` is False (report.json's
    `measured.met`, `measured.decision` and `outcome`). A caller that needs the target met checks
    `report.met`; the CLI turns it into exit code 3.
    """
    config.check()
    check_output_folder(Path(model_path), Path(out_dir))
    db_path = resolve_db_path(config.db)
    backend = get_backend(config.backend, threads=config.threads, db_path=db_path)
    grid = GridConfig(levels=config.grid, align=config.align or channel_multiple(backend))
    stages = Stages(console)
    with stages.stage("analyse") as note:
        model = load_model(model_path)
        check_batch(model, config.batch)
        model = with_input_shapes(model, config.input_shapes, config.batch)
        structure = analyze(model)
        levels = group_levels(structure, grid)
        note["detail"] = (f"{len(structure.prunable_groups)} prunable groups, {len(structure.layers)} layers, "
                          f"{len(structure.blocks)} blocks; widths in multiples of {grid.align}")
    with stages.stage("score") as note:
        scores = _scores(config.importance, model, structure)
        note["detail"] = "magnitude (BN-folded filter L2)" if config.importance == "magnitude" else config.importance
    with open_db(db_path) as db:
        with stages.stage("profile") as note:
            profile = profile_tables(structure, backend, db, batch=config.batch, precision=config.precision,
                                     grid=grid, opset=model_opset(model), show_progress=sys.stderr.isatty(),
                                     console=console)
            calibration = stored_calibration(db, backend, model, grid, batch=config.batch,
                                             precision=config.precision)
            if calibration is None:
                calibration = calibrate(model, structure, profile.tables, backend, db, batch=config.batch,
                                        precision=config.precision, grid=grid)
            note["detail"] = (f"{profile.measured} probes measured, {profile.reused} from the database "
                              f"({db_path.name}); fit scale {calibration.scale:.3f}, offset "
                              f"{calibration.offset_ms:.3f} ms")
        with stages.stage("bench", "dense model") as note:
            dense = bench_model(model, backend, batch=config.batch, precision=config.precision)
            dense_ms = dense.measurement.median_ms
            target_ms = config.target_ms(dense_ms)
            low, high = dense.measurement.median_ci
            note["detail"] = (f"dense: {dense_ms:.3f} ms [{low:.3f}, {high:.3f}] ({dense.fps:.1f} FPS); target "
                              f"{target_ms:.3f} ms ({1000 * config.batch / target_ms:.1f} FPS)")
        if dense.warning:
            console.print(f"[yellow]warning: {dense.warning}[/]", highlight=False, soft_wrap=True)

    predicted_dense_ms = predict_latency(structure, profile.tables, calibration, Plan())
    budget_ms = first_budget(target_ms, dense_ms, predicted_dense_ms)
    problem = problem_from_model(structure, scores, profile.tables, levels, calibration, budget_ms,
                                 use_blocks=config.blocks)
    rounds: list[dict] = []
    solver_info: dict = {"name": config.solver, "status": "skipped", "gap": 0.0, "seconds": 0.0}
    importance_kept = 1.0
    final = dense_verdict(dense.measurement, target_ms, config.speedup)
    if final.met:
        console.print(f"the dense model already meets the target ({final.latency_ci_ms[1]:.3f} ms, the upper end "
                      f"of its 95% interval, <= {target_ms:.3f} ms); keeping every channel", highlight=False)
        plan, pruned = Plan(), model
        predicted = predict_latency(structure, profile.tables, calibration, plan)
        verification = {"ran": False, "skipped": "nothing was pruned"}
    else:
        with stages.stage("solve") as note:
            fastest = min_latency(problem)
            floor = fastest * dense_ms / predicted_dense_ms  # in the units of the target
            note["detail"] = f"smallest reachable latency {floor:.3f} ms (predicted)"
            if floor > target_ms:  # the prediction says no plan meets it: the fastest plan, measured, decides
                budget_ms = fastest
        chosen = closed_loop(model, structure, scores, levels, problem, backend, target_ms, speedup=config.speedup,
                             solver=config.solver, rounds=config.rounds, time_limit=config.time_limit,
                             batch=config.batch, precision=config.precision, stage=stages.stage,
                             budget_ms=budget_ms)
        if floor > target_ms and chosen.verdict.decision == NOT_MET:  # undecided: the final verification says
            raise BudgetError(
                f"the target of {target_ms:.3f} ms ({1000 * config.batch / target_ms:.1f} FPS) cannot be met: the "
                f"smallest reachable latency is {floor:.3f} ms ({1000 * config.batch / floor:.1f} FPS, predicted), "
                f"and its plan measured {chosen.measured_ms:.3f} ms against dense", min_latency_ms=floor)
        rounds = chosen.rounds
        plan, pruned = chosen.plan, chosen.pruned
        predicted, solver_info, importance_kept = chosen.predicted_ms, chosen.solver, chosen.importance
        with stages.stage("verify") as note:
            verified = verify_pruned(model, structure, plan, pruned)
            verification = {**dataclasses.asdict(verified), "ran": True}
            note["detail"] = verified.summary()
        with stages.stage("measure", "chosen plan vs dense, interleaved") as note:
            final = final_verification(model, pruned, backend, target_ms, speedup=config.speedup,
                                       batch=config.batch, precision=config.precision)
            note["detail"] = f"{final.summary()} ({final.pairs} pairs, {final.seconds:.1f} s)"
        shift = host_shift(dense_ms, final.dense_ms)
        if shift:
            console.print(f"[yellow]warning: {shift}[/]", highlight=False, soft_wrap=True)

    pruned_ms = final.latency_ms
    with staged_output(out_dir, OUTPUT_NAMES) as staging:
        save_model_atomic(pruned, staging / "model.pruned.onnx")
        plan.save(staging / "plan.json")
        write_json_atomic(staging / "problem.json", problem.to_json(), indent=None)
        with stages.stage("compile") as note:
            artifact = compile_model(pruned, backend, staging, batch=config.batch, precision=config.precision)
            note["detail"] = artifact.engine.name
        report = Report(
            target={"fps": 1000.0 * config.batch / target_ms, "latency_ms": target_ms, "batch": config.batch},
            backend={"name": backend.name, **_backend_identity(backend, config)},
            dense=ModelStats(dense_ms, dense.fps, parameter_count(model), flop_count(model, config.batch)),
            pruned=ModelStats(pruned_ms, 1000.0 * config.batch / pruned_ms, parameter_count(pruned),
                              flop_count(pruned, config.batch)),
            predicted_latency_ms=predicted,
            measured=final.to_json(config.batch),
            importance_kept=importance_kept,
            groups=[{"id": g.id, "size": g.size, "kept": len(plan.kept(g.id, g.size)), "prunable": g.prunable}
                    for g in structure.groups],
            blocks_removed=list(plan.remove_blocks),
            solver=solver_info,
            profiling={"measured": profile.measured, "cached": profile.reused, "unique_probes":
                       profile.unique_probes, "seconds": profile.seconds, "database": str(db_path),
                       "grid": {"levels": grid.levels, "align": grid.align},
                       "calibration": {"scale": calibration.scale, "offset_ms": calibration.offset_ms,
                                       "residuals_pct": calibration.residuals_pct}},
            stages=stages.seconds,
            layers=_layer_latency(structure, profile.tables, plan),
            rounds=rounds,
            verification=verification,
            command="mdp-trt " + " ".join(sys.argv[1:]) if sys.argv else "",
        )
        if config.make_plots:
            _plots(report, problem, config, target_ms, staging, console, stages)
        report.save(staging / "report.json")
    report.print_summary(console)
    return report


def _scores(importance: str, model: onnx.ModelProto, structure: Structure) -> dict[str, np.ndarray]:
    if importance == "magnitude":
        return channel_scores(model, structure, norm="l2")
    return load_scores(Path(importance), model, structure)


def _backend_identity(backend, config: BuildConfig) -> dict:
    fingerprint = backend.fingerprint(config.batch, config.precision)
    return {"version": fingerprint.get("backend_version"), "device": fingerprint.get("device"),
            "precision": config.precision, "threads": fingerprint.get("threads"),
            "estimate": bool(fingerprint.get("estimate", False))}


def _layer_latency(structure: Structure, tables: dict[str, LatencyTable], plan: Plan) -> list[dict]:
    """Each layer's table latency at the dense and the pruned widths (0 when its block is removed)."""
    widths = kept_widths(structure, plan)
    gone = removed_layers(structure, plan)
    rows = []
    dense_widths = {g.id: g.size for g in structure.groups}
    for layer in structure.layers:
        k_in, k_out = layer_channels(layer, widths)
        dense = sum(r.weight * tables[r.table].lookup(*r.cell) for r in layer_reads(layer, tables, dense_widths))
        pruned = 0.0 if layer.name in gone else sum(
            r.weight * tables[r.table].lookup(*r.cell) for r in layer_reads(layer, tables, widths))
        rows.append({"name": layer.name, "dense_ms": dense, "pruned_ms": pruned,
                     "channels": [k_in, k_out], "removed": layer.name in gone})
    return rows


def _plots(report: Report, problem, config: BuildConfig, target_ms: float, staging: Path, console: Console,
           stages: Stages) -> None:
    if not plots.available():
        console.print("[yellow]matplotlib is not installed: no plots (pip install 'mdp-trt[plots]')[/]")
        return
    with stages.stage("plots"):
        prunable = [g for g in report.groups if g["prunable"]]
        plots.kept_channels(prunable, staging / "kept_channels.png")
        plots.layer_latency(report.layers, staging / "layer_latency.png")
        solutions = sweep(problem, max(2, config.sweep_points), config.solver, time_limit=config.time_limit)
        curve = [{"latency": s.latency, "importance": s.objective} for s in solutions if s.status != "infeasible"]
        plots.pareto(curve, (report.predicted_latency_ms, report.importance_kept), target_ms,
                     staging / "pareto.png")
