"""The measurement protocols: one model (warm up, then sample until the median is known to ±2% or time runs
out), and a candidate against a reference, interleaved, until their ratio is known.

The stopping rules use the distribution-free confidence interval of the median from order statistics:
with n sorted samples the 95% interval is [x_(j), x_(k)], j = floor((n - z√n)/2), k = ceil(1 + (n + z√n)/2)
(1-based). It makes no normality assumption, which matters because latency samples are skewed with a
long right tail (preemption, cache misses).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mdp_trt.latency.measurement import Comparison, Measurement

Z_95 = 1.959964
Z_97_5 = 2.241403  # two intervals at 97.5% hold together with at least 95% (Bonferroni)
SEGMENTS = 4  # a measurement's runs are cut into this many consecutive segments to see the host drift
MIN_SEGMENT_RUNS = 5  # fewer runs per segment say nothing about drift
MAX_RATIO_SEGMENTS = 8  # a comparison's pairs are cut into at most this many segments (`pairs_ci`)
# Student's t quantiles for 3..7 degrees of freedom (segments - 1), two-sided at 95% and at 97.5%.
T_QUANTILES = {Z_95: (3.182, 2.776, 2.571, 2.447, 2.365), Z_97_5: (4.177, 3.495, 3.163, 2.969, 2.841)}

# Runs the model `n` times back to back and returns each run's latency (ms); the device is idle afterwards.
Timer = Callable[[int], list[float]]
Settled = Callable[[Comparison], bool]  # the comparison so far -> the caller's decision no longer needs more pairs


@dataclass(frozen=True)
class MeasureProtocol:
    """How long and how often to time one model.

    Warm-up lasts `warmup_runs` runs and at least `warmup_seconds`. Sampling stops when the median's
    relative 95% CI half-width is at most `rel_ci` (checked once `min_runs` are in), or at `max_runs`,
    or when `max_seconds` of sampling have passed and at least `min_runs_on_cap` runs are in.
    """

    warmup_runs: int = 3
    warmup_seconds: float = 0.02
    min_runs: int = 10
    max_runs: int = 5000
    rel_ci: float = 0.02
    max_seconds: float = 1.0
    min_runs_on_cap: int = 3

    def run(
        self, run_once: Callable[[], float], clock: Callable[[], float] = time.perf_counter
    ) -> Measurement:
        """Time `run_once` (which runs the model once and returns its latency in ms)."""
        t0 = clock()
        done = 0
        while done < self.warmup_runs or clock() - t0 < self.warmup_seconds:
            run_once()
            done += 1
        t_sample = clock()
        samples: list[float] = []
        next_check = self.min_runs
        while len(samples) < self.max_runs:
            samples.append(run_once())
            n = len(samples)
            if n >= next_check:
                next_check = max(n + 1, int(n * 1.1))
                if median_rel_halfwidth(samples) <= self.rel_ci:
                    break
            if clock() - t_sample >= self.max_seconds and n >= self.min_runs_on_cap:
                break
        return summarize(samples, clock() - t0)


@dataclass(frozen=True)
class InterleavedProtocol:
    """How to time a candidate against a reference so that what the host does to both cancels.

    Both models are loaded at once and timed in alternating blocks, A B A B ..., each block timing about
    `block_ms` of the model's runs (at least one run, at most `max_block_runs`; sized from the warm-up)
    after a quarter as many untimed runs (at least one). The untimed runs are the switch-over: measured on
    this project's CPU (ResNet-18 at 64 px, ONNX Runtime, 1 thread), a model's first runs after the other
    one ran are up to 60% slower (caches, allocator) and settle after about five runs, so alternating
    single runs put a pruned plan at 0.51x dense where each model timed alone is at 0.40-0.43x; blocks of
    5 ms gave 0.47x, of 50 ms 0.41x. Blocks of 50 ms keep a pair within about a tenth of a second, far
    shorter than the host's drift.

    The statistic is the median of the per-pair ratios candidate block / reference block (each block's median
    run). A pair spans a few milliseconds, while the host's speed moves over seconds to minutes (30% here
    within minutes): a slow host slows both halves of a pair alike, so each pair's ratio is free of it,
    where a ratio of two medians timed one after the other carries all of it. The pairs are the units, so
    the ratio's 95% interval comes from order statistics over them, as for one model (no normality
    assumed, no resampling), widened to the interval of their segments' medians when the host's uneven
    slowdowns make neighbouring pairs alike (`pairs_ci`). The pairs alternate their order (A B B A A B
    ...): a host that slows down steadily within a pair makes its second block look slower, the candidate
    in one pair and the reference in the next, so the bias cancels across pairs instead of adding up. The
    median (not the mean) keeps one preempted block from moving the estimate. The ratio of the two pooled
    medians also cancels the drift when the blocks interleave, but its interval would need a bootstrap
    over pairs (the two medians move together with the host), so it is not used.

    Sampling stops once `min_pairs` are in and the interval's half-width is at most `rel_ci` of the ratio
    or, when the caller gives `settled`, once `settled(comparison so far)` says its decision needs no more
    pairs (it then decides alone: a ratio known to ±1% may still straddle the caller's target); checks come
    at geometrically spaced pair counts, as for one model, so peeking widens the interval's error little.
    Else it stops at `max_pairs`, or when `max_seconds` have passed with at least `min_pairs_on_cap` pairs.
    The cap is twice `BENCH_PROTOCOL`'s: this times two models. `switch_over=False` times no untimed runs,
    for timers that warm up by themselves (`base.measure_interleaved`'s sequential blocks).
    """

    warmup_runs: int = 3
    warmup_seconds: float = 0.2
    block_ms: float = 50.0
    max_block_runs: int = 64
    switch_over: bool = True
    min_pairs: int = 10
    max_pairs: int = 5000
    rel_ci: float = 0.01
    max_seconds: float = 6.0
    min_pairs_on_cap: int = 3

    def run(self, reference: Timer, candidate: Timer, *, settled: Settled | None = None,
            clock: Callable[[], float] = time.perf_counter, scheme: str = "interleaved") -> Comparison:
        """Time `candidate` against `reference` (see the class docstring) and return their Comparison."""
        t0 = clock()
        warm_ref: list[float] = []
        warm_cand: list[float] = []
        while len(warm_ref) < self.warmup_runs or clock() - t0 < self.warmup_seconds:
            warm_ref += reference(1)
            warm_cand += candidate(1)
        sizes = self._block_runs(warm_ref), self._block_runs(warm_cand)
        switches = (self._switch_runs(sizes[0]), self._switch_runs(sizes[1]))
        t_sample = clock()
        ratios: list[float] = []
        ref_runs: list[float] = []
        cand_runs: list[float] = []
        next_check = self.min_pairs
        while len(ratios) < self.max_pairs:
            if len(ratios) % 2:  # A B, then B A: a host drifting steadily slows the second block of each alike
                cand_block = candidate(switches[1] + sizes[1])[switches[1]:]
                ref_block = reference(switches[0] + sizes[0])[switches[0]:]
            else:
                ref_block = reference(switches[0] + sizes[0])[switches[0]:]
                cand_block = candidate(switches[1] + sizes[1])[switches[1]:]
            ref_runs += ref_block
            cand_runs += cand_block
            ratios.append(float(np.median(cand_block) / np.median(ref_block)))
            n = len(ratios)
            if n >= next_check:
                next_check = max(n + 1, int(n * 1.1))
                so_far = _comparison(ratios, ref_runs, cand_runs, clock() - t0, scheme)
                if so_far.precision <= self.rel_ci if settled is None else settled(so_far):
                    break
            if clock() - t_sample >= self.max_seconds and n >= self.min_pairs_on_cap:
                break
        return _comparison(ratios, ref_runs, cand_runs, clock() - t0, scheme)

    def _block_runs(self, warmup: Sequence[float]) -> int:
        typical = float(np.median(warmup))
        if typical <= 0:
            return self.max_block_runs
        return int(min(self.max_block_runs, max(1, round(self.block_ms / typical))))

    def _switch_runs(self, runs: int) -> int:
        """The untimed switch-over runs before a block of `runs`: a quarter as many, at least one."""
        return max(1, round(runs / 4)) if self.switch_over else 0


def _comparison(ratios: Sequence[float], ref_runs: Sequence[float], cand_runs: Sequence[float], seconds: float,
                scheme: str) -> Comparison:
    return Comparison(float(np.median(ratios)), pairs_ci(ratios), summarize(ref_runs, seconds),
                      summarize(cand_runs, seconds), tuple(ratios), tuple(ref_runs), seconds, scheme,
                      tuple(cand_runs))


def pooled(first: Comparison, later: Comparison) -> Comparison:
    """Two windows of the same two models as one comparison, their pairs in time order: the ratio is the
    median over both windows' pairs and its interval (`pairs_ci`) cuts them into segments across both, so a
    host state that held through one window and not the other widens it, as a third window would see."""
    if first.scheme != later.scheme:
        raise ValueError(f"cannot pool a {first.scheme} comparison with a {later.scheme} one")
    return _comparison(first.pair_ratios + later.pair_ratios, first.reference_runs + later.reference_runs,
                       first.candidate_runs + later.candidate_runs, first.seconds + later.seconds, first.scheme)


# Probes: many short measurements, so a tighter time cap; whole models: a longer cap, a 1% target.
PROBE_PROTOCOL = MeasureProtocol(max_seconds=0.5)
BENCH_PROTOCOL = MeasureProtocol(max_seconds=3.0, warmup_seconds=0.2, rel_ci=0.01)
# A candidate against the dense model: both models, so twice the bench's cap.
COMPARE_PROTOCOL = InterleavedProtocol(max_seconds=2 * BENCH_PROTOCOL.max_seconds, rel_ci=BENCH_PROTOCOL.rel_ci)
# The final verification, the one comparison a build's verdict rests on: three times the cap, so that on a
# noisy host its window spans more of the host's states and its segments are longer (`pairs_ci`; one
# MobileNetV3 plan here: median half-width 3.3% against 4.7% in 6 s); a quiet host still stops it once its
# ratio is known to 1% and decided.
VERIFY_PROTOCOL = InterleavedProtocol(max_seconds=3 * COMPARE_PROTOCOL.max_seconds, rel_ci=COMPARE_PROTOCOL.rel_ci)


def median_ci(samples: Sequence[float], z: float = Z_95) -> tuple[float, float]:
    """Order-statistics confidence interval of the median (lower, upper)."""
    xs = sorted(samples)
    n = len(xs)
    half = z * math.sqrt(n) / 2
    lo = max(1, math.floor(n / 2 - half))
    hi = min(n, math.ceil(1 + n / 2 + half))
    return xs[lo - 1], xs[hi - 1]


def pairs_ci(ratios: Sequence[float], z: float = Z_95) -> tuple[float, float]:
    """The interval of a comparison's ratio (the median of its pair ratios, in time order), at the confidence
    of `z` (`Z_95` or `Z_97_5`).

    Order statistics over the pairs (`median_ci`) treat them as independent, and on a shared host they are
    not: its slowdowns fall unevenly on the two models' kernels and last seconds, longer than a pair, so
    neighbouring pairs share a bias that does not cancel within them. Timed ten times over in a row on this
    project's 2-core host, EfficientNet and MobileNetV3 plans' windows held the plans' median ratio across
    windows in 75% of their 95% intervals (52 windows). So the interval is also that of batch means: the
    pairs are cut into consecutive segments (4 to `MAX_RATIO_SEGMENTS`, at least `MIN_SEGMENT_RUNS` pairs
    each, of whole A B, B A couples so that a drift within pairs cancels in each segment as in the whole),
    and the ratio is bounded by Student's t over the segments' medians; the interval is the wider of the two.
    The same windows held the median ratio in 85% of those intervals (median half-width 3.2% against 1.9%).
    What is left are host states that outlast a window (the loop's margin, `closed_loop.Verdict.margin`,
    covers them). Too few pairs for four segments: order statistics alone."""
    low, high = median_ci(ratios, z)
    couples_per_segment = math.ceil(MIN_SEGMENT_RUNS / 2)
    count = min(MAX_RATIO_SEGMENTS, len(ratios) // 2 // couples_per_segment)
    if count < SEGMENTS:
        return low, high
    couples = len(ratios) // 2
    bounds = [2 * round(i * couples / count) for i in range(count)] + [len(ratios)]
    medians = [float(np.median(ratios[start:end])) for start, end in itertools.pairwise(bounds)]
    half = T_QUANTILES[z][count - SEGMENTS] * float(np.std(medians, ddof=1)) / math.sqrt(count)
    center = float(np.median(ratios))
    return min(low, center - half), max(high, center + half)


def median_rel_halfwidth(samples: Sequence[float]) -> float:
    """Half the CI width over the median: 0.02 means the median is known to about ±2%."""
    lo, hi = median_ci(samples)
    if hi == lo:
        return 0.0
    med = float(np.median(samples))
    return math.inf if med <= 0 else (hi - lo) / 2 / med


def summarize(samples: Sequence[float], seconds: float) -> Measurement:
    """Median, p10/p90 and the median's 95% interval of `samples` (in time order), and whether the host
    drifted while they were taken.

    Drift: the runs are cut into `SEGMENTS` consecutive segments (when each gets `MIN_SEGMENT_RUNS`), and
    the host drifted when the slowest and fastest segment medians differ by more than the precision the
    whole median is stated to (its interval's half-width) and their own 95% intervals do not overlap: a
    steady host's segments differ by their noise alone, which is larger than the whole median's (a quarter
    of the runs each), so the first test alone would cry wolf.
    """
    arr = np.asarray(samples, dtype=np.float64)
    p10, med, p90 = np.percentile(arr, [10, 50, 90])
    low, high = median_ci(samples)
    segments: tuple[float, ...] = ()
    drifted = False
    if len(samples) >= SEGMENTS * MIN_SEGMENT_RUNS:
        parts = np.array_split(arr, SEGMENTS)
        segments = tuple(float(np.median(part)) for part in parts)
        slowest, fastest = parts[int(np.argmax(segments))], parts[int(np.argmin(segments))]
        stated = (high - low) / 2
        drifted = (max(segments) - min(segments) > stated
                   and median_ci(slowest.tolist())[0] > median_ci(fastest.tolist())[1])
    return Measurement(float(med), float(p10), float(p90), len(samples), float(seconds),
                       ci_low_ms=float(low), ci_high_ms=float(high), segments_ms=segments, drifted=drifted)
