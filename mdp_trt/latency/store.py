"""Opening the latency database from the CLI and the pipeline: database errors become user errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from latency_db import DatabaseError, LatencyDB, default_db_path
from mdp_trt.errors import InputError


def resolve_db_path(path: Path | str | None) -> Path:
    """`--db` wins, then `$MDP_TRT_DB`, then the per-user cache file."""
    return Path(path).expanduser() if path else default_db_path()


@contextmanager
def open_db(path: Path | str | None = None, *, readonly: bool = False) -> Iterator[LatencyDB]:
    """`with open_db(path) as db:` the database, opened (or created) and closed again.

    A `DatabaseError` raised while opening it or anywhere in the block (a damaged page found mid-query,
    a read-only file with measurements to store, a locked file) is an InputError (exit 2) whose one
    line names the file: it is the user's file, and the user can fix it. `readonly` never creates or
    writes; otherwise the file is written only when something must be stored (see `latency_db.store`).
    """
    try:
        db = LatencyDB(resolve_db_path(path), readonly=readonly)
    except DatabaseError as exc:
        raise InputError(str(exc)) from None
    except OSError as exc:
        raise InputError(f"cannot open the latency database {resolve_db_path(path)}: {exc.strerror or exc}") from None
    try:
        with db:
            yield db
    except DatabaseError as exc:
        raise InputError(str(exc)) from None
