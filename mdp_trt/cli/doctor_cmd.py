"""`mdp-trt doctor`: what is available here and what is missing, with how to get it."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from mdp_trt.cli.app import app, console
from mdp_trt.doctor import run_checks
from mdp_trt.latency.store import resolve_db_path


@app.command("doctor")
def doctor_command(
    db: Path | None = typer.Option(None, "--db", help="Latency database to report on (default: the user cache)."),
    as_json: bool = typer.Option(False, "--json", help="Print the checks as JSON."),
) -> None:
    """List backends, solvers and optional packages: what works here and how to get the rest."""
    checks = run_checks(resolve_db_path(db))
    if as_json:
        typer.echo(json.dumps([c.__dict__ for c in checks], indent=1))
        return
    table = Table(title="mdp-trt doctor", title_justify="left")
    for column in ("component", "status", "detail", "to get it"):
        table.add_column(column, overflow="fold")
    for check in checks:
        status = "[green]ok[/]" if check.ok else "[yellow]missing[/]"
        table.add_row(escape(check.name), status, escape(check.detail), escape(check.fix))
    console.print(table)
