"""Issue 5 figures: `build` on zoo models, targets at 90/70/50/30% of dense, milp vs halp vs uniform.

For every (model, target, solver) the full build runs (closed loop included) against one shared,
warm latency database, on ONNX Runtime CPU, batch 1, pinned threads. Printed per case: measured FPS
over target FPS, importance kept, and whether the target was met. Last, the wall time of a warm
`build` of resnet50 (median of repeats). Usage: python benchmarks/build.py [--quick] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from mdp_trt.build import BuildConfig, run_build
from mdp_trt.io import save_model_atomic
from mdp_trt.zoo import build as zoo_build

FRACTIONS = (0.9, 0.7, 0.5, 0.3)
SOLVERS = ("milp", "halp", "uniform")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small inputs and a coarse grid (smoke run)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", default="resnet50,mobilenet_v2")
    parser.add_argument("--repeats", type=int, default=3, help="warm build timings")
    args = parser.parse_args()
    size, grid = (64, 4) if args.quick else (224, 8)
    quiet = Console(file=open("/dev/null", "w"))  # noqa: SIM115 - lives as long as the run
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        db = root / "latency.sqlite"
        for name in args.models.split(","):
            path = root / f"{name}.onnx"
            save_model_atomic(zoo_build(name, input_size=size), path)
            base = BuildConfig(speedup=1.0, db=db, grid=grid, threads=args.threads, make_plots=False)
            start = time.perf_counter()
            dense = run_build(path, root / f"{name}-dense", base, quiet).dense.latency_ms
            print(f"{name}: profiled and calibrated in {time.perf_counter() - start:.1f} s (cold database); "
                  f"dense {dense:.3f} ms", flush=True)
            for fraction in FRACTIONS:
                for solver in SOLVERS:
                    config = BuildConfig(latency_ms=fraction * dense, solver=solver, db=db, grid=grid,
                                         threads=args.threads, make_plots=False)
                    out = root / f"{name}-{fraction}-{solver}"
                    try:
                        report = run_build(path, out, config, quiet)
                        rows.append((name, fraction, solver, report.pruned.fps / report.target["fps"],
                                     report.importance_kept, report.met, len(report.rounds)))
                    except Exception as exc:  # a solver that cannot reach the target is a result too
                        rows.append((name, fraction, solver, float("nan"), float("nan"), False, 0))
                        print(f"  {name} {fraction:.0%} {solver}: {type(exc).__name__}: {exc}", file=sys.stderr)
                    print(f"  {name} target {fraction:.0%} {solver:8s} fps/target {rows[-1][3]:.3f} "
                          f"importance {rows[-1][4]:.4f} met {rows[-1][5]}", flush=True)
        warm = []
        if "resnet50" in args.models:
            path = root / "resnet50.onnx"
            for repeat in range(args.repeats):
                config = BuildConfig(latency_ms=0.5 * dense_of(root, "resnet50"), db=db, grid=grid,
                                     threads=args.threads)
                start = time.perf_counter()
                run_build(path, root / f"warm-{repeat}", config, quiet)
                warm.append(time.perf_counter() - start)
    print_table(rows, warm, args)


def dense_of(root: Path, name: str) -> float:
    return json.loads((root / f"{name}-dense" / "report.json").read_text())["dense"]["latency_ms"]


def print_table(rows, warm, args) -> None:
    print()
    print("command: python benchmarks/build.py " + " ".join(sys.argv[1:]))
    print("ONNX Runtime CPU, batch 1, threads", args.threads, "(measured FPS / target FPS; >= 1 means met)")
    print(f"{'model':14s} {'target':>7s} " + " ".join(f"{s + ' fps/tgt':>16s} {s + ' imp':>12s}" for s in SOLVERS))
    for name in dict.fromkeys(r[0] for r in rows):
        for fraction in FRACTIONS:
            cells = {r[2]: r for r in rows if r[0] == name and r[1] == fraction}
            line = f"{name:14s} {fraction:>6.0%} "
            for solver in SOLVERS:
                row = cells[solver]
                line += f" {row[3]:>16.3f} {row[4]:>12.4f}"
            print(line)
    milp = [r for r in rows if r[2] == "milp"]
    met = sum(r[5] for r in milp)
    tight = sum(1 for r in milp if r[5] and r[3] <= 1.05)
    print(f"milp: target met in {met}/{len(milp)} cases; within 5% above target in {tight}/{len(milp)}")
    better = sum(1 for r in milp for o in rows if o[0] == r[0] and o[1] == r[1] and o[2] != "milp"
                 and r[4] >= o[4] - 1e-9)
    print(f"milp keeps at least as much importance as the other solver in {better}/{2 * len(milp)} comparisons")
    if warm:
        print(f"warm build of resnet50 (milp, 50% target, plots on): median {statistics.median(warm):.1f} s "
              f"over {len(warm)} runs")


if __name__ == "__main__":
    main()
