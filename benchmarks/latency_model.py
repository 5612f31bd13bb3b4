"""Accuracy of the latency model: predicted vs measured latency of random pruning plans.

For each zoo model: profile the layer tables (default grid), calibrate the whole-model part on the
dense model, the smallest plan and 6 plans spread between them (seed 0, as `calibrate` does), then
measure 20 random plans of another kind (seed 1000: every group at a uniformly random grid level,
random channels, ~25% of blocks removed) and compare with
- the bilayer model (MDP): table read at (kept inputs, kept outputs), calibrated;
- a HALP-style model: table read at (dense inputs, kept outputs), calibrated on the same points.
Calibration points are the lowest median over 3 round-robin passes (as in `calibrate`); the
evaluation's "measured" truth is the lowest median over 5 passes, so a burst of load from another
process during one pass does not count as the model's latency.

Run: python benchmarks/latency_model.py [--models resnet50 mobilenet_v2] [--plans 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from latency_db import LatencyDB
from mdp_trt.graph import analyze
from mdp_trt.io import write_text_atomic
from mdp_trt.latency import GridConfig, get_backend, layer_sum, profile_tables
from mdp_trt.latency.calibrate import (
    DEFAULT_POINTS,
    DEFAULT_ROUNDS,
    calibration_plans,
    fit,
    measure_plans,
    random_plan,
)
from mdp_trt.latency.grid import group_levels
from mdp_trt.latency.predict import removed_layers
from mdp_trt.zoo import build


def _row(structure, tables, plan, measured: float) -> dict:
    """Everything about one plan a latency model might use, kept for offline analysis (--out)."""
    return {
        "measured_ms": measured,
        "layer_sum_ms": layer_sum(structure, tables, plan),
        "halp_sum_ms": layer_sum(structure, tables, plan, freeze_inputs=True),
        "active_layers": len(structure.layers) - len(removed_layers(structure, plan)),
        "removed_blocks": len(plan.remove_blocks),
        "plan": plan.to_json(),
    }


def evaluate(name: str, args: argparse.Namespace, db: LatencyDB, raw: dict) -> dict[str, list[float]]:
    model = build(name, input_size=224, batch=1)
    structure = analyze(model)
    backend = get_backend("ort", threads=args.threads)
    grid = GridConfig(levels=args.grid)
    t0 = time.perf_counter()
    result = profile_tables(structure, backend, db, grid=grid, show_progress=True)
    print(
        f"{name}: {result.unique_probes} probes ({result.measured} measured, {result.reused} from the db) "
        f"in {time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    tables = result.tables

    cal_plans = calibration_plans(structure, grid, count=DEFAULT_POINTS, seed=0)
    measured = measure_plans(model, structure, cal_plans, backend, rounds=DEFAULT_ROUNDS)
    points = [_row(structure, tables, plan, ms) for plan, ms in zip(cal_plans, measured, strict=True)]
    raw[name] = {"calibration": points, "evaluation": []}
    bilayer = fit([{k: p[k] for k in ("measured_ms", "layer_sum_ms")} for p in points])
    halp = fit(
        [{"measured_ms": p["measured_ms"], "layer_sum_ms": p["halp_sum_ms"]} for p in points], freeze_inputs=True
    )
    print(
        f"  calibration ({len(points)} points): bilayer {bilayer.scale:.3f} x sum {bilayer.offset_ms:+.2f} ms, "
        f"fit residuals {max(abs(r) for r in bilayer.residuals_pct):.1f}% max; HALP-style "
        f"{halp.scale:.3f} x sum {halp.offset_ms:+.2f} ms",
        flush=True,
    )

    rng = np.random.default_rng(1000)
    levels = group_levels(structure, grid)
    plans = [random_plan(structure, levels, rng) for _ in range(args.plans)]
    measured_all = measure_plans(model, structure, plans, backend, rounds=args.rounds)
    errors: dict[str, list[float]] = {"bilayer": [], "halp": []}
    print(f"  {'plan':>4} {'measured':>9} {'bilayer':>9} {'err%':>6} {'HALP':>9} {'err%':>6}  blocks removed")
    for index, (plan, measured) in enumerate(zip(plans, measured_all, strict=True)):
        raw[name]["evaluation"].append(_row(structure, tables, plan, measured))
        ours = bilayer.apply(layer_sum(structure, tables, plan))
        theirs = halp.apply(layer_sum(structure, tables, plan, freeze_inputs=True))
        errors["bilayer"].append(100 * (ours - measured) / measured)
        errors["halp"].append(100 * (theirs - measured) / measured)
        print(
            f"  {index:>4} {measured:>9.2f} {ours:>9.2f} {errors['bilayer'][-1]:>+6.1f} {theirs:>9.2f} "
            f"{errors['halp'][-1]:>+6.1f}  {len(plan.remove_blocks)}",
            flush=True,
        )
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["resnet50", "mobilenet_v2"])
    parser.add_argument("--plans", type=int, default=20)
    parser.add_argument("--grid", type=int, default=8)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="ORT intra-op threads (default 1: on a shared 2-core machine, 2 threads stall "
        "whenever another process holds a core)",
    )
    parser.add_argument("--db", type=Path, default=None, help="latency database (default: a fresh temp file)")
    parser.add_argument(
        "--rounds", type=int, default=5, help="round-robin passes over the evaluation plans; measured = lowest median"
    )
    parser.add_argument("--out", type=Path, default=None, help="also write every measured point as JSON")
    args = parser.parse_args()
    print("command: python " + " ".join(shlex.quote(a) for a in sys.argv))
    print(f"machine: {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.2f} at start")
    db_path = args.db or Path(tempfile.mkdtemp(prefix="mdp-latency-")) / "latency.sqlite"
    summary = []
    raw: dict = {}
    with LatencyDB(db_path) as db:
        for name in args.models:
            errors = evaluate(name, args, db, raw)
            for model_kind, errs in errors.items():
                abs_errs = np.abs(errs)
                summary.append((name, model_kind, float(np.median(abs_errs)), float(abs_errs.max())))
    print(f"load average {os.getloadavg()[0]:.2f} at end")
    if args.out:
        write_text_atomic(args.out, json.dumps(raw, indent=1))
    print(f"{'model':<14} {'latency model':<14} {'median |err| %':>15} {'max |err| %':>12}")
    for name, kind, med, worst in summary:
        print(f"{name:<14} {kind:<14} {med:>15.2f} {worst:>12.2f}")


if __name__ == "__main__":
    main()
