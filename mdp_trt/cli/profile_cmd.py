"""`mdp-trt profile`: measure every layer's latency table into the database."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import typer

from latency_db import Entry, EntryKey, fingerprint_hash
from mdp_trt.cli.app import app, console, console_err
from mdp_trt.cli.options import (
    AlignOption,
    BackendOption,
    BatchOption,
    DbOption,
    GridOption,
    InputShapeOption,
    PrecisionOption,
    ThreadsOption,
)
from mdp_trt.errors import InputError
from mdp_trt.graph import analyze, load_model
from mdp_trt.graph.input_shapes import parse_input_shapes, with_input_shapes
from mdp_trt.latency import (
    PROBE_PROTOCOL,
    GridConfig,
    MeasureProtocol,
    get_backend,
    model_opset,
    open_db,
    plan_probes,
    resolve_db_path,
)
from mdp_trt.latency import profile_tables as run_profile
from mdp_trt.latency.backends import Backend
from mdp_trt.latency.backends.base import GENERIC_CHANNEL_MULTIPLE, channel_multiple
from mdp_trt.latency.bench import check_batch
from mdp_trt.latency.bundle import export_bundle, run_bundle
from mdp_trt.latency.profile import ProbeTask, estimate_seconds


@app.command("profile")
def profile_command(
    model: Path | None = typer.Argument(None, help="The ONNX model whose layers to profile."),
    backend: BackendOption = "auto",
    batch: BatchOption = 1,
    precision: PrecisionOption = "fp32",
    db: DbOption = None,
    grid: GridOption = 8,
    align: AlignOption = None,
    threads: ThreadsOption = None,
    max_seconds: float = typer.Option(
        PROBE_PROTOCOL.max_seconds,
        "--max-seconds",
        min=0.0,
        help="Time cap per probe when the median is slow to settle.",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count the probes and estimate the time; measure nothing."),
    export_probes: Path | None = typer.Option(
        None,
        "--export-probes",
        help="Write the probes and a manifest into this folder for a remote device, measure nothing.",
    ),
    bundle: Path | None = typer.Option(None, "--run-bundle", help="Measure a folder written by --export-probes."),
    input_shape: InputShapeOption = None,
) -> None:
    """Measure latency tables C_l[k_in, k_out] for every weighted layer; only missing probes are measured.

    Identical layers share probes, and every result is committed at once: interrupting is safe and a
    re-run resumes.
    """
    protocol = replace(PROBE_PROTOCOL, max_seconds=max_seconds)
    shapes = parse_input_shapes(input_shape or [])
    if bundle is not None:
        timer = get_backend(backend, threads=threads, db_path=db)
        with open_db(db) as store:
            measured, present = run_bundle(
                bundle, timer, store, protocol=protocol, show_progress=True, console=console_err
            )
            console.print(
                f"bundle {bundle}: measured {measured} probes, {present} already in {store.path}", soft_wrap=True
            )
        return
    if model is None:
        raise InputError("give a MODEL to profile (or --run-bundle DIR)")
    onnx_model = load_model(model)
    check_batch(onnx_model, batch)
    onnx_model = with_input_shapes(onnx_model, shapes, batch)
    structure = analyze(onnx_model)
    # probes exported for a remote device are planned without its backend: at the generic multiple by default
    timer = None if export_probes is not None else get_backend(backend, threads=threads, db_path=db)
    grid_config = GridConfig(levels=grid, align=align or (GENERIC_CHANNEL_MULTIPLE if timer is None
                                                          else channel_multiple(timer)))
    plan = plan_probes(structure, grid_config, model_opset(onnx_model))
    summary = (
        f"{len(structure.layers)} layers, {plan.cells} table cells, {len(plan.tasks)} unique probes "
        f"(dedup ratio {plan.dedup_ratio:.2f}), widths in multiples of {grid_config.align}"
    )
    if timer is None:
        count = export_bundle(plan.tasks.values(), export_probes, batch=batch, precision=precision)
        console.print(f"{summary}; wrote {count} probes and manifest.json to {export_probes}", soft_wrap=True)
        return
    if dry_run:
        _dry_run(summary, plan.tasks, timer, db, protocol, batch=batch, precision=precision)
        return
    with open_db(db) as store:
        result = run_profile(
            structure,
            timer,
            store,
            batch=batch,
            precision=precision,
            grid=grid_config,
            protocol=protocol,
            opset=model_opset(onnx_model),
            show_progress=True,
            console=console_err,
        )
        label = " [yellow](analytic estimates, nothing ran)[/]" if result.estimate else ""
        console.print(
            f"{summary}; measured {result.measured}, reused {result.reused} in "
            f"{result.seconds:.1f} s on {timer.name} -> {store.path}{label}",
            soft_wrap=True,
        )


def _dry_run(
    summary: str,
    tasks: dict[EntryKey, ProbeTask],
    timer: Backend,
    db: Path | None,
    protocol: MeasureProtocol,
    *,
    batch: int,
    precision: str,
) -> None:
    """Count what the database lacks, reading it only: a read-only file serves, and a missing one is not
    created (everything is then to measure)."""
    present: dict[EntryKey, Entry] = {}
    if resolve_db_path(db).exists():
        with open_db(db, readonly=True) as store:
            present = store.get_entries(fingerprint_hash(timer.fingerprint(batch, precision)), tasks)
    missing = [t for k, t in tasks.items() if k not in present]
    seconds = estimate_seconds(missing, protocol, batch=batch, precision=precision)
    console.print(
        f"{summary}; {len(present)} already in the database, {len(missing)} to measure on "
        f"{timer.name}: about {seconds / 60:.1f} min (estimate)",
        soft_wrap=True,
    )
