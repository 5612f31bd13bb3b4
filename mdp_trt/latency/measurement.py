"""The result of timing one model: what every backend returns and what the database stores."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Measurement:
    """Latency statistics over `runs` timed runs that took `seconds` of wall time (warm-up included).

    `estimate` is True when nothing ran (the analytic backend): such numbers must never pass for
    measurements, so every printer shows the flag.
    """

    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int
    seconds: float
    estimate: bool = False
