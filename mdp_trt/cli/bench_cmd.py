"""`mdp-trt bench`: measured latency and throughput of a whole model."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from mdp_trt.cli.app import app, console, console_err
from mdp_trt.cli.options import (
    BackendOption,
    BatchOption,
    DbOption,
    InputShapeOption,
    PrecisionOption,
    ThreadsOption,
)
from mdp_trt.graph import load_model
from mdp_trt.graph.input_shapes import parse_input_shapes, with_input_shapes
from mdp_trt.latency import bench_model, get_backend, resolve_db_path
from mdp_trt.latency.bench import check_batch


@app.command("bench")
def bench_command(
    model: Path = typer.Argument(..., help="The ONNX model to time."),
    backend: BackendOption = "auto",
    batch: BatchOption = 1,
    precision: PrecisionOption = "fp32",
    threads: ThreadsOption = None,
    db: DbOption = None,
    as_json: bool = typer.Option(False, "--json", help="Print latency_ms, fps, p10_ms, p90_ms, median_ci_ms, "
                                 "fps_ci, confidence, precision, segments_ms, drift, drifted, runs, seconds, "
                                 "backend, estimate."),
    input_shape: InputShapeOption = None,
) -> None:
    """Median latency and FPS (batch / latency) after warm-up, sampled until the median is known to ±1% (or 3 s
    have passed), with the dispersion seen: p10/p90 and the median's 95% interval.

    The runs are cut into 4 consecutive segments: when their medians disagree by more than the median's
    stated precision, and beyond their own noise, the host drifted while it was timed and a warning says so
    (on stderr; the JSON's "drifted"). A model whose batch is fixed runs only at that batch: another
    --batch is refused (exit 2).
    """
    shapes = parse_input_shapes(input_shape or [])
    loaded = load_model(model)
    check_batch(loaded, batch)
    onnx_model = with_input_shapes(loaded, shapes, batch)
    timer = get_backend(backend, threads=threads, db_path=resolve_db_path(db))
    result = bench_model(onnx_model, timer, batch=batch, precision=precision)
    if result.warning:
        console_err.print(f"[yellow]warning: {result.warning}[/]", highlight=False, soft_wrap=True)
    if as_json:
        typer.echo(json.dumps(result.to_json(), allow_nan=False))
        return
    m = result.measurement
    low, high = m.median_ci
    label = " [yellow](analytic estimate, nothing ran)[/]" if m.estimate else ""
    console.print(
        f"{model.name}: {m.median_ms:.3f} ms median (95% interval {low:.3f}-{high:.3f}, p10 {m.p10_ms:.3f}, "
        f"p90 {m.p90_ms:.3f}, {m.runs} runs), {result.fps:.1f} FPS at batch {batch} on {timer.name}{label}",
        soft_wrap=True, highlight=False,
    )
