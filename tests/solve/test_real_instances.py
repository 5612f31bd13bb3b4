"""The shared real instance (NVIDIA's ResNet-50 run): milp must reproduce its independent optimum."""

from __future__ import annotations

import pytest

from mdp_trt.solve import Problem, evaluate, solve
from tests.solve.mdp_cases import INSTANCES

RN50 = INSTANCES / "rn50-step29.json"


@pytest.mark.skipif(not RN50.exists(), reason=f"shared instance {RN50} not present")
def test_rn50_step29_reproduces_the_reference_optimum() -> None:
    problem = Problem.load(RN50)
    reference = problem.extra["reference"]["objective"]
    result = solve(problem, "milp")
    assert result.status == "optimal"
    assert abs(result.objective - reference) <= 1e-6 * abs(reference)
    assert evaluate(problem, result.levels, result.blocks_kept).feasible
    assert solve(problem, "halp").objective <= result.objective
