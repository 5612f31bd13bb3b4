"""A minimal linear model (columns, rows, objective) handed to HiGHS as arrays.

The exact models used to be Pyomo models, and translating one into HiGHS (expression walks, standard
representations) took longer than solving it: 0.75 s of rn101's 2.1 s, 3 s on a 2x300-level problem,
all of it off any time limit. Every expression here is already linear, so a dict of column
coefficients and a constant is all a row needs, and the model reaches HiGHS as one sparse matrix.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

INF = float("inf")


class Linear:
    """sum(coefs[c] * column c) + const. `+` and `-` return new expressions; `add` accumulates in place."""

    __slots__ = ("coefs", "const")

    def __init__(self, coefs: dict[int, float] | None = None, const: float = 0.0) -> None:
        self.coefs = {} if coefs is None else coefs
        self.const = float(const)

    @classmethod
    def var(cls, column: int) -> Linear:
        return cls({column: 1.0})

    def add(self, other: Linear | float, scale: float = 1.0) -> Linear:
        """self += scale * other, in place; returns self."""
        if isinstance(other, Linear):
            coefs = self.coefs
            for column, value in other.coefs.items():
                coefs[column] = coefs.get(column, 0.0) + scale * value
            self.const += scale * other.const
        else:
            self.const += scale * float(other)
        return self

    def copy(self) -> Linear:
        return Linear(dict(self.coefs), self.const)

    def __add__(self, other: Linear | float) -> Linear:
        return self.copy().add(other)

    def __sub__(self, other: Linear | float) -> Linear:
        return self.copy().add(other, -1.0)

    @property
    def is_constant(self) -> bool:
        return not any(self.coefs.values())

    def value(self, values: Sequence[float]) -> float:
        return self.const + sum(v * values[c] for c, v in self.coefs.items())


def total(terms: Iterable[tuple[float, Linear]], const: float = 0.0) -> Linear:
    """sum(coef * expr) + const, accumulated in one expression (linear time, unlike chained `+`)."""
    out = Linear(const=const)
    for coef, expr in terms:
        if coef:
            out.add(expr, coef)
    return out


@dataclass
class LinearModel:
    """Columns with bounds and integrality, rows lower <= expr <= upper, one objective."""

    lower: list[float] = field(default_factory=list)
    upper: list[float] = field(default_factory=list)
    integer: list[bool] = field(default_factory=list)
    rows: list[tuple[dict[int, float], float, float]] = field(default_factory=list)
    objective: Linear = field(default_factory=Linear)
    maximize: bool = False
    start: dict[int, float] = field(default_factory=dict)  # a MIP start, column -> value
    values: np.ndarray | None = None  # the solver's solution, once loaded

    @property
    def num_cols(self) -> int:
        return len(self.lower)

    def add_columns(self, count: int, lower: float = 0.0, upper: float = 1.0, integer: bool = False) -> list[int]:
        first = len(self.lower)
        self.lower += [lower] * count
        self.upper += [upper] * count
        self.integer += [integer] * count
        return list(range(first, first + count))

    def add_row(self, expr: Linear, lower: float = -INF, upper: float = INF) -> None:
        """lower <= expr <= upper (the expression's constant moves to the bounds)."""
        coefs = {c: v for c, v in expr.coefs.items() if v}
        self.rows.append((coefs, lower - expr.const, upper - expr.const))

    def equal(self, left: Linear, right: Linear | float) -> None:
        self.add_row(left - right, 0.0, 0.0)

    def at_most(self, left: Linear, right: Linear | float) -> None:
        self.add_row(left - right, upper=0.0)

    def fix(self, column: int, value: float) -> None:
        self.lower[column] = self.upper[column] = value

    def matrix(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The rows as CSR arrays (start, index, value)."""
        lengths = [len(coefs) for coefs, _, _ in self.rows]
        start = np.zeros(len(self.rows) + 1, dtype=np.int32)
        np.cumsum(lengths, out=start[1:])
        index = np.fromiter((c for coefs, _, _ in self.rows for c in coefs), dtype=np.int32, count=int(start[-1]))
        value = np.fromiter((v for coefs, _, _ in self.rows for v in coefs.values()), dtype=float,
                            count=int(start[-1]))
        return start, index, value
