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
    [["--solver", "magic"], ["--time-limit", "0"], ["--budget", "-3"], ["--minlp-engine", "x", "--solver", "minlp"]],
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
