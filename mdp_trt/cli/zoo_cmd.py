"""`mdp-trt zoo`: write a reference model from the in-house zoo to an ONNX file (no downloads)."""

from __future__ import annotations

import contextlib
import math
import os
import secrets
from pathlib import Path
from typing import Annotated

import typer

from mdp_trt import zoo
from mdp_trt.cli.app import app, console
from mdp_trt.errors import InputError


def _parse_batch(batch: str) -> int | str:
    if batch == "N":
        return "N"
    try:
        return int(batch)
    except ValueError:
        raise InputError(f"--batch must be a positive integer or N, got {batch!r}") from None


def _check_output(path: Path) -> None:
    """Fail before building (a big model takes seconds) if the file cannot be written."""
    if not path.parent.is_dir():
        raise InputError(f"output folder {str(path.parent)!r} does not exist")
    if path.is_dir():
        raise InputError(f"{str(path)!r} is a folder; give a file name such as model.onnx")


def write_atomically(data: bytes, path: Path) -> None:
    """Write `data` to `path` through a temporary file in the same folder, so a reader never sees a
    half-written model and an interrupted run leaves the old file intact."""
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    try:
        with open(tmp, "xb") as f:  # plain open, so the file gets the usual umask permissions
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


_HELP = (
    "Write a reference model (torchvision layouts, seeded random weights) as an ONNX file.\n\n"
    "The models are generated here, not downloaded: IR 10, opset 17, He-initialised weights and BN "
    "statistics at a trained network's scale, so pruning, latency and exactness checks run offline.\n\n"
    "Example: mdp-trt zoo resnet50 -o r50.onnx --batch N"
)


@app.command("zoo", help=_HELP)
def zoo_command(
    name: Annotated[str | None, typer.Argument(help="Model to write; see --list.", show_default=False)] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="ONNX file to write.", show_default=False)
    ] = None,
    list_models: Annotated[bool, typer.Option("--list", help="List the models and exit.")] = False,
    input_size: Annotated[int, typer.Option(help="Height and width of the square RGB input.")] = 224,
    batch: Annotated[str, typer.Option(help="Batch size, or N for a symbolic batch dimension.")] = "1",
    fold_bn: Annotated[
        bool, typer.Option("--fold-bn", help="Fold each BatchNormalization into the Conv before it.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of the random weights (same seed, same bytes).")] = 0,
    num_classes: Annotated[
        int | None,
        typer.Option(help="Classifier outputs (segmentation classes for unet). [default: the model's own]"),
    ] = None,
    width: Annotated[float, typer.Option(help="Channel width multiplier.")] = 1.0,
) -> None:
    """Build zoo model `name` and write it atomically to `output`, or list the models."""
    if list_models:
        for model_name in zoo.NAMES:
            console.print(f"[bold]{model_name:14}[/] {zoo.summary(model_name)}", highlight=False, soft_wrap=True)
        return
    if name is None:
        raise InputError("give a model name (see `mdp-trt zoo --list`)")
    if output is None:
        raise InputError("give the file to write with -o FILE.onnx")
    _check_output(output)
    model = zoo.build(
        name,
        input_size=input_size,
        batch=_parse_batch(batch),
        fold_bn=fold_bn,
        seed=seed,
        num_classes=num_classes,
        width=width,
    )
    data = model.SerializeToString()
    write_atomically(data, output)
    params = sum(math.prod(t.dims) for t in model.graph.initializer)
    console.print(
        f"wrote {name} to {output}: {len(model.graph.node)} nodes, {params:,} parameters, {len(data) / 2**20:.1f} MiB",
        highlight=False,
        soft_wrap=True,
    )
