"""The latency database under bad files: read-only, damaged, foreign, in an unwritable folder, bad exports.

Each case is one `DatabaseError` (one line naming the file, exit 2 from the CLI), and a file that could
not be opened, or that only had to be read, is left byte for byte as it was, with no side file added.
Read-only files are made with chmod and, since root writes through chmod, also reported unwritable to
`os.access` (which is what latency_db asks), so that the same tests hold for root and for a user.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import onnx
import pytest

from latency_db import CalibrationRecord, CorruptDatabase, DatabaseError, Entry, ForeignDatabase, FormatError, LatencyDB
from mdp_trt.cli import main
from mdp_trt.graph import analyze, load_model
from mdp_trt.graph.input_shapes import with_input_shapes
from mdp_trt.latency import GridConfig, MeasureProtocol, calibrate, get_backend, model_opset, profile_tables
from mdp_trt.latency.backends.base import channel_multiple
from mdp_trt.latency.protocol import InterleavedProtocol
from mdp_trt.zoo import build

FP = {"backend": "fake", "device": "cpu", "threads": 2, "batch": 1, "precision": "fp32"}
HEADER = '{"format":"latency_db.jsonl","schema_version":1,"type":"header"}\n'


def entry(sig: str = "s1", ms: float = 1.0) -> Entry:
    return Entry(sig, 8, 16, ms, ms * 0.9, ms * 1.1, 25, 0.5, 100.0)


def make_db(path: Path) -> str:
    with LatencyDB(path) as db:
        fp = db.register_fingerprint(FP)
        db.put_probes({"s1": {"op": "Conv"}})
        db.put_entries(fp, [entry()])
        db.put_calibration(fp, CalibrationRecord("m", "affine", {"scale": 1.0}, [0.1], [{"x": 1}]))
    return fp


def state(folder: Path) -> dict[str, bytes]:
    """Every file of a folder and its bytes: equal states, nothing written and nothing added."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def damage(path: Path) -> None:
    """Overwrite every page after the first (the header page) with noise, as a bad disk would."""
    data = bytearray(path.read_bytes())
    data[4096:] = bytes((b * 7 + 13) & 0xFF for b in data[4096:])
    path.write_bytes(bytes(data))


def one_line(err: str, *needles: str) -> None:
    """stderr ends with one `error:` line holding the needles (build's stage lines may come before it)."""
    lines = err.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert errors == lines[-1:] and "Traceback" not in err, err
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])


@pytest.fixture()
def deny_writes(monkeypatch: pytest.MonkeyPatch):
    """`deny_writes(path, ...)`: chmod the paths read-only, and have os.access agree even for root."""
    denied: list[Path] = []
    real_access = os.access

    def access(path, mode, *args, **kwargs) -> bool:
        if mode & os.W_OK and Path(path).resolve() in denied:
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)

    def deny(*paths: Path) -> None:
        for path in paths:
            path.chmod(0o555 if path.is_dir() else 0o444)
            denied.append(path.resolve())

    yield deny
    for path in denied:
        path.chmod(0o755 if path.is_dir() else 0o644)


@pytest.fixture()
def toy_path(tmp_path: Path) -> Path:
    path = tmp_path / "toy.onnx"
    onnx.save(build("toy", input_size=16), path)
    return path


# -- the store ---------------------------------------------------------------------------------------


def test_a_read_only_file_serves_every_read_and_refuses_a_real_write(tmp_path: Path, deny_writes) -> None:
    path = tmp_path / "lat.sqlite"
    fp = make_db(path)
    before = state(tmp_path)
    deny_writes(path)
    with LatencyDB(path) as db:
        assert not db.writable
        assert db.register_fingerprint(FP) == fp, "an existing fingerprint needs no write"
        db.put_probes({"s1": {"op": "Conv"}})
        assert db.put_entries(fp, []) == 0
        assert set(db.get_entries(fp, [("s1", 8, 16)])) == {("s1", 8, 16)}
        assert db.get_calibration(fp, "m") is not None and len(list(db.records())) == 4
        with pytest.raises(DatabaseError, match=r"cannot be written \(the file is not writable\) and this command "
                                                r"must store into it: .*db merge"):
            db.put_entries(fp, [entry("s2")])
        with pytest.raises(DatabaseError, match="cannot be written"):
            db.register_fingerprint({**FP, "batch": 2})
    with LatencyDB(path, readonly=True) as db:
        assert [s.entries for s in db.stats()] == [1]
    assert state(tmp_path) == before, "not a byte written, no -wal or -shm left"


def test_a_read_only_folder_serves_a_wal_file_that_has_no_shm(tmp_path: Path, deny_writes) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    fp = make_db(folder / "lat.sqlite")
    before = state(folder)
    deny_writes(folder)
    with LatencyDB(folder / "lat.sqlite") as db:
        assert db.get_entries(fp, [("s1", 8, 16)])
        with pytest.raises(DatabaseError, match=r"its folder .* is not writable"):
            db.put_entries(fp, [entry("s2")])
    assert state(folder) == before


def test_reading_a_writable_file_leaves_no_side_files(tmp_path: Path) -> None:
    path = tmp_path / "lat.sqlite"
    make_db(path)
    before = state(tmp_path)
    with LatencyDB(path, readonly=True) as db:
        assert db.probe_count() == 1
        with pytest.raises(DatabaseError, match="open read-only"):
            db.put_entries(db.stats()[0].hash, [entry("s2")])
    assert state(tmp_path) == before


def test_damaged_pages_are_refused_naming_the_file_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "lat.sqlite"
    make_db(path)
    damage(path)
    before = state(tmp_path)
    for readonly in (False, True):
        with pytest.raises(CorruptDatabase, match=f"{path} is damaged .*left as is") as caught:
            LatencyDB(path, readonly=readonly)
        assert "\n" not in str(caught.value)
    assert state(tmp_path) == before


def test_a_damaged_record_met_later_is_the_same_error(tmp_path: Path) -> None:
    path = tmp_path / "lat.sqlite"
    make_db(path)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE fingerprints SET json = '{not json'")
    conn.commit()
    conn.close()
    with LatencyDB(path) as db:
        with pytest.raises(CorruptDatabase, match="is damaged"):
            db.stats()
        with pytest.raises(CorruptDatabase, match="is damaged"):
            list(db.records())


@pytest.mark.parametrize(("name", "message"), [
    ("SQLITE_CORRUPT", "is damaged"), ("SQLITE_FULL", "the disk is full"), ("SQLITE_BUSY", "stayed locked"),
    ("SQLITE_READONLY", "cannot be written"), ("SQLITE_IOERR_READ", "disk I/O error"),
])
def test_sqlite_failures_mid_query_are_one_line_naming_the_file(tmp_path: Path, name: str, message: str) -> None:
    path = tmp_path / "lat.sqlite"
    make_db(path)
    error = sqlite3.OperationalError("disk I/O error" if "IOERR" in name else "failed")
    error.sqlite_errorname = name

    class Failing:
        def execute(self, *args):
            raise error

        def close(self) -> None:
            pass

    with LatencyDB(path) as db:
        db._conn, real = Failing(), db._conn
        with pytest.raises(DatabaseError, match=message) as caught:
            db.get_entries("fp", [("s1", 8, 16)])
        db._conn = real
    assert str(path) in str(caught.value) and not isinstance(caught.value, sqlite3.Error)


def test_a_new_database_is_not_created_where_it_cannot_be(tmp_path: Path, deny_writes) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    deny_writes(folder)
    with pytest.raises(DatabaseError, match=f"cannot create the latency database .*: the folder {folder} is not"):
        LatencyDB(folder / "lat.sqlite")
    assert list(folder.iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatabaseError, match="cannot make the folder"):
        LatencyDB(tmp_path / "file" / "lat.sqlite")
    with pytest.raises(DatabaseError, match="is a folder, not a latency database file"):
        LatencyDB(tmp_path)


def test_an_empty_sqlite_file_of_another_program_is_not_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 7")
    conn.close()
    before = state(tmp_path)
    with pytest.raises(ForeignDatabase):
        LatencyDB(path)
    assert state(tmp_path) == before


BAD_EXPORTS = {
    "random bytes": os.urandom(3000),
    "latin-1 text": "caf\xe9\n".encode("latin-1"),
    "empty": b"",
    "no header": b'{"type": "probe", "signature": "s", "probe": {}}\n',
    "a list": (HEADER + "[1, 2]\n").encode(),
    "unknown type": (HEADER + '{"type": "bogus"}\n').encode(),
    "missing field": (HEADER + '{"type": "probe", "signature": "s"}\n').encode(),
    "NaN latency": (HEADER + json.dumps({"type": "entry", "fingerprint": "f", "signature": "s", "k_in": 8,
                                         "k_out": 8, "median_ms": float("nan"), "p10_ms": 1, "p90_ms": 1,
                                         "runs": 1, "seconds": 1, "created": 1}) + "\n").encode(),
    "text where a number goes": (HEADER + '{"type": "fingerprint", "hash": "h", "fingerprint": {}, '
                                 '"created": "yesterday"}\n').encode(),
    "boolean count": (HEADER + '{"type": "entry", "fingerprint": "f", "signature": "s", "k_in": true, "k_out": 8, '
                      '"median_ms": 1, "p10_ms": 1, "p90_ms": 1, "runs": 1, "seconds": 1, "created": 1}\n').encode(),
    "5000 digits": (HEADER + '{"type": "probe", "signature": "s", "probe": {"a": ' + "9" * 5000 + "}}\n").encode(),
    "deep nesting": (HEADER + '{"type": "probe", "signature": "s", "probe": ' + "[" * 100_000 + "}\n").encode(),
    "unknown fingerprint": (HEADER + '{"type": "entry", "fingerprint": "f", "signature": "s", "k_in": 8, '
                            '"k_out": 8, "median_ms": 1, "p10_ms": 1, "p90_ms": 1, "runs": 1, "seconds": 1, '
                            '"created": 1}\n').encode(),
}


@pytest.mark.parametrize("case", sorted(BAD_EXPORTS))
def test_a_bad_export_is_refused_whole(tmp_path: Path, case: str) -> None:
    path = tmp_path / "lat.sqlite"
    make_db(path)
    bad = tmp_path / "bad.jsonl"
    valid_first = HEADER + json.dumps({"type": "probe", "signature": "new", "probe": {}}) + "\n"
    bad.write_bytes(BAD_EXPORTS[case] if case in ("random bytes", "latin-1 text", "empty", "no header")
                    else valid_first.encode() + BAD_EXPORTS[case][len(HEADER):])
    with LatencyDB(path) as db:
        before = list(db.records())
        with pytest.raises(FormatError) as caught:
            db.import_jsonl(bad)
        assert list(db.records()) == before, "all records or none"
    assert str(bad) in str(caught.value) and "\n" not in str(caught.value)


# -- the commands ------------------------------------------------------------------------------------


def test_read_only_commands_and_cached_work_run_on_a_read_only_database(
    tmp_path: Path, toy_path: Path, deny_writes, capsys
) -> None:
    db = tmp_path / "lat.sqlite"
    profile = ["profile", str(toy_path), "--backend", "analytic", "--db", str(db)]
    assert main(profile) == 0
    folder = tmp_path / "files"
    folder.mkdir()
    shutil.move(db, folder / db.name)
    db = folder / db.name
    profile[-1] = str(db)
    before = state(folder)
    deny_writes(db, folder)
    for command in (["db", "show", "--db", str(db)], ["db", "show", "--db", str(db), "--json"],
                    ["db", "export", str(tmp_path / "out.jsonl"), "--db", str(db)], [*profile, "--dry-run"], profile):
        assert main(command) == 0, command
    assert "measured 0, reused 9" in capsys.readouterr().out
    assert main([*profile, "--grid", "3", "--align", "2"]) == 2  # new probes to store
    one_line(capsys.readouterr().err, str(db), "cannot be written")
    assert state(folder) == before


def seed_cache(model_path: Path, db: Path, levels: int) -> None:
    """What a first `build --threads 1 --grid LEVELS` stores (tables and calibration, at the backend's default
    alignment), measured quickly through the same stages: a calibration at build's own protocol takes seconds
    even for the toy."""
    model = with_input_shapes(load_model(model_path), {}, 1)
    structure = analyze(model)
    backend = get_backend("ort", threads=1)
    grid = GridConfig(levels=levels, align=channel_multiple(backend))
    quick = MeasureProtocol(warmup_runs=1, min_runs=3, max_runs=3, max_seconds=0.01)
    with LatencyDB(db) as store:
        tables = profile_tables(structure, backend, store, grid=grid, protocol=quick, opset=model_opset(model)).tables
        calibrate(model, structure, tables, backend, store, grid=grid,
                  protocol=InterleavedProtocol(warmup_runs=1, warmup_seconds=0.0, min_pairs=3, max_pairs=3))


def test_a_fully_cached_build_runs_on_a_read_only_database(tmp_path: Path, toy_path: Path, deny_writes, capsys) -> None:
    db = tmp_path / "lat.sqlite"
    seed_cache(toy_path, db, levels=2)
    before = db.read_bytes()
    deny_writes(db)
    args = ["build", str(toy_path), "--fps", "0.001", "--grid", "2", "--threads", "1", "--no-plots", "--db", str(db)]
    code, printed = main([*args, "-o", str(tmp_path / "out")]), capsys.readouterr()
    assert code == 0 and "0 probes measured" in printed.err + printed.out, printed.err
    assert db.read_bytes() == before and (tmp_path / "out" / "report.json").is_file()


def test_a_damaged_database_is_one_line_for_every_command(tmp_path: Path, toy_path: Path, capsys) -> None:
    db = tmp_path / "bad.sqlite"
    make_db(db)
    damage(db)
    commands = [
        ["db", "show", "--db", str(db)],
        ["db", "export", str(tmp_path / "x.jsonl"), "--db", str(db)],
        ["profile", str(toy_path), "--backend", "analytic", "--db", str(db)],
        ["profile", str(toy_path), "--backend", "analytic", "--db", str(db), "--dry-run"],
        ["db", "merge", str(db), "--db", str(tmp_path / "new.sqlite")],
        ["db", "import", str(tmp_path / "none.jsonl"), "--db", str(db)],
        ["build", str(toy_path), "--fps", "0.001", "--grid", "2", "--no-plots", "--db", str(db), "-o",
         str(tmp_path / "out")],
    ]
    (tmp_path / "none.jsonl").write_text(HEADER)
    before = state(tmp_path)
    for command in commands:
        assert main(command) == 2, command
        one_line(capsys.readouterr().err, str(db), "is damaged")
    assert state(tmp_path) == before, "nothing written: no export, no new database, no OUT, no side file"


def test_profile_into_an_unwritable_folder_is_one_line(tmp_path: Path, toy_path: Path, deny_writes, capsys) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    deny_writes(folder)
    assert main(["profile", str(toy_path), "--backend", "analytic", "--db", str(folder / "lat.sqlite")]) == 2
    one_line(capsys.readouterr().err, str(folder / "lat.sqlite"), "is not writable")
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("content", [os.urandom(4096), b"\xff\xfe\x00garbage\n", HEADER.encode() + b"{oops\n"])
def test_db_import_of_a_bad_file_is_one_line_and_creates_nothing(tmp_path: Path, content: bytes, capsys) -> None:
    (tmp_path / "bad.jsonl").write_bytes(content)
    assert main(["db", "import", str(tmp_path / "bad.jsonl"), "--db", str(tmp_path / "lat.sqlite")]) == 2
    one_line(capsys.readouterr().err, "bad.jsonl", "nothing was imported")
    assert not (tmp_path / "lat.sqlite").exists()


def test_read_only_commands_never_create_a_database(tmp_path: Path, toy_path: Path, capsys) -> None:
    db = tmp_path / "missing.sqlite"
    assert main(["db", "show", "--db", str(db)]) == 2
    one_line(capsys.readouterr().err, str(db), "no such database")
    assert main(["profile", str(toy_path), "--backend", "analytic", "--db", str(db), "--dry-run"]) == 0
    assert "0 already in the database, 9 to measure" in capsys.readouterr().out
    assert not db.exists()
