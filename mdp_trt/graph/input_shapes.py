"""Fix a model's symbolic input sizes (`--input-shape`), so every stage sees one static shape.

Latency probes, calibration, benchmarks and engines need static shapes, and analysis must see the shapes
they are measured at. A model exported with dynamic H and W is fixed here, right after loading, from
trtexec-style specs: `input:1x3x224x224` (repeatable or comma-separated for several inputs; a bare
`1x3x224x224` when the model has one input). The batch axis stays symbolic (the commands fix it to
`--batch` where they need it), but a batch size given in a spec must agree with `--batch`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping

import onnx

from mdp_trt.errors import InputError

Shapes = Mapping[str | None, tuple[int, ...]]  # input name (None: the only input) -> dims


def parse_input_shapes(values: Iterable[str]) -> dict[str | None, tuple[int, ...]]:
    """`["x:1x3x224x224", "a:1x8,b:1x4"]` -> {"x": (1, 3, 224, 224), "a": (1, 8), "b": (1, 4)}.

    The name is split off at the last colon, as TensorFlow-style names (`input_1:0`) hold colons too.
    """
    shapes: dict[str | None, tuple[int, ...]] = {}
    for value in values:
        for spec in value.split(","):
            spec = spec.strip()
            name, colon, dims_text = spec.rpartition(":")
            key = name if colon else None
            if colon and not name:
                raise InputError(f"--input-shape {spec!r}: the input name before ':' is empty")
            dims = _parse_dims(dims_text, spec)
            if key in shapes:
                raise InputError(f"--input-shape gives {'input ' + repr(key) if key else 'a shape'} twice")
            shapes[key] = dims
    if None in shapes and len(shapes) > 1:
        raise InputError("--input-shape: name every input (NAME:DIMS) when giving several shapes")
    return shapes


def _parse_dims(text: str, spec: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        raise InputError(f"--input-shape {spec!r}: dims must be positive integers joined by 'x', "
                         "e.g. input:1x3x224x224") from None
    if any(d < 1 for d in dims):
        raise InputError(f"--input-shape {spec!r}: every dim must be positive")
    return dims


def with_input_shapes(model: onnx.ModelProto, shapes: Shapes, batch: int) -> onnx.ModelProto:
    """The model with its inputs' symbolic non-batch sizes fixed by `shapes` (`model` itself when none are
    given); raises `InputError` when a spec is wrong or an input would stay symbolic off the batch axis."""
    static = static_input_shapes(model, shapes, batch)
    if not shapes:
        return model
    fixed = copy.deepcopy(model)
    for value in _real_inputs(fixed):
        shape = value.type.tensor_type.shape
        if not shape.dim:  # no shape recorded: take the spec's rank, the batch axis symbolic
            shape.dim.add().dim_param = "batch"
            for _ in static[value.name][1:]:
                shape.dim.add()
        for dim, size in zip(shape.dim[1:], static[value.name][1:], strict=True):
            dim.Clear()
            dim.dim_value = size
    del fixed.graph.value_info[:]  # shapes inferred from the old sizes are stale
    return fixed


def static_input_shapes(model: onnx.ModelProto, shapes: Shapes, batch: int) -> dict[str, tuple[int, ...]]:
    """Each real input's shape to run the model at: its fixed sizes, the specs' sizes, `batch` on a symbolic
    batch axis.

    Each spec must name a real input, match its rank, agree with its fixed sizes and give `batch` on axis
    0; no input may keep a symbolic size off the batch axis (the message names the input and its
    symbolic dims, and suggests `--input-shape`).
    """
    inputs = _real_inputs(model)
    named = _resolve_names(shapes, inputs)
    static: dict[str, tuple[int, ...]] = {}
    for value in inputs:
        if value.name in named:
            static[value.name] = _checked(value, named[value.name], batch)
            continue
        dims = value.type.tensor_type.shape.dim
        symbolic = [(axis, d) for axis, d in enumerate(dims) if axis > 0 and not d.dim_value > 0]
        if symbolic or not value.type.tensor_type.HasField("shape"):
            what = (f"symbolic size {', '.join(f'{_label(d)} (axis {axis})' for axis, d in symbolic)}" if symbolic
                    else "no recorded shape")
            raise InputError(f"input '{value.name}' has {what}, which must be static to run it: give "
                             f"--input-shape {value.name}:{_example(value, batch)}")
        static[value.name] = tuple(d.dim_value if d.dim_value > 0 else batch for d in dims)
    return static


def _real_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    initializers = {t.name for t in model.graph.initializer}
    return [v for v in model.graph.input if v.name not in initializers and v.type.HasField("tensor_type")]


def _resolve_names(shapes: Shapes, inputs: list[onnx.ValueInfoProto]) -> dict[str, tuple[int, ...]]:
    names = [v.name for v in inputs]
    if None in shapes:
        if len(names) != 1:
            raise InputError(f"the model has {len(names)} inputs ({', '.join(names)}): name the input, "
                             f"e.g. --input-shape {names[0] if names else 'input'}:1x3x224x224")
        return {names[0]: shapes[None]}
    unknown = [name for name in shapes if name not in names]
    if unknown:
        raise InputError(f"--input-shape names '{unknown[0]}', which is not an input of the model "
                         f"(inputs: {', '.join(names)})")
    return {name: dims for name, dims in shapes.items() if name is not None}


def _checked(value: onnx.ValueInfoProto, dims: tuple[int, ...], batch: int) -> tuple[int, ...]:
    shape = value.type.tensor_type.shape.dim
    if shape and len(shape) != len(dims):
        raise InputError(f"--input-shape gives {len(dims)} dims for input '{value.name}', which has rank {len(shape)}")
    for axis, dim in enumerate(shape):
        if dim.dim_value > 0 and dim.dim_value != dims[axis]:
            raise InputError(f"--input-shape gives size {dims[axis]} on axis {axis} of input '{value.name}', whose "
                             f"size there is fixed to {dim.dim_value}")
    if dims and dims[0] != batch:
        raise InputError(f"--input-shape gives batch {dims[0]} for input '{value.name}' but --batch is {batch}")
    return dims


def _label(dim: onnx.TensorShapeProto.Dimension) -> str:
    return f"'{dim.dim_param}'" if dim.dim_param else "'?'"


def _example(value: onnx.ValueInfoProto, batch: int) -> str:
    """A spec with the input's fixed sizes filled in and its symbolic ones named, e.g. 1x3xHxW."""
    dims = value.type.tensor_type.shape.dim
    if not dims:
        return f"{batch}x..."
    parts = [str(batch) if axis == 0 and not d.dim_value > 0 else str(d.dim_value) if d.dim_value > 0
             else (d.dim_param or "?") for axis, d in enumerate(dims)]
    return "x".join(parts)
