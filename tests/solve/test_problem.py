"""mdp-problem/1 parsing: round trips, atomic save, and one-line errors that name the bad item."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdp_trt.errors import InputError
from mdp_trt.solve import Problem
from tests.solve.mdp_cases import problem_docs

BASE = {
    "format": "mdp-problem/1",
    "units": "ms",
    "budget": 10.0,
    "fixed_latency": 1.0,
    "groups": [
        {"id": "g0", "levels": [8, 16, 24], "min_level_index": 1, "max_level_index": 2},
        {"id": "g1", "levels": [4, 8]},
    ],
    "blocks": [{"id": "b1"}, {"id": "b2", "parent": "b1"}],
    "layers": [
        {
            "id": "conv1",
            "in_group": None,
            "out_group": "g0",
            "block": None,
            "latency": [[1.0, 2.0, 3.0]],
            "importance": [0.0, 5.0, 7.0],
        },
        {
            "id": "conv2",
            "in_group": "g0",
            "out_group": "g1",
            "block": "b2",
            "latency": [[1, 2], [2, 3], [3, 4]],
            "importance": [],
        },
        {
            "id": "fc",
            "in_group": "g1",
            "out_group": None,
            "block": None,
            "latency": [[0.5], [1.0]],
            "importance": [3.0],
        },
    ],
    "reference": {"objective": 12.0},
}


@settings(max_examples=40, deadline=None)
@given(problem_docs())
def test_json_round_trip(doc: dict) -> None:
    once = Problem.from_json(doc).to_json()
    assert Problem.from_json(json.loads(json.dumps(once))).to_json() == once


def test_defaults_and_unknown_keys_are_kept() -> None:
    problem = Problem.from_json(BASE)
    assert problem.group_by_id["g1"].min_index == 0 and problem.group_by_id["g1"].max_index == 1
    assert problem.block_by_id["b2"].parent == "b1"
    assert problem.to_json()["reference"] == {"objective": 12.0}
    assert problem.with_budget(3).budget == 3.0


def test_save_is_atomic_and_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    Problem.from_json(BASE).save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json"]  # no temp file left behind
    assert Problem.load(path).to_json() == Problem.from_json(BASE).to_json()


def _mutated(edit) -> dict:
    doc = copy.deepcopy(BASE)
    edit(doc)
    return doc


BAD = [
    (lambda d: d.update(format="mdp-problem/2"), "format"),
    (lambda d: d["layers"][1].update(in_group="g9"), "conv2"),
    (lambda d: d["layers"][1].update(block="b9"), "conv2"),
    (lambda d: d["layers"][1]["latency"][1].pop(), "conv2"),
    (lambda d: d["layers"][1]["latency"].pop(), "conv2"),
    (lambda d: d["layers"][0]["latency"][0].__setitem__(0, -1.0), "conv1"),
    (lambda d: d["layers"][0]["latency"][0].__setitem__(0, math.nan), "conv1"),
    (lambda d: d["layers"][0]["latency"][0].__setitem__(0, "fast"), "conv1"),
    (lambda d: d["layers"][0].update(importance=[1.0, 2.0]), "conv1"),
    (lambda d: d["layers"][0]["importance"].__setitem__(1, math.inf), "conv1"),
    (lambda d: d["groups"][0].update(max_level_index=3), "g0"),
    (lambda d: d["groups"][0].update(min_level_index=2, max_level_index=1), "g0"),
    (lambda d: d["groups"][0].update(levels=[8, 8, 24]), "g0"),
    (lambda d: d["groups"][0].update(levels=[]), "g0"),
    (lambda d: d["groups"][1].update(id="g0"), "g0"),
    (lambda d: d["blocks"][1].update(parent="b7"), "b2"),
    (lambda d: d["blocks"][0].update(parent="b2"), "cycle"),
    (lambda d: d.update(budget=-1), "budget"),
    (lambda d: d.update(fixed_latency=math.nan), "fixed_latency"),
    (lambda d: d.update(budget=True), "budget"),
    (lambda d: d.update(budget=0), "budget"),
    (lambda d: d.pop("layers"), "layers"),
    (lambda d: d.update(units="   "), "units"),
    (lambda d: d.update(units=7), "units"),
    (lambda d: d.update(fixed_latency=-math.inf), "fixed_latency"),
    (lambda d: d.update(fixed_latency=-2e15), "fixed_latency"),
    (lambda d: d.update(budget=10**400), "budget"),
    (lambda d: d["layers"][0]["importance"].__setitem__(1, 1e308), "conv1"),
    (lambda d: d["layers"][0]["latency"][0].__setitem__(0, 1e16), "conv1"),
    (lambda d: d["groups"][0]["levels"].__setitem__(2, 10**30), "g0"),
    (lambda d: d["blocks"][1].update(parent=["b1"]), "b2"),
    (lambda d: d["layers"][1].update(in_group={"id": "g0"}), "conv2"),
    (lambda d: d["layers"][1].update(block=["b2"]), "conv2"),
    (lambda d: d["layers"][1].update(out_group=""), "conv2"),
    (lambda d: d["groups"][0].update(widths={"h": [1, 2]}), "g0"),  # one width per level
    (lambda d: d["groups"][0].update(widths={"h": [1, 1, 2]}), "g0"),  # two levels alike
    (lambda d: d["groups"][0].update(widths={"h": [1, 0, 2]}), "g0"),
    (lambda d: d["groups"][0].update(widths=[1, 2, 3]), "g0"),
    (lambda d: d["groups"][0].update(levels=[8, 24, 16], widths={"h": [1, 2, 3]}), "g0"),
]


def test_a_group_of_combinations_may_repeat_its_levels_and_says_each_width() -> None:
    """An attention that removes heads: heads x (query/key, value) widths, 16 channels kept two ways."""
    doc = _mutated(lambda d: d["groups"][0].update(levels=[8, 16, 16], widths={"h": [1, 1, 2], "qk": [4, 8, 8],
                                                                                "v": [4, 8, 8]}))
    doc["groups"][0]["widths"]["v"] = [4, 8, 4]  # (1, 8, 8) and (2, 8, 4): same channels, different widths
    problem = Problem.from_json(doc)
    assert problem.group_by_id["g0"].widths == {"h": (1, 1, 2), "qk": (4, 8, 8), "v": (4, 8, 4)}
    assert Problem.from_json(json.loads(json.dumps(problem.to_json()))).to_json() == problem.to_json()


@pytest.mark.parametrize(("edit", "named"), BAD)
def test_invalid_documents_raise_one_line_input_errors(edit, named: str) -> None:
    with pytest.raises(InputError) as info:
        Problem.from_json(_mutated(edit))
    message = str(info.value)
    assert named in message and "\n" not in message


def test_unreadable_files_raise_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        Problem.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        Problem.load(bad)


def test_a_negative_fixed_latency_is_the_affine_laws_constant() -> None:
    """`build` writes a calibration offset there, often negative; every solver takes it as it is."""
    doc = _mutated(lambda d: d.update(fixed_latency=-0.5))
    problem = Problem.from_json(doc)
    assert problem.fixed_latency == -0.5 and Problem.from_json(problem.to_json()).fixed_latency == -0.5


@pytest.mark.parametrize(
    ("content", "named"),
    [
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"format": "mdp-problem/1", "budget": ' + b"9" * 5000 + b"}", "digits"),
        (b"", "not valid JSON"),
        (b"{\"format\": \"mdp-problem/1\", \"budget\": NaN", "not valid JSON"),
    ],
)
def test_undecodable_files_raise_one_line_input_errors(tmp_path: Path, content: bytes, named: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(InputError, match=named) as info:
        Problem.load(path)
    assert "\n" not in str(info.value)


def _json_values() -> st.SearchStrategy:
    leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5)
    return st.recursive(leaves, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3),
                                                                                          inner, max_size=3),
                        max_leaves=6)


def _paths(doc, prefix=()):
    """Every (container, key) position in the document."""
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else []
    for key, value in items:
        yield (*prefix, key)
        yield from _paths(value, (*prefix, key))


PATHS = list(_paths(BASE))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.sampled_from(PATHS), _json_values())
def test_any_value_anywhere_is_a_problem_or_one_input_error(path: tuple, value) -> None:
    doc = copy.deepcopy(BASE)
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    try:
        Problem.from_json(doc)
    except InputError as exc:
        assert "\n" not in str(exc)
