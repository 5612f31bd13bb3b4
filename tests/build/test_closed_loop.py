"""The closed loop's decisions, on scripted measurements: where it stops and which plan it returns."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
import onnx
import pytest

from mdp_trt.closed_loop import (
    MET,
    NOISE,
    NOT_MET,
    UNDECIDED,
    Verdict,
    _window_settled,
    closed_loop,
    first_budget,
    judge,
)
from mdp_trt.graph import analyze
from mdp_trt.latency.backends import get_backend
from mdp_trt.latency.calibrate import Calibration
from mdp_trt.latency.grid import GridConfig, group_levels
from mdp_trt.latency.measurement import Comparison, Measurement
from mdp_trt.latency.predict import predict_latency
from mdp_trt.latency.profile import profile_tables
from mdp_trt.latency.protocol import COMPARE_PROTOCOL, InterleavedProtocol, Timer, summarize
from mdp_trt.latency.store import LatencyDB
from mdp_trt.prune import Plan
from mdp_trt.solve.from_model import problem_from_model
from mdp_trt.solve.min_latency import min_latency
from mdp_trt.zoo import build

GRID = GridConfig(levels=8, align=8)


Timing = float | tuple[float, float]  # a fraction of the target, or (fraction, spread)


class Scripted:
    """A device whose timings are given in advance: the dense model runs at `dense_ms`, and each new plan at
    its fraction of the target. A fraction given as (fraction, spread) varies from block to block by up to
    ±spread (seeded), so its interval has a width; a plain fraction is timed exactly. A list gives one such
    timing per window the plan is timed in (the last one repeats)."""

    name = "scripted"

    def __init__(self, dense: onnx.ModelProto, dense_ms: float, target_ms: float,
                 fractions: list[Timing | list[Timing]]) -> None:
        self.dense, self.dense_ms, self.target_ms = dense, dense_ms, target_ms
        self.fractions = list(fractions)
        self.rng = np.random.default_rng(0)
        self.scripts: dict[int, list[Timing]] = {}  # per plan model, its timings for the windows to come

    def fingerprint(self, batch: int, precision: str) -> dict[str, Any]:
        return {"backend": self.name, "estimate": False}

    def measure(self, model, protocol, *, batch: int = 1, precision: str = "fp32") -> Measurement:
        raise AssertionError("plans are timed against dense interleaved, never benched alone")

    @contextlib.contextmanager
    def open_timer(self, model, *, batch: int = 1, precision: str = "fp32") -> Iterator[Timer]:
        if model is self.dense:
            yield lambda runs: [self.dense_ms] * runs
            return
        if id(model) not in self.scripts:
            entry = self.fractions.pop(0)
            self.scripts[id(model)] = list(entry) if isinstance(entry, list) else [entry]
        script = self.scripts[id(model)]
        fraction, spread = _spread(script.pop(0) if len(script) > 1 else script[0])
        ms = fraction * self.target_ms

        def timer(runs: int) -> list[float]:
            return [ms * (1 + spread * float(self.rng.uniform(-1, 1)))] * runs

        yield timer


# Warm-up by run count alone, so that the scripted spread's draws do not depend on this machine's speed.
DETERMINISTIC = dataclasses.replace(COMPARE_PROTOCOL, warmup_seconds=0.0)


def _spread(entry: Timing) -> tuple[float, float]:
    return entry if isinstance(entry, tuple) else (entry, 0.0)


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


def run(toy, fractions: list[Timing | list[Timing]], protocol: InterleavedProtocol = DETERMINISTIC):
    model, structure, scores, levels, problem, dense_ms = toy
    target = 0.5 * dense_ms
    device = Scripted(model, dense_ms, target, fractions)
    return closed_loop(model, structure, scores, levels, problem, device, target, protocol=protocol), target


def test_a_plan_met_within_5_percent_ends_the_loop(toy):
    chosen, target = run(toy, [0.97, 0.5])
    assert len(chosen.rounds) == 1 and chosen.verdict.decision == MET
    assert chosen.measured_ms == pytest.approx(0.97 * target)
    assert chosen.verdict.latency_ci_ms == pytest.approx((0.97 * target, 0.97 * target))


def test_a_plan_met_with_room_to_spare_relaxes_the_budget_and_the_fuller_plan_wins(toy):
    chosen, target = run(toy, [0.5, 0.97, 0.9])
    assert [r["decision"] for r in chosen.rounds] == [MET, MET]
    assert chosen.rounds[1]["budget_ms"] > chosen.rounds[0]["budget_ms"]
    assert chosen.measured_ms == pytest.approx(0.97 * target), "more importance kept, still met"


def test_a_plan_whose_interval_straddles_the_target_does_not_end_the_loop(toy):
    chosen, target = run(toy, [(1.0, 0.05), 0.97])
    first = chosen.rounds[0]
    assert first["decision"] == UNDECIDED and first["measured_ci_ms"][0] < target < first["measured_ci_ms"][1]
    assert len(chosen.rounds) == 2 and chosen.verdict.decision == MET, "the next plan aims under the interval"


def test_a_plan_met_by_a_hair_tightens_the_budget_and_the_verifiable_plan_wins(toy):
    """0.998 of the target is met, but a fresh window (the final verification) would straddle it: the loop
    goes on under a tighter budget and keeps the plan met with room for that noise."""
    chosen, target = run(toy, [0.998, 0.97])
    assert [r["decision"] for r in chosen.rounds] == [MET, MET]
    assert [r["retimed"] for r in chosen.rounds] == [True, False], "a second window confirmed it"
    assert chosen.rounds[1]["budget_ms"] < chosen.rounds[0]["budget_ms"]
    assert chosen.measured_ms == pytest.approx(0.97 * target) and chosen.verdict.verifiable


def test_a_plan_met_by_less_than_a_noisy_windows_margin_is_timed_again_and_kept_when_the_next_is_quiet(toy):
    """0.95 of the target in a window where the host spread it by ±8% (40 pairs): met, but its interval too
    wide to be verifiable. Tightening on it would discard a plan that a quieter window shows is met with room:
    the loop times it again, and on both windows pooled it is verifiable, so the loop relaxes past it."""
    capped = dataclasses.replace(DETERMINISTIC, max_pairs=40, rel_ci=0.0)
    model, _, _, _, _, dense_ms = toy
    first = Scripted(model, dense_ms, 0.5 * dense_ms, [(0.95, 0.08)])
    with first.open_timer(model) as dense, first.open_timer(object()) as plan:
        one_window = judge(capped.run(dense, plan), 0.5 * dense_ms)
    assert one_window.met and not one_window.verifiable, "the scripted window alone would tighten"

    chosen, target = run(toy, [[(0.95, 0.08), 0.95], 1.2, 1.2, 1.2, 1.2], protocol=capped)
    first_round = chosen.rounds[0]
    assert first_round["retimed"] and first_round["pairs"] == 80 and first_round["decision"] == MET
    assert chosen.rounds[1]["budget_ms"] > first_round["budget_ms"], "verifiable on both windows: relaxed"
    assert chosen.measured_ms == pytest.approx(0.95 * target, rel=0.01) and chosen.verdict.verifiable


def test_a_plan_met_by_a_hair_is_kept_when_no_other_is_met(toy):
    chosen, target = run(toy, [0.998, 1.1, 1.05, 1.2, 1.3])
    assert chosen.measured_ms == pytest.approx(0.998 * target)
    assert chosen.verdict.met and not chosen.verdict.verifiable


def test_an_undecided_plan_is_preferred_to_plans_clearly_over(toy):
    chosen, _ = run(toy, [(1.0, 0.05), 1.2, 1.1, 1.3, 1.15])
    assert len(chosen.rounds) == 5 and chosen.rounds[0]["decision"] == UNDECIDED
    assert all(r["decision"] == NOT_MET for r in chosen.rounds[1:])
    assert chosen.verdict.decision == UNDECIDED and not chosen.verdict.met


def test_nothing_met_returns_the_plan_closest_to_its_target(toy):
    chosen, target = run(toy, [1.04, 1.02, 1.05, 1.03, 1.06])
    measured = [r["measured_ms"] for r in chosen.rounds]
    assert len(measured) > 1 and min(measured) > target
    assert chosen.measured_ms == min(measured) and chosen.verdict.decision == NOT_MET


def test_a_pruned_model_ort_cannot_run_ends_the_loop_as_a_verification_error_before_any_bench(toy, monkeypatch):
    import mdp_trt.closed_loop as closed_loop_module
    from mdp_trt.errors import VerificationError
    from mdp_trt.prune import prune_model
    from tests.prune.broken import bad_bias

    monkeypatch.setattr(closed_loop_module, "prune_model", lambda *a, **k: bad_bias(prune_model(*a, **k)))
    model, structure, scores, levels, problem, dense_ms = toy
    device = Scripted(model, dense_ms, 0.5 * dense_ms, [0.9])
    with pytest.raises(VerificationError, match="does not run in ONNX Runtime"):
        closed_loop(model, structure, scores, levels, problem, device, 0.5 * dense_ms)
    assert device.fractions == [0.9], "nothing was timed"


# --- verdicts ---------------------------------------------------------------------------------------------


def verdict_at(low: float, latency: float, high: float, scheme: str = "interleaved") -> Verdict:
    """A verdict on a plan measured at `latency` ms [low, high] against a target of 1 ms (dense at 2 ms)."""
    return Verdict(1.0, 2.0, latency / 2, (low / 2, high / 2), (low, high), False, scheme, 50, 6.0, 0.0)


def test_a_wide_interval_needs_as_much_room_again_under_the_target_to_be_verifiable() -> None:
    """The next window sees the plan anywhere in its interval: met at 0.98 with a half-width of 2.6% is not
    verifiable (0.98 x 1.026 is over the target), the same upper end with a ±0.5% interval is (NOISE)."""
    wide, narrow = verdict_at(0.93, 0.955, 0.98), verdict_at(0.970, 0.975, 0.98)
    assert wide.met and narrow.met
    assert wide.margin == pytest.approx(0.025 / 0.955) and not wide.verifiable
    assert narrow.margin == NOISE and narrow.verifiable


def test_an_estimate_is_repeated_exactly_and_needs_no_margin() -> None:
    exact = verdict_at(0.999, 0.999, 0.999, scheme="estimate")
    assert exact.margin == 0.0 and exact.verifiable


def comparison_at(ratio: float, low: float, high: float) -> Comparison:
    """A window that measured a plan at `ratio` of dense [low, high], dense at 1 ms."""
    return Comparison(ratio, (low, high), summarize([1.0] * 40, 1.0), summarize([ratio] * 40, 1.0),
                      (ratio,) * 40, (1.0,) * 40, 1.0, "interleaved")


def test_a_round_well_under_the_target_samples_on_while_its_interval_is_too_wide_to_relax_on() -> None:
    """0.7x [0.52, 0.88] against 0.95x is met, and more than 5% under, but not with its margin: relaxing on
    it could cross the target, so the window goes on; 0.7x [0.69, 0.71] is decided."""
    settled = _window_settled(0.0, 1 / 0.95, 0.01)
    assert not settled(comparison_at(0.7, 0.52, 0.88))
    assert settled(comparison_at(0.7, 0.69, 0.71))
    assert settled(comparison_at(1.1, 1.0, 1.2)), "clearly over"


def drifting_comparison(slowdown: float) -> Comparison:
    """The candidate at exactly half of dense, on a host that gets `slowdown` slower per block pair."""
    calls = {"n": 0}

    def dense(runs: int) -> list[float]:
        calls["n"] += 1
        return [1.0 + slowdown * calls["n"]] * runs

    def half(runs: int) -> list[float]:
        return [0.5 * (1.0 + slowdown * calls["n"])] * runs

    protocol = InterleavedProtocol(warmup_runs=1, warmup_seconds=0.0, block_ms=0.0, min_pairs=20, max_pairs=20)
    return protocol.run(dense, half, settled=lambda c: False)


def test_a_relative_target_is_decided_by_the_ratio_whatever_the_host_did() -> None:
    comparison = drifting_comparison(0.02)
    assert judge(comparison, target_ms=0.0, speedup=2.0).decision == MET, "0.5x dense meets a 2x speed-up"
    assert judge(comparison, target_ms=0.0, speedup=2.1).decision == NOT_MET


def test_an_absolute_target_is_met_only_at_the_slowest_dense_latency_the_window_saw() -> None:
    steady, drifting = drifting_comparison(0.0), drifting_comparison(0.02)
    assert judge(steady, target_ms=0.5).decision == MET
    low, high = judge(drifting, target_ms=0.5).latency_ci_ms
    assert high >= 0.5 * max(drifting.reference.segments_ms) and low <= 0.5 * min(drifting.reference.segments_ms)
    target = 0.5 * drifting.reference.median_ms
    assert judge(drifting, target_ms=target).decision == UNDECIDED, "the host moved more than the target's margin"


def test_the_first_budget_is_the_target_in_the_predictions_units(toy, tmp_path):
    """Predictions from a calibration taken on a host running half as fast as now are twice today's
    measurements: the loop's first budget is the target's fraction of dense in those units, so its first plan
    is the one it would have solved for had the units agreed."""
    model, structure, scores, levels, _, dense_ms = toy
    with LatencyDB(tmp_path / "lat.sqlite") as db:
        tables = profile_tables(structure, get_backend("analytic"), db, grid=GRID).tables
    slow = Calibration(2.0, 0.0)  # every prediction twice the quiet host's
    problem = problem_from_model(structure, scores, tables, levels, slow)
    target = 0.5 * dense_ms
    budget = first_budget(target, dense_ms, predict_latency(structure, tables, slow, Plan()))
    assert budget == pytest.approx(2 * target)
    device = Scripted(model, dense_ms, target, [0.97])
    chosen = closed_loop(model, structure, scores, levels, problem, device, target, protocol=DETERMINISTIC,
                         budget_ms=budget)
    reference, _ = run(toy, [0.97])
    assert chosen.rounds[0]["budget_ms"] == pytest.approx(2 * reference.rounds[0]["budget_ms"])
    assert chosen.rounds[0]["predicted_ms"] == pytest.approx(2 * reference.rounds[0]["predicted_ms"])
    assert chosen.plan.groups == reference.plan.groups and chosen.plan.remove_blocks == reference.plan.remove_blocks


@pytest.mark.parametrize(("fastest", "decision"), [(0.97, MET), (1.3, NOT_MET)])
def test_a_budget_below_the_fastest_plan_times_the_fastest_plan_once(toy, fastest, decision):
    """A plan measured far over its prediction asks for a budget no plan reaches: the loop solves at the
    smallest reachable latency instead of giving up, and stops there if that plan misses too."""
    chosen, _ = run(toy, [50.0, fastest, 0.9])
    problem = toy[4]
    assert len(chosen.rounds) == 2
    assert chosen.rounds[1]["budget_ms"] == pytest.approx(min_latency(problem))
    assert chosen.rounds[1]["decision"] == decision
