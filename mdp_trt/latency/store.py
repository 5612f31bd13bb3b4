"""Opening the latency database from the CLI and the pipeline: database errors become user errors."""

from __future__ import annotations

from pathlib import Path

from latency_db import DatabaseError, LatencyDB, default_db_path
from mdp_trt.errors import InputError


def resolve_db_path(path: Path | str | None) -> Path:
    """`--db` wins, then `$MDP_TRT_DB`, then the per-user cache file."""
    return Path(path).expanduser() if path else default_db_path()


def open_db(path: Path | str | None = None, *, readonly: bool = False) -> LatencyDB:
    """Open (or create) the database; a corrupt, foreign or newer file is an InputError (exit 2)."""
    try:
        return LatencyDB(resolve_db_path(path), readonly=readonly)
    except DatabaseError as exc:
        raise InputError(str(exc)) from None
    except OSError as exc:
        raise InputError(f"cannot open the latency database: {exc}") from None
