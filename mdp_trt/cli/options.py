"""Options that several commands share, defined once so their names, checks and help agree.

Each is an `Annotated` type: a command declares `batch: BatchOption = 1`, and the default stays visible
in its signature.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

BackendOption = Annotated[str, typer.Option(
    "--backend", help="Timing backend: auto (TensorRT if present, else ONNX Runtime CPU), ort, tensorrt, or "
    "analytic (estimates only, nothing runs).")]
BatchOption = Annotated[int, typer.Option("--batch", min=1, help="Batch size; a symbolic batch axis is fixed to it.")]
PrecisionOption = Annotated[str, typer.Option("--precision", help="fp32 or fp16 (fp16: TensorRT / GPU).")]
DbOption = Annotated[Path | None, typer.Option(
    "--db", help="Latency database (default: $MDP_TRT_DB, else the user cache); TensorRT keeps its timing and "
    "engine caches beside it.")]
GridOption = Annotated[int, typer.Option("--grid", min=1, help="At most N channel levels per group.")]
AlignOption = Annotated[int | None, typer.Option(
    "--align", min=1, help="Channel counts are multiples of A (default: the multiple the backend runs kernels in: "
    "ONNX Runtime's NCHWc block on the CPU, 16 with AVX-512 and 8 with AVX2; 8 on a GPU).")]
ThreadsOption = Annotated[int | None, typer.Option(
    "--threads", min=1, help="CPU threads for ONNX Runtime (default: all cores).")]
InputShapeOption = Annotated[list[str] | None, typer.Option(
    "--input-shape", metavar="NAME:DIMS", help="Static input sizes, as trtexec takes them: NAME:1x3x224x224 "
    "(repeat the option or join several with commas; a bare 1x3x224x224 for a model with one input). Needed "
    "when an input has symbolic sizes other than the batch; a batch given here must equal --batch.")]
