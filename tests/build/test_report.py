"""The build's printed summary: every number in it comes from the measurement it is stated against."""

from __future__ import annotations

import io

from rich.console import Console

from mdp_trt.report import ModelStats, Report


def test_the_summary_shows_dense_as_timed_alongside_the_pruned_model() -> None:
    """The quickstart on a host that slowed down: dense benched at 5.194 ms at the start, 5.770 ms in the final
    verification, where the plan measured 0.492x of it. A table with 5.194 beside 2.838 reads as 0.546x."""
    measured = {"dense_ms": 5.770, "ratio": 0.492, "ratio_ci": [0.483, 0.498], "latency_ci_ms": [2.787, 2.873],
                "latency_ms": 2.838, "fps": 352.3, "relative": True, "target_ratio": 0.5, "target_ms": 2.885,
                "scheme": "interleaved", "pairs": 168, "met": True, "decision": "met", "seconds": 18.2}
    report = Report(target={"fps": 346.6, "latency_ms": 2.885, "batch": 1}, backend={"name": "ort"},
                    dense=ModelStats(5.194, 192.5, 100, 100), pruned=ModelStats(2.838, 352.3, 50, 50),
                    predicted_latency_ms=2.901, measured=measured, importance_kept=0.92, groups=[],
                    blocks_removed=[], solver={}, profiling={})
    console = Console(file=io.StringIO(), width=200)
    report.print_summary(console)
    printed = console.file.getvalue()
    assert "5.770" in printed and "173.3" in printed, "dense latency and FPS from the final verification"
    assert "5.194" not in printed and "192.5" not in printed
