"""Every way a model file can be wrong is a one-line InputError (CLI exit code 2)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from mdp_trt.cli import main
from mdp_trt.errors import InputError
from mdp_trt.graph import load_model
from tests.onnx_graphs import Graph


def small_model() -> onnx.ModelProto:
    g = Graph()
    y = g.node("Relu", [g.conv("input", 3, 4)])
    return g.model(y)


def test_loads_a_plain_model(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(small_model(), str(path))
    assert len(load_model(path).graph.node) == 2


def test_loads_external_data_inside_the_folder(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(small_model(), str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location="m.data", size_threshold=0)
    model = load_model(path)
    weights = [numpy_helper.to_array(t) for t in model.graph.initializer]
    assert weights[0].shape == (4, 3, 3, 3)


@pytest.mark.parametrize("case", ["missing", "directory", "garbage", "truncated", "empty_graph"])
def test_unreadable_files(tmp_path, case):
    path = tmp_path / "m.onnx"
    if case == "directory":
        path.mkdir()
    elif case == "garbage":
        path.write_bytes(b"\x00\xff this is not protobuf \x13\x37" * 10)
    elif case == "truncated":
        data = small_model().SerializeToString()
        path.write_bytes(data[: len(data) // 2])
    elif case == "empty_graph":
        path.write_text("")
    with pytest.raises(InputError):
        load_model(path)


def test_missing_external_data(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(small_model(), str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location="m.data", size_threshold=0)
    (tmp_path / "m.data").unlink()
    with pytest.raises(InputError, match="missing external data"):
        load_model(path)


def test_external_data_outside_the_folder_is_refused(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.zeros(1000, np.float32).tobytes())
    folder = tmp_path / "models"
    folder.mkdir()
    model = small_model()
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    del tensor.float_data[:]
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", "../secret.bin"), ("offset", "0"), ("length", str(4 * 4 * 27))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    path = folder / "m.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(InputError, match="outside the model's folder"):
        load_model(path)


def test_unsupported_opset(tmp_path):
    model = small_model()
    model.opset_import[0].version = 99
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(InputError, match="unsupported opset 99"):
        load_model(path)


def test_no_weighted_op(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    with pytest.raises(InputError, match="no weighted op"):
        load_model(path)


def test_cli_prints_one_line_and_exits_2(tmp_path, capsys):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"not a model at all")
    assert main(["analyze", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "not an ONNX model" in err
