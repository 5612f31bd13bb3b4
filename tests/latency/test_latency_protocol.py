"""The measurement protocol on deterministic fake timers and a fake clock (no real timing)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mdp_trt.latency.bench import BenchResult
from mdp_trt.latency.protocol import (
    T_QUANTILES,
    Z_95,
    Z_97_5,
    MeasureProtocol,
    median_ci,
    median_rel_halfwidth,
    pairs_ci,
    summarize,
)


class FakeDevice:
    """Returns scripted latencies and advances a fake clock by them."""

    def __init__(self, samples):
        self.samples = iter(samples)
        self.now = 0.0
        self.runs = 0

    def clock(self) -> float:
        return self.now

    def run_once(self) -> float:
        ms = next(self.samples)
        self.now += ms / 1000
        self.runs += 1
        return ms


def _endless(values):
    while True:
        yield from values


def test_constant_latency_stops_at_min_runs() -> None:
    dev = FakeDevice(_endless([2.0]))
    proto = MeasureProtocol(warmup_runs=3, warmup_seconds=0.0, min_runs=10)
    m = proto.run(dev.run_once, dev.clock)
    assert (m.median_ms, m.p10_ms, m.p90_ms, m.runs) == (2.0, 2.0, 2.0, 10)
    assert dev.runs == 13  # 3 warm-up runs are not in the statistics
    assert m.seconds == pytest.approx(13 * 2.0 / 1000)


def test_warmup_outliers_are_discarded() -> None:
    dev = FakeDevice([50.0, 40.0, 30.0, *[1.0] * 100])
    m = MeasureProtocol(warmup_runs=3, warmup_seconds=0.0).run(dev.run_once, dev.clock)
    assert m.median_ms == 1.0 and m.p90_ms == 1.0


def test_moderate_noise_converges_to_two_percent() -> None:
    rng = np.random.default_rng(0)
    samples = list(10.0 * (1 + 0.05 * rng.standard_normal(100_000)))
    dev = FakeDevice(samples)
    m = MeasureProtocol(warmup_seconds=0.0, max_seconds=1e9).run(dev.run_once, dev.clock)
    assert 10 < m.runs < 500
    assert abs(m.median_ms - 10.0) < 0.3
    assert m.p10_ms < m.median_ms < m.p90_ms


def test_wild_noise_stops_at_the_time_cap() -> None:
    rng = np.random.default_rng(1)
    dev = FakeDevice(list(rng.lognormal(0.0, 2.0, 100_000)))
    m = MeasureProtocol(warmup_seconds=0.0, max_seconds=0.5).run(dev.run_once, dev.clock)
    assert m.runs < 100_000
    assert dev.now >= 0.5  # stopped by the cap, on the fake clock


def test_slow_model_still_gets_a_few_runs() -> None:
    dev = FakeDevice(_endless([900.0, 1000.0, 1100.0]))
    m = MeasureProtocol(warmup_runs=1, warmup_seconds=0.0, max_seconds=1.0).run(dev.run_once, dev.clock)
    assert m.runs == 3


@given(st.lists(st.floats(0.01, 1000.0), min_size=1, max_size=300))
def test_median_ci_brackets_the_median(samples: list[float]) -> None:
    lo, hi = median_ci(samples)
    med = float(np.median(samples))
    assert lo <= med <= hi
    assert median_rel_halfwidth(samples) >= 0


def test_a_steady_host_is_not_called_drifting_and_a_step_is() -> None:
    rng = np.random.default_rng(0)
    steady = summarize((2.0 * rng.lognormal(0, 0.05, 400)).tolist(), 1.0)
    assert not steady.drifted and steady.drift < 0.05 and len(steady.segments_ms) == 4
    low, high = steady.median_ci
    assert low < steady.median_ms < high and steady.precision < 0.01
    step = np.concatenate([2.0 * rng.lognormal(0, 0.05, 200), 2.6 * rng.lognormal(0, 0.05, 200)])
    moved = summarize(step.tolist(), 1.0)
    assert moved.drifted and moved.drift > 0.2
    assert not summarize([2.0, 2.6] * 5, 1.0).drifted, "too few runs to cut into segments says nothing"


def test_bench_states_its_interval_and_warns_when_the_host_drifted() -> None:
    rng = np.random.default_rng(1)
    drifting = summarize(np.linspace(2.0, 3.0, 200).tolist(), 1.0)
    result = BenchResult(drifting, batch=4, backend="ort")
    assert result.warning and "drifted" in result.warning
    data = result.to_json()
    low, high = data["median_ci_ms"]
    assert data["drifted"] and low <= data["latency_ms"] <= high
    assert data["fps_ci"] == pytest.approx([4000.0 / high, 4000.0 / low])
    quiet = BenchResult(summarize((2.0 * rng.lognormal(0, 0.02, 200)).tolist(), 1.0), batch=4, backend="ort")
    assert quiet.warning is None and not quiet.to_json()["drifted"]


def pair_ratios(seed: int, lasting: float, pairs_per_state: int, pairs: int = 48) -> list[float]:
    """A window's pair ratios for a plan at 0.5x dense: run-to-run noise of 1%, and host states that slow the
    two models unevenly by `lasting` (log-normal sigma), each lasting `pairs_per_state` pairs."""
    rng = np.random.default_rng(seed)
    states = np.repeat(rng.normal(0.0, lasting, pairs // pairs_per_state + 1), pairs_per_state)[:pairs]
    return list(0.5 * np.exp(states + rng.normal(0.0, 0.01, pairs)))


def coverage_and_width(interval: Callable[[list[float]], tuple[float, float]], lasting: float,
                       pairs_per_state: int) -> tuple[float, float]:
    """How often `interval` holds the plan's ratio on the host's average state, over 400 windows, and its mean
    width."""
    intervals = [interval(pair_ratios(seed, lasting, pairs_per_state)) for seed in range(400)]
    return (float(np.mean([low <= 0.5 <= high for low, high in intervals])),
            float(np.mean([high - low for low, high in intervals])))


def test_slowdowns_that_last_several_pairs_widen_the_ratios_interval_to_hold_it() -> None:
    """Neighbouring pairs that share a host state are not independent: order statistics over them hold the
    ratio far less often than their 95% says; the segments' spread restores it."""
    order_coverage, _ = coverage_and_width(median_ci, 0.02, 5)
    segments_coverage, _ = coverage_and_width(pairs_ci, 0.02, 5)
    assert order_coverage < 0.8
    assert segments_coverage > 0.88


def test_a_host_whose_pairs_are_independent_pays_little_for_the_segments() -> None:
    order_coverage, order_width = coverage_and_width(median_ci, 0.0, 1)
    segments_coverage, segments_width = coverage_and_width(pairs_ci, 0.0, 1)
    assert order_coverage > 0.93 and segments_coverage > 0.93
    assert segments_width < 1.2 * order_width


def test_too_few_pairs_for_four_segments_take_order_statistics_alone() -> None:
    ratios = pair_ratios(0, 0.05, 2, pairs=22)
    assert pairs_ci(ratios) == median_ci(ratios)
    longer = pair_ratios(0, 0.05, 2, pairs=24)
    low, high = pairs_ci(longer)
    order_low, order_high = median_ci(longer)
    assert low <= order_low and high >= order_high and (low, high) != (order_low, order_high)


@pytest.mark.parametrize(("z", "confidence"), [(Z_95, 0.95), (Z_97_5, 0.975)])
def test_the_t_quantiles_are_students(z: float, confidence: float) -> None:
    """Each tabled quantile leaves (1 - confidence) / 2 in the tail of Student's t density, integrated here."""
    for dof, quantile in enumerate(T_QUANTILES[z], start=3):
        x = np.linspace(0.0, quantile, 200001)
        density = (math.gamma((dof + 1) / 2) / (math.sqrt(dof * math.pi) * math.gamma(dof / 2))
                   * (1 + x**2 / dof) ** (-(dof + 1) / 2))
        assert 0.5 + float(np.trapezoid(density, x)) == pytest.approx(0.5 + confidence / 2, abs=2e-4)
