"""Probe models: valid ONNX (full check), runnable in ONNX Runtime, with the right shapes; and
signatures that ignore names and channel counts but see everything else."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from mdp_trt.errors import InputError
from mdp_trt.graph.structure import EpilogueOp, Layer
from mdp_trt.latency.probes import IR_VERSION, ProbeSpec, build_probe
from tests.latency.latency_fakes import BN, RELU, conv_layer, gemm_layer, matmul_layer


def _run(model: onnx.ModelProto) -> tuple[tuple[int, ...], tuple[int, ...]]:
    onnx.checker.check_model(model, full_check=True)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (inp,) = sess.get_inputs()
    x = np.random.default_rng(0).standard_normal(inp.shape).astype(np.float32)
    (y,) = sess.run(None, {inp.name: x})
    assert np.isfinite(y).all()
    return tuple(inp.shape), tuple(y.shape)


CASES: list[tuple[str, Layer, int, int, tuple[int, ...], tuple[int, ...]]] = [
    ("conv3x3", conv_layer(), 8, 24, (2, 8, 8, 8), (2, 24, 8, 8)),
    ("conv-stride2", conv_layer(stride=2, size=9), 16, 8, (2, 16, 9, 9), (2, 8, 5, 5)),
    ("depthwise", conv_layer(c_in=32, c_out=32, depthwise=True, in_group="g", out_group="g"), 24, 24,
     (2, 24, 8, 8), (2, 24, 8, 8)),
    ("grouped", conv_layer(c_in=16, c_out=16, group=4), 8, 12, (2, 8, 8, 8), (2, 12, 8, 8)),
    ("gemm-after-flatten", gemm_layer(c_in=16, repeat=4), 8, 10, (2, 32), (2, 10)),
    ("matmul-3d", matmul_layer(), 8, 12, (2, 5, 8), (2, 5, 12)),
    ("clip6", conv_layer(epilogue=(BN, EpilogueOp("c", "Clip", {"min": 0.0, "max": 6.0}))), 8, 8,
     (2, 8, 8, 8), (2, 8, 8, 8)),
    ("prelu", conv_layer(epilogue=(EpilogueOp("p", "PRelu", {}),)), 8, 16, (2, 8, 8, 8), (2, 16, 8, 8)),
    ("silu", conv_layer(epilogue=(BN, EpilogueOp("s", "Swish", {"gate": "Sigmoid"}))), 8, 16, (2, 8, 8, 8),
     (2, 16, 8, 8)),
    ("hard-swish", conv_layer(epilogue=(EpilogueOp("h", "Swish", {"gate": "HardSigmoid", "alpha": 1 / 6}),)),
     8, 8, (2, 8, 8, 8), (2, 8, 8, 8)),
    ("leaky", conv_layer(epilogue=(EpilogueOp("l", "LeakyRelu", {"alpha": 0.1}),)), 8, 8, (2, 8, 8, 8),
     (2, 8, 8, 8)),
    ("linear-bias-gelu", matmul_layer(epilogue=(EpilogueOp("b", "BiasAdd"), EpilogueOp("g", "Gelu"))), 8, 12,
     (2, 5, 8), (2, 5, 12)),
]


@pytest.mark.parametrize(("label", "layer", "k_in", "k_out", "x_shape", "y_shape"), CASES,
                         ids=[c[0] for c in CASES])
def test_probe_is_valid_and_runs_with_the_right_shapes(label, layer, k_in, k_out, x_shape, y_shape) -> None:
    model = build_probe(ProbeSpec.from_layer(layer), k_in, k_out, batch=2)
    assert model.ir_version == IR_VERSION
    assert model.opset_import[0].version == 17
    assert _run(model) == (x_shape, y_shape)


def test_conv_transpose_probe() -> None:
    base = conv_layer(kernel=2, stride=2, epilogue=(RELU,))
    layer = replace(base, op="ConvTranspose", output_shape=(None, 32, 16, 16), weight_shape=(16, 32, 2, 2),
                    attrs={"kernel_shape": [2, 2], "strides": [2, 2], "pads": [0, 0, 0, 0], "group": 1})
    assert _run(build_probe(ProbeSpec.from_layer(layer), 8, 4, batch=1)) == ((1, 8, 8, 8), (1, 4, 16, 16))


def test_probe_opset_follows_the_model() -> None:
    model = build_probe(ProbeSpec.from_layer(conv_layer(), opset=13), 8, 8)
    assert model.opset_import[0].version == 13
    _run(model)


def test_probes_are_deterministic() -> None:
    spec = ProbeSpec.from_layer(conv_layer())
    assert build_probe(spec, 8, 8).SerializeToString() == build_probe(spec, 8, 8).SerializeToString()


def test_signature_ignores_names_and_channels() -> None:
    a = ProbeSpec.from_layer(conv_layer(name="a", c_in=16, c_out=32))
    b = ProbeSpec.from_layer(conv_layer(name="b", c_in=64, c_out=128, in_group="x", out_group="y", block="b1"))
    assert a.signature == b.signature
    dw_a = ProbeSpec.from_layer(conv_layer(c_in=32, c_out=32, depthwise=True))
    dw_b = ProbeSpec.from_layer(conv_layer(c_in=96, c_out=96, depthwise=True))
    assert dw_a.signature == dw_b.signature


@pytest.mark.parametrize("change", [
    {"size": 16}, {"stride": 2}, {"kernel": 1}, {"epilogue": (BN,)}, {"epilogue": ()}, {"depthwise": True},
    {"group": 2},
])
def test_signature_sees_what_changes_latency(change: dict) -> None:
    assert ProbeSpec.from_layer(conv_layer(**change)).signature != ProbeSpec.from_layer(conv_layer()).signature


def test_signature_sees_in_repeat_and_opset() -> None:
    assert (ProbeSpec.from_layer(gemm_layer(repeat=4)).signature
            != ProbeSpec.from_layer(gemm_layer(repeat=1)).signature)
    assert ProbeSpec.from_layer(conv_layer(), 13).signature != ProbeSpec.from_layer(conv_layer(), 17).signature


def test_bad_probe_requests_are_input_errors() -> None:
    with pytest.raises(InputError):
        build_probe(ProbeSpec.from_layer(conv_layer(depthwise=True, c_out=16)), 8, 12)
    with pytest.raises(InputError):
        build_probe(ProbeSpec.from_layer(conv_layer(c_in=16, c_out=16, group=4)), 6, 8)
    with pytest.raises(InputError):
        build_probe(ProbeSpec.from_layer(conv_layer()), 0, 8)


def test_a_self_gated_activation_is_the_layers_epilogue_and_its_probe_computes_it() -> None:
    """SiLU as PyTorch exports it (Sigmoid, then Mul of the layer's output by it): the probe holds it, or
    the tables miss a cost that grows with the layer's output channels."""
    from onnx import helper

    from mdp_trt.graph import analyze

    rng = np.random.default_rng(0)
    w = helper.make_tensor("w", onnx.TensorProto.FLOAT, (16, 8, 3, 3), rng.standard_normal(16 * 8 * 9).tolist())
    w2 = helper.make_tensor("w2", onnx.TensorProto.FLOAT, (8, 16, 1, 1), rng.standard_normal(8 * 16).tolist())
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
         helper.make_node("Sigmoid", ["c"], ["s"], name="sig"),
         helper.make_node("Mul", ["s", "c"], ["a"], name="silu"),
         helper.make_node("Conv", ["a", "w2"], ["y"], name="proj")],
        "silu", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, (1, 8, 8, 8))],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, (1, 8, 8, 8))], [w, w2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    conv = next(layer for layer in analyze(model).layers if layer.name == "conv")
    assert [(op.name, op.op, op.attrs) for op in conv.epilogue] == [("silu", "Swish", {"gate": "Sigmoid"})]
    probe = build_probe(ProbeSpec.from_layer(conv), 8, 16)
    assert [n.op_type for n in probe.graph.node][-2:] == ["Sigmoid", "Mul"]
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    x = rng.standard_normal((1, 8, 8, 8)).astype(np.float32)
    (y,) = sess.run(None, {sess.get_inputs()[0].name: x})
    plain = probe.graph.node[0].output[0]
    bare = onnx.ModelProto()
    bare.CopyFrom(probe)
    del bare.graph.node[1:]
    bare.graph.output[0].name = plain
    (c,) = ort.InferenceSession(bare.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {sess.get_inputs()[0].name: x})
    np.testing.assert_allclose(y, c / (1 + np.exp(-c)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("op", "shapes", "out"), [
    ("AttentionScores", {"Q": (2, 2, 5, 20), "K": (2, 2, 5, 20)}, (2, 2, 5, 5)),
    ("AttentionValues", {"A": (2, 2, 5, 5), "V": (2, 2, 5, 20)}, (2, 2, 5, 20)),
])
def test_an_attention_probe_runs_its_product_at_the_heads_tokens_and_widths_asked(op, shapes, out) -> None:
    """k_in is the heads, k_out the whole width: 2 heads of 20 channels at 5 tokens, batch 2."""
    from mdp_trt import zoo
    from mdp_trt.graph import analyze

    structure = analyze(zoo.build("vit-tiny", input_size=32, num_classes=10))
    layer = next(la for la in structure.layers if la.op == op)
    spec = ProbeSpec.from_layer(layer)
    assert spec.signature == ProbeSpec.from_layer(replace(layer, name="other")).signature
    model = build_probe(spec, 2, 40, batch=2)
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {i.name: np.random.default_rng(0).standard_normal(i.shape).astype(np.float32)
             for i in session.get_inputs()}
    assert {name: x.shape for name, x in feeds.items()} == shapes
    (y,) = session.run(None, feeds)
    assert y.shape == out and np.isfinite(y).all()
    uneven = build_probe(spec, 3, 40)  # never chosen, read at the nearest width that divides: 3 x 13
    assert uneven.graph.input[1].type.tensor_type.shape.dim[3].dim_value == 13
