"""`mdp-trt solve`: solve an mdp-problem/1 file and print the solution (or a sweep) as one JSON document.

stdout carries only the JSON, so it can be piped; progress and a human summary go to stderr. Exit code
0 means every plan printed fits its budget; a plan that does not (a heuristic's miss, a time limit that
ran out before any plan was found) is still printed, marked "infeasible", and the exit code is 3, so
a pipeline that trusts exit 0 never takes it.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from mdp_trt.cli.app import app, console_err
from mdp_trt.errors import MdpError
from mdp_trt.solve import Problem, Solution, curve, solve, sweep
from mdp_trt.solve.solvers import check_options
from mdp_trt.solve.sweep import check_points


class NoPlanFound(MdpError):
    """The solver returned no plan within the budget, although it printed its answer (exit code 3)."""

    exit_code = 3


@app.command("solve")
def solve_command(
    problem_path: Path = typer.Argument(..., metavar="PROBLEM.json", help="An mdp-problem/1 file."),
    solver: str = typer.Option("milp", "--solver", help="milp (exact, default), minlp, halp or uniform."),
    time_limit: float | None = typer.Option(
        None, "--time-limit", help="Seconds for the whole solve (per budget with --sweep); milp/minlp then "
        "return their best plan with bound and gap."
    ),
    budget: float | None = typer.Option(None, "--budget", help="Latency budget, overrides the file's."),
    sweep_points: int | None = typer.Option(
        None, "--sweep", help="Solve N budgets from the smallest reachable to the dense latency."
    ),
    minlp_engine: str = typer.Option("scip", "--minlp-engine", help="scip (pyscipopt) or mindtpy."),
) -> None:
    """Pick a level per channel group and the blocks to keep: max importance within the budget.

    Exit code 3 when the budget is below the smallest reachable latency (nothing printed), or when the
    solver's plan does not fit it (printed, status "infeasible").
    """
    check_options(solver, minlp_engine, time_limit)  # before reading what may be a large file
    if sweep_points is not None:
        check_points(sweep_points)
    problem = Problem.load(problem_path)
    if budget is not None:
        problem = problem.with_budget(budget)
    unit = problem.units.split()[0]
    if sweep_points is not None:
        console_err.print(f"sweeping {sweep_points} budgets with {solver}...", soft_wrap=True)
        solutions = sweep(problem, sweep_points, solver, time_limit=time_limit, minlp_engine=minlp_engine)
        typer.echo(json.dumps(curve(solutions)))
        missed = [s for s in solutions if s.status == "infeasible"]
        if missed:
            raise NoPlanFound(f"{solver} found no plan within {len(missed)} of the {len(solutions)} budgets "
                              f"(the first at {missed[0].budget:.6g} {unit}); their points say \"infeasible\"")
        return
    console_err.print(f"solving {problem_path} with {solver}...", soft_wrap=True, highlight=False)
    solution = solve(problem, solver, time_limit=time_limit, minlp_engine=minlp_engine)
    console_err.print(
        f"{solution.solver}: {solution.status}, objective {solution.objective:.6g}, "
        f"latency {solution.latency:.6g} / {solution.budget:.6g} {unit}, {solution.seconds:.2f} s",
        highlight=False,
        soft_wrap=True,
    )
    typer.echo(json.dumps(solution.to_json()))
    if solution.status == "infeasible":
        raise NoPlanFound(_miss(solution, solver, time_limit, unit))


def _miss(solution: Solution, solver: str, time_limit: float | None, unit: str) -> str:
    """Why the printed plan does not fit, and what would find one."""
    head = (f"{solver} found no plan within the budget {solution.budget:.6g} {unit} (the plan printed takes "
            f"{solution.latency:.6g} {unit})")
    if solver in ("halp", "uniform"):
        return f"{head}; milp, the exact solver, finds the best plan that fits if any does"
    if time_limit is not None:
        return f"{head} in the time limit of {time_limit:g} s; a longer --time-limit may find one"
    return head
