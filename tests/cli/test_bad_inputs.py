"""Every command under bad input: exit code 2, one line on stderr, no traceback, nothing written.

Hypothesis draws the bad input: random bytes, a valid file cut short, JSON of the wrong shape, option
values that are negative, zero, infinite, NaN, out of range or not numbers at all. Each command is
called through `mdp_trt.cli.main` in this process (as tests/latency/test_latency_cli.py does), on a
16x16 toy model with the analytic backend, so an example costs milliseconds. Examples are
derandomized, so CI sees the same ones on every run.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from mdp_trt.cli import main
from mdp_trt.graph import analyze, load_model
from mdp_trt.zoo import build as zoo_build
from tests.solve.test_problem import BASE

# No shrinking: a failing case is reported as drawn, and an xfail case costs no more than a passing one.
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@dataclass(frozen=True)
class Inputs:
    """Valid files to corrupt, and a scratch folder for the bad ones and the outputs."""

    root: Path
    model: Path
    plan: Path
    problem: Path
    scores: Path
    db: Path
    records: Path

    def bytes_of(self, name: str) -> bytes:
        return getattr(self, name).read_bytes()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Inputs:
    root = tmp_path_factory.mktemp("bad_inputs")
    model = root / "toy.onnx"
    onnx.save(zoo_build("toy", input_size=16), model)
    structure = analyze(load_model(model))
    plan = root / "plan.json"
    plan.write_text(json.dumps({"format": "mdp-plan/1", "groups": {}, "remove_blocks": []}))
    problem = root / "problem.json"
    problem.write_text(json.dumps(BASE))
    scores = root / "scores.npz"
    np.savez(scores, **{g.id: np.ones(g.size) for g in structure.groups})
    db, records = root / "lat.sqlite", root / "lat.jsonl"
    assert main(["profile", str(model), "--backend", "analytic", "--db", str(db), "--grid", "2"]) == 0
    assert main(["db", "export", str(records), "--db", str(db)]) == 0
    return Inputs(root, model, plan, problem, scores, db, records)


@dataclass(frozen=True)
class Result:
    code: int | None  # None: an exception escaped main(), which a user sees as a traceback
    out: str
    err: str


def run(capsys, argv: list[str]) -> Result:
    try:
        code: int | None = main(argv)
        escaped = ""
    except Exception:
        code, escaped = None, traceback.format_exc()
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err + escaped)


def assert_refused(result: Result, argv: list[str], *unwritten: Path) -> None:
    """Exit 2 and one line `error: ...` on stderr (nothing else there), no traceback, no output written."""
    shown = f"mdp-trt {' '.join(argv)}\nexit {result.code}\nstderr:\n{result.err[-3000:]}"
    assert "Traceback" not in result.err + result.out, shown
    assert result.code == 2, shown
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), shown
    for path in unwritten:
        assert not path.exists(), f"{path} was written\n{shown}"


# --- bad files -------------------------------------------------------------------------------------
def random_bytes(_: Inputs) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=1, max_size=512)  # an empty file is a valid new SQLite database


def truncated(name: str) -> Callable[[Inputs], st.SearchStrategy[bytes]]:
    """`name`'s valid file cut short at a random point."""
    def strategy(inputs: Inputs) -> st.SearchStrategy[bytes]:
        data = inputs.bytes_of(name)
        return st.integers(1 if name == "db" else 0, len(data) - 1).map(lambda n: data[:n])
    return strategy


def truncated_lines(inputs: Inputs) -> st.SearchStrategy[bytes]:
    """The exported records cut inside a line (a cut at either end of a line leaves a shorter, valid file)."""
    data = inputs.bytes_of("records")
    cuts = [n for n in range(1, len(data)) if b"\n" not in data[n - 1:n + 1]]
    return st.sampled_from(cuts).map(lambda n: data[:n])


def _json_values() -> st.SearchStrategy:
    leaves = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
              | st.text(max_size=6))
    return st.recursive(leaves, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=8)


def wrong_json(_: Inputs) -> st.SearchStrategy[bytes]:
    """Valid JSON that is not the document asked for (any value, or an object of the wrong shape)."""
    return _json_values().map(lambda value: json.dumps(value).encode())


def _json_type(value) -> type:
    return {bool: bool, int: float, float: float}.get(type(value), type(value))


def retyped(name: str) -> Callable[[Inputs], st.SearchStrategy[bytes]]:
    """`name`'s valid document with one top-level member replaced by a value of another JSON type."""
    def strategy(inputs: Inputs) -> st.SearchStrategy[bytes]:
        doc = json.loads(inputs.bytes_of(name))
        keys = sorted(k for k in doc if k != "reference")  # "reference" is free-form, kept verbatim

        def replace(key: str) -> st.SearchStrategy[bytes]:
            values = _json_values().filter(lambda v: v is not None and _json_type(v) is not _json_type(doc[key]))
            return values.map(lambda v: json.dumps({**doc, key: v}).encode())

        return st.sampled_from(keys).flatmap(replace)
    return strategy


def wrong_lines(_: Inputs) -> st.SearchStrategy[bytes]:
    """JSON lines that are not latency records."""
    return st.lists(_json_values(), min_size=1, max_size=4).map(
        lambda values: "\n".join(json.dumps(v) for v in values).encode() + b"\n")


def non_utf8(_: Inputs) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=1, max_size=64).map(lambda data: b"\xff" + data)


PRUNE = ["prune", "{model}", "--plan", "{bad}", "-o", "{out}"]
PROFILE = ["profile", "{model}", "--dry-run", "--backend", "analytic", "--db", "{bad}"]
PROFILE_MODEL = ["profile", "{bad}", "--dry-run", "--backend", "analytic", "--db", "{db}"]
PREDICT = ["predict", "{model}", "--plan", "{bad}", "--backend", "analytic", "--db", "{db}"]
BUILD_WITH = ["build", "{model}", "--speedup", "2", "--backend", "analytic", "--grid", "2", "--db", "{db}",
              "--no-plots", "-o", "{out}"]
ZOO_NAMES = ("resnet18", "resnet50", "mobilenet_v2", "vgg11_bn", "se_resnet", "densenet", "unet", "toy")


# (case id, command line with {bad} for the bad file and {out} for an output, the bad file's suffix, its
# content, marks). A truncated SQLite file can still answer a command that needs none of the pages cut
# off, so there success is allowed too (`may_succeed`); a failure must still be one line.
def _case(case: str, template: list[str], suffix: str, content, *, may_succeed: bool = False, marks=()):
    return pytest.param(case, template, suffix, content, may_succeed, id=case, marks=marks)


FILE_CASES: list = [
    _case("analyze-model-bytes", ["analyze", "{bad}", "--json"], ".onnx", random_bytes),
    _case("analyze-model-truncated", ["analyze", "{bad}"], ".onnx", truncated("model")),
    _case("analyze-model-named-json", ["analyze", "{bad}"], ".json", random_bytes),
    _case("prune-model-bytes", ["prune", "{bad}", "--ratio", "0.5", "-o", "{out}"], ".onnx", random_bytes),
    _case("prune-model-truncated", ["prune", "{bad}", "--ratio", "0.5", "-o", "{out}"], ".onnx", truncated("model")),
    _case("prune-plan-bytes", PRUNE, ".json", random_bytes),
    _case("prune-plan-truncated", PRUNE, ".json", truncated("plan")),
    _case("prune-plan-wrong-json", PRUNE, ".json", wrong_json),
    _case("prune-plan-retyped", PRUNE, ".json", retyped("plan")),
    _case("profile-model-bytes", [*PROFILE_MODEL], ".onnx", random_bytes),
    _case("profile-model-truncated", [*PROFILE_MODEL], ".onnx", truncated("model")),
    _case("profile-db-bytes", PROFILE, ".sqlite", random_bytes),
    _case("profile-db-truncated", PROFILE, ".sqlite", truncated("db"), may_succeed=True),
    _case("bench-model-bytes", ["bench", "{bad}", "--backend", "analytic"], ".onnx", random_bytes),
    _case("bench-model-truncated", ["bench", "{bad}", "--backend", "analytic"], ".onnx", truncated("model")),
    _case("predict-model-bytes", ["predict", "{bad}", "--plan", "{plan}", "--backend", "analytic", "--db", "{db}"],
          ".onnx", random_bytes),
    _case("predict-plan-bytes", PREDICT, ".json", random_bytes),
    _case("predict-plan-truncated", PREDICT, ".json", truncated("plan")),
    _case("predict-plan-wrong-json", PREDICT, ".json", wrong_json),
    _case("predict-plan-retyped", PREDICT, ".json", retyped("plan")),
    _case("solve-problem-bytes", ["solve", "{bad}"], ".json", random_bytes),
    _case("solve-problem-non-utf8", ["solve", "{bad}"], ".json", non_utf8),
    _case("solve-problem-truncated", ["solve", "{bad}"], ".json", truncated("problem")),
    _case("solve-problem-wrong-json", ["solve", "{bad}"], ".json", wrong_json),
    _case("solve-problem-retyped", ["solve", "{bad}"], ".json", retyped("problem")),
    _case("db-show-bytes", ["db", "show", "--db", "{bad}"], ".sqlite", random_bytes),
    _case("db-show-truncated", ["db", "show", "--db", "{bad}"], ".sqlite", truncated("db"), may_succeed=True),
    _case("db-import-bytes", ["db", "import", "{bad}", "--db", "{db}"], ".jsonl", random_bytes),
    _case("db-import-non-utf8", ["db", "import", "{bad}", "--db", "{db}"], ".jsonl", non_utf8),
    _case("db-import-truncated", ["db", "import", "{bad}", "--db", "{db}"], ".jsonl", truncated_lines),
    _case("db-import-wrong-lines", ["db", "import", "{bad}", "--db", "{db}"], ".jsonl", wrong_lines),
    _case("db-merge-bytes", ["db", "merge", "{bad}", "--db", "{db}"], ".sqlite", random_bytes),
    _case("build-model-bytes", ["build", "{bad}", *BUILD_WITH[2:]], ".onnx", random_bytes),
    _case("build-model-truncated", ["build", "{bad}", *BUILD_WITH[2:]], ".onnx", truncated("model")),
    _case("build-importance-bytes", [*BUILD_WITH, "--importance", "{bad}"], ".npz", random_bytes),
    _case("build-importance-truncated", [*BUILD_WITH, "--importance", "{bad}"], ".npz", truncated("scores")),
]


def _expand(template: list[str], inputs: Inputs, bad: Path, scratch: Path) -> list[str]:
    values = {"bad": str(bad), "out": str(scratch / "out"), "model": str(inputs.model), "plan": str(inputs.plan),
              "db": str(scratch / "db.sqlite")}
    return [part.format(**values) for part in template]


@pytest.mark.parametrize(("case", "template", "suffix", "content", "may_succeed"), FILE_CASES)
def test_a_bad_file_is_refused_in_one_line(case: str, template: list[str], suffix: str, content, may_succeed: bool,
                                           inputs: Inputs, capsys, tmp_path: Path) -> None:
    @SETTINGS
    @given(content(inputs))
    def check(data: bytes) -> None:
        scratch = tmp_path / "scratch"
        scratch.mkdir(exist_ok=True)
        for stale in scratch.iterdir():
            _remove(stale)
        bad = scratch / f"bad{suffix}"
        bad.write_bytes(data)
        argv = _expand(template, inputs, bad, scratch)
        result = run(capsys, argv)
        if may_succeed and result.code == 0:
            return
        assert_refused(result, argv, scratch / "out")

    check()


def _remove(path: Path) -> None:
    if path.is_dir():
        for child in path.iterdir():
            _remove(child)
        path.rmdir()
    else:
        path.unlink()


# --- bad option values -----------------------------------------------------------------------------
def _not_a_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return True
    return False


NON_NUMBERS = st.text(min_size=1, max_size=6).filter(_not_a_number)
POSITIVE_NUMBER = st.sampled_from(["0", "-1", "-0.5", "inf", "-inf", "nan", "1e400"]) | NON_NUMBERS
POSITIVE_INT = st.sampled_from(["0", "-1", "-64", "1.5", "2e3"]) | NON_NUMBERS
NAME = st.text(min_size=1, max_size=8)


def not_in(*valid: str) -> st.SearchStrategy[str]:
    return NAME.filter(lambda text: text not in valid)


BUILD = ["build", "{model}", "--backend", "analytic", "--grid", "2", "--db", "{db}", "--no-plots", "-o", "{out}"]
TARGET = ["--speedup", "2"]
# (case id, command line, option, bad values); the option and a drawn value are appended
OPTION_CASES: list = [
    ("solve-time-limit", ["solve", "{problem}"], "--time-limit", POSITIVE_NUMBER),
    ("solve-budget", ["solve", "{problem}"], "--budget", POSITIVE_NUMBER | st.sampled_from(["1e16", "-1e300"])),
    ("solve-sweep", ["solve", "{problem}"], "--sweep", st.sampled_from(["0", "1", "-3", "1001", str(10**30)])
     | NON_NUMBERS),
    ("solve-solver", ["solve", "{problem}"], "--solver", not_in("milp", "minlp", "halp", "uniform")),
    ("solve-engine", ["solve", "{problem}", "--solver", "minlp"], "--minlp-engine", not_in("scip", "mindtpy")),
    ("build-fps", BUILD, "--fps", POSITIVE_NUMBER),
    ("build-latency", BUILD, "--latency-ms", POSITIVE_NUMBER),
    ("build-speedup", BUILD, "--speedup", POSITIVE_NUMBER | st.sampled_from(["0.5", "1e-9"])),
    ("build-batch", [*BUILD, *TARGET], "--batch", POSITIVE_INT),
    ("build-grid", [*BUILD, *TARGET], "--grid", POSITIVE_INT),
    ("build-align", [*BUILD, *TARGET], "--align", POSITIVE_INT),
    ("build-threads", [*BUILD, *TARGET], "--threads", POSITIVE_INT),
    ("build-rounds", [*BUILD, *TARGET], "--rounds", POSITIVE_INT),
    ("build-solver", [*BUILD, *TARGET], "--solver", not_in("milp", "minlp", "halp", "uniform")),
    ("build-precision", [*BUILD, *TARGET], "--precision", not_in("fp32", "fp16")),
    ("build-importance-missing", [*BUILD, *TARGET], "--importance", st.just("{root}/missing.npz")),
    ("prune-ratio", ["prune", "{model}", "-o", "{out}"], "--ratio",
     POSITIVE_NUMBER | st.sampled_from(["1.5", "-0.1", "2"])),
    ("prune-input-shape", ["prune", "{model}", "--ratio", "0.5", "-o", "{out}"], "--input-shape",
     st.sampled_from(["abc", "1x3", "input:0x3x16x16", "nosuchinput:1x3x16x16", "1x-3x16x16", "1xx3"])),
    ("profile-batch", ["profile", "{model}", "--dry-run", "--backend", "analytic", "--db", "{db}"], "--batch",
     POSITIVE_INT),
    ("profile-grid", ["profile", "{model}", "--dry-run", "--backend", "analytic", "--db", "{db}"], "--grid",
     POSITIVE_INT),
    ("profile-align", ["profile", "{model}", "--dry-run", "--backend", "analytic", "--db", "{db}"], "--align",
     POSITIVE_INT),
    ("profile-backend", ["profile", "{model}", "--dry-run", "--db", "{db}"], "--backend",
     not_in("auto", "ort", "ort-cuda", "ort-tensorrt", "tensorrt", "analytic")),
    ("profile-max-seconds", ["profile", "{model}", "--dry-run", "--backend", "analytic", "--db", "{db}"],
     "--max-seconds", st.sampled_from(["-1", "nan", "-inf"]) | NON_NUMBERS),
    ("bench-batch", ["bench", "{model}", "--backend", "analytic"], "--batch", POSITIVE_INT),
    ("bench-threads", ["bench", "{model}", "--backend", "analytic"], "--threads", POSITIVE_INT),
    ("bench-precision", ["bench", "{model}", "--backend", "analytic"], "--precision", not_in("fp32", "fp16")),
    ("bench-input-shape", ["bench", "{model}", "--backend", "analytic"], "--input-shape",
     st.sampled_from(["abc", "1x3", "input:0x3x16x16", "nosuchinput:1x3x16x16", "1x-3x16x16"])),
    ("predict-grid", ["predict", "{model}", "--plan", "{plan}", "--backend", "analytic", "--db", "{db}"], "--grid",
     POSITIVE_INT),
    ("zoo-name", ["zoo", "-o", "{out}"], None, not_in(*ZOO_NAMES)),
    ("zoo-input-size", ["zoo", "toy", "-o", "{out}"], "--input-size", POSITIVE_INT),
    ("zoo-batch", ["zoo", "toy", "-o", "{out}"], "--batch", st.sampled_from(["0", "-1", "1.5", "M"]) | NON_NUMBERS),
    ("zoo-width", ["zoo", "toy", "-o", "{out}"], "--width", POSITIVE_NUMBER),
    ("zoo-classes", ["zoo", "toy", "-o", "{out}"], "--num-classes", POSITIVE_INT),
    ("zoo-input-size-huge", ["zoo", "toy", "-o", "{out}"], "--input-size", st.sampled_from(["100000000", str(10**30)])),
    ("zoo-seed", ["zoo", "toy", "-o", "{out}"], "--seed", st.sampled_from(["-1", "-12345"])),
    # paths of the wrong kind
    ("db-show-db-folder", ["db", "show"], "--db", st.just("{root}")),
    ("db-export-to-folder", ["db", "export", "--db", "{db}"], None, st.just("{root}")),
    ("prune-output-folder", ["prune", "{model}", "--ratio", "0.5"], "-o", st.just("{root}")),
    ("zoo-output-folder", ["zoo", "toy"], "-o", st.just("{root}")),
    ("build-output-file", [*BUILD[:-2], *TARGET], "-o", st.sampled_from(["{root}/plan.json", "{root}/toy.onnx"])),
    ("profile-db-folder", ["profile", "{model}", "--dry-run", "--backend", "analytic"], "--db", st.just("{root}")),
    ("solve-problem-folder", ["solve"], None, st.just("{root}")),
    ("predict-plan-folder", ["predict", "{model}", "--backend", "analytic", "--db", "{db}"], "--plan",
     st.just("{root}")),
]


@pytest.mark.parametrize(("case", "template", "option", "values"),
                         [pytest.param(*c, id=c[0]) if type(c) is tuple else c for c in OPTION_CASES])
def test_a_bad_option_value_is_refused_in_one_line(case: str, template: list[str], option: str | None, values,
                                                   inputs: Inputs, capsys, tmp_path: Path) -> None:
    @SETTINGS
    @given(values)
    def check(value: str) -> None:
        out = tmp_path / "out"
        fields = {"model": str(inputs.model), "plan": str(inputs.plan), "problem": str(inputs.problem),
                  "db": str(tmp_path / "db.sqlite"), "out": str(out), "root": str(inputs.root)}
        argv = [part.format(**fields) for part in template]
        value = value.replace("{root}", fields["root"])  # drawn text may hold braces: no str.format here
        argv += [option, value] if option is not None else [value]
        assert_refused(run(capsys, argv), argv, out)

    check()

