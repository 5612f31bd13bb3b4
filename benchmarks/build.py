"""`build` end to end: milp vs halp vs uniform at fractions of the dense latency, each case repeated.

For every (model, target, solver) the full build runs (closed loop and final verification included)
against one shared, warm latency database, on ONNX Runtime CPU at the given batch and threads, `--repeats`
times, so that run-to-run spread is visible. Every figure printed comes from the build's final
verification (`report.json` `measured`): the chosen plan timed against dense interleaved, its ratio to
dense with a 95% interval, and the decision taken on that interval (met, not met, undecided). A target
is "fraction of dense": `--speedup 1/fraction` by default (decided on the ratio alone, which the host's
drift does not move), or with `--absolute` an `--latency-ms` of fraction x the dense latency benched
first (decided on the latency interval, which includes the dense model's own spread).

Models are zoo names (`--models`) and ONNX files (`--model-file`, such as the exports of
`benchmarks/export_families.py`). Last, the wall time of a warm build of the first model.

Usage: python benchmarks/build.py [--models resnet50,mobilenet_v2] [--model-file F.onnx ...]
       [--fractions 0.9 0.7 0.5 0.3] [--repeats 3] [--threads 1] [--batch 1] [--grid 8] [--absolute]
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from mdp_trt.build import BuildConfig, run_build
from mdp_trt.errors import BudgetError
from mdp_trt.graph import load_model
from mdp_trt.io import save_model_atomic
from mdp_trt.report import Report
from mdp_trt.zoo import build as zoo_build

SOLVERS = ("milp", "halp", "uniform")


@dataclass(frozen=True)
class Case:
    """One build's outcome, from its final verification; `error` when it wrote no report."""

    model: str
    fraction: float
    solver: str
    repeat: int
    ratio: float = float("nan")
    ratio_ci: tuple[float, float] = (float("nan"), float("nan"))
    target_ratio: float = float("nan")
    decision: str = "error"
    importance: float = float("nan")
    rounds: int = 0
    retimed: int = 0  # rounds whose plan was timed in a second window (`closed_loop._retimed`)
    seconds: float = 0.0
    error: str = ""

    @classmethod
    def of(cls, report: Report, model: str, fraction: float, solver: str, repeat: int, seconds: float) -> Case:
        m = report.measured
        return cls(model, fraction, solver, repeat, m["ratio"], tuple(m["ratio_ci"]), m["target_ratio"],
                   m["decision"], report.importance_kept, len(report.rounds),
                   sum(bool(r.get("retimed")) for r in report.rounds), seconds)

    @property
    def over_target(self) -> float:
        """Measured latency over the target (the ratio's over the target ratio): <= 1 is met."""
        return self.ratio / self.target_ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet50,mobilenet_v2", help="zoo models, comma-separated ('' none)")
    parser.add_argument("--model-file", nargs="+", type=Path, default=[], metavar="PATH.onnx")
    parser.add_argument("--input-size", type=int, default=224, help="input size of the zoo models")
    parser.add_argument("--fractions", nargs="+", type=float, default=[0.9, 0.7, 0.5, 0.3])
    parser.add_argument("--solvers", nargs="+", choices=SOLVERS, default=list(SOLVERS))
    parser.add_argument("--repeats", type=int, default=3, help="builds per case")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--grid", type=int, default=8)
    parser.add_argument("--absolute", action="store_true", help="--latency-ms targets instead of --speedup")
    parser.add_argument("--db", type=Path, default=None, help="latency database (default: a fresh temp file)")
    args = parser.parse_args()
    command = "python benchmarks/build.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    print(f"command: {command}\nmachine: {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.2f}", flush=True)
    quiet = Console(file=open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the run
    cases: list[Case] = []
    warm: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        db = args.db or root / "latency.sqlite"
        subjects = subjects_in(root, args)
        for name, path in subjects.items():
            base = BuildConfig(speedup=1.0, db=db, grid=args.grid, threads=args.threads, batch=args.batch,
                               make_plots=False)
            start = time.perf_counter()
            dense = run_build(path, root / f"{name}-dense", base, quiet).dense.latency_ms
            print(f"{name}: profiled and calibrated in {time.perf_counter() - start:.1f} s; dense {dense:.3f} ms",
                  flush=True)
            for fraction in args.fractions:
                for repeat in range(args.repeats):
                    for solver in args.solvers:
                        target = {"latency_ms": fraction * dense} if args.absolute else {"speedup": 1 / fraction}
                        config = BuildConfig(**target, solver=solver, db=db, grid=args.grid, threads=args.threads,
                                             batch=args.batch, make_plots=False)
                        cases.append(one_build(path, root / "out", config, quiet, name, fraction, solver, repeat))
                        print("  " + describe(cases[-1]), flush=True)
        if subjects:
            name, path = next(iter(subjects.items()))
            config = BuildConfig(speedup=2.0, db=db, grid=args.grid, threads=args.threads, batch=args.batch)
            for repeat in range(args.repeats):
                start = time.perf_counter()
                run_build(path, root / f"warm-{repeat}", config, quiet)
                warm.append(time.perf_counter() - start)
            print(f"\nwarm build of {name} (milp, 2x speed-up, plots on): median {statistics.median(warm):.1f} s "
                  f"over {len(warm)} runs")
    print(f"\ncommand: {command}")
    print(f"ONNX Runtime CPU, batch {args.batch}, {args.threads} thread(s); targets "
          f"{'--latency-ms fraction x dense' if args.absolute else '--speedup 1/fraction'}")
    print_table(cases, args)


def subjects_in(root: Path, args: argparse.Namespace) -> dict[str, Path]:
    """The models to build: zoo models written to `root`, then the given files."""
    subjects = {}
    for name in filter(None, args.models.split(",")):
        subjects[name] = root / f"{name}.onnx"
        save_model_atomic(zoo_build(name, input_size=args.input_size), subjects[name])
    for path in args.model_file:
        load_model(path)  # a file that does not load stops the run here, not after the zoo models
        subjects[path.stem] = path
    return subjects


def one_build(path: Path, out: Path, config: BuildConfig, quiet: Console, name: str, fraction: float,
              solver: str, repeat: int) -> Case:
    start = time.perf_counter()
    try:
        report = run_build(path, out, config, quiet)
    except BudgetError as exc:  # a target a solver cannot reach is a result too
        return Case(name, fraction, solver, repeat, error=f"{type(exc).__name__}: {exc}")
    return Case.of(report, name, fraction, solver, repeat, time.perf_counter() - start)


def describe(case: Case) -> str:
    head = f"{case.model} {case.fraction:.0%} #{case.repeat + 1} {case.solver:8s}"
    if case.error:
        return f"{head} {case.error}"
    low, high = case.ratio_ci
    return (f"{head} {case.ratio:.3f}x dense [{low:.3f}, {high:.3f}] vs {case.target_ratio:.3f}: {case.decision}; "
            f"importance {case.importance:.4f}; {case.rounds} round(s) ({case.retimed} timed twice), "
            f"{case.seconds:.1f} s")


def print_table(cases: list[Case], args: argparse.Namespace) -> None:
    """Per model and target: each repeat's measured/target and importance per solver, then the tallies."""
    header = " | ".join(f"{s} measured/target | {s} importance" for s in args.solvers)
    print(f"| model | target | repeat | {header} |")
    print("|---|---|---|" + "---|---|" * len(args.solvers))
    for (model, fraction, repeat), row in grouped(cases).items():
        cells = []
        for solver in args.solvers:
            case = row.get(solver)
            if case is None or case.error:
                cells += ["error", "-"]
                continue
            mark = {"met": "", "not met": " (not met)", "undecided": " (undecided)"}[case.decision]
            cells += [f"{case.over_target:.3f}{mark}", f"{case.importance:.4f}"]
        print(f"| {model} | {fraction:.0%} | {repeat + 1} | " + " | ".join(cells) + " |")
    milp = [c for c in cases if c.solver == "milp"]
    print(f"\nmilp: met in {sum(c.decision == 'met' for c in milp)}/{len(milp)} builds "
          f"(undecided {sum(c.decision == 'undecided' for c in milp)}); within 5% of the target in "
          f"{sum(c.decision == 'met' and c.over_target >= 1 / 1.05 for c in milp)}/{len(milp)}")
    rows = grouped(cases).values()
    others = [s for s in args.solvers if s != "milp"]
    for other in others:
        pairs = [(row["milp"], row[other]) for row in rows if "milp" in row and other in row]
        losses = [(m, o) for m, o in pairs if m.error or (not o.error and m.importance < o.importance - 1e-9)]
        print(f"milp keeps at least the importance of {other} in {len(pairs) - len(losses)}/{len(pairs)} builds")
        for m, o in losses:
            print(f"  not in {m.model} {m.fraction:.0%} #{m.repeat + 1}: milp {m.importance:.4f} ({m.decision}), "
                  f"{other} {o.importance:.4f} ({o.decision})")
    for model in dict.fromkeys(c.model for c in cases):
        for fraction in dict.fromkeys(c.fraction for c in cases):
            for solver in args.solvers:
                runs = [c for c in cases if (c.model, c.fraction, c.solver) == (model, fraction, solver)
                        and not c.error]
                if len(runs) > 1:
                    spread = max(c.importance for c in runs) - min(c.importance for c in runs)
                    ratios = [c.over_target for c in runs]
                    print(f"spread over {len(runs)} repeats, {model} {fraction:.0%} {solver}: importance "
                          f"{spread:.4f}, measured/target {min(ratios):.3f}-{max(ratios):.3f}")


def grouped(cases: list[Case]) -> dict[tuple[str, float, int], dict[str, Case]]:
    rows: dict[tuple[str, float, int], dict[str, Case]] = {}
    for case in cases:
        rows.setdefault((case.model, case.fraction, case.repeat), {})[case.solver] = case
    return rows


if __name__ == "__main__":
    main()
