"""Safe loading of user models: every way a file can be wrong becomes a one-line `InputError`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import onnx
from google.protobuf import json_format, text_format
from google.protobuf.message import DecodeError
from onnx import external_data_helper

from mdp_trt.errors import InputError
from mdp_trt.graph.support import check_ir_version, check_ops

MIN_OPSET = 7
WEIGHTED_OP_TYPES = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def max_opset() -> int:
    """The newest default-domain opset the installed onnx understands."""
    return onnx.defs.onnx_opset_version()


def load_model(path: str | os.PathLike[str]) -> onnx.ModelProto:
    """Read an ONNX model (plain or with external data) and check it is something we can analyse.

    External data must live inside the model's folder: a location that escapes it (absolute, or `..`
    or a symlink leading out) is refused before any file is opened, so a model file cannot make us read
    arbitrary paths; one that only passes through `..` and lands inside is read.

    Initializers that are also listed as graph inputs (older exporters' `keep_initializers_as_inputs`)
    are read as the constants they are and no longer offered as inputs (IR version 4 and later, where
    listing them is optional): pruning changes their shapes, so no caller could feed the old ones.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, json_format.ParseError, text_format.ParseError, RuntimeWarning, ValueError,
            TypeError) as exc:  # onnx reads *.json and *.txt models as protobuf JSON and text
        raise InputError(f"{path}: not an ONNX model or truncated ({_short(exc)})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({_short(exc)})") from None
    if not model.graph.node and not model.graph.input:
        raise InputError(f"{path}: not an ONNX model (no graph found)")
    _load_external_data(model, path.parent.resolve(), path)
    check_supported(model, str(path))
    if model.ir_version >= 4:
        _drop_initializer_inputs(model.graph)
    return model


def _drop_initializer_inputs(graph: onnx.GraphProto) -> None:
    initializers = {t.name for t in graph.initializer}
    for value in [v for v in graph.input if v.name in initializers]:
        graph.input.remove(value)


def _load_external_data(model: onnx.ModelProto, base: Path, path: Path) -> None:
    tensors = [t for t in _all_tensors(model.graph) if external_data_helper.uses_external_data(t)]
    for tensor in tensors:
        info = external_data_helper.ExternalDataInfo(tensor)
        location = Path(info.location)
        target = (base / location).resolve()
        if location.is_absolute() or not target.is_relative_to(base):
            raise InputError(
                f"{path}: external data location '{info.location}' of tensor '{tensor.name}' "
                "is outside the model's folder; refusing to read it"
            )
        if not target.is_file():
            raise InputError(
                f"{path}: missing external data file '{info.location}' for tensor '{tensor.name}'"
            )
        _set_location(tensor, target.relative_to(base).as_posix())  # onnx refuses any `..`, even one that stays
        size = target.stat().st_size
        end = (info.offset or 0) + (info.length or 0)
        if info.length is not None and end > size:
            raise InputError(f"{path}: external data file '{info.location}' is truncated")
    if tensors:
        try:
            external_data_helper.load_external_data_for_model(model, str(base))
        except (OSError, ValueError, onnx.checker.ValidationError) as exc:
            raise InputError(f"{path}: cannot load external data ({_short(exc)})") from None


def _set_location(tensor: onnx.TensorProto, location: str) -> None:
    for entry in tensor.external_data:
        if entry.key == "location":
            entry.value = location


def _all_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Initializers and tensor attributes of the graph and of every nested subgraph."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                yield attr.t
            elif attr.type == onnx.AttributeProto.TENSORS:
                yield from attr.tensors
            elif attr.type == onnx.AttributeProto.GRAPH:
                yield from _all_tensors(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from _all_tensors(sub)


def check_supported(model: onnx.ModelProto, label: str = "model") -> None:
    """Refuse models the tools here cannot read (IR version, opset, ops), or that hold nothing to prune.

    These are checked at load so that a model ONNX Runtime or the ONNX checker would refuse later (when
    probing, benching or checking the pruned model) is refused now, in one line that names the cause.
    """
    check_ir_version(model, label)
    opset = default_opset(model)
    if opset is None:
        raise InputError(f"{label}: the model imports no default ONNX opset")
    if not MIN_OPSET <= opset <= max_opset():
        raise InputError(
            f"{label}: unsupported opset {opset} (supported: {MIN_OPSET} to {max_opset()})"
        )
    check_ops(model, label)
    weighted = [n for n in model.graph.node if n.op_type in WEIGHTED_OP_TYPES and n.domain in ("", "ai.onnx")]
    if not weighted:
        raise InputError(f"{label}: no weighted op (Conv, ConvTranspose, Gemm, MatMul) to prune")
    initializers = {t.name for t in model.graph.initializer}
    inputs = {v.name for v in model.graph.input} - initializers
    if all(len(n.input) > 1 and n.input[1] in inputs for n in weighted):
        first = weighted[0]
        raise InputError(
            f"{label}: the weights of every weighted op are graph inputs, not initializers (e.g. '{first.input[1]}' "
            f"of {first.op_type} '{first.name}'): the analysis sees no constant weight, so there is nothing to "
            "prune; export the model with its weights stored in it as initializers")


def default_opset(model: onnx.ModelProto) -> int | None:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return None


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__
