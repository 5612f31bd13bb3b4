"""Schema, round-trips, upserts, export/import/merge and refusal of files that are not ours."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from latency_db import (
    CalibrationRecord,
    CorruptDatabase,
    DatabaseError,
    Entry,
    ForeignDatabase,
    FormatError,
    LatencyDB,
    NewerSchema,
    default_db_path,
    schema,
)

FP = {"backend": "fake", "device": "cpu", "threads": 2, "batch": 1, "precision": "fp32"}


def _entry(sig: str = "s1", k_in: int = 8, k_out: int = 16, ms: float = 1.0, created: float = 100.0) -> Entry:
    return Entry(sig, k_in, k_out, ms, ms * 0.9, ms * 1.1, 25, 0.5, created)


def test_round_trip_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "lat.sqlite"
    with LatencyDB(path) as db:
        assert db.schema_version == schema.current_version()
        fp = db.register_fingerprint(FP)
        assert db.register_fingerprint(dict(reversed(list(FP.items())))) == fp  # key order irrelevant
        db.put_entries(fp, [_entry("s1", 8, 16), _entry("s1", 16, 16, 2.0), _entry("s2", 8, 8, 3.0)])
        db.put_probes({"s1": {"op": "Conv"}})
        db.put_calibration(fp, CalibrationRecord("m", "affine", {"scale": 1.1, "offset_ms": 0.2}, [0.5], [{"x": 1}]))
    with LatencyDB(path) as db:
        got = db.get_entries(fp, [("s1", 8, 16), ("s2", 8, 8), ("s3", 8, 8)])
        assert set(got) == {("s1", 8, 16), ("s2", 8, 8)}
        assert got[("s2", 8, 8)].median_ms == 3.0
        assert db.fingerprint(fp) == FP
        assert db.probe("s1") == {"op": "Conv"}
        cal = db.get_calibration(fp, "m")
        assert cal is not None and cal.coefficients == {"scale": 1.1, "offset_ms": 0.2}
        assert [s.entries for s in db.stats()] == [3]
        assert db.size_on_disk() > 0
        assert db._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_bulk_get_beyond_one_query_chunk(tmp_path: Path) -> None:
    with LatencyDB(tmp_path / "lat.sqlite") as db:
        fp = db.register_fingerprint(FP)
        entries = [_entry(f"sig{i}", 8, 8, float(i)) for i in range(1200)]
        db.put_entries(fp, entries)
        got = db.get_entries(fp, [e.key for e in entries])
        assert len(got) == 1200 and got[("sig777", 8, 8)].median_ms == 777.0


def test_upsert_keeps_the_newest_measurement(tmp_path: Path) -> None:
    with LatencyDB(tmp_path / "lat.sqlite") as db:
        fp = db.register_fingerprint(FP)
        db.put_entries(fp, [_entry(ms=1.0, created=200.0)])
        db.put_entries(fp, [_entry(ms=5.0, created=100.0)])  # older: ignored
        assert db.get_entries(fp, [("s1", 8, 16)])[("s1", 8, 16)].median_ms == 1.0
        db.put_entries(fp, [_entry(ms=2.0, created=300.0)])
        assert db.get_entries(fp, [("s1", 8, 16)])[("s1", 8, 16)].median_ms == 2.0
        assert len(db.entries(fp)) == 1


def test_export_import_merge(tmp_path: Path) -> None:
    with LatencyDB(tmp_path / "a.sqlite") as a:
        fp = a.register_fingerprint(FP)
        a.put_entries(fp, [_entry("s1"), _entry("s2", ms=2.0)])
        a.put_probes({"s1": {"op": "Conv"}})
        a.put_calibration(fp, CalibrationRecord("m", "affine", {"scale": 1.0, "offset_ms": 0.0}, [], []))
        assert a.export_jsonl(tmp_path / "a.jsonl") == 5
        records = list(a.records())
    with LatencyDB(tmp_path / "b.sqlite") as b:
        counts = b.import_jsonl(tmp_path / "a.jsonl")
        assert counts == {"fingerprint": 1, "probe": 1, "entry": 2, "calibration": 1}
        assert list(b.records()) == records
        b.import_jsonl(tmp_path / "a.jsonl")  # idempotent
        assert len(b.entries(fp)) == 2
    with LatencyDB(tmp_path / "c.sqlite") as c:
        other_fp = c.register_fingerprint({**FP, "threads": 1})
        c.put_entries(other_fp, [_entry("s9")])
        c.merge(tmp_path / "a.sqlite")
        assert {s.hash: s.entries for s in c.stats()} == {other_fp: 1, fp: 2}
        with pytest.raises(DatabaseError):
            c.merge(tmp_path / "c.sqlite")


def test_import_rejects_a_foreign_jsonl(tmp_path: Path) -> None:
    (tmp_path / "x.jsonl").write_text('{"hello": 1}\n')
    with LatencyDB(tmp_path / "a.sqlite") as db, pytest.raises(FormatError):
        db.import_jsonl(tmp_path / "x.jsonl")


def test_random_bytes_are_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "lat.sqlite"
    junk = os.urandom(8192)
    path.write_bytes(junk)
    with pytest.raises(CorruptDatabase, match="left as is"):
        LatencyDB(path)
    assert path.read_bytes() == junk


def test_foreign_sqlite_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (text TEXT)")
    conn.execute("INSERT INTO notes VALUES ('mine')")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(ForeignDatabase):
        LatencyDB(path)
    with pytest.raises(ForeignDatabase):
        LatencyDB(tmp_path / "x.sqlite").merge(path)
    assert path.read_bytes() == before


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "lat.sqlite"
    LatencyDB(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {schema.current_version() + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(NewerSchema, match="upgrade mdp-trt"):
        LatencyDB(path)


def test_older_schema_is_migrated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "lat.sqlite"
    with LatencyDB(path) as db:
        fp = db.register_fingerprint(FP)
        db.put_entries(fp, [_entry()])
    step = ("CREATE TABLE notes (text TEXT)",)
    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, step])
    with LatencyDB(path) as db:
        assert db.schema_version == len(schema.MIGRATIONS)
        assert db._conn.execute("SELECT count(*) FROM notes").fetchone()[0] == 0
        assert len(db.entries(fp)) == 1  # data kept across the upgrade


def test_readonly_never_creates(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError):
        LatencyDB(tmp_path / "missing.sqlite", readonly=True)
    assert not (tmp_path / "missing.sqlite").exists()


def test_default_path_honours_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MDP_TRT_DB", str(tmp_path / "env.sqlite"))
    assert default_db_path() == tmp_path / "env.sqlite"
    monkeypatch.delenv("MDP_TRT_DB")
    assert default_db_path().name == "latency.sqlite"
