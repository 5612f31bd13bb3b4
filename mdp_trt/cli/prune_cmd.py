"""`mdp-trt prune`: apply a plan (or a uniform ratio) and write the pruned model."""

from __future__ import annotations

from pathlib import Path

import typer

from mdp_trt.cli.app import app, console_err
from mdp_trt.errors import InputError
from mdp_trt.graph import analyze, load_model
from mdp_trt.io import save_model_atomic
from mdp_trt.prune import Plan, mask_model, prune_model
from mdp_trt.prune.ratio import ratio_plan


@app.command("prune")
def prune_command(
    model: Path = typer.Argument(..., help="The ONNX model to prune."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the pruned ONNX model."),
    plan_path: Path | None = typer.Option(
        None, "--plan", help="An mdp-plan/1 JSON file (ids from `analyze --json`)."),
    ratio: float | None = typer.Option(
        None, "--ratio", help="Keep the top R fraction of every prunable group by L1 magnitude (quick manual mode)."),
    emit_masked: Path | None = typer.Option(None, "--emit-masked", help="Also write the masked model: the "
                                            "original architecture with pruned channels' weights zeroed."),
) -> None:
    """Cut channels and residual blocks out of a model.

    The pruned model computes exactly what the masked model computes; both are validated before
    anything is written, and nothing is written when the plan is invalid.
    """
    if (plan_path is None) == (ratio is None):
        raise InputError("give exactly one of --plan PLAN.json or --ratio R")
    original = load_model(model)
    structure = analyze(original)
    plan = Plan.load(plan_path) if plan_path is not None else ratio_plan(original, structure, ratio)
    pruned = prune_model(original, structure, plan)
    masked = mask_model(original, structure, plan) if emit_masked is not None else None
    save_model_atomic(pruned, output)
    if masked is not None and emit_masked is not None:
        save_model_atomic(masked, emit_masked)
    kept = sum(len(plan.kept(g.id, g.size)) for g in structure.groups)
    total = sum(g.size for g in structure.groups)
    console_err.print(f"wrote {output}: kept {kept}/{total} channels, removed {len(plan.remove_blocks)} "
                      f"block(s)" + (f"; masked model: {emit_masked}" if emit_masked else ""))
