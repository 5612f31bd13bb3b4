"""One clock per solve, started when `solve` is called, so a time limit covers every stage of it.

A limit that only reached the MIP solver left model building, presolve, the LP used for fixing and
the final min-latency check off the clock, and `--time-limit 2` took 6 s. Every stage asks the same
`Deadline` how much is left instead, and the solver gets what remains after its model is built.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

# Below this, a solver run cannot do anything useful: it is skipped and the stage reports no result.
MIN_RUN_SECONDS = 1e-3


class Deadline:
    """Seconds left of a time limit (None: no limit), measured from construction on `clock`."""

    def __init__(self, limit: float | None, clock: Callable[[], float] = time.perf_counter) -> None:
        if limit is not None and not (math.isfinite(limit) and limit > 0):
            raise ValueError(f"a time limit must be finite and > 0 seconds, got {limit!r}")
        self.limit = limit
        self.clock = clock
        self.start = clock()

    def elapsed(self) -> float:
        return self.clock() - self.start

    def left(self) -> float | None:
        """Seconds left (possibly <= 0), or None without a limit."""
        return None if self.limit is None else self.limit - self.elapsed()

    def expired(self) -> bool:
        left = self.left()
        return left is not None and left < MIN_RUN_SECONDS

