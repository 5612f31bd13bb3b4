"""Every architecture family exports to valid ONNX that onnxruntime runs to PyTorch's own output.

These models are the ground truth for checking the compiler on graphs shaped the way torchvision,
timm and ultralytics code exports them, so the exports themselves must be right first: checked in
full, equal to PyTorch, outputs of order one (so that a tolerance means something), and holding the
op patterns each family is there for (a family whose export lost its pattern tests nothing).
Nothing here looks at mdp_trt's analysis.
"""

from __future__ import annotations

import collections

import numpy as np
import onnx
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")

from tests import families as fam  # noqa: E402  (only once torch is known to be there)

# Op types the TorchScript export of a family must contain: the library's way of writing its blocks.
PATTERNS: dict[str, set[str]] = {
    "resnet": {"Add", "MaxPool", "GlobalAveragePool"},
    "resnext": {"Conv", "Add"},
    "regnety": {"ReduceMean", "Sigmoid", "Mul"},
    "shufflenet_v2": {"Reshape", "Transpose", "Slice", "Concat"},  # channel_shuffle, chunk
    "ghostnet": {"Slice", "Concat", "ReduceMean", "Clip"},  # GhostModule slice, hard_sigmoid
    "mobilenet_v3": {"HardSwish", "HardSigmoid", "GlobalAveragePool"},
    "efficientnet": {"Sigmoid", "Mul", "GlobalAveragePool"},
    "densenet": {"Concat", "AveragePool", "BatchNormalization"},
    "googlenet": {"Concat", "MaxPool"},
    "unet": {"ConvTranspose", "Pad", "Concat"},
    "cspdarknet": {"Softplus", "Tanh", "Concat"},  # Mish
    "yolov8": {"Slice", "Split", "Softmax", "Resize", "MaxPool", "Concat", "Reshape", "Transpose"},
    "yolov8_fresh": {"Identity"},
    "yolo11": {"Split", "Softmax", "Resize"},
    "yolo11_psa": {"MatMul", "Softmax", "Split"},
    "convnext": {"LayerNormalization", "Transpose", "MatMul", "Erf"},
    "convnext_cf": {"ReduceMean", "Pow", "Sqrt", "LayerNormalization"},
    "convnext_v2": {"ReduceL2", "ReduceMean"},
    "fpn_seg": {"Resize", "Concat", "Add"},
    "deeplab_aspp": {"GlobalAveragePool", "Resize", "Concat"},
    "tied": {"Identity"},
    "vit": {"Split", "Squeeze", "Softmax", "LayerNormalization", "Concat"},  # timm: unbind(0), class token
    "deit": {"Sqrt", "Softmax", "Split"},  # scaled_dot_product_attention's temperature from Shape(q)
    "vit_separate_qkv": {"Div", "Softmax", "ReduceMean"},
    "vit_mha": {"Unsqueeze", "Gather", "Softmax"},  # MultiheadAttention's unflatten/unsqueeze/transpose/squeeze
    "swin": {"Slice", "Concat", "Softmax", "Split"},  # roll and patch merging (the bias table gather folds)
    "mobilevit": {"Reshape", "Transpose", "Concat", "LayerNormalization", "Softmax"},  # unfold, fold, fusion
    "levit": {"Split", "HardSwish", "Softmax"},  # q, k, v split per head
    "efficientformer": {"AveragePool", "Sub", "Split", "Softmax", "LayerNormalization"},  # pool mixer, Meta3D
}

EXPORTS = [pytest.param(False, False, id="torchscript"), pytest.param(True, False, id="torchscript-fold"),
           pytest.param(True, True, id="dynamo")]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Torch on one thread here: these models are tiny, and two OpenMP threads on a shared 2-core machine
    spin against the other processes (a 0.4 s export took 8 s that way)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def session(path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def test_every_family_has_patterns() -> None:
    assert set(PATTERNS) == set(fam.FAMILIES)


@pytest.mark.parametrize("name", sorted(fam.FAMILIES))
@pytest.mark.parametrize(("fold_bn", "dynamo"), EXPORTS)
def test_export_checks_runs_and_matches_torch(name: str, fold_bn: bool, dynamo: bool, family_exports) -> None:
    model = fam.make(name)
    shape = fam.input_shape(name)
    path = family_exports.path(name, fold_bn=fold_bn, dynamo=dynamo)
    onnx_model = onnx.load(path)
    onnx.checker.check_model(onnx_model, full_check=True)
    assert onnx_model.opset_import[0].version == (18 if dynamo else 17)
    assert [v.name for v in onnx_model.graph.input] == ["input"]
    assert [v.name for v in onnx_model.graph.output] == fam.output_names(model)
    ops = collections.Counter(n.op_type for n in onnx_model.graph.node)
    if not dynamo:
        assert PATTERNS[name] <= set(ops), f"missing {PATTERNS[name] - set(ops)}"
    n_bn = sum(isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d) for m in model.modules())
    if not fold_bn:
        assert ops["BatchNormalization"] == n_bn  # TrainingMode.PRESERVE keeps every BN

    x = fam.example_input(shape, seed=1)
    with torch.no_grad():
        expected = model(x)
    expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
    outputs = session(path).run(None, {"input": x.numpy()})
    assert len(outputs) == len(expected)
    for got, want in zip(outputs, expected, strict=True):
        want = want.numpy()
        scale = float(np.abs(want).max())
        assert scale > 0.1  # outputs of order one, so the tolerance below means something
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(1.0, scale))


@pytest.mark.parametrize("name", ["tied", "yolov8_fresh"])
@pytest.mark.parametrize("fold_bn", [False, True])
def test_torchscript_routes_equal_initializers_through_identity(name: str, fold_bn: bool, family_exports) -> None:
    """The TorchScript exporter keeps one copy of equal initializers and feeds the others through
    Identity nodes (`onnx::Conv_52 -> Identity -> bias of another Conv`): the pattern the analysis
    must see through. tied has it by construction, yolov8_fresh naturally (Detect.bias_init)."""
    path = family_exports.path(name, fold_bn=fold_bn, dynamo=False)
    model = onnx.load(path)
    initializers = {t.name for t in model.graph.initializer}
    readers = [n for n in model.graph.node if n.op_type == "Identity" and n.input[0] in initializers]
    assert readers
    weighted = {i for n in model.graph.node if n.op_type in ("Conv", "BatchNormalization") for i in n.input[1:]}
    assert all(n.output[0] in weighted for n in readers)


def test_ghostnet_slice_really_cuts(family_exports) -> None:
    """One GhostModule's concat has 46 channels and keeps 45: the slice is not a no-op."""
    path = family_exports.path("ghostnet", fold_bn=True, dynamo=False)
    model = onnx.shape_inference.infer_shapes(onnx.load(path))
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in model.graph.value_info}
    cuts = [n for n in model.graph.node if n.op_type == "Slice" and shapes[n.input[0]][1] != shapes[n.output[0]][1]]
    assert [(shapes[n.input[0]][1], shapes[n.output[0]][1]) for n in cuts] == [(46, 45)]


def test_weights_look_trained() -> None:
    """No family keeps PyTorch's fresh BN (identity statistics) or a 1e-6 layer scale."""
    for name in fam.FAMILIES:
        for module in fam.make(name).requires_grad_(False).modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                assert not torch.allclose(module.running_var, torch.ones_like(module.running_var))
                assert not torch.allclose(module.weight, torch.ones_like(module.weight))
            if isinstance(module, fam.ConvNeXtBlock) and module.gamma is not None:
                assert float(module.gamma.min()) >= 0.1
            if isinstance(module, fam.GRN):
                assert float(module.gamma.abs().min()) > 0 and float(module.beta.abs().min()) > 0
