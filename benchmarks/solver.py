"""Solver benchmark: milp, halp, uniform and minlp (SCIP) side by side on real and generated problems.

    python benchmarks/solver.py [--quick] [--cases all|real|synthetic] [--repeats N] [--minlp-time-limit S]
    python benchmarks/solver.py --time-limit-check [--limits 0.5,1,2,5] [--solvers milp,minlp,halp]

Real instances: the shared NVIDIA ResNet runs (shared/bench/mdp-instances, beside the repository),
each at its own budget. Generated: ResNet-50, ResNet-101 and MobileNetV2 shapes on 16- and 32-level
grids (mdp_trt.solve.synthetic) at 90%..20% of the dense latency. Times are wall seconds of the whole
`solve()` call (presolve, model build and solver), median over repeats; minlp runs once per case.
Every figure comes from `evaluate` via the returned Solution; nothing here is hard-coded.

`--time-limit-check` instead times `solve(..., time_limit=T)` (wall seconds of the call, which covers
presolve, model building and the solver) against T on problems whose exact solve takes far longer
than T: the noisy 2x300-level pair (mdp_trt.solve.synthetic.noisy_pair, a 300x300 table, 90k
product variables), ResNet-101 on a 32-level grid, and the real rn101-oneshot-90 at its budget; the
target is wall <= 1.2 T on every run. It also times the `mdp-trt solve` process on the 2x300 problem,
whose start-up (imports, reading the file) comes on top of T.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mdp_trt.errors import BudgetError
from mdp_trt.solve import Problem, evaluate, solve
from mdp_trt.solve.synthetic import mobilenet_v2, noisy_pair, resnet

INSTANCES = Path(__file__).resolve().parents[1].parent / "shared" / "bench" / "mdp-instances"
FRACTIONS = (0.9, 0.7, 0.5, 0.35, 0.2)
QUICK_FRACTIONS = (0.9, 0.5, 0.2)
SOLVERS = ("milp", "halp", "uniform", "minlp")


@dataclass
class Row:
    instance: str
    budget: float
    solver: str
    status: str
    objective: float | None
    gap: float | None
    seconds: float
    latency: float | None


def _cases(quick: bool, which: str) -> list[tuple[str, Callable[[], Problem], float | None]]:
    """(name, problem factory, budget fraction of dense or None for the file's budget)."""
    cases: list[tuple[str, Callable[[], Problem], float | None]] = []
    if which in ("all", "real"):
        for path in sorted(INSTANCES.glob("*.json")):
            cases.append((path.stem, lambda p=path: Problem.load(p), None))
    if which == "real":
        return cases
    grids = (16,) if quick else (16, 32)
    shapes = {
        "syn-rn50": lambda levels: resnet(50, levels),
        "syn-rn101": lambda levels: resnet(101, levels),
        "syn-mbv2": lambda levels: mobilenet_v2(levels),
    }
    for levels in grids:
        for name, make in shapes.items():
            for fraction in QUICK_FRACTIONS if quick else FRACTIONS:
                cases.append((f"{name}-L{levels}@{fraction:.0%}", lambda m=make, n=levels: m(n), fraction))
    return cases


def _dense(problem: Problem) -> float:
    return evaluate(problem, problem.dense_levels(), [b.id for b in problem.blocks]).latency


def _measure(problem: Problem, budget: float, solver: str, repeats: int, time_limit: float | None) -> Row:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        try:
            result = solve(problem, solver, budget=budget, time_limit=time_limit)  # type: ignore[arg-type]
        except BudgetError:
            return Row("", budget, solver, "budget-error", None, None, time.perf_counter() - start, None)
        times.append(time.perf_counter() - start)
    assert result is not None
    return Row(
        "", budget, solver, result.status, result.objective, result.gap, statistics.median(times), result.latency
    )


def _fmt(value: float | None, spec: str) -> str:
    """`value` formatted, or a dash of the same width."""
    width = int(spec.split(".")[0])
    return f"{'-':>{width}}" if value is None else format(value, spec)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="16-level grids, 3 budgets, 1 repeat, minlp 20 s")
    parser.add_argument("--repeats", type=int, default=None, help="repeats for milp/halp/uniform (default 3)")
    parser.add_argument("--minlp-time-limit", type=float, default=None, help="seconds (default 60, quick 20)")
    parser.add_argument("--milp-time-limit", type=float, default=300.0, help="seconds (default 300)")
    parser.add_argument("--cases", choices=("all", "real", "synthetic"), default="all", help="which problems")
    parser.add_argument("--match", default="", help="only cases whose name contains this")
    parser.add_argument("--solvers", default=None, help="comma-separated subset of " + ",".join(SOLVERS)
                        + " (default: all; milp,minlp,halp with --time-limit-check)")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw rows here")
    parser.add_argument("--time-limit-check", action="store_true", help="time solve() against --limits instead")
    parser.add_argument("--limits", default="0.5,1,2,5", help="seconds, for --time-limit-check")
    args = parser.parse_args()
    if args.time_limit_check:
        return _time_limit_check([float(t) for t in args.limits.split(",")],
                                 (args.solvers or "milp,minlp,halp").split(","))
    solvers = (args.solvers or ",".join(SOLVERS)).split(",")
    repeats = args.repeats or (1 if args.quick else 3)
    minlp_limit = args.minlp_time_limit or (20.0 if args.quick else 60.0)

    print("command: python " + " ".join(sys.argv))
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start")
    print(f"repeats: {repeats} (minlp once, {minlp_limit:g} s limit); milp limit {args.milp_time_limit:g} s\n")
    header = (
        f"{'instance':26} {'budget':>12} {'solver':8} {'status':12} {'objective':>16} {'gap':>9} "
        f"{'seconds':>8} {'vs milp':>8}"
    )
    print(header)
    print("-" * len(header))
    rows: list[Row] = []
    for name, make, fraction in [c for c in _cases(args.quick, args.cases) if args.match in c[0]]:
        problem = make()
        budget = problem.budget if fraction is None else fraction * _dense(problem)
        assert budget is not None
        milp_objective = None
        for solver in [s for s in SOLVERS if s in solvers]:
            limit = minlp_limit if solver == "minlp" else args.milp_time_limit if solver == "milp" else None
            row = _measure(problem, budget, solver, 1 if solver == "minlp" else repeats, limit)
            row.instance = name
            rows.append(row)
            if solver == "milp":
                milp_objective = row.objective
            ratio = None
            if row.status != "infeasible" and row.objective is not None and milp_objective:
                ratio = row.objective / milp_objective
            print(
                f"{name:26} {budget:12.6g} {solver:8} {row.status:12} {_fmt(row.objective, '16.8g')} "
                f"{_fmt(row.gap, '9.2e')} {row.seconds:8.3f} {_fmt(ratio, '8.5f')}",
                flush=True,
            )
    _targets(rows)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return 0


def _time_limit_check(limits: list[float], solvers: list[str]) -> int:
    """Wall seconds of solve() with each time limit, against 1.2 x the limit."""
    print("command: python " + " ".join(sys.argv))
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start\n")
    cases: list[tuple[str, Problem, float]] = []
    pair = noisy_pair(300)
    cases.append(("noisy-pair-2x300@40%", pair, 0.4 * _dense(pair)))
    rn101 = resnet(101, 32)
    cases.append(("syn-rn101-L32@35%", rn101, 0.35 * _dense(rn101)))
    real = INSTANCES / "rn101-oneshot-90.json"
    if real.exists():
        problem = Problem.load(real)
        assert problem.budget is not None
        cases.append(("rn101-oneshot-90", problem, problem.budget))
    header = (f"{'instance':22} {'solver':6} {'limit':>6} {'wall s':>8} {'wall/limit':>10} {'status':10} "
              f"{'objective':>14}")
    print(header)
    print("-" * len(header))
    worst = 0.0
    for name, problem, budget in cases:
        for solver in solvers:
            for limit in limits:
                start = time.perf_counter()
                try:
                    result = solve(problem, solver, budget=budget, time_limit=limit)  # type: ignore[arg-type]
                    status, objective = result.status, result.objective
                except BudgetError:
                    status, objective = "budget-error", None
                wall = time.perf_counter() - start
                worst = max(worst, wall / limit)
                print(f"{name:22} {solver:6} {limit:6g} {wall:8.3f} {wall / limit:10.3f} {status:10} "
                      f"{_fmt(objective, '14.8g')}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "pair.json"
        pair.with_budget(0.4 * _dense(pair)).save(path)
        command = [sys.executable, "-m", "mdp_trt", "solve", str(path)]
        start = time.perf_counter()
        subprocess.run([*command, "--help"], capture_output=True, check=True)
        startup = time.perf_counter() - start
        for limit in limits:
            start = time.perf_counter()
            done = subprocess.run([*command, "--time-limit", str(limit)], capture_output=True, text=True)
            wall = time.perf_counter() - start
            print(f"process: mdp-trt solve 2x300 --time-limit {limit:g}: {wall:.3f} s wall, exit {done.returncode} "
                  f"(`--help` alone {startup:.3f} s)")
    print(f"\ntarget: solve() wall <= 1.2 x time limit on every run: {'met' if worst <= 1.2 else 'NOT met'} "
          f"(worst {worst:.3f} x)")
    return 0


def _targets(rows: list[Row]) -> None:
    """The issue's targets, checked on the rows just measured."""
    milp = {r.instance: r for r in rows if r.solver == "milp"}
    rn50 = [r for r in milp.values() if r.instance.startswith("rn50")]
    rn101 = [r for r in milp.values() if r.instance.startswith("rn101")]
    print()
    if rn50:
        ok = all(r.status == "optimal" and r.seconds < 1.0 for r in rn50)
        print(
            f"target: every real ResNet-50 instance proven optimal < 1 s: {'met' if ok else 'NOT met'} "
            f"(slowest {max(r.seconds for r in rn50):.3f} s)"
        )
    if rn101:
        ok = all(r.status == "optimal" and r.seconds < 10.0 for r in rn101)
        print(
            f"target: ResNet-101 one-shot proven optimal < 10 s: {'met' if ok else 'NOT met'} "
            f"(slowest {max(r.seconds for r in rn101):.3f} s)"
        )
    beaten = [
        r.instance
        for r in rows
        if r.solver != "milp"
        and r.status != "infeasible"
        and r.objective is not None
        and milp[r.instance].objective is not None
        and r.objective > milp[r.instance].objective * (1 + 1e-9)
    ]
    print(f"target: milp objective >= every other solver's feasible plan: {beaten or 'met'}")
    unproven = [r.instance for r in milp.values() if r.status != "optimal"]
    print(f"milp not proven optimal within its limit on: {unproven or 'none'}")


if __name__ == "__main__":
    sys.exit(main())
