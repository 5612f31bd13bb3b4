"""`mdp-trt solve`: solve an mdp-problem/1 file and print the solution (or a sweep) as one JSON document.

stdout carries only the JSON, so it can be piped; progress and a human summary go to stderr.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from mdp_trt.cli.app import app, console_err
from mdp_trt.solve import Problem, curve, solve, sweep


@app.command("solve")
def solve_command(
    problem_path: Path = typer.Argument(..., metavar="PROBLEM.json", help="An mdp-problem/1 file."),
    solver: str = typer.Option("milp", "--solver", help="milp (exact, default), minlp, halp or uniform."),
    time_limit: float | None = typer.Option(
        None, "--time-limit", help="Seconds; milp/minlp then return their best plan with bound and gap."
    ),
    budget: float | None = typer.Option(None, "--budget", help="Latency budget, overrides the file's."),
    sweep_points: int | None = typer.Option(
        None, "--sweep", help="Solve N budgets from the smallest reachable to the dense latency."
    ),
    minlp_engine: str = typer.Option("scip", "--minlp-engine", help="scip (pyscipopt) or mindtpy."),
) -> None:
    """Pick a level per channel group and the blocks to keep: max importance within the budget."""
    problem = Problem.load(problem_path)
    if sweep_points is not None:
        console_err.print(f"sweeping {sweep_points} budgets with {solver}...", soft_wrap=True)
        solutions = sweep(problem, sweep_points, solver, time_limit=time_limit, minlp_engine=minlp_engine)
        typer.echo(json.dumps(curve(solutions)))
        return
    console_err.print(f"solving {problem_path} with {solver}...", soft_wrap=True, highlight=False)
    solution = solve(problem, solver, budget=budget, time_limit=time_limit, minlp_engine=minlp_engine)
    console_err.print(
        f"{solution.solver}: {solution.status}, objective {solution.objective:.6g}, "
        f"latency {solution.latency:.6g} / {solution.budget:.6g} {problem.units.split()[0]}, "
        f"{solution.seconds:.2f} s",
        highlight=False,
        soft_wrap=True,
    )
    typer.echo(json.dumps(solution.to_json()))
