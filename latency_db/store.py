"""`LatencyDB`: the SQLite store of measured probe latencies, device fingerprints and calibrations.

Several processes may profile into one file at once, so the file runs in WAL mode with a busy timeout
and every write is one short `BEGIN IMMEDIATE` transaction of upserts. An existing file is validated
before anything is written to it: not SQLite, damaged (`PRAGMA quick_check`), not ours, or from a
newer version raises a `DatabaseError` and the file is left untouched.

Read-only unless something must be written: a store is opened for writing only where the file allows
it (`latency_db.connect`), and every write first looks whether it would change anything, so a command
that finds everything it needs (a fully cached build) runs on a file it may not write (chmod 444, a
read-only mount, a shared cache). Where there is something to store and the file cannot take it, the
write raises one `DatabaseError` saying so. Every SQLite failure after opening, a page found damaged
mid-query included, is a `DatabaseError` naming the file, never a bare `sqlite3` exception.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from latency_db import connect, schema
from latency_db.canonical import canonical_json, content_hash
from latency_db.errors import CorruptDatabase, DatabaseError, ForeignDatabase, FormatError, NewerSchema
from latency_db.jsonl import read_jsonl, write_jsonl
from latency_db.paths import default_db_path
from latency_db.records import check_record

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


_F = TypeVar("_F", bound=Callable[..., Any])


def _guarded(method: _F) -> _F:
    """Run a LatencyDB method (or iterate a generator method) with SQLite errors translated."""
    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def generator(self: LatencyDB, *args: Any, **kwargs: Any) -> Iterator[Any]:
            with self._translated():
                yield from method(self, *args, **kwargs)

        return generator  # type: ignore[return-value]

    @functools.wraps(method)
    def call(self: LatencyDB, *args: Any, **kwargs: Any) -> Any:
        with self._translated():
            return method(self, *args, **kwargs)

    return call  # type: ignore[return-value]


class LatencyDB:
    """Open (creating if absent) the latency database at `path` (default: `default_db_path()`).

    `readonly=True` validates and reads without ever writing and never creates the file (`db show`,
    `db export`, the other side of a merge). Otherwise the file is created if absent, and written
    only when a write has something to store (see the module docstring); `writable` tells whether
    it can be.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, readonly: bool = False) -> None:
        self.path = Path(path) if path is not None else default_db_path()
        self.readonly = readonly
        if self.path.is_dir():
            raise DatabaseError(f"{self.path} is a folder, not a latency database file: pass a file to --db")
        self._wal = False
        if self.path.exists():
            self._conn, self._not_writable = connect.open_existing(self.path, readonly=readonly)
        elif readonly:
            raise DatabaseError(f"{self.path}: no such database (profile or build creates it)")
        else:
            self._conn, self._not_writable = connect.create(self.path), None
        try:
            with self._translated():
                self._validate_and_migrate()
                if self._not_writable is None:
                    self._conn.execute("PRAGMA synchronous=NORMAL")
        except BaseException:
            self._conn.close()
            raise

    @property
    def writable(self) -> bool:
        """Whether this store can take a write (False: read-only by request, or the file does not allow it)."""
        return self._not_writable is None

    # -- opening -----------------------------------------------------------------------------------

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except (sqlite3.Error, json.JSONDecodeError) as exc:
            raise connect.translate(exc, self.path) from exc

    def _header(self) -> tuple[int, int, int]:
        """(application_id, user_version, number of schema objects), read in one snapshot: as three
        statements in autocommit they could straddle another process's creation of the file and see its
        tables without its application id, a foreign file."""
        begun = not self._conn.in_transaction
        if begun:
            self._conn.execute("BEGIN")
        try:
            app_id = self._conn.execute("PRAGMA application_id").fetchone()[0]
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            objects = self._conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        finally:
            if begun:
                self._conn.execute("COMMIT")
        return app_id, version, objects

    def _check_header(self, app_id: int, version: int, objects: int) -> bool:
        """True when the file needs migrating; raises when it must not be touched."""
        if app_id == 0 and version == 0 and objects == 0:
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
        app_id, version, objects = self._header()
        needs_migration = self._check_header(app_id, version, objects)
        if objects:
            # Damaged pages are found here, before anything reads or writes around them (0.06 s for
            # 200,000 entries, 36 MB); a damaged record found later is translated all the same.
            report = [row[0] for row in self._conn.execute("PRAGMA quick_check(2)")]
            if report != ["ok"]:
                problems = [line.strip() for text in report for line in text.splitlines()
                            if line.strip() and not line.startswith("***")]
                raise CorruptDatabase(
                    f"{self.path} is damaged ({'; '.join(problems)}); it was left as is: move it away "
                    f"(`sqlite3 {self.path} .recover` saves what is readable) or pass another --db"
                )
        if not needs_migration:
            return
        if not self.writable:
            if not objects:
                raise DatabaseError(f"{self.path} is an empty file, no latency database yet (profile or build "
                                    "fills it)")
            raise DatabaseError(f"{self.path} has an older schema and {self._not_writable}: open it once "
                                "with a mdp-trt that may write it to upgrade it")
        with self._write():
            # Re-read under the write lock: another process may have created or upgraded it meanwhile.
            app_id, version, objects = self._header()
            if self._check_header(app_id, version, objects):
                schema.migrate(self._conn, version if app_id else 0)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction; the lock is taken up front so it never deadlocks on upgrade."""
        if self._not_writable is not None:
            raise DatabaseError(
                f"{self.path} cannot be written ({self._not_writable}) and this command must store into it: "
                f"make it writable, or pass --db a writable copy (mdp-trt db merge {self.path} --db COPY)"
            )
        if not self._wal:  # WAL is set by the first write, so a store that only reads never changes the file
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._wal = True
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            if self._conn.in_transaction:  # SQLite may have rolled back already (a full disk, a damaged page)
                with suppress(sqlite3.Error):
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
    @_guarded
    def schema_version(self) -> int:
        return self._conn.execute("PRAGMA user_version").fetchone()[0]

    # -- fingerprints and probes -------------------------------------------------------------------

    @_guarded
    def register_fingerprint(self, fingerprint: dict[str, Any]) -> str:
        """Store a device fingerprint (idempotent) and return its hash, the key entries are filed under."""
        fp_hash = fingerprint_hash(fingerprint)
        if self._conn.execute("SELECT 1 FROM fingerprints WHERE hash = ?", (fp_hash,)).fetchone() is None:
            with self._write() as conn:
                conn.execute(
                    "INSERT OR IGNORE INTO fingerprints (hash, json, created) VALUES (?, ?, ?)",
                    (fp_hash, canonical_json(fingerprint), time.time()),
                )
        return fp_hash

    @_guarded
    def fingerprint(self, fp_hash: str) -> dict[str, Any]:
        row = self._conn.execute("SELECT json FROM fingerprints WHERE hash = ?", (fp_hash,)).fetchone()
        if row is None:
            raise KeyError(fp_hash)
        return json.loads(row[0])

    @_guarded
    def put_probes(self, descriptions: dict[str, dict[str, Any]]) -> None:
        """Record what each probe signature stands for, so a database explains its own keys."""
        signatures = sorted(descriptions)
        known: set[str] = set()
        for start in range(0, len(signatures), _CHUNK):
            chunk = signatures[start : start + _CHUNK]
            rows = self._conn.execute(
                f"SELECT signature FROM probes WHERE signature IN ({','.join('?' * len(chunk))})", chunk
            )
            known.update(row[0] for row in rows)
        new = [(sig, canonical_json(descriptions[sig])) for sig in signatures if sig not in known]
        if new:
            with self._write() as conn:
                conn.executemany("INSERT OR IGNORE INTO probes (signature, json) VALUES (?, ?)", new)

    @_guarded
    def probe(self, signature: str) -> dict[str, Any] | None:
        row = self._conn.execute("SELECT json FROM probes WHERE signature = ?", (signature,)).fetchone()
        return None if row is None else json.loads(row[0])

    # -- entries -----------------------------------------------------------------------------------

    @_guarded
    def put_entries(self, fp_hash: str, entries: Iterable[Entry]) -> int:
        """Upsert entries in one transaction; a stored entry is replaced only by a newer one."""
        rows = [_entry_row(fp_hash, e) for e in entries]
        if not rows:
            return 0
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

    @_guarded
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

    @_guarded
    def entries(self, fp_hash: str) -> list[Entry]:
        """Every entry of one fingerprint, in key order."""
        rows = self._conn.execute(
            """SELECT signature, k_in, k_out, median_ms, p10_ms, p90_ms, runs, seconds, created
               FROM entries WHERE fingerprint = ? ORDER BY signature, k_in, k_out""",
            (fp_hash,),
        )
        return [Entry(*row) for row in rows]

    # -- calibrations ------------------------------------------------------------------------------

    @_guarded
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

    @_guarded
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

    @_guarded
    def stats(self) -> list[FingerprintStats]:
        rows = self._conn.execute(
            """SELECT f.hash, f.json,
                      (SELECT count(*) FROM entries e WHERE e.fingerprint = f.hash),
                      (SELECT count(*) FROM calibrations c WHERE c.fingerprint = f.hash)
               FROM fingerprints f ORDER BY f.created"""
        )
        return [FingerprintStats(h, json.loads(j), n, c) for h, j, n, c in rows]

    @_guarded
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

    @_guarded
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

    @_guarded
    def apply_records(self, records: Iterable[dict[str, Any]], source: str = "records") -> dict[str, int]:
        """Upsert records (newest entry wins) in one transaction, all or none; returns counts by record type.

        Each record is checked first (`check_record`, and its fingerprint must be known), so a bad one
        stops the import with a FormatError naming `source` and the record's number (from 1), and
        nothing is stored.
        """
        counts = {"fingerprint": 0, "probe": 0, "entry": 0, "calibration": 0}
        known: set[str] = set()
        with self._write() as conn:
            for number, rec in enumerate(records, start=1):
                try:
                    kind = check_record(rec)
                    if kind in ("entry", "calibration"):
                        self._check_known(rec["fingerprint"], known)
                    elif kind == "fingerprint" and fingerprint_hash(rec["fingerprint"]) != rec["hash"]:
                        raise FormatError(f"fingerprint record {rec['hash']} does not match its content")
                except FormatError as exc:
                    raise FormatError(f"{source}: record {number}: {exc}") from None
                if kind == "fingerprint":
                    known.add(rec["hash"])
                    fp = rec["fingerprint"]
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
                counts[kind] += 1
        return counts

    def _check_known(self, fp_hash: str, known: set[str]) -> None:
        """An entry or calibration needs its fingerprint, stored already or earlier in the same records."""
        if fp_hash not in known:
            if self._conn.execute("SELECT 1 FROM fingerprints WHERE hash = ?", (fp_hash,)).fetchone() is None:
                raise FormatError(f"record of unknown fingerprint {fp_hash[:12]} (its fingerprint record must "
                                  "come first)")
            known.add(fp_hash)

    @_guarded
    def export_jsonl(self, path: str | os.PathLike[str]) -> int:
        """Write every record to a JSONL file (atomically); returns the number of records."""
        return write_jsonl(Path(path), self.schema_version, self.records())

    @_guarded
    def import_jsonl(self, path: str | os.PathLike[str]) -> dict[str, int]:
        """Upsert the records of a JSONL export; the newest measurement of a key wins."""
        return self.apply_records(read_jsonl(Path(path)), source=str(path))

    @_guarded
    def merge(self, other_path: str | os.PathLike[str]) -> dict[str, int]:
        """Bring in everything from another database file (opened read-only, validated first)."""
        other = Path(other_path)
        if other.resolve() == self.path.resolve() or (other.exists() and os.path.samefile(other, self.path)):
            raise DatabaseError(f"cannot merge {other} into itself")
        with LatencyDB(other, readonly=True) as source:
            return self.apply_records(list(source.records()), source=str(other))


def _entry_row(fp_hash: str, e: Entry) -> tuple:
    """The `entries` table's columns for one entry, in insertion order."""
    return (fp_hash, e.signature, e.k_in, e.k_out, e.median_ms, e.p10_ms, e.p90_ms, e.runs, e.seconds, e.created)
