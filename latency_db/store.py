"""`LatencyDB`: the SQLite store of measured probe latencies, device fingerprints and calibrations.

Several processes may profile into one file at once, so the file runs in WAL mode with a busy timeout
and every write is one short `BEGIN IMMEDIATE` transaction of upserts. An existing file is validated
before anything is written to it: not SQLite, not ours, or from a newer version raises a
`DatabaseError` and the file is left untouched.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from latency_db import schema
from latency_db.canonical import canonical_json, content_hash
from latency_db.errors import CorruptDatabase, DatabaseError, ForeignDatabase, NewerSchema
from latency_db.jsonl import read_jsonl, write_jsonl
from latency_db.paths import default_db_path

BUSY_TIMEOUT_S = 60.0
_CHUNK = 500  # host parameters per IN (...) query, well under SQLite's limit

EntryKey = tuple[str, int, int]  # (probe signature, k_in, k_out)


@dataclass(frozen=True)
class Entry:
    """One measured probe: latency statistics of a signature at (k_in, k_out) on one device."""

    signature: str
    k_in: int
    k_out: int
    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int
    seconds: float
    created: float = field(default_factory=time.time)

    @property
    def key(self) -> EntryKey:
        return (self.signature, self.k_in, self.k_out)


@dataclass(frozen=True)
class CalibrationRecord:
    """A fit of the whole-model part for one model on one device, with the data it was fit on."""

    model_hash: str
    method: str
    coefficients: dict[str, float]
    residuals: list[float]
    points: list[dict[str, Any]]
    created: float = field(default_factory=time.time)


@dataclass(frozen=True)
class FingerprintStats:
    """What `db show` prints per device fingerprint."""

    hash: str
    fingerprint: dict[str, Any]
    entries: int
    calibrations: int


def fingerprint_hash(fingerprint: dict[str, Any]) -> str:
    """The id of a device fingerprint: sha256 of its canonical JSON."""
    return content_hash(fingerprint)


class LatencyDB:
    """Open (creating if absent) the latency database at `path` (default: `default_db_path()`).

    `readonly=True` validates and reads without ever writing (used for the other side of a merge).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, readonly: bool = False) -> None:
        self.path = Path(path) if path is not None else default_db_path()
        self.readonly = readonly
        if not readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif not self.path.exists():
            raise DatabaseError(f"{self.path}: no such database")
        self._conn = self._connect()
        try:
            self._validate_and_migrate()
            if not readonly:
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
        except BaseException:
            self._conn.close()
            raise

    # -- opening -----------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        target = f"file:{quote(str(self.path.resolve()))}?mode=ro" if self.readonly else str(self.path)
        conn = sqlite3.connect(target, timeout=BUSY_TIMEOUT_S, isolation_level=None, uri=self.readonly)
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def _header(self) -> tuple[int, int, int]:
        """(application_id, user_version, number of schema objects); raises CorruptDatabase."""
        try:
            app_id = self._conn.execute("PRAGMA application_id").fetchone()[0]
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            objects = self._conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise CorruptDatabase(
                f"{self.path} is not a readable SQLite database ({exc}); it was left as is: "
                "move it away or pass another --db"
            ) from exc
        return app_id, version, objects

    def _check_header(self, app_id: int, version: int, objects: int) -> bool:
        """True when the file needs migrating; raises when it must not be touched."""
        if app_id == 0 and objects == 0:
            return True  # empty: a new database
        if app_id != schema.APPLICATION_ID:
            raise ForeignDatabase(
                f"{self.path} is a SQLite database but not a latency_db store (application_id={app_id}); "
                "it was left as is: pass another --db"
            )
        if version > schema.current_version():
            raise NewerSchema(
                f"{self.path} has schema version {version}, newer than this mdp-trt understands "
                f"({schema.current_version()}); upgrade mdp-trt"
            )
        return version < schema.current_version()

    def _validate_and_migrate(self) -> None:
        if not self._check_header(*self._header()):
            return
        if self.readonly:
            raise DatabaseError(f"{self.path} has an older schema; open it once for writing to upgrade it")
        with self._write():
            # Re-read under the write lock: another process may have created or upgraded it meanwhile.
            app_id, version, objects = self._header()
            if self._check_header(app_id, version, objects):
                schema.migrate(self._conn, version if app_id else 0)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction; the lock is taken up front so it never deadlocks on upgrade."""
        if self.readonly:
            raise DatabaseError(f"{self.path} is open read-only")
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # -- lifecycle ---------------------------------------------------------------------------------

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> LatencyDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return self._conn.execute("PRAGMA user_version").fetchone()[0]

    # -- fingerprints and probes -------------------------------------------------------------------

    def register_fingerprint(self, fingerprint: dict[str, Any]) -> str:
        """Store a device fingerprint (idempotent) and return its hash, the key entries are filed under."""
        fp_hash = fingerprint_hash(fingerprint)
        with self._write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO fingerprints (hash, json, created) VALUES (?, ?, ?)",
                (fp_hash, canonical_json(fingerprint), time.time()),
            )
        return fp_hash

    def fingerprint(self, fp_hash: str) -> dict[str, Any]:
        row = self._conn.execute("SELECT json FROM fingerprints WHERE hash = ?", (fp_hash,)).fetchone()
        if row is None:
            raise KeyError(fp_hash)
        return json.loads(row[0])

    def put_probes(self, descriptions: dict[str, dict[str, Any]]) -> None:
        """Record what each probe signature stands for, so a database explains its own keys."""
        with self._write() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO probes (signature, json) VALUES (?, ?)",
                [(sig, canonical_json(desc)) for sig, desc in descriptions.items()],
            )

    def probe(self, signature: str) -> dict[str, Any] | None:
        row = self._conn.execute("SELECT json FROM probes WHERE signature = ?", (signature,)).fetchone()
        return None if row is None else json.loads(row[0])

    # -- entries -----------------------------------------------------------------------------------

    def put_entries(self, fp_hash: str, entries: Iterable[Entry]) -> int:
        """Upsert entries in one transaction; a stored entry is replaced only by a newer one."""
        rows = [_entry_row(fp_hash, e) for e in entries]
        with self._write() as conn:
            conn.executemany(
                """INSERT INTO entries (fingerprint, signature, k_in, k_out, median_ms, p10_ms, p90_ms,
                                        runs, seconds, created)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (fingerprint, signature, k_in, k_out) DO UPDATE SET
                       median_ms = excluded.median_ms, p10_ms = excluded.p10_ms,
                       p90_ms = excluded.p90_ms, runs = excluded.runs, seconds = excluded.seconds,
                       created = excluded.created
                   WHERE excluded.created >= entries.created""",
                rows,
            )
        return len(rows)

    def get_entries(self, fp_hash: str, keys: Iterable[EntryKey]) -> dict[EntryKey, Entry]:
        """The stored entries among `keys` for one fingerprint (missing keys are absent)."""
        wanted = set(keys)
        signatures = sorted({k[0] for k in wanted})
        found: dict[EntryKey, Entry] = {}
        for start in range(0, len(signatures), _CHUNK):
            chunk = signatures[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                f"""SELECT signature, k_in, k_out, median_ms, p10_ms, p90_ms, runs, seconds, created
                    FROM entries WHERE fingerprint = ? AND signature IN ({marks})""",
                (fp_hash, *chunk),
            )
            for row in rows:
                entry = Entry(*row)
                if entry.key in wanted:
                    found[entry.key] = entry
        return found

    def entries(self, fp_hash: str) -> list[Entry]:
        """Every entry of one fingerprint, in key order."""
        rows = self._conn.execute(
            """SELECT signature, k_in, k_out, median_ms, p10_ms, p90_ms, runs, seconds, created
               FROM entries WHERE fingerprint = ? ORDER BY signature, k_in, k_out""",
            (fp_hash,),
        )
        return [Entry(*row) for row in rows]

    # -- calibrations ------------------------------------------------------------------------------

    def put_calibration(self, fp_hash: str, record: CalibrationRecord) -> None:
        with self._write() as conn:
            self._upsert_calibration(conn, fp_hash, record)

    @staticmethod
    def _upsert_calibration(conn: sqlite3.Connection, fp_hash: str, r: CalibrationRecord) -> None:
        conn.execute(
            """INSERT INTO calibrations (fingerprint, model_hash, method, coefficients, residuals, points,
                                         created)
               VALUES (?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (fingerprint, model_hash) DO UPDATE SET
                   method = excluded.method, coefficients = excluded.coefficients,
                   residuals = excluded.residuals, points = excluded.points, created = excluded.created
               WHERE excluded.created >= calibrations.created""",
            (
                fp_hash,
                r.model_hash,
                r.method,
                canonical_json(r.coefficients),
                canonical_json(r.residuals),
                canonical_json(r.points),
                r.created,
            ),
        )

    def get_calibration(self, fp_hash: str, model_hash: str) -> CalibrationRecord | None:
        row = self._conn.execute(
            """SELECT model_hash, method, coefficients, residuals, points, created FROM calibrations
               WHERE fingerprint = ? AND model_hash = ?""",
            (fp_hash, model_hash),
        ).fetchone()
        if row is None:
            return None
        return CalibrationRecord(
            row[0], row[1], json.loads(row[2]), json.loads(row[3]), json.loads(row[4]), row[5]
        )

    # -- inspection --------------------------------------------------------------------------------

    def stats(self) -> list[FingerprintStats]:
        rows = self._conn.execute(
            """SELECT f.hash, f.json,
                      (SELECT count(*) FROM entries e WHERE e.fingerprint = f.hash),
                      (SELECT count(*) FROM calibrations c WHERE c.fingerprint = f.hash)
               FROM fingerprints f ORDER BY f.created"""
        )
        return [FingerprintStats(h, json.loads(j), n, c) for h, j, n, c in rows]

    def probe_count(self) -> int:
        return self._conn.execute("SELECT count(*) FROM probes").fetchone()[0]

    def size_on_disk(self) -> int:
        """Bytes of the database and its WAL/shared-memory side files."""
        return sum(
            p.stat().st_size
            for p in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm"))
            if p.exists()
        )

    # -- records, for export / import / merge ------------------------------------------------------

    def records(self) -> Iterator[dict[str, Any]]:
        """Every row as a self-contained JSON-able record (the JSONL export format, minus the header)."""
        for fp_hash, fp_json, created in self._conn.execute(
            "SELECT hash, json, created FROM fingerprints ORDER BY created, hash"
        ).fetchall():
            yield {
                "type": "fingerprint",
                "hash": fp_hash,
                "fingerprint": json.loads(fp_json),
                "created": created,
            }
        for sig, desc in self._conn.execute("SELECT signature, json FROM probes ORDER BY signature"):
            yield {"type": "probe", "signature": sig, "probe": json.loads(desc)}
        for fp_hash, *row in self._conn.execute(
            """SELECT fingerprint, signature, k_in, k_out, median_ms, p10_ms, p90_ms, runs, seconds, created
               FROM entries ORDER BY fingerprint, signature, k_in, k_out"""
        ):
            entry = Entry(*row)
            yield {"type": "entry", "fingerprint": fp_hash, **entry.__dict__}
        for fp_hash, model_hash in self._conn.execute(
            "SELECT fingerprint, model_hash FROM calibrations ORDER BY fingerprint, model_hash"
        ).fetchall():
            record = self.get_calibration(fp_hash, model_hash)
            assert record is not None
            yield {"type": "calibration", "fingerprint": fp_hash, **record.__dict__}

    def apply_records(self, records: Iterable[dict[str, Any]]) -> dict[str, int]:
        """Upsert records (newest entry wins) in one transaction; returns counts by record type."""
        counts = {"fingerprint": 0, "probe": 0, "entry": 0, "calibration": 0}
        with self._write() as conn:
            for rec in records:
                kind = rec.get("type")
                if kind == "fingerprint":
                    fp = rec["fingerprint"]
                    if fingerprint_hash(fp) != rec["hash"]:
                        raise DatabaseError(f"fingerprint record {rec['hash']} does not match its content")
                    conn.execute(
                        "INSERT OR IGNORE INTO fingerprints (hash, json, created) VALUES (?, ?, ?)",
                        (rec["hash"], canonical_json(fp), rec["created"]),
                    )
                elif kind == "probe":
                    conn.execute(
                        "INSERT OR IGNORE INTO probes (signature, json) VALUES (?, ?)",
                        (rec["signature"], canonical_json(rec["probe"])),
                    )
                elif kind == "entry":
                    e = Entry(**{k: rec[k] for k in Entry.__dataclass_fields__})
                    conn.execute(
                        """INSERT INTO entries (fingerprint, signature, k_in, k_out, median_ms, p10_ms,
                                                p90_ms, runs, seconds, created)
                           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                           ON CONFLICT (fingerprint, signature, k_in, k_out) DO UPDATE SET
                               median_ms = excluded.median_ms, p10_ms = excluded.p10_ms,
                               p90_ms = excluded.p90_ms, runs = excluded.runs,
                               seconds = excluded.seconds, created = excluded.created
                           WHERE excluded.created > entries.created""",
                        _entry_row(rec["fingerprint"], e),
                    )
                elif kind == "calibration":
                    fields = CalibrationRecord.__dataclass_fields__
                    self._upsert_calibration(
                        conn, rec["fingerprint"], CalibrationRecord(**{k: rec[k] for k in fields})
                    )
                else:
                    raise DatabaseError(f"unknown record type {kind!r}")
                counts[kind] += 1
        return counts

    def export_jsonl(self, path: str | os.PathLike[str]) -> int:
        """Write every record to a JSONL file (atomically); returns the number of records."""
        return write_jsonl(Path(path), self.schema_version, self.records())

    def import_jsonl(self, path: str | os.PathLike[str]) -> dict[str, int]:
        """Upsert the records of a JSONL export; the newest measurement of a key wins."""
        return self.apply_records(read_jsonl(Path(path)))

    def merge(self, other_path: str | os.PathLike[str]) -> dict[str, int]:
        """Bring in everything from another database file (opened read-only, validated first)."""
        if Path(other_path).resolve() == self.path.resolve():
            raise DatabaseError("cannot merge a database into itself")
        with LatencyDB(other_path, readonly=True) as other:
            return self.apply_records(list(other.records()))


def _entry_row(fp_hash: str, e: Entry) -> tuple:
    """The `entries` table's columns for one entry, in insertion order."""
    return (fp_hash, e.signature, e.k_in, e.k_out, e.median_ms, e.p10_ms, e.p90_ms, e.runs, e.seconds, e.created)
