"""`mdp-trt prune`: apply a plan (or a uniform ratio) and write the pruned model, once it is verified."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from mdp_trt.cli.app import app, console_err
from mdp_trt.cli.options import InputShapeOption
from mdp_trt.errors import InputError
from mdp_trt.graph import analyze, load_model
from mdp_trt.graph.input_shapes import parse_input_shapes, static_input_shapes
from mdp_trt.io import check_writable, save_models_atomic
from mdp_trt.prune import Plan, mask_model, prune_model
from mdp_trt.prune.ratio import ratio_plan
from mdp_trt.prune.verify import check_runs, verify_pruned


@app.command("prune")
def prune_command(
    model: Path = typer.Argument(..., help="The ONNX model to prune."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the pruned ONNX model."),
    plan_path: Path | None = typer.Option(
        None, "--plan", help="An mdp-plan/1 JSON file (ids from `analyze --json`)."),
    ratio: float | None = typer.Option(
        None, "--ratio", help="Keep the top R fraction of every prunable group by L1 magnitude, every "
                              "attention head kept at R of its widths (quick manual mode)."),
    emit_masked: Path | None = typer.Option(None, "--emit-masked", help="Also write the masked model: the "
                                            "original architecture with pruned channels' weights zeroed."),
    input_shape: InputShapeOption = None,
) -> None:
    """Cut channels and residual blocks out of a model.

    Before anything is written, the pruned model (and the masked one with --emit-masked) is loaded and
    run in ONNX Runtime, and the pruned model is compared with the masked one where that is cheap.
    Symbolic input sizes are kept; --input-shape gives the sizes to run the check at. Exit codes: 2 bad
    input (an invalid plan; -o or --emit-masked equal to the input or each other, a folder, or not
    writable: refused before any work), 4 the pruned or masked model failed the check (a bug of ours:
    please report the model); either way nothing is written.
    """
    if (plan_path is None) == (ratio is None):
        raise InputError("give exactly one of --plan PLAN.json or --ratio R")
    _refuse_overwrite(model, output, emit_masked)
    shapes = parse_input_shapes(input_shape or [])
    batch = next(iter(shapes.values()))[0] if shapes else 1
    original = load_model(model)
    static_input_shapes(original, shapes, batch)  # refuse a symbolic size now, not after the surgery
    structure = analyze(original)
    plan = Plan.load(plan_path) if plan_path is not None else ratio_plan(original, structure, ratio)
    pruned = prune_model(original, structure, plan)
    masked = mask_model(original, structure, plan) if emit_masked is not None else None
    verified = verify_pruned(original, structure, plan, pruned, masked=masked, batch=batch, input_shapes=shapes)
    if masked is not None:
        check_runs(masked, label="the masked model", batch=batch, input_shapes=shapes)
    save_models_atomic([(pruned, output)] + ([(masked, emit_masked)] if masked is not None and emit_masked else []))
    kept = sum(len(plan.kept(g.id, g.size)) for g in structure.groups)
    total = sum(g.size for g in structure.groups)
    console_err.print(f"wrote {output}: kept {kept}/{total} channels, removed {len(plan.remove_blocks)} "
                      f"block(s)" + (f"; masked model: {emit_masked}" if emit_masked else "")
                      + f"; {verified.summary()} in {verified.seconds:.2f} s", soft_wrap=True)


def _refuse_overwrite(model: Path, output: Path, emit_masked: Path | None) -> None:
    """The outputs must be writable files other than the input and each other: refused before any work,
    so that neither is written when the other could not be."""
    check_writable(output, "-o")
    if emit_masked is not None:
        check_writable(emit_masked, "--emit-masked")
    if _same_file(output, model):
        raise InputError(f"-o {output} is the input model; write the pruned model to another file")
    if emit_masked is not None and _same_file(emit_masked, model):
        raise InputError(f"--emit-masked {emit_masked} is the input model; write the masked model to another file")
    if emit_masked is not None and _same_file(emit_masked, output):
        raise InputError(f"--emit-masked and -o are the same file ({output}); give two different files")


def _same_file(a: Path, b: Path) -> bool:
    """Equal after resolving symlinks and `..`, or the same file under two names (a hard link)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False
