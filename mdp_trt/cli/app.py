"""The shared Typer application and consoles; command modules import `app` from here."""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(
    name="mdp-trt",
    help=(
        "Latency-aware structured pruning: give it an ONNX model and a throughput target on a device, "
        "get back a pruned ONNX model and a compiled engine that meets the target."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

console = Console()
console_err = Console(stderr=True)
