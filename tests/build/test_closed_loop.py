"""The closed loop's decisions, on scripted measurements: where it stops and which plan it returns."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mdp_trt.closed_loop import NOISE, closed_loop
from mdp_trt.graph import analyze
from mdp_trt.latency.backends import get_backend
from mdp_trt.latency.calibrate import Calibration
from mdp_trt.latency.grid import GridConfig, group_levels
from mdp_trt.latency.measurement import Measurement
from mdp_trt.latency.profile import profile_tables
from mdp_trt.latency.store import LatencyDB
from mdp_trt.solve.from_model import problem_from_model
from mdp_trt.zoo import build

GRID = GridConfig(levels=8, align=8)


class Scripted:
    """A device whose measurements are given in advance, one per measured plan, as fractions of the target."""

    name = "scripted"

    def __init__(self, target_ms: float, fractions: list[float]) -> None:
        self.results = [f * target_ms for f in fractions]

    def fingerprint(self, batch: int, precision: str) -> dict[str, Any]:
        return {"backend": self.name, "estimate": False}

    def measure(self, model, protocol, *, batch: int = 1, precision: str = "fp32") -> Measurement:
        ms = self.results.pop(0)
        return Measurement(ms, ms, ms, runs=10, seconds=0.01)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    model = build("resnet18", input_size=32)
    structure = analyze(model)
    with LatencyDB(tmp_path_factory.mktemp("db") / "lat.sqlite") as db:
        tables = profile_tables(structure, get_backend("analytic"), db, grid=GRID).tables
    rng = np.random.default_rng(0)
    scores = {g.id: rng.uniform(0.5, 1.5, g.size) for g in structure.groups}
    levels = group_levels(structure, GRID)
    problem = problem_from_model(structure, scores, tables, levels, Calibration(1.0, 0.0))
    dense_ms = float(sum(t.dense_ms for t in tables.values()))
    return model, structure, scores, levels, problem, dense_ms


def run(toy, fractions: list[float]):
    model, structure, scores, levels, problem, dense_ms = toy
    target = 0.5 * dense_ms
    return closed_loop(model, structure, scores, levels, problem, Scripted(target, fractions), target), target


def test_a_plan_met_within_the_measurements_noise_does_not_stop_the_loop(toy):
    chosen, target = run(toy, [1.0 - NOISE / 2, 0.97, 0.5])
    assert len(chosen.rounds) == 2, "round 1 met the target by less than the noise; round 2 met it safely"
    assert chosen.measured_ms == pytest.approx(0.97 * target)


def test_a_plan_met_only_within_the_noise_is_still_preferred_to_none(toy):
    chosen, target = run(toy, [1.0 - NOISE / 2, 1.2, 1.1, 1.3, 1.15])
    assert len(chosen.rounds) > 1, "round 1 was not safe, so the loop went on"
    assert chosen.measured_ms == pytest.approx((1.0 - NOISE / 2) * target)


def test_nothing_met_returns_the_fastest_plan(toy):
    chosen, target = run(toy, [1.04, 1.02, 1.05, 1.03, 1.06])
    measured = [r["measured_ms"] for r in chosen.rounds]
    assert len(measured) > 1 and min(measured) > target
    assert chosen.measured_ms == min(measured)


def test_a_pruned_model_ort_cannot_run_ends_the_loop_as_a_verification_error_before_any_bench(toy, monkeypatch):
    import mdp_trt.closed_loop as closed_loop_module
    from mdp_trt.errors import VerificationError
    from mdp_trt.prune import prune_model
    from tests.prune.broken import bad_bias

    monkeypatch.setattr(closed_loop_module, "prune_model", lambda *a, **k: bad_bias(prune_model(*a, **k)))
    model, structure, scores, levels, problem, dense_ms = toy
    device = Scripted(0.5 * dense_ms, [0.9])
    with pytest.raises(VerificationError, match="does not run in ONNX Runtime"):
        closed_loop(model, structure, scores, levels, problem, device, 0.5 * dense_ms)
    assert device.results == [0.9 * 0.5 * dense_ms], "nothing was benched"
