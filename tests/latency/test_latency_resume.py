"""Kill a profiling process midway; the database stays consistent and a re-run measures only the rest."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import onnx

from latency_db import LatencyDB
from mdp_trt.graph import analyze
from mdp_trt.latency import GridConfig, get_backend, plan_probes, profile_tables
from mdp_trt.latency.measurement import Measurement
from mdp_trt.zoo import build

GRID = GridConfig(levels=16, align=1)


class InstantTwin:
    """Same name and fingerprint as the real ORT backend, but answers at once and counts calls."""

    def __init__(self) -> None:
        self.real = get_backend("ort")
        self.name = self.real.name
        self.calls = 0

    def fingerprint(self, batch: int, precision: str) -> dict[str, Any]:
        return self.real.fingerprint(batch, precision)

    def measure(self, model: onnx.ModelProto, protocol: Any, *, batch: int = 1, precision: str = "fp32"):
        self.calls += 1
        return Measurement(1.0, 1.0, 1.0, 1, 0.0)


def _entries(path: Path) -> int:
    if not path.exists():
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute("SELECT count(*) FROM entries").fetchone()[0]
    except sqlite3.OperationalError:  # schema not created yet
        return 0
    finally:
        conn.close()


def test_killed_profile_resumes_without_duplicates(tmp_path: Path) -> None:
    model = build("toy", input_size=16)
    onnx.save(model, tmp_path / "toy.onnx")
    db_path = tmp_path / "lat.sqlite"
    total = len(plan_probes(analyze(model), GRID).tasks)
    cmd = [sys.executable, "-m", "mdp_trt", "profile", str(tmp_path / "toy.onnx"), "--backend", "ort",
           "--db", str(db_path), "--grid", "16", "--align", "1", "--max-seconds", "0.05"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while _entries(db_path) < 5 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    done = _entries(db_path)
    assert 5 <= done < total, "the profiler should have been killed midway"

    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()

    twin = InstantTwin()
    with LatencyDB(db_path) as db:
        result = profile_tables(analyze(model), twin, db, grid=GRID)
        assert result.measured == total - done
        assert twin.calls == 2 * result.measured  # a second pass, whose measurements agree with the first
        assert result.reused == done
        (stats,) = db.stats()
        assert stats.entries == total
