"""The measurement protocol: warm up, then sample until the median is known to ±2% or time runs out.

The stopping rule uses the distribution-free confidence interval of the median from order statistics:
with n sorted samples the 95% interval is [x_(j), x_(k)], j = floor((n - z√n)/2), k = ceil(1 + (n + z√n)/2)
(1-based). It makes no normality assumption, which matters because latency samples are skewed with a
long right tail (preemption, cache misses).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mdp_trt.latency.measurement import Measurement

Z_95 = 1.959964


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


# Probes: many short measurements, so a tighter time cap; whole models: a longer cap, a 1% target.
PROBE_PROTOCOL = MeasureProtocol(max_seconds=0.5)
BENCH_PROTOCOL = MeasureProtocol(max_seconds=3.0, warmup_seconds=0.2, rel_ci=0.01)


def median_ci(samples: Sequence[float], z: float = Z_95) -> tuple[float, float]:
    """Order-statistics confidence interval of the median (lower, upper)."""
    xs = sorted(samples)
    n = len(xs)
    half = z * math.sqrt(n) / 2
    lo = max(1, math.floor(n / 2 - half))
    hi = min(n, math.ceil(1 + n / 2 + half))
    return xs[lo - 1], xs[hi - 1]


def median_rel_halfwidth(samples: Sequence[float]) -> float:
    """Half the CI width over the median: 0.02 means the median is known to about ±2%."""
    lo, hi = median_ci(samples)
    if hi == lo:
        return 0.0
    med = float(np.median(samples))
    return math.inf if med <= 0 else (hi - lo) / 2 / med


def summarize(samples: Sequence[float], seconds: float) -> Measurement:
    arr = np.asarray(samples, dtype=np.float64)
    p10, med, p90 = np.percentile(arr, [10, 50, 90])
    return Measurement(float(med), float(p10), float(p90), len(samples), float(seconds))
