"""The in-house model zoo: valid ONNX that runs, faithful architectures, exact BN folding, determinism."""

from __future__ import annotations

import collections
import math
from functools import cache

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from mdp_trt import zoo
from mdp_trt.cli import main
from mdp_trt.errors import InputError

CLASSES = 10


def _size(name: str) -> int:
    """Small inputs keep the suite fast; VGG gets 64 so its Flatten sees a 2x2 map, not 1x1."""
    return 64 if name == "vgg11_bn" else 32


@cache
def _model(name: str, batch: int | str = "N", fold_bn: bool = False) -> onnx.ModelProto:
    """Built once per configuration: building is the slow part of these tests."""
    return zoo.build(name, input_size=_size(name), batch=batch, fold_bn=fold_bn, num_classes=CLASSES)


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _images(name: str, batch: int) -> np.ndarray:
    size = _size(name)
    return np.random.default_rng(1).standard_normal((batch, 3, size, size), dtype=np.float32)


def _expected_shape(name: str, batch: int) -> tuple[int, ...]:
    return (batch, CLASSES, _size(name), _size(name)) if name == "unet" else (batch, CLASSES)


def test_names_cover_the_families() -> None:
    assert set(zoo.NAMES) == {
        "toy", "resnet18", "resnet50", "mobilenet_v2", "vgg11_bn", "se_resnet", "densenet", "unet", "vit_tiny"
    }  # fmt: skip


@pytest.mark.parametrize("name", zoo.NAMES)
def test_fixed_batch_model_checks_and_runs(name: str) -> None:
    model = _model(name, batch=1)
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == 10
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
    (out,) = _session(model).run(None, {"input": _images(name, 1)})
    assert out.shape == _expected_shape(name, 1)
    assert np.isfinite(out).all()


@pytest.mark.parametrize("name", zoo.NAMES)
def test_symbolic_batch_runs_batch_two_and_matches_fixed_batch(name: str) -> None:
    model = _model(name)
    onnx.checker.check_model(model, full_check=True)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    assert model.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "N"
    images = _images(name, 2)
    (out,) = _session(model).run(None, {"input": images})
    assert out.shape == _expected_shape(name, 2)
    (first,) = _session(_model(name, batch=1)).run(None, {"input": images[:1]})
    np.testing.assert_allclose(out[:1], first, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", zoo.NAMES)
def test_fold_bn_computes_the_same_function(name: str) -> None:
    plain, folded = _model(name), _model(name, fold_bn=True)
    onnx.checker.check_model(folded, full_check=True)
    n_bn = collections.Counter(n.op_type for n in plain.graph.node)["BatchNormalization"]
    n_bn_folded = collections.Counter(n.op_type for n in folded.graph.node)["BatchNormalization"]
    if name == "densenet":  # pre-activation BNs read a Concat, not a Conv: they stay
        assert 0 < n_bn_folded < n_bn
    elif name == "vit_tiny":  # LayerNorms only: nothing to fold
        assert n_bn == n_bn_folded == 0
    else:
        assert n_bn > 0 and n_bn_folded == 0
    images = _images(name, 2)
    (a,) = _session(plain).run(None, {"input": images})
    (b,) = _session(folded).run(None, {"input": images})
    np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-3 * float(np.abs(a).max()))


@pytest.mark.parametrize("name", zoo.NAMES)
def test_activations_neither_explode_nor_vanish(name: str) -> None:
    model = onnx.ModelProto()
    model.CopyFrom(_model(name))
    del model.graph.output[:]
    model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n.output[0]) for n in model.graph.node)
    outputs = _session(model).run(None, {"input": _images(name, 2)})
    for node, value in zip(model.graph.node, outputs, strict=True):
        if not np.issubdtype(value.dtype, np.floating):
            continue  # shapes (a class token expanded to the batch)
        rms = float(np.sqrt(np.mean(np.square(value, dtype=np.float64))))
        assert 0.02 < rms < 20, f"{name}: {node.name} has rms {rms:.3g}"


@pytest.mark.parametrize("name", zoo.NAMES)
def test_names_are_unique_and_readable(name: str) -> None:
    graph = _model(name).graph
    node_names = [n.name for n in graph.node]
    assert len(set(node_names)) == len(node_names) and all(node_names)
    init_names = {t.name for t in graph.initializer}
    assert len(init_names) == len(graph.initializer)
    for node in graph.node:
        if node.op_type in ("Conv", "ConvTranspose", "Gemm"):
            assert node.input[1] == f"{node.name}.weight"
        if node.op_type == "BatchNormalization":
            assert node.input[1:] == [f"{node.name}.{s}" for s in ("weight", "bias", "running_mean", "running_var")]


@pytest.mark.parametrize(
    ("name", "params"),
    [("resnet18", 11_689_512), ("resnet50", 25_557_032), ("mobilenet_v2", 3_504_872)],
)
def test_learnable_parameters_match_torchvision(name: str, params: int) -> None:
    """torchvision's counts at 1000 classes (BN running statistics are buffers, not parameters)."""
    model = zoo.build(name, input_size=32)
    learnable = sum(
        math.prod(t.dims)
        for t in model.graph.initializer
        if not t.name.startswith("const.") and not t.name.endswith(("running_mean", "running_var"))
    )
    assert learnable == params


def test_vit_tiny_has_deit_tinys_parameters() -> None:
    """timm's deit_tiny_patch16_224: 5,717,416 parameters at 224 (its position embedding holds 197 tokens)."""
    model = zoo.build("vit-tiny", input_size=224)
    assert sum(math.prod(t.dims) for t in model.graph.initializer if not t.name.startswith("const.")) == 5_717_416


def _ops(name: str) -> collections.Counter[str]:
    return collections.Counter(n.op_type for n in _model(name).graph.node)


def _attr(node: onnx.NodeProto, name: str) -> object:
    return next(onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == name)


def test_architectures_hold_their_characteristic_patterns() -> None:
    mobilenet = _model("mobilenet_v2").graph
    depthwise = [n for n in mobilenet.node if n.op_type == "Conv" and _attr(n, "group") > 1]
    assert len(depthwise) == 17
    assert _ops("mobilenet_v2")["Clip"] == 35 and _ops("mobilenet_v2")["Add"] == 10

    vgg = _model("vgg11_bn").graph
    fc_weight = next(t for t in vgg.initializer if t.name == "classifier.0.weight")
    assert fc_weight.dims[1] == 512 * 2 * 2  # the Gemm reads Flatten(N, 512, 2, 2)

    se = _ops("se_resnet")
    assert se["Sigmoid"] == se["Mul"] == 8 and se["Unsqueeze"] == 4  # 4 Conv-SE and 4 Gemm-SE blocks
    assert _ops("densenet")["Concat"] > 20 and _ops("densenet")["AveragePool"] == 3

    unet = _model("unet").graph
    assert sorted(_attr(n, "mode") for n in unet.node if n.op_type == "Resize") == [b"linear", b"nearest"]
    assert _ops("unet")["ConvTranspose"] == 1
    assert {"Add", "Concat", "Gemm", "BatchNormalization"} <= set(_ops("toy"))


def test_same_seed_same_bytes_other_seed_other_weights() -> None:
    for name in ("toy", "mobilenet_v2", "unet"):
        a = zoo.build(name, input_size=32, seed=3, width=0.5).SerializeToString()
        assert a == zoo.build(name, input_size=32, seed=3, width=0.5).SerializeToString()
        assert a != zoo.build(name, input_size=32, seed=4, width=0.5).SerializeToString()


@pytest.mark.parametrize(
    "kwargs",
    [{"name": "alexnet"}, {"name": "unet", "input_size": 60}, {"name": "resnet18", "input_size": 16},
     {"name": "toy", "batch": 0}, {"name": "toy", "batch": "B"}, {"name": "toy", "num_classes": 0}],
)  # fmt: skip
def test_bad_arguments_are_input_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(InputError):
        zoo.build(**kwargs)  # type: ignore[arg-type]


def test_cli_writes_a_valid_model(tmp_path) -> None:
    out = tmp_path / "toy.onnx"
    code = main(["zoo", "toy", "-o", str(out), "--input-size", "32", "--batch", "N", "--fold-bn",
                 "--seed", "5", "--num-classes", "7"])  # fmt: skip
    assert code == 0
    model = onnx.load(out)
    onnx.checker.check_model(model, full_check=True)
    dims = model.graph.output[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and dims[1].dim_value == 7
    assert "BatchNormalization" not in {n.op_type for n in model.graph.node}
    assert (
        model.SerializeToString()
        == zoo.build("toy", input_size=32, batch="N", fold_bn=True, seed=5, num_classes=7).SerializeToString()
    )
    assert [p.name for p in tmp_path.iterdir()] == ["toy.onnx"]  # no temporary file left behind


def test_cli_rejects_an_unknown_name_with_exit_2(tmp_path, capsys) -> None:
    assert main(["zoo", "alexnet", "-o", str(tmp_path / "a.onnx")]) == 2
    assert "unknown zoo model 'alexnet'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_cli_lists_the_models(capsys) -> None:
    assert main(["zoo", "--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in zoo.NAMES)
