"""Opening the SQLite file without changing it, and SQLite's errors as one-line `DatabaseError`s.

How a file is opened depends on what this process may do to it, not on what the caller means to do:

- absent: created (its folder made first), unless the caller only reads;
- writable (the file and its folder): opened read-write, even by a caller that only reads, which
  then sets `query_only`. A read-only connection (`mode=ro`) to a WAL database leaves its `-wal`
  and `-shm` files behind when it closes, since it may not delete them; a read-write one that
  writes nothing removes them, so reading leaves the folder as it was;
- not writable (chmod 444, a read-only folder or mount): `mode=ro`, which SQLite can do for a WAL
  database only where it can create (or finds) the `-shm` file. Where it would have to create one
  in a folder it may write, or cannot create one at all, the file is opened `immutable` instead:
  with no `-shm` beside it, no process has it open, and what is read is exactly the file. Such a
  connection can never write; the store says so in one line when a command has something to store.

Nothing here writes to the file: a file that turns out not to be ours is closed as it was found.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from latency_db.errors import CorruptDatabase, DatabaseError

BUSY_TIMEOUT_S = 60.0
_HEADER = b"SQLite format 3\x00"


def create(path: Path) -> sqlite3.Connection:
    """A connection to a new database file at `path`, its folder made first."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseError(f"cannot create the latency database {path}: cannot make the folder {exc.filename} "
                            f"({exc.strerror})") from None
    if not os.access(path.parent, os.W_OK | os.X_OK):  # asked first: SQLite would only say "unable to open"
        raise DatabaseError(f"cannot create the latency database {path}: the folder {path.parent} is not writable; "
                            "pass another --db")
    try:
        return _configure(sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None))
    except sqlite3.Error as exc:
        raise DatabaseError(f"cannot create the latency database {path} ({exc}); pass another --db") from None


def open_existing(path: Path, *, readonly: bool) -> tuple[sqlite3.Connection, str | None]:
    """A connection to an existing file and, when it cannot write, why not (None: it can).

    The returned connection has read the schema header, so a file SQLite cannot open at all has
    raised here (translated), before any caller looks at it.
    """
    if not os.access(path, os.R_OK):
        raise DatabaseError(f"cannot read the latency database {path}: permission denied")
    not_writable = _why_not_writable(path)
    if not_writable is None:
        conn = _configure(_connect(path, "rw"))
        if readonly:
            conn.execute("PRAGMA query_only = ON")
        return _probed(conn, path), "it is open read-only" if readonly else None
    if _is_wal(path) and not Path(f"{path}-shm").exists():
        return _probed(_configure(_connect(path, "ro", immutable=True)), path), not_writable
    try:
        return _probed(_configure(_connect(path, "ro")), path), not_writable
    except DatabaseError:
        # A `-shm` this process cannot use: the file alone, as above.
        return _probed(_configure(_connect(path, "ro", immutable=True)), path), not_writable


def translate(exc: sqlite3.Error | ValueError, path: Path) -> DatabaseError:
    """The one-line error for a failure of SQLite (or of a stored JSON value) on the file at `path`."""
    name = getattr(exc, "sqlite_errorname", "")
    kind = name.split("_")[1] if name.startswith("SQLITE_") else ""
    if kind == "NOTADB":
        return CorruptDatabase(f"{path} is not a readable SQLite database ({exc}); it was left as is: "
                               "move it away or pass another --db")
    if kind == "CORRUPT" or isinstance(exc, ValueError):
        return CorruptDatabase(f"{path} is damaged ({exc}); it was left as is: move it away (`sqlite3 {path} "
                               ".recover` saves what is readable) or pass another --db")
    if kind == "READONLY":
        return DatabaseError(f"{path} cannot be written ({exc}): make it writable or pass another --db")
    if kind in ("BUSY", "LOCKED"):
        return DatabaseError(f"{path} stayed locked by another process for {BUSY_TIMEOUT_S:.0f} s ({exc}); "
                             "retry once it is done")
    if kind == "FULL":
        return DatabaseError(f"cannot write to {path}: the disk is full")
    if kind == "CANTOPEN":
        return DatabaseError(f"cannot open the latency database {path} ({exc})")
    return DatabaseError(f"{path}: {exc}")


def _why_not_writable(path: Path) -> str | None:
    if not os.access(path, os.W_OK):
        return "the file is not writable"
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return f"its folder {path.parent} is not writable"
    return None


def _is_wal(path: Path) -> bool:
    """Whether the header says WAL mode (bytes 18-19 are 2), read without SQLite."""
    try:
        with open(path, "rb") as src:
            head = src.read(20)
    except OSError:
        return False
    return head[:16] == _HEADER and head[18:20] == b"\x02\x02"


def _connect(path: Path, mode: str, immutable: bool = False) -> sqlite3.Connection:
    uri = f"file:{quote(str(path.resolve()))}?mode={mode}" + ("&immutable=1" if immutable else "")
    try:
        return sqlite3.connect(uri, timeout=BUSY_TIMEOUT_S, isolation_level=None, uri=True)
    except sqlite3.Error as exc:
        raise translate(exc, path) from None


def _configure(conn: sqlite3.Connection) -> sqlite3.Connection:
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _probed(conn: sqlite3.Connection, path: Path) -> sqlite3.Connection:
    """`conn` once it has read the header page (SQLite opens files lazily); closed if it could not."""
    try:
        conn.execute("PRAGMA schema_version").fetchone()
    except sqlite3.Error as exc:
        conn.close()
        raise translate(exc, path) from None
    return conn
