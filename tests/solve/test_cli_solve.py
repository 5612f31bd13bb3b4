"""`mdp-trt solve` through the CLI entry point: one JSON document on stdout, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mdp_trt.cli import main
from mdp_trt.solve import Problem, evaluate
from tests.solve.test_problem import BASE


@pytest.fixture
def problem_file(tmp_path: Path) -> Path:
    path = tmp_path / "problem.json"
    Problem.from_json(BASE).save(path)
    return path


def _run(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    code = main(["solve", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("solver", ["milp", "halp", "uniform", "minlp"])
def test_prints_exactly_one_json_solution(capsys, problem_file: Path, solver: str) -> None:
    code, out, _ = _run(capsys, str(problem_file), "--solver", solver)
    assert code == 0
    doc = json.loads(out)  # the whole of stdout is one document
    assert isinstance(doc, dict) and doc["status"] in ("optimal", "feasible")
    ev = evaluate(Problem.from_json(BASE), doc["levels"], doc["blocks_kept"])
    assert ev.feasible and ev.objective == doc["objective"] and ev.latency == doc["latency"]
    assert doc["solver"].startswith(solver)


def test_budget_override_and_time_limit(capsys, problem_file: Path) -> None:
    code, out, _ = _run(capsys, str(problem_file), "--budget", "6", "--time-limit", "5")
    doc = json.loads(out)
    assert code == 0 and doc["budget"] == 6.0 and doc["latency"] <= 6.0


def test_unreachable_budget_exits_3_with_the_min_latency(capsys, problem_file: Path) -> None:
    code, out, err = _run(capsys, str(problem_file), "--budget", "1")
    assert code == 3 and out == ""
    assert "smallest reachable latency 3.5" in err.replace("\n", "")  # fixed 1 + conv1 2 + fc 0.5


@pytest.mark.parametrize(
    "args",
    [["--solver", "magic"], ["--time-limit", "0"], ["--time-limit", "inf"], ["--time-limit", "nan"],
     ["--budget", "-3"], ["--budget", "0"], ["--budget", "inf"], ["--minlp-engine", "x", "--solver", "minlp"],
     ["--sweep", "1"], ["--sweep", "100000"]],
)
def test_bad_options_exit_2(capsys, problem_file: Path, args: list[str]) -> None:
    code, out, _ = _run(capsys, str(problem_file), *args)
    assert code == 2 and out == ""


def test_bad_file_exits_2(capsys, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**BASE, "format": "nope"}))
    code, out, err = _run(capsys, str(bad))
    assert code == 2 and out == "" and "format" in err


def test_sweep_prints_the_curve(capsys, problem_file: Path) -> None:
    code, out, _ = _run(capsys, str(problem_file), "--sweep", "4")
    curve = json.loads(out)
    assert code == 0 and len(curve) == 4
    assert all(set(p) == {"budget", "latency", "objective", "status"} for p in curve)
    assert all(p["status"] == "optimal" and p["latency"] <= p["budget"] + 1e-9 for p in curve)
    objectives = [p["objective"] for p in curve]
    assert objectives == sorted(objectives)  # exact optimum never falls as the budget grows


# Narrowest and widest levels are slow, the middle one fast: uniform's bisection (latency assumed to grow
# with the ratio) never finds the fast one, so it has no plan within a budget that milp meets.
NON_MONOTONE = {
    "format": "mdp-problem/1",
    "budget": 2.0,
    "groups": [{"id": "g0", "levels": [8, 16, 24]}],
    "layers": [{"id": "conv", "in_group": None, "out_group": "g0", "latency": [[5.0, 1.0, 5.0]],
                "importance": [1.0, 2.0, 3.0]}],
}


@pytest.fixture
def non_monotone(tmp_path: Path) -> Path:
    path = tmp_path / "non_monotone.json"
    path.write_text(json.dumps(NON_MONOTONE))
    return path


def test_a_heuristic_without_a_plan_in_budget_prints_it_and_exits_3(capsys, non_monotone: Path) -> None:
    code, out, err = _run(capsys, str(non_monotone), "--solver", "uniform")
    doc = json.loads(out)  # still one JSON document, so the plan can be inspected
    assert code == 3 and doc["status"] == "infeasible" and doc["latency"] > doc["budget"]
    assert "uniform found no plan within the budget 2 ms" in err and "milp" in err
    assert "Traceback" not in err
    code, out, _ = _run(capsys, str(non_monotone), "--solver", "milp")
    assert code == 0 and json.loads(out)["latency"] == 1.0


def test_a_sweep_with_an_infeasible_point_exits_3(capsys, non_monotone: Path) -> None:
    code, out, err = _run(capsys, str(non_monotone), "--solver", "uniform", "--sweep", "3")
    curve = json.loads(out)
    assert code == 3 and len(curve) == 3 and curve[0]["status"] == "infeasible"
    assert "of the 3 budgets" in err


def test_a_negative_fixed_latency_is_solved_by_every_solver(capsys, tmp_path: Path) -> None:
    path = tmp_path / "negative.json"
    path.write_text(json.dumps({**BASE, "fixed_latency": -0.5}))
    for solver in ("milp", "minlp", "halp", "uniform"):
        code, out, _ = _run(capsys, str(path), "--solver", solver)
        doc = json.loads(out)
        assert code == 0, solver
        assert evaluate(Problem.load(path), doc["levels"], doc["blocks_kept"]).latency == doc["latency"]
    code, out, _ = _run(capsys, str(path), "--sweep", "3")
    assert code == 0 and json.loads(out)[0]["budget"] == pytest.approx(2.0)  # 3.5 - 1.5 lower
