"""Several processes writing to one (new) database at once: nothing lost, nothing corrupt."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
from pathlib import Path

from latency_db import Entry, LatencyDB

FP = {"backend": "fake", "threads": 1}
PER_WRITER = 150


def _writer(path: str, worker: int, start: mp.synchronize.Event) -> None:  # type: ignore[name-defined]
    start.wait()
    with LatencyDB(path) as db:
        fp = db.register_fingerprint(FP)
        for i in range(PER_WRITER):
            # overlapping keys across writers exercise the upsert path, distinct ones the inserts
            db.put_entries(fp, [Entry(f"w{worker}", i, i, float(i), 0.0, 0.0, 1, 0.0),
                                Entry("shared", i, i, float(worker), 0.0, 0.0, 1, 0.0)])


def test_two_processes_write_concurrently(tmp_path: Path) -> None:
    path = str(tmp_path / "lat.sqlite")
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_writer, args=(path, w, start)) for w in range(2)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    with LatencyDB(path) as db:
        (stats,) = db.stats()
        assert stats.entries == 3 * PER_WRITER
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
