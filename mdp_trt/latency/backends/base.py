"""The one small interface every latency backend implements, and the input feeding they share."""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol, runtime_checkable

import numpy as np
import onnx

from mdp_trt.errors import InputError
from mdp_trt.graph.input_shapes import Shapes, static_input_shapes
from mdp_trt.latency.measurement import Comparison, Measurement
from mdp_trt.latency.protocol import InterleavedProtocol, MeasureProtocol, Settled, Timer

PRECISIONS = ("fp32", "fp16")
# Channel counts kernels run fastest on when a backend names none: tensor cores take FP16 channels in
# multiples of 8, and so do AVX2 CPU kernels.
GENERIC_CHANNEL_MULTIPLE = 8


@runtime_checkable
class Backend(Protocol):
    """Something that can time an ONNX model on one device.

    `fingerprint` describes the device and settings that change latency; measurements are only
    comparable (and shared in the database) under an equal fingerprint.

    Three optional methods, found by `channel_multiple`, `measure_probe` and `measure_interleaved` below:
    `channel_multiple()` (the width multiple its kernels run in), `measure_probe` (a
    probe timed as its layer costs inside a model) and `open_timer(model, *, batch, precision)`, a context
    manager that loads the model and yields a `protocol.Timer` for it, and that must allow two models to be
    loaded at once, so that they can be timed in alternation.
    """

    name: str

    def fingerprint(self, batch: int, precision: str) -> dict[str, Any]: ...

    def measure(
        self, model: onnx.ModelProto, protocol: MeasureProtocol, *, batch: int = 1, precision: str = "fp32"
    ) -> Measurement: ...


def channel_multiple(backend: Backend) -> int:
    """The multiple of channels `backend` runs kernels in, the grid's default alignment: a width between two
    multiples costs as much as the next one up, so the solver should not be offered it."""
    own = getattr(backend, "channel_multiple", None)
    return own() if own is not None else GENERIC_CHANNEL_MULTIPLE


def measure_probe(
    backend: Backend, model: onnx.ModelProto, protocol: MeasureProtocol, *, batch: int = 1, precision: str = "fp32"
) -> Measurement:
    """Time a latency probe as its layer would cost inside a whole model.

    A probe is a layer cut out of its model, and a backend may pay costs for that alone (layout
    reorders at its edges); backends that can leave those out implement `measure_probe`, the rest
    time the probe whole.
    """
    own = getattr(backend, "measure_probe", None)
    if own is not None:
        return own(model, protocol, batch=batch, precision=precision)
    return backend.measure(model, protocol, batch=batch, precision=precision)


# A backend without `open_timer` is compared in short alternating measurements, each loading its model.
SEQUENTIAL_BLOCK = MeasureProtocol(warmup_runs=1, warmup_seconds=0.0, min_runs=5, max_seconds=0.1, rel_ci=0.02)


def measure_interleaved(
    backend: Backend, reference: onnx.ModelProto, candidate: onnx.ModelProto, protocol: InterleavedProtocol, *,
    batch: int = 1, precision: str = "fp32", settled: Settled | None = None,
) -> Comparison:
    """Time `candidate` against `reference` in one window so that the host's drift cancels (see
    `InterleavedProtocol`), whatever the backend can do:

    - a backend whose fingerprint says `estimate` runs nothing: its numbers are deterministic, so the ratio
      of its two estimates is exact (scheme "estimate");
    - one with `open_timer` holds both models loaded and alternates blocks of runs (scheme "interleaved");
    - any other alternates short whole measurements (`SEQUENTIAL_BLOCK`, each loading its model again), one
      block each, with the same statistic: drift slower than a block still cancels, but each block costs a
      load, so fewer pairs fit in the time cap (scheme "sequential blocks", which the report states).
    """
    if backend.fingerprint(batch, precision).get("estimate"):
        ref = backend.measure(reference, SEQUENTIAL_BLOCK, batch=batch, precision=precision)
        cand = backend.measure(candidate, SEQUENTIAL_BLOCK, batch=batch, precision=precision)
        ratio = cand.median_ms / ref.median_ms
        return Comparison(ratio, (ratio, ratio), ref, cand, (ratio,), (ref.median_ms,), 0.0, "estimate")
    opener = getattr(backend, "open_timer", None)
    if opener is not None:
        with opener(reference, batch=batch, precision=precision) as ref_timer, \
                opener(candidate, batch=batch, precision=precision) as cand_timer:
            return protocol.run(ref_timer, cand_timer, settled=settled)

    def timer(model: onnx.ModelProto) -> Timer:
        return lambda runs: [backend.measure(model, SEQUENTIAL_BLOCK, batch=batch, precision=precision).median_ms]

    one_per_block = dataclasses.replace(protocol, block_ms=0.0, switch_over=False, warmup_runs=1,
                                        warmup_seconds=0.0)
    return one_per_block.run(timer(reference), timer(candidate), settled=settled, scheme="sequential blocks")


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The real inputs (graph inputs that are not initializers, as older exporters list both)."""
    initializers = {init.name for init in model.graph.initializer}
    return [vi for vi in model.graph.input if vi.name not in initializers]


def input_shapes(model: onnx.ModelProto, batch: int, shapes: Shapes | None = None) -> dict[str, tuple[int, ...]]:
    """Each input's shape with a symbolic batch axis set to `batch` and other symbolic axes from `shapes`
    (`--input-shape`); a symbolic axis left over is an error that suggests `--input-shape`.

    A fixed batch axis is kept as the model declares it, so a model exported at batch 1 is measured
    at batch 1 (it could not run otherwise).
    """
    return static_input_shapes(model, shapes or {}, batch)


def input_feeds(model: onnx.ModelProto, batch: int, seed: int = 0,
                shapes: Shapes | None = None) -> dict[str, np.ndarray]:
    """Random inputs of the right shape and dtype (values do not change latency for dense ops); integer
    and boolean inputs are zeros, which every index or mask input accepts."""
    rng = np.random.default_rng(seed)
    shapes = input_shapes(model, batch, shapes)
    feeds: dict[str, np.ndarray] = {}
    for vi in graph_inputs(model):
        dtype = onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
        shape = shapes[vi.name]
        if np.issubdtype(dtype, np.floating):
            feeds[vi.name] = rng.standard_normal(shape).astype(dtype)
        else:
            feeds[vi.name] = np.zeros(shape, dtype=dtype)
    return feeds
