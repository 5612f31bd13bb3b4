"""Run a solver where it can be stopped on time: in a forked worker process, killed at the deadline.

HiGHS and SCIP look at their clocks only between phases, and some phases (HiGHS's presolve and root
separation, a heuristic's sub-MIP, SCIP's handling of a large polynomial constraint, pyscipopt's
building of it) run for seconds on large models: their own time limits overshot by up to 1.6 s (HiGHS)
and 2.7 s (SCIP) on problems this package is meant for. So when a deadline is set the work runs in a
forked child; the parent waits until the deadline, then kills it. The work reports each incumbent
it finds, so a killed run still hands back its best plan. Without a deadline, or where fork is not
safe (macOS, Windows), the work runs in this process and the solver's own limit is all there is.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from mdp_trt.solve.deadline import Deadline

GRACE = 0.02  # seconds a worker may take past the deadline to send what it has
AVAILABLE = sys.platform.startswith("linux")

T = TypeVar("T")
Report = Callable[[Any], None]


def ignore(_: Any) -> None:
    """The report of an in-process run: its result is all the caller gets."""


def run_until(
    work: Callable[[Report], T], deadline: Deadline, *, prepare: Callable[[], None] | None = None
) -> tuple[T | None, Any]:
    """`work(report)`, stopped at `deadline`: (its result, or None when stopped; the last report, or None).

    `prepare` runs first in the worker (e.g. to reset a library's thread pool, whose threads a forked
    child does not have). An exception in the worker is raised here as a RuntimeError with its message.
    """
    if deadline.limit is None or not AVAILABLE:
        return work(ignore), None
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    sys.stdout.flush()  # else the worker inherits unwritten output, and could write it a second time
    sys.stderr.flush()
    with warnings.catch_warnings():  # Python 3.12+ warns of fork with threads; `prepare` deals with them
        warnings.simplefilter("ignore", DeprecationWarning)
        worker = context.Process(target=_worker, args=(work, prepare, sender), daemon=True)
        worker.start()
    sender.close()
    latest = None
    try:
        while True:
            left = deadline.left()
            assert left is not None
            if left + GRACE <= 0 or not receiver.poll(left + GRACE):
                return None, latest
            try:
                kind, payload = receiver.recv()
            except EOFError:
                raise RuntimeError("the solver's worker process died") from None
            if kind == "done":
                return payload, latest
            if kind == "error":
                raise RuntimeError(f"the solver failed: {payload}")
            latest = payload
    finally:
        if worker.is_alive():
            worker.kill()
        worker.join()
        receiver.close()


def _worker(work: Callable[[Report], object], prepare: Callable[[], None] | None, sender) -> None:
    """The forked process: run `work`, send its reports and result, exit without any clean-up."""
    try:
        if prepare is not None:
            prepare()
        sender.send(("done", work(lambda payload: sender.send(("report", payload)))))
    except BaseException as exc:  # anything at all: the parent must hear of it rather than wait
        sender.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        os._exit(0)
