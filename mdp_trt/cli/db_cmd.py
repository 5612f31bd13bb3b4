"""`mdp-trt db`: inspect the latency database and move measurements between machines.

`show` and `export` open the database read-only (they work on a file this user may not write, and
never create one); `import` and `merge` write it, all records or none. Every failure is one line
naming the file at fault: the database, the export, or the other database.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.table import Table

from latency_db import FormatError
from latency_db.jsonl import read_jsonl
from mdp_trt.cli.app import app, console
from mdp_trt.cli.options import DbOption
from mdp_trt.errors import InputError
from mdp_trt.latency.store import open_db

db_app = typer.Typer(help="Inspect, export, import and merge the latency database.", no_args_is_help=True)
app.add_typer(db_app, name="db")


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


@db_app.command("show")
def show_command(
    db: DbOption = None,
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Device fingerprints with their entry counts, and the size on disk (the file is checked, never written)."""
    with open_db(db, readonly=True) as store:
        stats = store.stats()
        summary = {
            "path": str(store.path),
            "schema_version": store.schema_version,
            "size_bytes": store.size_on_disk(),
            "probes": store.probe_count(),
            "fingerprints": [
                {"hash": s.hash, "entries": s.entries, "calibrations": s.calibrations, **s.fingerprint} for s in stats
            ],
        }
    if as_json:
        typer.echo(json.dumps(summary, indent=1))
        return
    table = Table(title=f"Latency database {summary['path']}", title_justify="left")
    for column in (
        "fingerprint",
        "backend",
        "device",
        "precision",
        "batch",
        "threads",
        "entries",
        "calibrations",
    ):
        table.add_column(column, overflow="fold")
    for s in stats:
        fp = s.fingerprint
        device = fp.get("device", "")
        device = device.get("name", "") if isinstance(device, dict) else str(device)
        backend = f"{fp.get('backend', '?')} {fp.get('backend_version', '')}".strip()
        if fp.get("estimate"):
            backend += " (estimate)"
        table.add_row(
            s.hash[:12],
            backend,
            device,
            str(fp.get("precision", "")),
            str(fp.get("batch", "")),
            str(fp.get("threads", "")),
            str(s.entries),
            str(s.calibrations),
        )
    console.print(table)
    console.print(
        f"schema v{summary['schema_version']}, {summary['probes']} probe signatures, "
        f"{_human(summary['size_bytes'])} on disk",
        soft_wrap=True,
    )


@db_app.command("export")
def export_command(
    file: Path = typer.Argument(..., help="JSONL file to write (replaced atomically)."),
    db: DbOption = None,
) -> None:
    """Write every fingerprint, probe, entry and calibration to a JSONL file."""
    if file.is_dir():
        raise InputError(f"{file} is a folder; give a file name to write")
    with open_db(db, readonly=True) as store:
        try:
            count = store.export_jsonl(file)
        except OSError as exc:
            raise InputError(f"cannot write {file}: {exc.strerror or exc}") from None
    console.print(f"exported {count} records to {file}", soft_wrap=True)


@db_app.command("import")
def import_command(
    file: Path = typer.Argument(..., help="JSONL file made by `mdp-trt db export`."),
    db: DbOption = None,
) -> None:
    """Add the records of an export, all or none; for a key measured on both sides the newer measurement wins."""
    if not file.is_file():
        raise InputError(f"{file}: no such file")
    with _import_errors(file):
        for _ in read_jsonl(file):  # a file that is not an export is refused before the database is touched
            pass
    with open_db(db) as store, _import_errors(file):
        counts = store.import_jsonl(file)
    console.print(f"imported {_counts(counts)} from {file}", soft_wrap=True)


@contextmanager
def _import_errors(file: Path) -> Iterator[None]:
    """A bad or unreadable export as one line (inside `open_db`, which would word it as a database error)."""
    try:
        yield
    except FormatError as exc:
        raise InputError(f"cannot import {exc}; nothing was imported") from None
    except OSError as exc:
        raise InputError(f"cannot read {file}: {exc.strerror or exc}") from None


@db_app.command("merge")
def merge_command(
    other: Path = typer.Argument(..., help="Another latency database (e.g. measured on a remote device)."),
    db: DbOption = None,
) -> None:
    """Bring in everything from another database file (it is opened read-only and checked first)."""
    if not other.is_file():
        raise InputError(f"{other}: no such file")
    with open_db(other, readonly=True):
        pass  # checked (SQLite, ours, undamaged) before the database is opened or created
    with open_db(db) as store:
        try:
            counts = store.merge(other)
        except FormatError as exc:
            raise InputError(f"cannot merge {exc}; nothing was merged") from None
    console.print(f"merged {_counts(counts)} from {other}", soft_wrap=True)


_PLURALS = {"fingerprint": "fingerprints", "probe": "probes", "entry": "entries", "calibration": "calibrations"}


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {kind if n == 1 else _PLURALS.get(kind, kind)}" for kind, n in counts.items())
