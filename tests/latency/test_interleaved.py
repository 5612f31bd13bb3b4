"""Timing a candidate against a reference interleaved, on simulated hosts (a fake clock, scripted latencies):
what a drifting or noisy host does to the ratio, the blocks and their switch-over runs, when sampling stops,
and how each backend provides the interleaved measurement."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import onnx
import pytest

from mdp_trt.latency.backends import get_backend
from mdp_trt.latency.backends.base import measure_interleaved
from mdp_trt.latency.measurement import Measurement
from mdp_trt.latency.probes import ProbeSpec, build_probe
from mdp_trt.latency.protocol import COMPARE_PROTOCOL, InterleavedProtocol, MeasureProtocol, pooled
from tests.latency import fake_tensorrt
from tests.latency.latency_fakes import conv_layer

QUICK = InterleavedProtocol(warmup_runs=2, warmup_seconds=0.0, max_pairs=200, max_seconds=1e9)


class Host:
    """A simulated machine: a run of a model of `ms` takes ms x speed(now), and the clock advances by it.

    `drift` is how much slower the host gets per simulated second (0.3: 30% slower after one second);
    `noise` the run-to-run spread (lognormal sigma); `cold` how much slower a model's first runs are after
    another model ran (they settle over `cold_runs` runs, as caches refill).
    """

    def __init__(self, drift: float = 0.0, noise: float = 0.0, cold: float = 0.0, cold_runs: int = 4,
                 seed: int = 0) -> None:
        self.now = 0.0
        self.drift, self.noise, self.cold, self.cold_runs = drift, noise, cold, cold_runs
        self.rng = np.random.default_rng(seed)
        self.last: float | None = None
        self.streak = 0

    def clock(self) -> float:
        return self.now

    def run(self, ms: float) -> float:
        self.streak = self.streak + 1 if self.last == ms else 0
        self.last = ms
        took = ms * (1 + self.drift * self.now)
        if self.cold and self.streak < self.cold_runs:
            took *= 1 + self.cold * (1 - self.streak / self.cold_runs)
        if self.noise:
            took *= float(self.rng.lognormal(0.0, self.noise))
        self.now += took / 1000
        return took

    def timer(self, ms: float):
        return lambda runs: [self.run(ms) for _ in range(runs)]


def test_a_host_slowing_down_30_percent_fools_sequential_benches_but_not_the_interleaved_ratio() -> None:
    """The issue's failure: dense timed, then the candidate, on a host that slows down meanwhile."""
    host = Host(drift=0.3)
    bench = MeasureProtocol(warmup_seconds=0.0, min_runs=200, max_runs=200)
    dense = bench.run(lambda: host.run(2.0), host.clock).median_ms
    sequential = bench.run(lambda: host.run(1.0), host.clock).median_ms / dense
    assert sequential > 0.54, "the candidate, timed later on a slower host, looks about 10% slower than it is"
    host = Host(drift=0.3)
    comparison = dataclass_replace(QUICK, max_pairs=40).run(host.timer(2.0), host.timer(1.0), clock=host.clock)
    assert comparison.ratio == pytest.approx(0.5, rel=0.005)
    low, high = comparison.ratio_ci
    assert low < 0.5 < high and (high - low) / 2 <= 0.02 * comparison.ratio, \
        "the interval holds the true ratio; it is as wide as the drift within one 50 ms block"
    assert comparison.reference.drift > 0.05, "the dense model itself moved across the window"


def test_on_a_noisy_host_the_interval_holds_the_true_ratio() -> None:
    host = Host(noise=0.2, seed=3)
    comparison = QUICK.run(host.timer(4.0), host.timer(3.0), clock=host.clock)
    low, high = comparison.ratio_ci
    assert low < 0.75 < high and high - low < 0.1
    assert comparison.scheme == "interleaved" and comparison.pairs >= QUICK.min_pairs


def test_the_runs_a_model_needs_after_a_switch_are_not_charged_to_it() -> None:
    """Alternating single runs (one untimed before each) charges every timed run most of the cold start;
    blocks of 50 ms after a quarter as many switch-over runs measure the steady latency."""
    single = dataclass_replace(QUICK, block_ms=0.0)
    host = Host(cold=0.6)
    cold = single.run(host.timer(2.0), host.timer(0.5), clock=host.clock)
    host = Host(cold=0.6)
    steady = QUICK.run(host.timer(2.0), host.timer(0.5), clock=host.clock)
    assert steady.ratio == pytest.approx(0.25, rel=1e-9)
    assert cold.candidate.median_ms > 0.5 * 1.25 and steady.candidate.median_ms == 0.5


def test_block_sizes_follow_the_models_latency() -> None:
    calls: dict[str, list[int]] = {"ref": [], "cand": []}

    def timer(name: str, ms: float):
        def run(runs: int) -> list[float]:
            calls[name].append(runs)
            return [ms] * runs
        return run

    QUICK.run(timer("ref", 10.0), timer("cand", 0.5))
    ref, cand = calls["ref"][QUICK.warmup_runs:], calls["cand"][QUICK.warmup_runs:]
    assert set(ref) == {5 + 1}, "50 ms of 10 ms runs after one switch-over run"
    assert set(cand) == {64 + 16}, "capped at max_block_runs, after a quarter as many untimed"


def test_the_time_cap_ends_a_comparison_whose_decision_never_settles() -> None:
    host = Host(noise=0.05)
    capped = dataclass_replace(QUICK, max_seconds=2.0, max_pairs=100_000)
    comparison = capped.run(host.timer(2.0), host.timer(1.0), clock=host.clock, settled=lambda c: False)
    assert 2.0 <= host.now < 2.5 and comparison.pairs >= capped.min_pairs_on_cap


def test_settled_ends_sampling_once_the_decision_is_taken() -> None:
    host = Host(noise=0.3)
    comparison = QUICK.run(host.timer(2.0), host.timer(0.5), clock=host.clock,
                           settled=lambda c: c.ratio_ci[1] < 0.5)
    assert comparison.pairs == QUICK.min_pairs and comparison.ratio_ci[1] < 0.5


def test_the_compare_protocol_caps_at_twice_the_bench() -> None:
    from mdp_trt.latency.protocol import BENCH_PROTOCOL

    assert COMPARE_PROTOCOL.max_seconds == 2 * BENCH_PROTOCOL.max_seconds == 6.0


# --- backends --------------------------------------------------------------------------------------------


def _probe(c_out: int = 8, batch: int = 1) -> onnx.ModelProto:
    return build_probe(ProbeSpec.from_layer(conv_layer()), 8, c_out, batch=batch)


def test_onnx_runtime_holds_both_sessions_and_alternates_them() -> None:
    backend = get_backend("ort", threads=1)
    short = dataclass_replace(QUICK, block_ms=1.0, max_pairs=12)
    comparison = measure_interleaved(backend, _probe(8), _probe(32), short)
    assert comparison.scheme == "interleaved" and short.min_pairs <= comparison.pairs <= 12
    assert comparison.ratio_ci[0] <= comparison.ratio <= comparison.ratio_ci[1]
    assert comparison.reference.runs >= 12 and not comparison.estimate


def test_the_analytic_backend_needs_no_interleaving_its_ratio_is_exact() -> None:
    backend = get_backend("analytic")
    comparison = measure_interleaved(backend, _probe(8), _probe(32), QUICK)
    exact = backend.estimate_ms(_probe(32)) / backend.estimate_ms(_probe(8))
    assert comparison.scheme == "estimate" and comparison.ratio == pytest.approx(exact)
    assert comparison.ratio_ci == (comparison.ratio, comparison.ratio)


class MeasureOnly:
    """A backend with `measure` alone: it can time one model at a time."""

    name = "measure-only"

    def __init__(self, host: Host) -> None:
        self.host = host
        self.loads = 0

    def fingerprint(self, batch: int, precision: str) -> dict:
        return {"backend": self.name, "estimate": False}

    def measure(self, model, protocol, *, batch: int = 1, precision: str = "fp32") -> Measurement:
        self.loads += 1
        ms = float(model.graph.node[0].attribute[0].i if model.graph.node[0].attribute else 1)
        return protocol.run(lambda: self.host.run(ms), self.host.clock)


def test_a_backend_that_times_one_model_at_a_time_is_compared_in_sequential_blocks_and_says_so() -> None:
    host = Host(drift=0.3)
    backend = MeasureOnly(host)
    slow, fast = onnx.ModelProto(), onnx.ModelProto()
    slow.graph.node.add().attribute.add(name="ms", i=4, type=onnx.AttributeProto.INT)
    fast.graph.node.add().attribute.add(name="ms", i=1, type=onnx.AttributeProto.INT)
    comparison = measure_interleaved(backend, slow, fast, dataclass_replace(QUICK, max_pairs=20))
    assert comparison.scheme == "sequential blocks" and QUICK.min_pairs <= comparison.pairs <= 20
    assert comparison.ratio == pytest.approx(0.25, rel=0.03), "drift slower than a block still cancels"
    assert backend.loads == 2 * (comparison.pairs + 1), "one load per block, warm-up pair included"


@contextlib.contextmanager
def fake_trt(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple]:
    trt, rt = fake_tensorrt.install(monkeypatch, "10.7.0")
    yield trt, rt, get_backend("tensorrt")
    assert rt.unreleased() == {}, "engines, buffers, events and streams all released"


def test_tensorrt_engines_are_timed_in_alternation_with_the_gpu_drained_between_them(monkeypatch) -> None:
    with fake_trt(monkeypatch) as (trt, _rt, backend):
        gpu_ms = trt.fake.compute_ms + 2 * trt.fake.reformat_ms
        with backend.open_timer(_probe()) as timer:
            first, again = timer(5), timer(5)
        assert first == pytest.approx([gpu_ms] * 5) and again == pytest.approx([gpu_ms] * 5), \
            "each call starts on an idle GPU: its first sample, which holds the launch, is dropped"
        reference, candidate = _probe(8), _probe(16)
        build = backend.build

        def build_slower_candidate(model, batch, precision):
            trt.fake.compute_ms = 3.0 if model is candidate else 1.0
            return build(model, batch, precision)

        monkeypatch.setattr(backend, "build", build_slower_candidate)
        comparison = measure_interleaved(backend, reference, candidate, dataclass_replace(QUICK, max_pairs=12))
        assert comparison.scheme == "interleaved"
        assert comparison.ratio == pytest.approx((3.0 + 0.5) / gpu_ms)


def dataclass_replace(protocol: InterleavedProtocol, **changes) -> InterleavedProtocol:
    import dataclasses

    return dataclasses.replace(protocol, **changes)


def test_onnx_runtime_sessions_timed_in_alternation_stop_spinning_and_lone_ones_do_not(monkeypatch) -> None:
    """An idle session's spinning workers would take the cores of the one being timed (see `open_timer`);
    probes and lone measurements keep ONNX Runtime's default, as a deployed session runs."""
    backend = get_backend("ort", threads=2)
    made: list[bool] = []
    session = backend.session

    def recording(model, precision="fp32", profile_prefix=None, *, stop_spinning=False):
        made.append(stop_spinning)
        return session(model, precision, profile_prefix, stop_spinning=stop_spinning)

    monkeypatch.setattr(backend, "session", recording)
    measure_interleaved(backend, _probe(8), _probe(16), dataclass_replace(QUICK, block_ms=1.0, max_pairs=10))
    backend.measure(_probe(8), MeasureProtocol(warmup_runs=1, warmup_seconds=0.0, min_runs=3, max_runs=3))
    assert made == [True, True, False]
    entry = "session.force_spinning_stop"
    assert session(_probe(8), stop_spinning=True).get_session_options().get_session_config_entry(entry) == "1"
    with pytest.raises(RuntimeError, match="does not have configuration"):  # ONNX Runtime's default
        session(_probe(8)).get_session_options().get_session_config_entry(entry)


def test_two_windows_pooled_are_one_comparison_whose_interval_spans_both_host_states() -> None:
    """A plan at 0.5x dense in a window where the host slowed the plan's kernels by 4%, and again in one where
    it did not: each window's interval holds its own host state only; pooled, the ratio lies between the two
    and its interval holds their average, several times as wide as either window's."""
    fixed = dataclass_replace(QUICK, max_pairs=48, rel_ci=0.0)
    quiet_host, slow_host = Host(noise=0.01, seed=1), Host(noise=0.01, seed=2)
    slow = fixed.run(slow_host.timer(2.0), slow_host.timer(1.04), clock=slow_host.clock)
    quiet = fixed.run(quiet_host.timer(2.0), quiet_host.timer(1.0), clock=quiet_host.clock)
    both = pooled(slow, quiet)
    assert both.pairs == 96 and both.pair_ratios == slow.pair_ratios + quiet.pair_ratios
    assert both.reference_runs == slow.reference_runs + quiet.reference_runs
    assert both.candidate.runs == len(slow.candidate_runs) + len(quiet.candidate_runs) > 0
    assert quiet.ratio_ci[1] < 0.51 < slow.ratio_ci[0], "each window sees only its own host state"
    assert quiet.ratio < both.ratio < slow.ratio and both.ratio_ci[0] < 0.51 < both.ratio_ci[1]
    width = both.ratio_ci[1] - both.ratio_ci[0]
    assert width > 3 * max(window.ratio_ci[1] - window.ratio_ci[0] for window in (slow, quiet))
    assert both.seconds == pytest.approx(slow.seconds + quiet.seconds)
    with pytest.raises(ValueError, match="cannot pool"):
        pooled(slow, dataclass_replace(quiet, scheme="sequential blocks"))
