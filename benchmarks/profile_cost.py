"""Profiling cost of zoo resnet50 at batch 1 on ONNX Runtime CPU: unique probes, dedup ratio, wall time.

Each grid is profiled into a fresh database, so every unique probe is measured from scratch (in passes, until
two measurements agree: see `latency.profile.measure_into`).
Run: python benchmarks/profile_cost.py [--grids 8 4] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

from latency_db import LatencyDB
from mdp_trt.graph import analyze
from mdp_trt.latency import GridConfig, get_backend, plan_probes, profile_tables
from mdp_trt.latency.profile import estimate_seconds
from mdp_trt.latency.protocol import PROBE_PROTOCOL
from mdp_trt.zoo import build


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--grids", type=int, nargs="+", default=[8, 4], help="levels per group (8 = default)")
    parser.add_argument("--threads", type=int, default=None, help="ORT intra-op threads (default: all cores)")
    args = parser.parse_args()
    print("command: python " + " ".join(shlex.quote(a) for a in sys.argv))
    model = build(args.model, input_size=224, batch=1)
    structure = analyze(model)
    backend = get_backend("ort", threads=args.threads)
    print(f"{args.model}: {len(structure.layers)} layers; backend {backend.name}, "
          f"{backend.fingerprint(1, 'fp32')['threads']} threads; {os.cpu_count()} cpus")
    rows = []
    for levels in args.grids:
        grid = GridConfig(levels=levels)
        plan = plan_probes(structure, grid)
        guess = estimate_seconds(list(plan.tasks.values()), PROBE_PROTOCOL)
        load = os.getloadavg()[0]
        with LatencyDB(Path(tempfile.mkdtemp(prefix="mdp-cost-")) / "latency.sqlite") as db:
            t0 = time.perf_counter()
            result = profile_tables(structure, backend, db, grid=grid, show_progress=True)
            wall = time.perf_counter() - t0
        rows.append((levels, plan.cells, result.unique_probes, plan.dedup_ratio, wall, guess, load))
    print(f"{'grid G':>6} {'cells':>6} {'unique probes':>14} {'dedup':>6} {'wall s':>7} {'dry-run est s':>14} "
          f"{'load avg':>8}")
    for levels, cells, unique, ratio, wall, guess, load in rows:
        print(f"{levels:>6} {cells:>6} {unique:>14} {ratio:>6.2f} {wall:>7.0f} {guess:>14.0f} {load:>8.2f}")


if __name__ == "__main__":
    main()
