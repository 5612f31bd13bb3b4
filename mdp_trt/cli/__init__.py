"""The `mdp-trt` command line: a thin layer that wires the stages and prints.

Each command lives in its own module and registers itself on `app` when imported; this module
imports them and turns `MdpError` into a one-line message and its exit code.
"""

from __future__ import annotations

import sys

import rich.markup
import typer

from mdp_trt.cli import (  # noqa: F401 - each module registers its command on `app`
    analyze_cmd,
    bench_cmd,
    build_cmd,
    compile_cmd,
    db_cmd,
    doctor_cmd,
    predict_cmd,
    profile_cmd,
    prune_cmd,
    solve_cmd,
    zoo_cmd,
)
from mdp_trt.cli.app import app, console_err
from mdp_trt.errors import MdpError


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code.

    Every error is one red line and its exit code, never a traceback: our own (`MdpError`) and the usage
    errors the option parser finds (exit code 2). The parser runs in non-standalone mode so that its
    usage errors come here instead of being drawn as a multi-line panel; --help still prints in full.
    """
    try:
        code = app(args=argv, prog_name="mdp-trt", standalone_mode=False)
    except MdpError as exc:
        _error(str(exc))
        return exc.exit_code
    except typer.Abort:
        console_err.print("[yellow]aborted[/]")
        return 1
    except KeyboardInterrupt:
        console_err.print("[yellow]interrupted[/]")
        return 130
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception as exc:
        # click's usage errors (typer vendors click, so the class is matched by what it offers)
        message, code = getattr(exc, "format_message", None), getattr(exc, "exit_code", None)
        if message is None or not isinstance(code, int):
            raise
        text = message()
        if text:  # empty for a bare `mdp-trt`, whose help was already printed
            ctx = getattr(exc, "ctx", None)
            _error(f"{text} (see {ctx.command_path} --help)" if ctx is not None else text)
        return code
    # What the parser returns: a command's None, or the code of an interrupt it caught itself (130).
    return code if isinstance(code, int) else 0


def _error(text: str) -> None:
    console_err.print(f"[bold red]error:[/] {rich.markup.escape(text)}", highlight=False, soft_wrap=True)


if __name__ == "__main__":
    sys.exit(main())
