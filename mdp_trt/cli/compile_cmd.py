"""`mdp-trt compile`: build the engine for a (pruned) model on this device, alone."""

from __future__ import annotations

from pathlib import Path

import typer

from mdp_trt.cli.app import app, console_err
from mdp_trt.cli.options import BatchOption, DbOption, PrecisionOption, ThreadsOption
from mdp_trt.compile import compile_model
from mdp_trt.graph import load_model
from mdp_trt.latency.backends import get_backend
from mdp_trt.latency.store import resolve_db_path


@app.command("compile")
def compile_command(
    model: Path = typer.Argument(..., help="The (pruned) ONNX model."),
    output: Path = typer.Option(..., "-o", "--output", help="Output folder for the engine and its sidecar JSON."),
    backend: str = typer.Option("auto", "--backend", help="auto, ort or tensorrt."),
    batch: BatchOption = 1,
    precision: PrecisionOption = "fp32",
    db: DbOption = None,
    threads: ThreadsOption = None,
) -> None:
    """Compile a model for this device: for building on the target after solving elsewhere."""
    engine = get_backend(backend, threads=threads, db_path=resolve_db_path(db))
    artifact = compile_model(load_model(model), engine, output, batch=batch, precision=precision)
    console_err.print(f"wrote {artifact.engine} and {artifact.sidecar}")
