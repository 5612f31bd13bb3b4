"""`mdp-trt compile`: build the engine for a (pruned) model on this device, alone."""

from __future__ import annotations

from pathlib import Path

import typer

from mdp_trt.cli.app import app, console_err
from mdp_trt.compile import compile_model
from mdp_trt.graph import load_model
from mdp_trt.latency.backends import get_backend
from mdp_trt.latency.store import resolve_db_path


@app.command("compile")
def compile_command(
    model: Path = typer.Argument(..., help="The (pruned) ONNX model."),
    output: Path = typer.Option(..., "-o", "--output", help="Output folder for the engine and its sidecar JSON."),
    backend: str = typer.Option("auto", "--backend", help="auto, ort or tensorrt."),
    batch: int = typer.Option(1, "--batch", help="Batch size the engine is built for."),
    precision: str = typer.Option("fp32", "--precision", help="fp32 or fp16."),
    db: Path | None = typer.Option(None, "--db", help="Latency database (TensorRT keeps its timing cache beside it)."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads for ONNX Runtime."),
) -> None:
    """Compile a model for this device: for building on the target after solving elsewhere."""
    engine = get_backend(backend, threads=threads, db_path=resolve_db_path(db))
    artifact = compile_model(load_model(model), engine, output, batch=batch, precision=precision)
    console_err.print(f"wrote {artifact.engine} and {artifact.sidecar}")
