"""The `mdp-trt` command line: a thin layer that wires the stages and prints.

Each command lives in its own module and registers itself on `app` when imported; this module
imports them and turns `MdpError` into a one-line message and its exit code.
"""

from __future__ import annotations

import sys

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

    Click handles usage errors and --help itself (exit code 2 / 0); our own errors become one red line
    and their exit code, never a traceback.
    """
    try:
        app(args=argv, standalone_mode=True)
    except MdpError as exc:
        console_err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True, markup=True)
        return exc.exit_code
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        console_err.print("[yellow]interrupted[/]")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
