"""The versioned schema: a marker that says "this file is ours", a version, and ordered migrations.

`PRAGMA application_id` marks the file as a latency_db store (so a foreign SQLite file is refused rather
than written into) and `PRAGMA user_version` is the schema version. `MIGRATIONS[i]` upgrades version i to
i + 1; a new version appends a step and never edits an old one, so every older file can be upgraded.
"""

from __future__ import annotations

import sqlite3

APPLICATION_ID = 0x4D445054  # "MDPT"

_V1 = (
    """CREATE TABLE fingerprints (
        hash TEXT PRIMARY KEY,
        json TEXT NOT NULL,
        created REAL NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE probes (
        signature TEXT PRIMARY KEY,
        json TEXT NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE entries (
        fingerprint TEXT NOT NULL REFERENCES fingerprints(hash),
        signature TEXT NOT NULL,
        k_in INTEGER NOT NULL,
        k_out INTEGER NOT NULL,
        median_ms REAL NOT NULL,
        p10_ms REAL NOT NULL,
        p90_ms REAL NOT NULL,
        runs INTEGER NOT NULL,
        seconds REAL NOT NULL,
        created REAL NOT NULL,
        PRIMARY KEY (fingerprint, signature, k_in, k_out)
    ) WITHOUT ROWID""",
    """CREATE TABLE calibrations (
        fingerprint TEXT NOT NULL REFERENCES fingerprints(hash),
        model_hash TEXT NOT NULL,
        method TEXT NOT NULL,
        coefficients TEXT NOT NULL,
        residuals TEXT NOT NULL,
        points TEXT NOT NULL,
        created REAL NOT NULL,
        PRIMARY KEY (fingerprint, model_hash)
    ) WITHOUT ROWID""",
)

MIGRATIONS: list[tuple[str, ...]] = [_V1]


def current_version() -> int:
    """The version this code writes: the number of migrations."""
    return len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, from_version: int) -> None:
    """Apply the steps after `from_version` inside the caller's transaction, then stamp the file."""
    for step in MIGRATIONS[from_version:]:
        for statement in step:
            conn.execute(statement)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {current_version()}")
