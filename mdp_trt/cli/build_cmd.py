"""`mdp-trt build`: the main job, from model.onnx and a target to a pruned model and an engine."""

from __future__ import annotations

from pathlib import Path

import typer

from mdp_trt.build import BuildConfig, run_build
from mdp_trt.cli.app import app, console_err
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
from mdp_trt.errors import TargetNotMet
from mdp_trt.graph.input_shapes import parse_input_shapes


@app.command("build")
def build_command(
    model: Path = typer.Argument(..., help="The trained ONNX model."),
    output: Path = typer.Option(..., "-o", "--output", help="Output folder (created if missing)."),
    fps: float | None = typer.Option(None, "--fps", help="Target throughput: images per second at --batch."),
    latency_ms: float | None = typer.Option(None, "--latency-ms", help="Target latency of one batch (ms)."),
    speedup: float | None = typer.Option(None, "--speedup", help="Target: S times faster than the dense model "
                                         "as measured here (e.g. 2)."),
    batch: BatchOption = 1,
    backend: BackendOption = "auto",
    precision: PrecisionOption = "fp32",
    db: DbOption = None,
    solver: str = typer.Option("milp", "--solver", help="milp (exact, default), minlp (the paper's), halp, uniform."),
    importance: str = typer.Option("magnitude", "--importance", help="magnitude, or an .npz of per-channel "
                                   "scores keyed by group id or weight name, and optional block scores keyed by "
                                   "block id (mdp_trt.torch.save_importance writes one)."),
    grid: GridOption = 8,
    align: AlignOption = None,
    no_blocks: bool = typer.Option(False, "--no-blocks", help="Never remove residual blocks."),
    threads: ThreadsOption = None,
    rounds: int = typer.Option(5, "--rounds", min=1, help="Closed-loop rounds (at least 1): re-solve with a "
                               "corrected budget while the measurement misses the target or beats it by more "
                               "than 5%."),
    no_plots: bool = typer.Option(False, "--no-plots", help="Skip the plots (and the Pareto sweep)."),
    input_shape: InputShapeOption = None,
) -> None:
    """Prune MODEL to meet a throughput target on this device and compile it.

    Writes OUT/model.pruned.onnx, plan.json, problem.json, report.json, the engine (model.engine for
    TensorRT, model.ort.onnx for ONNX Runtime) and plots, all at once and only when the build finishes.
    The pruned model is loaded and run in ONNX Runtime (and compared with the masked model where cheap)
    before anything is written. Exit codes: 0 the target is met by measurement; 2 bad input (checked
    before profiling where it can be); 3 the target is unreachable (nothing written) or not met by
    measurement, the chosen plan timed against dense interleaved and its 95% interval over the target or
    straddling it (the host too noisy to decide); OUT is then written with the plan the loop kept, and
    report.json says measured.met false; 4 a pruned model failed that check (a bug of ours: please report
    the model).
    """
    config = BuildConfig(fps=fps, latency_ms=latency_ms, speedup=speedup, batch=batch, backend=backend,
                         precision=precision, db=db,
                         solver=solver, importance=importance, grid=grid, align=align, blocks=not no_blocks,
                         threads=threads, rounds=rounds, make_plots=not no_plots,
                         input_shapes=parse_input_shapes(input_shape or []))
    report = run_build(model, output, config, console_err)
    if not report.met:
        m = report.measured
        low, high = m["latency_ci_ms"]
        why = (f"the host was too noisy to decide: the plan's 95% interval {low:.3f}-{high:.3f} ms straddles the "
               f"target of {m['target_ms']:.3f} ms after {m['seconds']:.1f} s timed against dense"
               if m["decision"] == "undecided" else
               f"{m['latency_ms']:.3f} ms, 95% interval {low:.3f}-{high:.3f} ms, > {m['target_ms']:.3f} ms")
        raise TargetNotMet(f"the target was not met by measurement ({why}); {output} holds the plan the closed "
                           f"loop kept (report.json: measured.met false, measured.decision {m['decision']})")
