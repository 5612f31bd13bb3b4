"""`--input-shape`: parsing trtexec-style specs and fixing symbolic input sizes, with one-line errors."""

from __future__ import annotations

import onnx
import pytest
from onnx import helper

from mdp_trt.errors import InputError
from mdp_trt.graph.input_shapes import parse_input_shapes, static_input_shapes, with_input_shapes


def model_with_inputs(**inputs: list) -> onnx.ModelProto:
    values = [helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, dims) for name, dims in inputs.items()]
    nodes = [helper.make_node("Identity", [name], [f"{name}_out"]) for name in inputs]
    outputs = [helper.make_empty_tensor_value_info(f"{name}_out") for name in inputs]
    return helper.make_model(helper.make_graph(nodes, "g", values, outputs))


def dims(model: onnx.ModelProto, index: int = 0) -> list:
    return [d.dim_param or d.dim_value for d in model.graph.input[index].type.tensor_type.shape.dim]


def test_parse_bare_named_repeated_and_comma_separated():
    assert parse_input_shapes(["1x3x224x224"]) == {None: (1, 3, 224, 224)}
    assert parse_input_shapes(["a:1x8,b:1x4", "input_1:0:2X3"]) == {"a": (1, 8), "b": (1, 4), "input_1:0": (2, 3)}
    assert parse_input_shapes([]) == {}


@pytest.mark.parametrize(("spec", "message"), [
    ("1x3xHx4", "positive integers joined by 'x'"), ("x:1x0x4", "every dim must be positive"),
    (":1x3", "name before ':' is empty"), ("a:1x3,a:1x4", "gives input 'a' twice"),
    ("1x3,b:1x4", "name every input"),
])
def test_malformed_specs_are_refused(spec, message):
    with pytest.raises(InputError, match=message):
        parse_input_shapes([spec])


def test_symbolic_spatial_sizes_are_fixed_and_the_batch_stays_symbolic():
    model = model_with_inputs(x=["N", 3, "H", "W"])
    fixed = with_input_shapes(model, parse_input_shapes(["x:2x3x32x48"]), batch=2)
    assert dims(fixed) == ["N", 3, 32, 48] and dims(model) == ["N", 3, "H", "W"]
    assert static_input_shapes(fixed, {}, batch=2) == {"x": (2, 3, 32, 48)}
    static = model_with_inputs(x=["N", 3, 8, 8])
    assert with_input_shapes(static, {}, batch=1) is static


@pytest.mark.parametrize(("inputs", "spec", "batch", "message"), [
    ({"x": ["N", 3, "H", "W"]}, [], 1, "input 'x' has symbolic size 'H' \\(axis 2\\), 'W' \\(axis 3\\), which must be "
                                       "static to run it: give --input-shape x:1x3xHxW"),
    ({"x": ["N", 3, "H", "W"]}, ["1x3x8"], 1, "gives 3 dims for input 'x', which has rank 4"),
    ({"x": ["N", 3, "H", "W"]}, ["y:1x3x8x8"], 1, "names 'y', which is not an input of the model \\(inputs: x\\)"),
    ({"x": ["N", 3, "H", "W"]}, ["1x4x8x8"], 1, "size 4 on axis 1 of input 'x', whose size there is fixed to 3"),
    ({"x": ["N", 3, "H", "W"]}, ["2x3x8x8"], 1, "gives batch 2 for input 'x' but --batch is 1"),
    ({"a": ["N", 3], "b": ["N", "K"]}, ["1x3"], 1, "the model has 2 inputs \\(a, b\\): name the input"),
    ({"a": ["N", 3], "b": ["N", "K"]}, ["a:1x3"], 1, "input 'b' has symbolic size 'K' \\(axis 1\\)"),
])
def test_wrong_or_missing_shapes_are_one_line_errors(inputs, spec, batch, message):
    with pytest.raises(InputError, match=message) as info:
        with_input_shapes(model_with_inputs(**inputs), parse_input_shapes(spec), batch)
    assert "\n" not in str(info.value)
