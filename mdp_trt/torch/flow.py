"""The whole MDP flow for a PyTorch model: export, Taylor importance, latency tables, solve, masks.

It is `build` up to the plan, in Python, with Taylor scores instead of magnitude (and each removable
block priced by the loss measured without it, `ablation.py`): the latency side
(profile only what the database lacks, calibrate, measure the dense model, close the loop on the
device) is the ONNX pipeline's own, run on the model's export. The model comes back masked by the plan,
ready to fine-tune; afterwards `export` + `mdp_trt.prune.prune_model(..., plan)` give the pruned ONNX.

`setup` and `plan_for` are the two halves, for callers that solve several targets or solvers on one
model (scores, tables and calibration are computed once; each target gets the calibration law near it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from mdp_trt.closed_loop import ROUNDS, closed_loop, first_budget
from mdp_trt.errors import InputError
from mdp_trt.latency.backends import Backend, get_backend
from mdp_trt.latency.backends.base import channel_multiple
from mdp_trt.latency.bench import bench_model
from mdp_trt.latency.calibrate import Calibration, calibrate, stored_calibration
from mdp_trt.latency.grid import GridConfig, group_levels
from mdp_trt.latency.predict import predict_latency
from mdp_trt.latency.profile import model_opset, profile_tables
from mdp_trt.latency.store import open_db, resolve_db_path
from mdp_trt.latency.tables import LatencyTable
from mdp_trt.prune import Plan
from mdp_trt.solve.from_model import problem_from_model
from mdp_trt.solve.problem import Problem
from mdp_trt.torch.batchnorm import recalibrate_batch_norm
from mdp_trt.torch.data import Batch, first_batches
from mdp_trt.torch.export import Inputs
from mdp_trt.torch.graph import TorchGraph, trace
from mdp_trt.torch.masks import apply_masks
from mdp_trt.torch.scores import model_scores
from mdp_trt.torch.taylor import LossFn


@dataclass(frozen=True)
class PruningSetup:
    """Everything a plan is solved from: the traced model, its scores, latency model and dense latency,
    and the batches the scores came from (BN statistics are re-estimated on them after masking)."""

    graph: TorchGraph
    scores: dict[str, np.ndarray]
    levels: dict[str, tuple[int, ...]]
    tables: dict[str, LatencyTable]
    calibration: Calibration
    blocks: bool
    backend: Backend
    batch: int
    dense_ms: float
    batches: list[Batch]

    def problem(self, budget_ms: float) -> Problem:
        """The solver's problem for one budget (in the predictions' units, `first_budget`), its tables scaled by
        the calibration law near it (as `build`)."""
        return problem_from_model(self.graph.structure, self.scores, self.tables, self.levels, self.calibration,
                                  budget_ms, use_blocks=self.blocks)


def prune(model: nn.Module, example_inputs: Inputs, data: Iterable[Batch], loss_fn: LossFn, *,
          fps: float | None = None, latency_ms: float | None = None, speedup: float | None = None,
          batch: int = 1, backend: str = "ort", solver: str = "milp", grid: int = 8, align: int | None = None,
          db: str | Path | None = None, steps: int = 32, threads: int | None = None, blocks: bool = True,
          rounds: int = ROUNDS, time_limit: float | None = 60.0) -> tuple[nn.Module, Plan]:
    """Prune `model` for one target, as `build` takes them: `fps` (images/s at `batch`), `latency_ms`
    (per batch) or `speedup` (over the measured dense latency). Returns the model, masked in place with
    its BatchNorm statistics re-estimated on the scoring batches (`recalibrate_batch_norm`), and the
    plan (its `extra` holds the dense, target and measured latencies)."""
    _check_target(fps, latency_ms, speedup, batch)
    ready = setup(model, example_inputs, data, loss_fn, batch=batch, backend=backend, grid=grid, align=align,
                  db=db, steps=steps, threads=threads, blocks=blocks)
    if speedup is not None:
        target_ms = ready.dense_ms / speedup
    else:
        target_ms = 1000.0 * batch / fps if fps is not None else float(latency_ms)
    plan = plan_for(ready, target_ms, solver, rounds=rounds, time_limit=time_limit, speedup=speedup)
    apply_masks(model, ready.graph, plan, example_inputs)
    return recalibrate_batch_norm(model, ready.batches, len(ready.batches)), plan


def setup(model: nn.Module, example_inputs: Inputs, data: Iterable[Batch], loss_fn: LossFn, *,
          batch: int = 1, backend: str = "ort", grid: int = 8, align: int | None = None, db: str | Path | None = None,
          steps: int = 32, threads: int | None = None, blocks: bool = True) -> PruningSetup:
    """Trace, score, profile (only what the database lacks), calibrate and measure the dense model. Widths
    are multiples of `align`, by default the backend's channel multiple (`base.channel_multiple`)."""
    graph = trace(model, example_inputs)
    structure = graph.structure
    # Block scores need each block's branch module, so a block PyTorch cannot remove fails here, before profiling.
    batches = first_batches(data, steps)
    scores = model_scores(model, graph, batches, loss_fn, example_inputs, blocks=blocks)
    db_path = resolve_db_path(db)
    device = get_backend(backend, threads=threads, db_path=db_path)
    grid_config = GridConfig(levels=grid, align=align or channel_multiple(device))
    levels = group_levels(structure, grid_config)
    onnx_model = graph.onnx_model
    with open_db(db_path) as store:
        tables = profile_tables(structure, device, store, batch=batch, grid=grid_config,
                                opset=model_opset(onnx_model)).tables
        calibration = stored_calibration(store, device, onnx_model, grid_config, batch=batch)
        if calibration is None:
            calibration = calibrate(onnx_model, structure, tables, device, store, batch=batch, grid=grid_config)
    dense_ms = bench_model(onnx_model, device, batch=batch).measurement.median_ms
    return PruningSetup(graph, scores, levels, tables, calibration, blocks, device, batch, dense_ms, batches)


def _check_target(fps: float | None, latency_ms: float | None, speedup: float | None, batch: int) -> None:
    """Refuse a bad target before any work is done."""
    given = {name: value for name, value in (("fps", fps), ("latency_ms", latency_ms), ("speedup", speedup))
             if value is not None}
    if len(given) != 1:
        raise InputError("give exactly one target: fps, latency_ms or speedup")
    if batch < 1:
        raise InputError(f"batch must be at least 1, got {batch}")
    (name, value), = given.items()
    if not math.isfinite(value) or not value > 0 or (name == "speedup" and value < 1):
        raise InputError(f"{name} must be a finite number {'of at least 1' if name == 'speedup' else 'above 0'}, "
                         f"got {value}")


def plan_for(ready: PruningSetup, target_ms: float, solver: str = "milp", *, rounds: int = ROUNDS,
             time_limit: float | None = 60.0, speedup: float | None = None) -> Plan:
    """Run `build`'s closed loop (`mdp_trt.closed_loop`) on the export: solve, prune, measure, correct.

    With `speedup` the target is relative (each plan's ratio to dense, timed interleaved, against
    1/speedup), else `target_ms` is absolute. Returns the met plan with the most importance, else the loop's
    fallback (`extra["met"]` says which, decided on the plan's 95% interval; `extra["measured"]` is that
    verdict, as `build`'s report states it); raises BudgetError when no round finds a plan.
    """
    info: dict[str, Any] = {"target_ms": target_ms, "dense_ms": ready.dense_ms, "batch": ready.batch, "rounds": []}
    if ready.dense_ms <= target_ms:
        return Plan(extra={**info, "measured_ms": ready.dense_ms, "met": True})
    predicted_dense_ms = predict_latency(ready.graph.structure, ready.tables, ready.calibration, Plan())
    budget_ms = first_budget(target_ms, ready.dense_ms, predicted_dense_ms)
    chosen = closed_loop(ready.graph.onnx_model, ready.graph.structure, ready.scores, ready.levels,
                         ready.problem(budget_ms), ready.backend, target_ms, speedup=speedup, solver=solver,
                         rounds=rounds, time_limit=time_limit, batch=ready.batch, budget_ms=budget_ms)
    plan = chosen.plan
    return Plan(plan.groups, plan.remove_blocks, {**plan.extra, **info, "rounds": chosen.rounds,
                                                  "measured_ms": chosen.measured_ms, "met": chosen.verdict.met,
                                                  "measured": chosen.verdict.to_json(ready.batch)})
