"""`mdp-trt predict`: predicted latency of a pruning plan, from layer tables and the calibration."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from mdp_trt.cli.app import app, console, console_err
from mdp_trt.cli.options import (
    AlignOption,
    BackendOption,
    BatchOption,
    DbOption,
    GridOption,
    PrecisionOption,
    ThreadsOption,
)
from mdp_trt.graph import analyze, load_model
from mdp_trt.latency import (
    GridConfig,
    calibrate,
    get_backend,
    layer_sum,
    model_opset,
    open_db,
    predict_latency,
    profile_tables,
    stored_calibration,
)
from mdp_trt.latency.backends.base import channel_multiple
from mdp_trt.latency.decompose import layer_name
from mdp_trt.latency.profile import OffGridResult, profile_off_grid
from mdp_trt.prune import Plan


@app.command("predict")
def predict_command(
    model: Path = typer.Argument(..., help="The dense ONNX model the plan refers to."),
    plan_file: Path = typer.Option(..., "--plan", help="Plan JSON (mdp-plan/1)."),
    backend: BackendOption = "auto",
    batch: BatchOption = 1,
    precision: PrecisionOption = "fp32",
    db: DbOption = None,
    grid: GridOption = 8,
    align: AlignOption = None,
    threads: ThreadsOption = None,
    interpolate: bool = typer.Option(
        False, "--interpolate", help="Measure no probe off the profiled grid: interpolate between grid levels "
        "where the database holds no measurement, and name the layers read that way."),
    as_json: bool = typer.Option(False, "--json", help="Print the prediction as JSON."),
) -> None:
    """Predict the plan's latency: sum of layer tables at its kept channels, plus the calibrated
    whole-model part. Missing probes are measured and a missing calibration is fit first; so are the
    probes of layers the plan keeps at widths between grid levels, unless --interpolate."""
    onnx_model = load_model(model)
    structure = analyze(onnx_model)
    plan = Plan.load(plan_file)
    plan.validate(structure)
    timer = get_backend(backend, threads=threads, db_path=db)
    grid_config = GridConfig(levels=grid, align=align or channel_multiple(timer))
    with open_db(db) as store:
        result = profile_tables(
            structure,
            timer,
            store,
            batch=batch,
            precision=precision,
            grid=grid_config,
            opset=model_opset(onnx_model),
            show_progress=not as_json,
            console=console_err,
        )
        calibration = stored_calibration(store, timer, onnx_model, grid_config, batch=batch, precision=precision)
        if calibration is None:
            if not as_json:
                console_err.print(
                    "calibrating the whole-model part (dense model + a few pruned variants)...", soft_wrap=True
                )
            calibration = calibrate(
                onnx_model, structure, result.tables, timer, store, batch=batch, precision=precision, grid=grid_config
            )
        off_grid = profile_off_grid(structure, result, plan, timer, store, batch=batch, precision=precision,
                                    measure=not interpolate, show_progress=not as_json, console=console_err)
    total = predict_latency(structure, off_grid.tables, calibration, plan)
    report = {
        "latency_ms": total,
        "fps": batch * 1000.0 / total if total > 0 else 0.0,
        "layer_sum_ms": layer_sum(structure, off_grid.tables, plan),
        "calibration": {
            "scale": calibration.scale,
            "offset_ms": calibration.offset_ms,
            "residuals_pct": calibration.residuals_pct,
        },
        "backend": timer.name,
        "batch": batch,
        "estimate": result.estimate,
        "off_grid": {
            "cells": len(off_grid.cells),
            "probes": off_grid.unique_probes,
            "measured": off_grid.measured,
            "from_db": off_grid.reused,
            "interpolated": [cell.to_json() for cell in off_grid.interpolated],
        },
    }
    if as_json:
        typer.echo(json.dumps(report))
        return
    label = " [yellow](analytic estimate)[/]" if result.estimate else ""
    worst = max((abs(r) for r in calibration.residuals_pct), default=0.0)
    console.print(
        f"{model.name} with {plan_file.name}: {total:.3f} ms predicted, {report['fps']:.1f} FPS at "
        f"batch {batch} on {timer.name}{label} (layer tables {report['layer_sum_ms']:.3f} ms; "
        f"calibration x{calibration.scale:.3f} {calibration.offset_ms:+.3f} ms, worst fit residual "
        f"{worst:.1f}%)",
        soft_wrap=True,
    )
    note = off_grid_note(off_grid)
    if note:
        console.print(note, soft_wrap=True, markup=False)  # layer names are the model's, not markup


def off_grid_note(off_grid: OffGridResult) -> str:
    """What became of the layers the plan keeps between grid levels ('' when it keeps grid widths only): a
    prediction read off interpolated cells is less sure than one read off measured cells, so it says so."""
    if not off_grid.cells:
        return ""
    layers = len({layer_name(cell.layer) for cell in off_grid.cells})
    note = f"{layers} layer(s) read off the profiled grid ({off_grid.unique_probes} probe(s)): "
    if off_grid.interpolated:
        shown = "; ".join(cell.describe() for cell in off_grid.interpolated)
        return note + (f"{off_grid.reused} from the database, {len(off_grid.interpolated)} interpolated between "
                       f"grid levels (--interpolate measures none), less exact: {shown}")
    if off_grid.estimate:
        return note + (f"{off_grid.measured} estimated now at their exact widths, {off_grid.reused} from the "
                       "database (analytic backend: nothing is measured, its estimates hold at any width)")
    return note + f"{off_grid.measured} measured now, {off_grid.reused} from the database"
