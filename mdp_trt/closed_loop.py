"""The closed loop: solve, prune, measure on the device, correct the budget, until the target is met.

`build` and the PyTorch flow (`mdp_trt.torch.prune`) both run this one loop, so a fix to how the budget
is corrected reaches both.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import numpy as np
import onnx

from mdp_trt.errors import BudgetError
from mdp_trt.graph.structure import Structure
from mdp_trt.latency.backends import Backend
from mdp_trt.latency.bench import bench_model
from mdp_trt.latency.protocol import BENCH_PROTOCOL
from mdp_trt.prune import Plan, prune_model
from mdp_trt.prune.verify import check_runs
from mdp_trt.solve.from_model import plan_from_solution
from mdp_trt.solve.problem import Problem
from mdp_trt.solve.solvers import solve

StageFn = Callable[..., AbstractContextManager[dict[str, str]]]  # stage(name, detail="") -> note dict


@contextlib.contextmanager
def _silent(name: str, detail: str = "") -> Iterator[dict[str, str]]:
    """The default stage hook: no output (build passes its printer)."""
    yield {"detail": detail}


@dataclass
class Attempt:
    plan: Plan
    pruned: onnx.ModelProto
    measured_ms: float
    predicted_ms: float
    solver: dict
    importance: float
    rounds: list[dict] = field(default_factory=list)  # every round: budget, predicted, measured


TIGHT = 1.05  # a met target within 5% of the FPS asked for is close enough to stop
ROUNDS = 5  # default number of solve-prune-measure rounds
# A bench median is known to about this much (BENCH_PROTOCOL's stopping rule): a plan measured just
# under the target is as likely to measure just over it next time, so the loop aims this much lower.
NOISE = BENCH_PROTOCOL.rel_ci


def closed_loop(model: onnx.ModelProto, structure: Structure, scores: Mapping[str, np.ndarray],
                levels: Mapping[str, tuple[int, ...]], problem: Problem, backend: Backend, target_ms: float, *,
                solver: str = "milp", rounds: int = ROUNDS, time_limit: float | None = 60.0, batch: int = 1,
                precision: str = "fp32", stage: StageFn = _silent) -> Attempt:
    """Bisect the solver's budget on measurements until the target is met tightly.

    The loop aims at the target lowered by the measurement's uncertainty (`NOISE`; none for estimates):
    a plan is safely met when its measured latency is at or under that aim. A plan that is not sets the
    next budget to its predicted latency times aim / measured; a plan that beats the target by more
    than 5% relaxes the same way (the model can keep more); once a safely met and a missed budget
    bracket the aim, the next budget is their geometric mean. The safely met plan with the most
    importance wins, then the met one (measured at or under the target); when nothing met, the fastest
    plan measured is returned (reported as not met).

    Each new plan's model is loaded and run once in ONNX Runtime before it is benched (`check_runs`, a
    fraction of a bench), so a model we got wrong ends as a `VerificationError`; the costlier comparison
    with the masked model is left to the caller, for the chosen plan only.
    """
    estimates = bool(backend.fingerprint(batch, precision).get("estimate"))
    aim = target_ms if estimates else target_ms / (1 + NOISE)
    budget = aim
    met_budget, missed_budget = 0.0, float("inf")
    measured_plans: dict[str, float] = {}
    attempts: list[Attempt] = []
    history: list[dict] = []
    for round_index in range(1, rounds + 1):
        with stage("solve") as note:
            try:
                solution = solve(problem, solver, budget=budget, time_limit=time_limit)
            except BudgetError:
                note["detail"] = f"round {round_index}: budget {budget:.3f} ms is below the smallest reachable"
                break
            plan = plan_from_solution(structure, scores, levels, solution, problem)
            note["detail"] = (f"round {round_index}: {solution.status}, importance kept {solution.objective:.4f}, "
                              f"predicted {solution.latency:.3f} ms, gap {solution.gap or 0:.2e}")
        key = json.dumps([plan.groups, plan.remove_blocks], sort_keys=True)
        with stage("prune") as note:
            pruned = prune_model(model, structure, plan)
            note["detail"] = f"{len(plan.remove_blocks)} blocks removed"
        with stage("bench", "pruned model") as note:
            if key not in measured_plans:
                check_runs(pruned)  # a model ONNX Runtime refuses is our bug (exit 4), not a backend error
                measured_plans[key] = bench_model(pruned, backend, batch=batch,
                                                  precision=precision).measurement.median_ms
            measured_ms = measured_plans[key]
            note["detail"] = f"round {round_index}: measured {measured_ms:.3f} ms vs target {target_ms:.3f} ms"
        history.append({"round": round_index, "budget_ms": budget, "predicted_ms": solution.latency,
                       "measured_ms": measured_ms, "importance_kept": solution.objective})
        solver_info = {"name": solver, "status": solution.status, "gap": solution.gap,
                       "seconds": solution.seconds, "objective": solution.objective, "bound": solution.bound,
                       "rounds": round_index}
        attempts.append(Attempt(plan, pruned, measured_ms, solution.latency, solver_info, solution.objective))
        safe = measured_ms <= aim
        if safe and measured_ms * TIGHT >= target_ms:
            break
        if safe:
            met_budget = max(met_budget, budget)
        else:
            missed_budget = min(missed_budget, budget)
        # Scale the plan's own prediction, not the budget: a budget can shrink and still admit the
        # same plan when that plan's prediction was already under it.
        proposal = solution.latency * aim / measured_ms
        if met_budget > 0 and missed_budget < float("inf"):
            proposal = (met_budget * missed_budget) ** 0.5
        if abs(proposal - budget) <= 1e-6 * budget:
            break
        budget = proposal
    if not attempts:
        raise BudgetError(f"no plan could be found for the target of {target_ms:.3f} ms")
    met_attempts = ([a for a in attempts if a.measured_ms <= aim]
                    or [a for a in attempts if a.measured_ms <= target_ms])
    if met_attempts:
        chosen = max(met_attempts, key=lambda a: a.importance)
    else:
        chosen = min(attempts, key=lambda a: a.measured_ms)
    chosen.rounds = history
    return chosen
