"""The results of timing: one model (what every backend returns and what the database stores), and two models
timed against each other (what the closed loop decides on)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Measurement:
    """Latency statistics over `runs` timed runs that took `seconds` of wall time (warm-up included).

    `estimate` is True when nothing ran (the analytic backend): such numbers must never pass for
    measurements, so every printer shows the flag. `ci_low_ms`/`ci_high_ms` bound the median at 95% (order
    statistics); `segments_ms` are the medians of consecutive quarters of the runs, in time order, and
    `drifted` says they disagree beyond the precision stated and beyond their own noise (see
    `protocol.summarize`). Summaries made without the runs (fakes, stored entries) leave them unset.
    """

    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int
    seconds: float
    estimate: bool = False
    ci_low_ms: float | None = None
    ci_high_ms: float | None = None
    segments_ms: tuple[float, ...] = ()
    drifted: bool = False

    @property
    def median_ci(self) -> tuple[float, float]:
        """The median's 95% interval; without one, the p10-p90 range (wider than it from about 10 runs on)."""
        if self.ci_low_ms is None or self.ci_high_ms is None:
            return self.p10_ms, self.p90_ms
        return self.ci_low_ms, self.ci_high_ms

    @property
    def precision(self) -> float:
        """The median's stated precision: its interval's half-width over the median (0.01 is ±1%)."""
        low, high = self.median_ci
        return (high - low) / 2 / self.median_ms if self.median_ms > 0 else 0.0

    @property
    def drift(self) -> float:
        """How far the host moved while it was timed: the spread of the segment medians over the median."""
        if len(self.segments_ms) < 2 or self.median_ms <= 0:
            return 0.0
        return (max(self.segments_ms) - min(self.segments_ms)) / self.median_ms


@dataclass(frozen=True)
class Comparison:
    """A candidate model timed against a reference in one window (`protocol.InterleavedProtocol`).

    `ratio` is candidate / reference, the median of the per-pair ratios `pair_ratios` (pairs are adjacent in
    time, so what the host does to both cancels in each); `ratio_ci` bounds it at 95% (order statistics
    over the pairs, widened to their segments' spread: `protocol.pairs_ci`). `reference` and `candidate`
    summarise each model's runs over the window; `reference_runs` and `candidate_runs` keep their runs in time
    order, from which the absolute decisions take the dense latency's own interval and `protocol.pooled`
    joins two windows. `scheme` is
    "interleaved" (both models loaded, runs or small blocks alternating), "sequential blocks" (a backend
    that can only time one model at a time: short alternating measurements, each loading its model again)
    or "estimate" (nothing ran: the ratio is exact)."""

    ratio: float
    ratio_ci: tuple[float, float]
    reference: Measurement
    candidate: Measurement
    pair_ratios: tuple[float, ...]
    reference_runs: tuple[float, ...]
    seconds: float
    scheme: str
    candidate_runs: tuple[float, ...] = ()

    @property
    def pairs(self) -> int:
        return len(self.pair_ratios)

    @property
    def precision(self) -> float:
        """The ratio's stated precision: its interval's half-width over the ratio (0.01 is ±1%)."""
        low, high = self.ratio_ci
        return (high - low) / 2 / self.ratio if self.ratio > 0 else 0.0

    @property
    def estimate(self) -> bool:
        return self.scheme == "estimate"
