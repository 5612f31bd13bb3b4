"""Run a `LinearModel` on HiGHS (highspy), within what is left of the solve's time limit.

One place for the options every exact solve shares, and for turning HiGHS's answer into the three
facts the callers need: is there a plan, is it proven optimal, what is the dual bound. The model is
handed over as arrays before the clock is read, so HiGHS's own limit is what remains of the solve's;
as HiGHS can overrun it by seconds, a run with a limit happens in a worker stopped at the deadline
(`stoppable`), which streams the MIP's incumbents back so that a stopped run keeps its best plan.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np

from mdp_trt.errors import BackendUnavailable
from mdp_trt.solve.deadline import MIN_RUN_SECONDS, Deadline
from mdp_trt.solve.linear import LinearModel
from mdp_trt.solve.stoppable import Report, ignore, run_until

try:
    import highspy
except ImportError:  # pragma: no cover - highspy is a dependency; the message says how to get it
    highspy = None

# HiGHS's default relative gap (1e-4) would call a plan 0.01% off "optimal"; we mean optimal.
MIP_REL_GAP = 1e-9
# HiGHS's probing and enumeration presolve never look at the clock: on the 2x300-level problem they ran
# 2.1 s past a 1.5 s limit. Nor do they pay off on these models: without them the real instances and
# the synthetic ResNet/MobileNet problems are all proven faster (sum 12.3 s -> 7.3 s, 16 cases).
_PROBING, _ENUMERATION = 1 << 15, 1 << 16
# A forked worker must restart HiGHS's thread pool (the parent's threads do not exist there) and
# stream incumbents through a callback; older highspy releases offer neither, and run in this process.
_CAN_FORK = highspy is not None and all(
    hasattr(highspy.Highs, name) for name in ("resetGlobalScheduler", "cbMipImprovingSolution"))
T = TypeVar("T")


@dataclass(frozen=True)
class Outcome:
    """HiGHS's verdict; `model.values` holds the incumbent when `has_plan`."""

    has_plan: bool
    proven: bool
    bound: float | None
    infeasible: bool = False  # proven: the model has no feasible point
    timed_out: bool = False  # stopped by the time limit (or never started: no time was left)


def run(
    model: LinearModel,
    deadline: Deadline,
    *,
    abs_gap: float = 0.0,
    rel_gap: float = MIP_REL_GAP,
    warm_start: bool = False,
) -> Outcome:
    """Solve `model` and load its incumbent into `model.values`.

    `abs_gap` lets the caller stop at a gap that cannot hide a better plan (e.g. just under 1 when every
    plan's objective is an integer); `rel_gap` defaults to what we call optimal. `warm_start` passes
    `model.start` as a MIP start.
    HiGHS 1.16 can hand back the MIP start itself while reporting the better objective it reached in
    its presolved space; the loaded values are checked against that objective, and on a mismatch the
    model is solved again without the start (keeping the start, unproven, if that finds nothing).
    """
    if not model.rows and model.objective.is_constant:
        model.values = np.array(model.lower, dtype=float)  # no variable is used: any plan is optimal
        return Outcome(has_plan=True, proven=True, bound=None)
    options = {"mip_rel_gap": rel_gap, "mip_abs_gap": abs_gap, "mip_feasibility_tolerance": 1e-9,
               "primal_feasibility_tolerance": 1e-9, "presolve_rule_off": _PROBING | _ENUMERATION}
    answer = _solve_once(model, deadline, options, warm_start)
    if warm_start and answer.values is not None and answer.objective is not None:
        value = model.objective.value(answer.values)
        if abs(value - answer.objective) > 1e-6 * max(1.0, abs(answer.objective)):
            again = _solve_once(model, deadline, options, False)
            answer = again if again.values is not None else replace(answer, proven=False)
    model.values = answer.values
    return Outcome(answer.values is not None, answer.proven, answer.bound, answer.infeasible, answer.timed_out)


@dataclass(frozen=True)
class Relaxation:
    """The LP relaxation's optimum: objective, and per column its value and reduced cost."""

    objective: float
    values: np.ndarray
    reduced_costs: np.ndarray


def solve_relaxation(model: LinearModel, deadline: Deadline) -> Relaxation | None:
    """Solve `model` with every integer column relaxed; None if not solved to optimality in time."""
    if deadline.expired():
        return None

    def work(report: Report) -> Relaxation | None:
        highs = _load(model, relax=True)
        highs.setOptionValue("solver", "simplex")
        _set_time_limit(highs, deadline)
        highs.run()
        if highs.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return None
        solution = highs.getSolution()
        return Relaxation(
            highs.getInfo().objective_function_value,
            np.array(solution.col_value, dtype=float),
            np.array(solution.col_dual, dtype=float),
        )

    return _within(work, deadline)[0]


@dataclass(frozen=True)
class _Answer:
    """What one HiGHS run found (picklable: it may come back from the worker process)."""

    values: np.ndarray | None  # the incumbent, None without one
    objective: float | None  # the objective HiGHS claims for it
    bound: float | None
    proven: bool = False
    infeasible: bool = False
    timed_out: bool = False


def _solve_once(model: LinearModel, deadline: Deadline, options: dict[str, float], warm_start: bool) -> _Answer:
    """One HiGHS run of the MIP, stopped at the deadline with the last incumbent it reported."""
    if deadline.expired():
        return _Answer(None, None, None, timed_out=True)

    def work(report: Report) -> _Answer:
        highs = _load(model, relax=False)
        for key, value in options.items():
            highs.setOptionValue(key, value)
        if warm_start and model.start:
            start = np.array(model.lower, dtype=float)
            for column, value in model.start.items():
                start[column] = value
            solution = highspy.HighsSolution()
            solution.col_value = start
            solution.value_valid = True
            highs.setSolution(solution)
        if report is not ignore:
            highs.cbMipImprovingSolution += lambda event: report(_Answer(
                np.array(event.data_out.mip_solution, dtype=float), event.data_out.objective_function_value,
                event.data_out.mip_dual_bound, timed_out=True))
        _set_time_limit(highs, deadline)  # read after the model is loaded: building it is on the clock too
        highs.run()
        return _answer(highs)

    answer, latest = _within(work, deadline)
    if answer is not None:
        return answer
    return latest if latest is not None else _Answer(None, None, None, timed_out=True)


def _answer(highs) -> _Answer:
    status = highs.getModelStatus()
    kinds = highspy.HighsModelStatus
    solution = highs.getSolution()
    has_plan = solution.value_valid and status in (
        kinds.kOptimal, kinds.kTimeLimit, kinds.kIterationLimit, kinds.kObjectiveBound, kinds.kObjectiveTarget,
        kinds.kSolutionLimit,
    )
    info = highs.getInfo()
    bound = info.mip_dual_bound if info.mip_node_count != -1 else (info.objective_function_value if has_plan else None)
    return _Answer(
        values=np.array(solution.col_value, dtype=float) if has_plan else None,
        objective=info.objective_function_value if has_plan else None,
        bound=bound,
        proven=status == kinds.kOptimal,
        infeasible=status in (kinds.kInfeasible, kinds.kUnboundedOrInfeasible),
        timed_out=status == kinds.kTimeLimit,
    )


def _within(work: Callable[[Report], T], deadline: Deadline) -> tuple[T | None, _Answer | None]:
    """`work` run by `stoppable` (HiGHS overshoots its own time limit by seconds on large models)."""
    if not _CAN_FORK:
        return work(ignore), None
    return run_until(work, deadline, prepare=lambda: highspy.Highs.resetGlobalScheduler(True))


def _set_time_limit(highs, deadline: Deadline) -> None:
    left = deadline.left()
    if left is not None:
        highs.setOptionValue("time_limit", max(left, MIN_RUN_SECONDS))


def _load(model: LinearModel, *, relax: bool):
    """A fresh, silent HiGHS instance holding `model` (integrality dropped when `relax`)."""
    if highspy is None:
        raise BackendUnavailable("HiGHS is not installed: pip install highspy")
    with _quiet_stdout():  # highspy prints its banner on stdout, which carries `solve`'s JSON
        highs = highspy.Highs()
    highs.setOptionValue("output_flag", False)
    highs.setOptionValue("random_seed", 0)
    lp = highspy.HighsLp()
    lp.num_col_ = model.num_cols
    lp.num_row_ = len(model.rows)
    cost = np.zeros(model.num_cols)
    for column, value in model.objective.coefs.items():
        cost[column] += value
    lp.col_cost_ = cost
    lp.offset_ = model.objective.const
    lp.sense_ = highspy.ObjSense.kMaximize if model.maximize else highspy.ObjSense.kMinimize
    lp.col_lower_ = np.array(model.lower, dtype=float)
    lp.col_upper_ = np.array(model.upper, dtype=float)
    lp.row_lower_ = np.array([lo for _, lo, _ in model.rows], dtype=float)
    lp.row_upper_ = np.array([hi for _, _, hi in model.rows], dtype=float)
    start, index, value = model.matrix()
    lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
    lp.a_matrix_.num_col_ = model.num_cols
    lp.a_matrix_.num_row_ = len(model.rows)
    lp.a_matrix_.start_ = start
    lp.a_matrix_.index_ = index
    lp.a_matrix_.value_ = value
    if not relax and any(model.integer):
        kinds = highspy.HighsVarType
        lp.integrality_ = [kinds.kInteger if flag else kinds.kContinuous for flag in model.integer]
    status = highs.passModel(lp)
    if status == highspy.HighsStatus.kError:  # our models are well formed: this is a bug, not bad input
        raise RuntimeError("HiGHS refused the model")
    return highs


@contextmanager
def _quiet_stdout() -> Iterator[None]:
    """File descriptor 1 sent to /dev/null (the banner is written by C++, past sys.stdout)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
