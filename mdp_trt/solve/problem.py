"""The solver's input: an `mdp-problem/1` document as an immutable, validated `Problem`.

Every solver and `evaluate` trust a `Problem` blindly, so all checks happen once, here, and a bad file
fails with one line that names the offending item instead of a traceback deep inside a solver.

Numbers: every number is finite and at most 1e15 in magnitude (HiGHS refuses constraint coefficients
above 1e15 and SCIP takes 1e20 for infinity, so larger ones could not reach a solver intact: rescale
the units instead). Levels, latency table entries and importance are >= 0, the budget is > 0.
`fixed_latency` is the constant term of the affine latency law: a plan's latency is `fixed_latency`
plus the table entries of its kept layers. It may be negative: `build` writes there the offset of the
calibration law `measured = scale * sum of tables + offset`, which is often below zero. What has to be
positive is a plan's total, the figure the budget bounds.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mdp_trt.errors import InputError

FORMAT = "mdp-problem/1"
MAX_MAGNITUDE = 1e15  # see the module docstring
_KNOWN_KEYS = ("format", "units", "budget", "fixed_latency", "groups", "blocks", "layers")


@dataclass(frozen=True)
class Group:
    """A channel group: the solver picks one index into `levels` within [min_index, max_index].

    `widths` is set where one solver group chooses several widths of the model at once (an attention's
    heads and head widths): each model group's width at every level. Such a group's levels (the channels
    kept) may repeat, the widths tell them apart; any other group's levels are strictly increasing.
    """

    id: str
    levels: tuple[float, ...]
    min_index: int
    max_index: int
    widths: Mapping[str, tuple[int, ...]] | None = field(default=None, compare=False)

    @property
    def allowed(self) -> range:
        return range(self.min_index, self.max_index + 1)


@dataclass(frozen=True)
class Block:
    """A removable block; it can only be kept if its `parent` (if any) is kept."""

    id: str
    parent: str | None = None


@dataclass(frozen=True, eq=False)
class Layer:
    """A layer's latency table (rows: in-group level, columns: out-group level) and importance.

    A null group has a single row/column. `importance` is indexed by out-group level (one value when
    `out_group` is null) and is empty when the layer contributes no importance.
    """

    id: str
    in_group: str | None
    out_group: str | None
    block: str | None
    latency: np.ndarray
    importance: np.ndarray

    def importance_at(self, out_index: int) -> float:
        if self.importance.size == 0:
            return 0.0
        return float(self.importance[out_index])


@dataclass(frozen=True, eq=False)
class Problem:
    """A whole pruning problem; `budget` may be None until the caller supplies one."""

    groups: tuple[Group, ...]
    blocks: tuple[Block, ...]
    layers: tuple[Layer, ...]
    budget: float | None
    fixed_latency: float = 0.0
    units: str = "ms"
    extra: Mapping[str, Any] = field(default_factory=dict)  # unknown top-level keys, kept verbatim

    @property
    def group_by_id(self) -> dict[str, Group]:
        return {g.id: g for g in self.groups}

    @property
    def block_by_id(self) -> dict[str, Block]:
        return {b.id: b for b in self.blocks}

    def with_budget(self, budget: float) -> Problem:
        """The same problem with another budget (validated like one read from a file)."""
        return replace(self, budget=_number(budget, "budget", positive=True))

    def dense_levels(self) -> dict[str, int]:
        """Every group at its largest allowed level: the unpruned plan."""
        return {g.id: g.max_index for g in self.groups}

    # --- JSON -----------------------------------------------------------------------------------
    @classmethod
    def from_json(cls, doc: Any) -> Problem:
        """Parse and validate a decoded `mdp-problem/1` document; raises `InputError`."""
        if not isinstance(doc, Mapping):
            raise InputError("problem: expected a JSON object")
        if doc.get("format") != FORMAT:
            raise InputError(f"problem: format must be {FORMAT!r}, got {_show(doc.get('format'))}")
        units = doc.get("units", "ms")
        if not isinstance(units, str) or not units.strip():
            raise InputError("problem: units must be a string with a word in it (e.g. \"ms\")")
        budget = None if doc.get("budget") is None else _number(doc["budget"], "budget", positive=True)
        fixed = _number(doc.get("fixed_latency", 0.0), "fixed_latency", signed=True)
        groups = _parse_groups(_list(doc, "groups"))
        blocks = _parse_blocks(_list(doc, "blocks", required=False))
        layers = _parse_layers(_list(doc, "layers"), {g.id: g for g in groups}, {b.id for b in blocks})
        extra = {k: v for k, v in doc.items() if k not in _KNOWN_KEYS}
        return cls(groups, blocks, layers, budget, fixed, units, extra)

    def to_json(self) -> dict[str, Any]:
        """The `mdp-problem/1` document; `from_json(to_json())` gives back an equal problem."""
        doc: dict[str, Any] = {
            "format": FORMAT,
            "units": self.units,
            "budget": self.budget,
            "fixed_latency": self.fixed_latency,
            "groups": [
                {
                    "id": g.id,
                    "levels": list(g.levels),
                    "min_level_index": g.min_index,
                    "max_level_index": g.max_index,
                }
                | ({"widths": {k: list(v) for k, v in g.widths.items()}} if g.widths is not None else {})
                for g in self.groups
            ],
            "blocks": [{"id": b.id} | ({"parent": b.parent} if b.parent else {}) for b in self.blocks],
            "layers": [
                {
                    "id": la.id,
                    "in_group": la.in_group,
                    "out_group": la.out_group,
                    "block": la.block,
                    "latency": la.latency.tolist(),
                    "importance": la.importance.tolist(),
                }
                for la in self.layers
            ],
        }
        doc.update(self.extra)
        return doc

    @classmethod
    def load(cls, path: str | Path) -> Problem:
        """Read a problem file; unreadable or invalid files raise `InputError`.

        JSON is UTF-8 text (RFC 8259); the decoder's own limits (nesting depth, digits of an integer)
        are reported like any other invalid file.
        """
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read problem file {path}: {exc.strerror or exc}") from exc
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: not UTF-8 text (byte {exc.start} is not UTF-8), so not JSON") from exc
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
        except RecursionError as exc:
            raise InputError(f"{path}: JSON nested too deeply to read") from exc
        except ValueError as exc:  # the only other one: an integer past Python's int-string conversion limit
            raise InputError(
                f"{path}: an integer with more than {sys.get_int_max_str_digits()} digits (no solver could use it)"
            ) from exc
        return cls.from_json(doc)

    def save(self, path: str | Path) -> None:
        """Write atomically (temp file + os.replace) so a crash never leaves half a problem file."""
        path = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self.to_json(), fh)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


# --- validation helpers --------------------------------------------------------------------------
def _show(value: Any) -> str:
    """`value` for a message: its repr, cut short (a file can hold a huge list where a number belongs)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_MAGNITUDE:
        return f"an integer of {value.bit_length()} bits"  # repr itself fails past 4300 digits
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _number(value: Any, what: str, *, signed: bool = False, positive: bool = False) -> float:
    """A finite float within MAX_MAGNITUDE; >= 0 unless `signed`, > 0 when `positive`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{what}: expected a number, got {_show(value)}")
    number = float(value) if isinstance(value, float) or abs(value) <= MAX_MAGNITUDE else math.inf
    if not math.isfinite(number) or abs(number) > MAX_MAGNITUDE:
        raise InputError(f"{what}: must be finite and at most {MAX_MAGNITUDE:g} in magnitude, got {_show(value)}")
    if positive and not number > 0:
        raise InputError(f"{what}: must be > 0, got {_show(value)}")
    if not signed and number < 0:
        raise InputError(f"{what}: must be >= 0, got {_show(value)}")
    return number


def _index(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{what}: expected an integer, got {_show(value)}")
    return value


def _ref(item: Mapping[str, Any], key: str, owner: str) -> str | None:
    """An optional reference to another item's id: a non-empty string or null."""
    value = item.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise InputError(f"{owner}: {key!r} must be an id (a non-empty string) or null, got {_show(value)}")
    return value


def _list(doc: Mapping[str, Any], key: str, *, required: bool = True) -> list[Any]:
    value = doc.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list):
        raise InputError(f"problem: {key!r} must be a list")
    return value


def _ident(item: Any, kind: str, position: int, seen: set[str]) -> str:
    if not isinstance(item, Mapping):
        raise InputError(f"{kind} #{position}: expected an object")
    ident = item.get("id")
    if not isinstance(ident, str) or not ident:
        raise InputError(f"{kind} #{position}: 'id' must be a non-empty string")
    if ident in seen:
        raise InputError(f"{kind} {ident!r}: duplicate id")
    seen.add(ident)
    return ident


def _parse_groups(items: list[Any]) -> tuple[Group, ...]:
    seen: set[str] = set()
    groups = []
    for pos, item in enumerate(items):
        gid = _ident(item, "group", pos, seen)
        raw = item.get("levels")
        if not isinstance(raw, list) or not raw:
            raise InputError(f"group {gid!r}: 'levels' must be a non-empty list")
        levels = tuple(_number(v, f"group {gid!r} levels") for v in raw)
        widths = _widths(item.get("widths"), gid, len(levels))
        if widths is None and any(b <= a for a, b in itertools.pairwise(levels)):
            raise InputError(f"group {gid!r}: levels must be strictly increasing")
        if widths is not None and any(b < a for a, b in itertools.pairwise(levels)):
            raise InputError(f"group {gid!r}: levels must be increasing")
        levels = tuple(int(v) if isinstance(r, int) else v for v, r in zip(levels, raw, strict=True))
        lo = _index(item.get("min_level_index", 0), f"group {gid!r} min_level_index")
        hi = _index(item.get("max_level_index", len(levels) - 1), f"group {gid!r} max_level_index")
        if not 0 <= lo <= hi < len(levels):
            raise InputError(f"group {gid!r}: level index bounds [{lo}, {hi}] out of range for {len(levels)} levels")
        groups.append(Group(gid, levels, lo, hi, widths))
    return tuple(groups)


def _widths(raw: Any, gid: str, count: int) -> dict[str, tuple[int, ...]] | None:
    """A group's optional `widths`: model group id -> one width (an integer >= 1) per level, no two levels
    alike."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or not raw:
        raise InputError(f"group {gid!r}: 'widths' must be an object of model group id -> widths per level")
    widths = {}
    for key, values in raw.items():
        if not isinstance(values, list) or len(values) != count or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
            raise InputError(f"group {gid!r}: widths of {key!r} must be {count} integers >= 1, one per level")
        widths[str(key)] = tuple(values)
    combos = list(zip(*widths.values(), strict=True))
    if len(set(combos)) != len(combos):
        raise InputError(f"group {gid!r}: two levels have the same widths")
    return widths


def _parse_blocks(items: list[Any]) -> tuple[Block, ...]:
    seen: set[str] = set()
    blocks = []
    for pos, item in enumerate(items):
        bid = _ident(item, "block", pos, seen)
        blocks.append(Block(bid, _ref(item, "parent", f"block {bid!r}")))
    for block in blocks:
        if block.parent is not None and block.parent not in seen:
            raise InputError(f"block {block.id!r}: unknown parent block {block.parent!r}")
    parent = {b.id: b.parent for b in blocks}
    for block in blocks:
        chain, cur = {block.id}, block.parent
        while cur is not None:
            if cur in chain:
                raise InputError(f"block {block.id!r}: parent chain has a cycle")
            chain.add(cur)
            cur = parent[cur]
    return tuple(blocks)


def _table(raw: Any, rows: int, cols: int, lid: str) -> np.ndarray:
    if not isinstance(raw, list) or len(raw) != rows:
        got = len(raw) if isinstance(raw, list) else type(raw).__name__
        raise InputError(f"layer {lid!r}: latency must have {rows} rows, got {got}")
    for r, row in enumerate(raw):
        if not isinstance(row, list) or len(row) != cols:
            got = len(row) if isinstance(row, list) else type(row).__name__
            raise InputError(f"layer {lid!r}: latency row {r} must have {cols} columns, got {got}")
    table = np.array([[_number(v, f"layer {lid!r} latency") for v in row] for row in raw], dtype=float)
    return table.reshape(rows, cols)


def _parse_layers(items: list[Any], groups: Mapping[str, Group], blocks: set[str]) -> tuple[Layer, ...]:
    seen: set[str] = set()
    layers = []
    for pos, item in enumerate(items):
        lid = _ident(item, "layer", pos, seen)
        refs = {}
        for key in ("in_group", "out_group"):
            ref = _ref(item, key, f"layer {lid!r}")
            if ref is not None and ref not in groups:
                raise InputError(f"layer {lid!r}: unknown {key} {ref!r}")
            refs[key] = ref
        block = _ref(item, "block", f"layer {lid!r}")
        if block is not None and block not in blocks:
            raise InputError(f"layer {lid!r}: unknown block {block!r}")
        rows = len(groups[refs["in_group"]].levels) if refs["in_group"] else 1
        cols = len(groups[refs["out_group"]].levels) if refs["out_group"] else 1
        latency = _table(item.get("latency"), rows, cols, lid)
        raw_imp = item.get("importance", [])
        if not isinstance(raw_imp, list) or len(raw_imp) not in (0, cols):
            raise InputError(f"layer {lid!r}: importance must be empty or have {cols} values")
        importance = np.array([_number(v, f"layer {lid!r} importance") for v in raw_imp], dtype=float)
        latency.setflags(write=False)
        importance.setflags(write=False)
        layers.append(Layer(lid, refs["in_group"], refs["out_group"], block, latency, importance))
    return tuple(layers)
