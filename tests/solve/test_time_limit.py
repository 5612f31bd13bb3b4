"""Time limits: one clock per solve, so HiGHS gets what model building left, and a worker stopped on time.

The clock is fake wherever the property is about arithmetic (what is passed down), so these tests
never depend on how fast the machine is; the wall-time figures are in `benchmarks/solver.py
--time-limit-check`.
"""

from __future__ import annotations

import time

import pytest

from mdp_trt.solve import Problem, evaluate, highs, milp, stoppable
from mdp_trt.solve.deadline import Deadline
from mdp_trt.solve.formulation import Formulation
from mdp_trt.solve.reduce import reduce
from mdp_trt.solve.synthetic import resnet
from mdp_trt.solve.terms import Terms
from tests.solve.test_problem import BASE


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def limits(monkeypatch) -> list[float]:
    """The `time_limit` option of every HiGHS run, in order (runs kept in this process)."""
    monkeypatch.setattr(highs, "_CAN_FORK", False)
    seen: list[float] = []
    load = highs._load

    def recording_load(model, *, relax):
        solver = load(model, relax=relax)
        set_option = solver.setOptionValue

        def set_and_record(key, value):
            if key == "time_limit":
                seen.append(value)
            return set_option(key, value)

        solver.setOptionValue = set_and_record
        return solver

    monkeypatch.setattr(highs, "_load", recording_load)
    return seen


def _model(budget: float = 6.0) -> Formulation:
    problem = Problem.from_json(BASE)
    terms = Terms.of(problem)
    return Formulation(problem, terms, reduce(problem, terms, "importance", budget), "importance", budget)


def test_highs_gets_the_time_left_after_its_model_is_loaded(limits, monkeypatch) -> None:
    clock = FakeClock()
    deadline = Deadline(10.0, clock)
    form = _model()
    load = highs._load

    def slow_load(model, *, relax):
        clock.now += 3.0  # handing the model over took 3 s
        return load(model, relax=relax)

    monkeypatch.setattr(highs, "_load", slow_load)
    outcome = highs.run(form.model, deadline)
    assert outcome.has_plan
    assert limits == [pytest.approx(7.0)]


def test_without_a_limit_no_time_limit_is_set(limits) -> None:
    assert highs.run(_model().model, Deadline(None)).proven
    assert limits == []


def test_every_milp_stage_runs_on_the_same_clock(limits, monkeypatch) -> None:
    """Building each model costs (fake) 1 s: each HiGHS run gets the limit less every build before it."""
    clock = FakeClock()
    builds: list[float] = []

    class SlowFormulation(Formulation):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            clock.now += 1.0
            builds.append(clock.now)

    monkeypatch.setattr(milp, "Formulation", SlowFormulation)
    problem = resnet(50, levels=8, seed=1)
    budget = 0.5 * evaluate(problem, problem.dense_levels(), [b.id for b in problem.blocks]).latency
    result = milp.solve_milp(problem, budget, Deadline(30.0, clock))
    assert result.status in ("optimal", "feasible") and builds and limits
    assert limits[-1] == pytest.approx(30.0 - len(builds))  # the last run came after the last build
    assert result.seconds == pytest.approx(len(builds))


def test_a_deadline_passed_during_model_building_returns_the_greedy_plan(limits, monkeypatch) -> None:
    clock = FakeClock()

    class VerySlowFormulation(Formulation):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            clock.now += 20.0

    monkeypatch.setattr(milp, "Formulation", VerySlowFormulation)
    problem = resnet(50, levels=8, seed=1)
    budget = 0.5 * evaluate(problem, problem.dense_levels(), [b.id for b in problem.blocks]).latency
    result = milp.solve_milp(problem, budget, Deadline(10.0, clock))
    assert limits == []  # HiGHS never started
    assert result.status == "feasible" and evaluate(problem, result.levels, result.blocks_kept, budget).feasible


@pytest.mark.skipif(not stoppable.AVAILABLE, reason="workers are forked only on Linux")
def test_a_worker_past_its_deadline_is_stopped_and_its_last_report_kept() -> None:
    def stubborn(report):
        report("first plan")
        time.sleep(60)  # a solver phase that never looks at the clock
        return "never"

    start = time.perf_counter()
    result, latest = stoppable.run_until(stubborn, Deadline(0.3))
    assert result is None and latest == "first plan"
    assert time.perf_counter() - start < 0.3 + 0.5


@pytest.mark.skipif(not stoppable.AVAILABLE, reason="workers are forked only on Linux")
def test_a_worker_that_finishes_or_fails_says_so() -> None:
    assert stoppable.run_until(lambda report: 42, Deadline(5.0)) == (42, None)

    def broken(report):
        raise ValueError("bad model")

    with pytest.raises(RuntimeError, match="ValueError: bad model"):
        stoppable.run_until(broken, Deadline(5.0))


def test_no_deadline_runs_in_this_process() -> None:
    calls = []
    assert stoppable.run_until(lambda report: calls.append(1) or "done", Deadline(None)) == ("done", None)
    assert calls == [1]  # a forked worker would have appended in its own copy


@pytest.mark.parametrize("limit", [0.0, -1.0, float("inf"), float("nan")])
def test_a_deadline_needs_a_finite_positive_limit(limit: float) -> None:
    with pytest.raises(ValueError):
        Deadline(limit)
