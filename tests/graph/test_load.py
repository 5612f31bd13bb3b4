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


def save(model: onnx.ModelProto, tmp_path) -> str:
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    return str(path)


def with_node(node: onnx.NodeProto, opset: int = 17, domains: tuple[str, ...] = ()) -> onnx.ModelProto:
    """The small model with `node` added, its first output a graph output, at `opset`, importing `domains`."""
    model = small_model()
    model.graph.node.append(node)
    model.graph.output.append(helper.make_empty_tensor_value_info(node.output[0]))
    model.opset_import[0].version = opset
    model.opset_import.extend(helper.make_opsetid(d, 1) for d in domains)
    return model


def relu_output(model: onnx.ModelProto) -> str:
    return model.graph.node[-1].output[0]


@pytest.mark.parametrize(("op", "opset", "expected"), [
    ("LayerNormalization", 12, "node 'ln' uses op 'LayerNormalization', which the default ONNX domain does not "
                               "define at opset 12"),
    ("FooBar", 17, "node 'ln' uses op 'FooBar', which the default ONNX domain does not define at opset 17"),
    ("Upsample", 13, "node 'ln' uses op 'Upsample', which the default ONNX domain deprecates at opset 13"),
])
def test_an_op_its_opset_does_not_define_is_refused_naming_node_and_op(tmp_path, op, opset, expected):
    model = with_node(helper.make_node(op, [relu_output(small_model())], ["extra"], name="ln"), opset)
    with pytest.raises(InputError, match=expected):
        load_model(save(model, tmp_path))


def test_an_attribute_its_opset_does_not_define_is_refused(tmp_path):
    """torch's dynamo exporter, asked for opset 17, converts its opset-18 graph down and leaves Split's
    num_outputs behind: ONNX Runtime refuses such a model, so load does, naming the node."""
    split = helper.make_node("Split", [relu_output(small_model())], ["a", "b"], name="chunk", axis=1, num_outputs=2)
    with pytest.raises(InputError, match=r"node 'chunk' gives Split the attribute 'num_outputs'.*opset 17"):
        load_model(save(with_node(split, 17), tmp_path))
    load_model(save(with_node(split, 18), tmp_path))


def test_ops_inside_subgraphs_are_checked(tmp_path):
    def branch(op: str, **attrs) -> onnx.GraphProto:
        return helper.make_graph([helper.make_node(op, [], ["t"], name="inner", **attrs)], op, [],
                                 [helper.make_empty_tensor_value_info("t")])

    valid = branch("Constant", value=helper.make_tensor("v", onnx.TensorProto.FLOAT, [1], [0.0]))
    cond = helper.make_node("Constant", [], ["cond"], value=helper.make_tensor("c", onnx.TensorProto.BOOL, [], [1]))
    model = with_node(helper.make_node("If", ["cond"], ["extra"], name="if1", then_branch=branch("FooBar"),
                                       else_branch=valid))
    model.graph.node.insert(len(model.graph.node) - 1, cond)
    with pytest.raises(InputError, match="node 'inner' \\(in subgraph 'then_branch' of node 'if1'\\) uses op 'FooBar'"):
        load_model(save(model, tmp_path))


def test_custom_domains_and_local_functions_are_allowed(tmp_path):
    x = relu_output(small_model())
    model = with_node(helper.make_node("FooBar", [x], ["extra"], name="custom", domain="com.microsoft"),
                      domains=("com.microsoft",))
    load_model(save(model, tmp_path))
    function = helper.make_function("my.functions", "Twice", ["a"], ["b"], [helper.make_node("Add", ["a", "a"], ["b"])],
                                    [helper.make_opsetid("", 17)])
    model = with_node(helper.make_node("Twice", [x], ["extra"], name="twice", domain="my.functions"),
                      domains=("my.functions",))
    model.functions.append(function)
    load_model(save(model, tmp_path))


def test_a_domain_the_model_does_not_import_is_refused(tmp_path):
    model = with_node(helper.make_node("FooBar", [relu_output(small_model())], ["extra"], name="c", domain="com.x"))
    with pytest.raises(InputError, match=r"domain 'com\.x', which the model does not import"):
        load_model(save(model, tmp_path))


@pytest.mark.parametrize("version", [99, onnx.IR_VERSION + 1, 2])
def test_an_ir_version_the_tools_here_cannot_read_is_refused(tmp_path, version):
    model = small_model()
    model.ir_version = version
    with pytest.raises(InputError, match=f"unsupported IR version {version} \\(supported here: 3 to "):
        load_model(save(model, tmp_path))


def test_an_ir_version_onnxruntime_cannot_load_is_refused_with_its_limit(tmp_path, monkeypatch):
    import mdp_trt.graph.support as support

    monkeypatch.setattr(support, "_ort_loads_ir", lambda version: version <= 11)
    model = small_model()
    model.ir_version = 12
    with pytest.raises(InputError, match="unsupported IR version 12 \\(supported here: 3 to 11;"):
        load_model(save(model, tmp_path))
    assert support.max_ir_version() == 11
