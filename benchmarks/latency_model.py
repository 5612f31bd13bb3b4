"""Accuracy of the latency model: predicted vs measured speed-up of random pruning plans.

For each model (zoo names, and ONNX files such as `python benchmarks/export_families.py -o DIR` writes),
each ONNX Runtime CPU thread count (`--threads 1 2 all`; all = os.cpu_count()) and each batch
(`--batch 1 8`):
1. profile the layer tables (`--grid` levels per group) and calibrate the whole-model part as `predict`
   does (the dense model, the smallest plan and 6 plans between them, seed 0; each timed against dense
   interleaved);
2. draw random plans of two kinds (seed 1000; ~25% of blocks removed in both):
   - on-grid: every group at a uniformly random grid level, as a solver's plans are;
   - off-grid: every group at a random multiple of 8 from its lowest grid level to its full width, so most
     layers fall between levels; as `predict` does, the probes of those cells are measured and stored
     (the "interpolated" column gives the error had the tables been interpolated instead);
3. time each plan's pruned model against the dense model interleaved, exactly as `build` does
   (`compare_models`: both ONNX Runtime sessions loaded at once, alternating blocks of about 50 ms after
   switch-over runs), so a drift of the shared host slows both alike and cancels in their ratio;
   measured = the median per-pair ratio t(pruned) / t(dense);
4. report the **ratio error**: the error of the predicted speed-up predict(plan) / predict(dense) against
   the measured t(pruned) / t(dense), for the bilayer model (MDP: tables read at kept inputs and kept
   outputs, calibrated) and a HALP-style one (inputs frozen at the dense width, calibrated on the same
   points); and, labelled "absolute", the error of the predicted latency in ms against the pruned model's
   interleaved median (this one does not cancel host drift).

Other processes' CPU use is measured during each plan's timing (`OtherLoad`) and reported: at threads > 1
a core taken by another process is not drift that cancels (see `OtherLoad`). `--wait-quiet S` waits up to
S seconds before each plan for the other processes to go quiet.

A model file with a fixed batch other than --batch is run with its batch axis set to it (the exports of
export_families.py are at batch 1 and have no size computed from the batch).

Run: python benchmarks/latency_model.py [--models resnet50 mobilenet_v2] [--model-file F.onnx ...]
     [--threads 1 2 all] [--batch 1 8] [--plans 10] [--kinds on-grid off-grid] [--grid 4] [--align A]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from latency_db import LatencyDB
from mdp_trt.graph import analyze, load_model
from mdp_trt.graph.structure import Group, Structure
from mdp_trt.io import write_text_atomic
from mdp_trt.latency import GridConfig, get_backend, layer_sum, model_opset, profile_tables
from mdp_trt.latency.backends import Backend
from mdp_trt.latency.backends.base import channel_multiple
from mdp_trt.latency.bench import compare_models
from mdp_trt.latency.calibrate import (
    DEFAULT_POINTS,
    Calibration,
    calibration_plans,
    fit,
    measure_plans,
    random_plan,
    sampled_plan,
)
from mdp_trt.latency.grid import group_levels
from mdp_trt.latency.measurement import Comparison
from mdp_trt.latency.predict import removed_layers
from mdp_trt.latency.profile import profile_off_grid
from mdp_trt.latency.protocol import COMPARE_PROTOCOL
from mdp_trt.latency.tables import LatencyTable
from mdp_trt.prune import Plan, prune_model
from mdp_trt.zoo import build

KINDS = ("on-grid", "off-grid")
OFF_GRID_ALIGN = 8
LOADED = 0.25  # cores other processes used during a plan's timing above which the table counts the plan


class OtherLoad:
    """CPU time that processes other than this one used since creation, in cores (Linux /proc/stat): the
    load that no ratio cancels at threads > 1, where a model whose thread pool loses a core stalls at every
    parallel section (mobilenet_v2 at 2 threads measured 2.6 ms with the other core idle, 7.8 ms with
    another process on it, while its pruned plan went from 1.6 to 1.7 ms)."""

    def __init__(self) -> None:
        self.start = (time.monotonic(), _system_busy(), _own_busy())

    def cores(self) -> float:
        wall, system, own = self.start
        return max(0.0, ((_system_busy() - system) - (_own_busy() - own)) / (time.monotonic() - wall))


def _system_busy() -> float:
    """Busy CPU seconds of the whole machine since boot."""
    with open("/proc/stat") as stat:
        ticks = [int(x) for x in stat.readline().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def _own_busy() -> float:
    times = os.times()
    return times.user + times.system


def wait_quiet(seconds: float, threshold: float = 0.1, window: float = 0.5) -> None:
    """Wait until other processes use under `threshold` cores over `window` seconds, `seconds` at most."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        load = OtherLoad()
        time.sleep(window)
        if load.cores() < threshold:
            return


@dataclass(frozen=True)
class Timing:
    """A plan timed against dense (`mdp_trt.latency.bench.compare_models`, as `build` times it), and how
    many cores other processes used meanwhile."""

    comparison: Comparison
    other_cores: float

    @property
    def ratio(self) -> float:
        return self.comparison.ratio

    @property
    def ci_pct(self) -> float:
        """Half-width of the ratio's 95% interval in percent of it: the noise floor of this plan's error."""
        low, high = self.comparison.ratio_ci
        return 100 * (high - low) / 2 / self.ratio

    @property
    def pruned_ms(self) -> float:
        return self.comparison.candidate.median_ms

    @property
    def dense_ms(self) -> float:
        return self.comparison.reference.median_ms

    def to_json(self) -> dict[str, Any]:
        return {"ratio": self.ratio, "ratio_ci": list(self.comparison.ratio_ci), "pruned_ms": self.pruned_ms,
                "dense_ms": self.dense_ms, "pairs": self.comparison.pairs, "other_cores": self.other_cores}


def time_against_dense(model: onnx.ModelProto, pruned: onnx.ModelProto, backend: Backend, batch: int,
                       seconds: float) -> Timing:
    load = OtherLoad()
    protocol = dataclasses.replace(COMPARE_PROTOCOL, max_seconds=seconds)
    comparison = compare_models(model, pruned, backend, batch=batch, protocol=protocol)
    return Timing(comparison, load.cores())


def off_grid_plan(structure: Structure, levels: dict[str, tuple[int, ...]], rng: np.random.Generator,
                  block_probability: float = 0.25) -> Plan:
    """Every group with grid levels at a random multiple of 8 (of its parts too) from its lowest level to
    its full width, random channels kept (an attention that removes heads at a random combination of its
    grid, as `random_plan` draws it); each block (whose parent stays) removed with `block_probability`.
    Widths below the lowest level are left out: the solver never picks them and calibration does not
    reach them, so their error would be extrapolation, not the interpolation this measures."""

    def multiple_of_8(group: Group, options: tuple[int, ...]) -> int:
        step = math.lcm(OFF_GRID_ALIGN, group.parts)
        widths = [k for k in range(step * math.ceil(options[0] / step), group.size + 1, step)] or [group.size]
        return int(rng.choice(widths))

    return sampled_plan(structure, levels, rng, multiple_of_8, block_probability)


def at_batch(model: onnx.ModelProto, batch: int) -> onnx.ModelProto:
    """`model` with the batch axis of its inputs and outputs fixed to `batch` (shapes inferred afresh)."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    del fixed.graph.value_info[:]
    for value in (*fixed.graph.input, *fixed.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_value = batch
    return fixed


def load_subject(name: str, args: argparse.Namespace, batch: int) -> onnx.ModelProto:
    """A zoo model built at `batch`, or a model file with its batch axis set to it."""
    if name in args.models:
        return build(name, input_size=args.input_size, batch=batch)
    return at_batch(load_model(args.paths[name]), batch)


def _row(structure: Structure, tables: dict[str, LatencyTable], plan: Plan, measured: float) -> dict[str, Any]:
    """Everything about one calibration plan a latency model might use, kept for offline analysis (--out)."""
    return {
        "measured_ms": measured,
        "layer_sum_ms": layer_sum(structure, tables, plan),
        "halp_sum_ms": layer_sum(structure, tables, plan, freeze_inputs=True),
        "active_layers": len(structure.layers) - len(removed_layers(structure, plan)),
        "removed_blocks": len(plan.remove_blocks),
        "plan": plan.to_json(),
    }


def _ratio(calibration: Calibration, structure: Structure, tables: dict[str, LatencyTable], plan: Plan) -> float:
    """Predicted speed-up predict(plan) / predict(dense) under one calibrated law."""
    freeze = calibration.freeze_inputs
    return (calibration.apply(layer_sum(structure, tables, plan, freeze_inputs=freeze))
            / calibration.apply(layer_sum(structure, tables, Plan(), freeze_inputs=freeze)))


def _err(predicted: float, measured: float) -> float:
    return 100 * (predicted - measured) / measured


def evaluate(name: str, threads: int, batch: int, args: argparse.Namespace, db: LatencyDB,
             raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One model at one thread count and batch: a summary row per plan kind."""
    model = load_subject(name, args, batch)
    structure = analyze(model)
    backend = get_backend("ort", threads=threads)
    grid = GridConfig(levels=args.grid, align=args.align or channel_multiple(backend))
    t0 = time.perf_counter()
    load = OtherLoad()
    profile = profile_tables(structure, backend, db, batch=batch, grid=grid, opset=model_opset(model),
                             show_progress=args.progress)
    tables = profile.tables
    print(f"{name} threads={threads} batch={batch} align={grid.align}: {profile.unique_probes} probes "
          f"({profile.measured} measured) in {time.perf_counter() - t0:.0f} s, other processes "
          f"{load.cores():.2f} cores", flush=True)

    load = OtherLoad()
    cal_plans = calibration_plans(structure, grid, count=DEFAULT_POINTS, seed=0)
    measured = measure_plans(model, structure, cal_plans, backend, batch=batch)
    points = [_row(structure, tables, plan, ms) for plan, ms in zip(cal_plans, measured, strict=True)]
    bilayer = fit([{k: p[k] for k in ("measured_ms", "layer_sum_ms")} for p in points])
    halp = fit([{"measured_ms": p["measured_ms"], "layer_sum_ms": p["halp_sum_ms"]} for p in points],
               freeze_inputs=True)
    print(f"  calibration: {bilayer.scale:.3f} x sum {bilayer.offset_ms:+.3f} ms, fit residuals "
          f"{max(abs(r) for r in bilayer.residuals_pct):.1f}% max, other processes {load.cores():.2f} cores",
          flush=True)
    record: dict[str, Any] = {"model": name, "threads": threads, "batch": batch, "calibration": points, "plans": []}
    raw.append(record)

    rng = np.random.default_rng(1000)
    levels = group_levels(structure, grid)
    draw = {"on-grid": random_plan, "off-grid": off_grid_plan}
    print(f"  {'kind':<8} {'plan':>4} {'pred x':>7} {'meas x':>7} {'±ci%':>5} {'ratio err%':>10} {'interp%':>8} "
          f"{'HALP%':>6} {'meas ms':>8} {'abs err%':>8} {'probes':>6} {'others':>6}", flush=True)
    summary = []
    for kind in args.kinds:
        errors: dict[str, list[float]] = {"ratio": [], "interp": [], "halp": [], "abs": [], "ci": [], "others": []}
        dense_ms: list[float] = []
        probes = 0
        for index in range(args.plans):
            plan = draw[kind](structure, levels, rng)
            off_grid = profile_off_grid(structure, profile, plan, backend, db, batch=batch)
            probes += off_grid.measured
            pruned = prune_model(model, structure, plan)
            wait_quiet(args.wait_quiet)
            timing = time_against_dense(model, pruned, backend, batch, args.seconds)
            ours = _ratio(bilayer, structure, off_grid.tables, plan)
            absolute = bilayer.apply(layer_sum(structure, off_grid.tables, plan))
            errors["ratio"].append(_err(ours, timing.ratio))
            errors["interp"].append(_err(_ratio(bilayer, structure, tables, plan), timing.ratio))
            errors["halp"].append(_err(_ratio(halp, structure, off_grid.tables, plan), timing.ratio))
            errors["abs"].append(_err(absolute, timing.pruned_ms))
            errors["ci"].append(timing.ci_pct)
            errors["others"].append(timing.other_cores)
            dense_ms.append(timing.dense_ms)
            interp = f"{errors['interp'][-1]:>+8.1f}" if off_grid.cells else f"{'':>8}"
            print(f"  {kind:<8} {index:>4} {ours:>7.3f} {timing.ratio:>7.3f} {timing.ci_pct:>5.1f} "
                  f"{errors['ratio'][-1]:>+10.1f} {interp} {errors['halp'][-1]:>+6.1f} {timing.pruned_ms:>8.2f} "
                  f"{errors['abs'][-1]:>+8.1f} {off_grid.measured:>6} {timing.other_cores:>6.2f}", flush=True)
            record["plans"].append({"kind": kind, "plan": plan.to_json(), "predicted_ratio": ours,
                                    "predicted_ms": absolute, "off_grid_cells": len(off_grid.cells),
                                    "measured": timing.to_json()})
        others = np.asarray(errors.pop("others"))
        summary.append({"model": name, "threads": threads, "batch": batch, "kind": kind, "plans": args.plans,
                        "off_grid_probes": probes, "others_median": float(np.median(others)),
                        "loaded_plans": int((others > LOADED).sum()), "dense_ms": (min(dense_ms), max(dense_ms)),
                        **{key: (float(np.median(np.abs(v))), float(np.max(np.abs(v)))) for key, v in errors.items()}})
    return summary


def parse_threads(values: list[str]) -> list[int]:
    """`1 2 all` -> [1, 2, os.cpu_count()], duplicates dropped."""
    threads: list[int] = []
    for value in values:
        if value != "all" and not (value.isdigit() and int(value) >= 1):
            raise ValueError(f"--threads {value!r}: a positive integer or 'all'")
        count = (os.cpu_count() or 1) if value == "all" else int(value)
        if count not in threads:
            threads.append(count)
    return threads


def print_table(summary: list[dict[str, Any]]) -> None:
    """The markdown summary: ratio errors first (what the issue's targets are about), then the rest."""
    print("| model | threads | batch | plans | ratio error median / max (MDP) | interpolated tables median / max "
          "| HALP-style ratio median / max | absolute error median / max (MDP) | ratio CI ± (median) "
          f"| dense ms (interleaved, min-max) | other processes, cores (median; plans over {LOADED}) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in summary:
        interp = "{:.1f}% / {:.1f}%".format(*row["interp"]) if row["kind"] == "off-grid" else "(= MDP)"
        print(f"| {row['model']} | {row['threads']} | {row['batch']} | {row['plans']} {row['kind']} | "
              f"{row['ratio'][0]:.1f}% / {row['ratio'][1]:.1f}% | {interp} | "
              f"{row['halp'][0]:.1f}% / {row['halp'][1]:.1f}% | {row['abs'][0]:.1f}% / {row['abs'][1]:.1f}% | "
              f"{row['ci'][0]:.1f}% | {row['dense_ms'][0]:.2f}-{row['dense_ms'][1]:.2f} | "
              f"{row['others_median']:.2f} ({row['loaded_plans']}) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=["resnet50", "mobilenet_v2"], help="zoo models")
    parser.add_argument("--model-file", nargs="+", type=Path, default=[], metavar="PATH.onnx",
                        help="ONNX files (e.g. exports of benchmarks/export_families.py)")
    parser.add_argument("--input-size", type=int, default=224, help="input size of the zoo models")
    parser.add_argument("--threads", nargs="+", default=["1", "2", "all"],
                        help="ORT intra-op thread counts; 'all' = os.cpu_count()")
    parser.add_argument("--batch", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--plans", type=int, default=10, help="random plans per kind")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--grid", type=int, default=4, help="grid levels per group (profile --grid)")
    parser.add_argument("--align", type=int, default=None,
                        help="grid widths are multiples of A (profile --align; default: the backend's multiple)")
    parser.add_argument("--seconds", type=float, default=COMPARE_PROTOCOL.max_seconds,
                        help="most seconds of interleaved timing per plan (it stops earlier at a ±1%% ratio CI)")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                        help="before timing each plan, wait up to S seconds for other processes to go quiet")
    parser.add_argument("--db", type=Path, default=None, help="latency database (default: a fresh temp file)")
    parser.add_argument("--out", type=Path, default=None, help="also write every measured point as JSON")
    parser.add_argument("--progress", action="store_true", help="show profiling progress bars")
    args = parser.parse_args()
    try:
        threads = parse_threads(args.threads)
    except ValueError as exc:
        parser.error(str(exc))
    args.paths = {path.stem: path for path in args.model_file}
    names = [*args.models, *args.paths]
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    print(f"command: {command}")
    print(f"machine: {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.2f} at start", flush=True)
    db_path = args.db or Path(tempfile.mkdtemp(prefix="mdp-latency-")) / "latency.sqlite"
    summary: list[dict[str, Any]] = []
    raw: list[dict[str, Any]] = []
    start, load = time.perf_counter(), OtherLoad()
    with LatencyDB(db_path) as db:
        for name in names:
            for count in threads:
                for batch in args.batch:
                    summary += evaluate(name, count, batch, args, db, raw)
    if args.out:
        write_text_atomic(args.out, json.dumps({"command": command, "summary": summary, "runs": raw}, indent=1))
    print(f"\ncommand: {command}")
    print(f"{time.perf_counter() - start:.0f} s; other processes used {load.cores():.2f} cores on average; "
          f"load average {os.getloadavg()[0]:.2f} at end")
    print_table(summary)


if __name__ == "__main__":
    main()
