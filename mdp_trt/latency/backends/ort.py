"""ONNX Runtime backend: the default, and on CPU the runtime the final model runs in.

`session_options` is the single definition of how sessions are configured; compile and bench reuse it
so probes are timed under exactly the settings the pruned model will run with.
"""

from __future__ import annotations

import contextlib
import functools
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from mdp_trt.errors import BackendUnavailable, InputError
from mdp_trt.latency.backends.base import GENERIC_CHANNEL_MULTIPLE, check_precision, input_feeds
from mdp_trt.latency.backends.ort_profile import kernel_times_ms, read_profile, with_sink
from mdp_trt.latency.device import cpu_name, default_threads
from mdp_trt.latency.measurement import Measurement
from mdp_trt.latency.protocol import MeasureProtocol, Timer, summarize

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


def session_options(threads: int | None = None) -> Any:
    """Pinned intra-op threads, one inter-op thread, sequential execution, all graph optimisations."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or default_threads()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return opts


_ORT_PREFIX = re.compile(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ")
# a source location, as in "/onnxruntime_src/.../model.cc:256 onnxruntime::Model::Model(...) "
_ORT_SOURCE = re.compile(r"^/\S+\.cc:\d+ \S+?\(.*?\) ")


def ort_error_line(exc: BaseException) -> str | None:
    """The first line of an ONNX Runtime error, without its status prefix and source location (it names the
    node or op at fault); None when `exc` is not ONNX Runtime's. Its exception types subclass plain
    Exception, so they are told apart by their module."""
    if not type(exc).__module__.startswith("onnxruntime"):
        return None
    lines = str(exc).strip().splitlines()
    line = _ORT_SOURCE.sub("", _ORT_PREFIX.sub("", lines[0] if lines else type(exc).__name__))
    return line[:600]


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


class OrtBackend:
    """Times models with an ONNX Runtime session on one execution provider (CPU by default)."""

    def __init__(self, threads: int | None = None, provider: str = "cpu") -> None:
        if provider not in PROVIDERS:
            raise InputError(
                f"unknown ONNX Runtime provider {provider!r}; choose one of {', '.join(PROVIDERS)}"
            )
        if PROVIDERS[provider] not in available_providers():
            raise BackendUnavailable(
                f"ONNX Runtime here has no {PROVIDERS[provider]}; install onnxruntime-gpu on a machine "
                "with an NVIDIA GPU"
            )
        self.provider = provider
        self.threads = threads or default_threads()
        self.name = "ort" if provider == "cpu" else f"ort-{provider}"

    def fingerprint(self, batch: int, precision: str) -> dict[str, Any]:
        import onnxruntime as ort

        check_precision(precision)
        return {
            "backend": "onnxruntime",
            "backend_version": ort.__version__,
            "provider": PROVIDERS[self.provider],
            "device": cpu_name() if self.provider == "cpu" else _gpu_name(),
            "precision": precision,
            "threads": self.threads,
            "batch": batch,
            "graph_optimization": "all",
            # probes timed as profiler kernel time without edge reorders, their output read (see measure_probe)
            "probe_timing": "kernels-read" if self.provider == "cpu" else "wall",
            "estimate": False,
        }

    def channel_multiple(self) -> int:
        """The channel multiple this backend runs convolutions in: on the CPU, ONNX Runtime's NCHWc block
        (`nchwc_block`), since a width between two blocks costs as much as the next block up inside a model;
        on a GPU provider, the generic multiple of 8."""
        if self.provider != "cpu":
            return GENERIC_CHANNEL_MULTIPLE
        return nchwc_block() or GENERIC_CHANNEL_MULTIPLE

    def session(self, model: onnx.ModelProto, precision: str = "fp32", profile_prefix: str | None = None, *,
                stop_spinning: bool = False) -> Any:
        """An inference session configured like the final model's (profiling to `profile_prefix`*.json
        when given; intra-op threads that stop spinning when a run ends with `stop_spinning`, see
        `open_timer`)."""
        import onnxruntime as ort

        check_precision(precision)
        if precision == "fp16":
            if self.provider == "cpu":
                raise InputError("fp16 is not measured on the ONNX Runtime CPU backend; use fp32")
            from mdp_trt.latency.fp16 import convert_to_fp16

            model = convert_to_fp16(model)
        options = session_options(self.threads)
        if stop_spinning:
            options.add_session_config_entry("session.force_spinning_stop", "1")
        if profile_prefix is not None:
            options.enable_profiling = True
            options.profile_file_prefix = profile_prefix
        try:
            return ort.InferenceSession(
                model.SerializeToString(), sess_options=options, providers=[PROVIDERS[self.provider]]
            )
        except Exception as exc:  # onnxruntime's own types (see ort_error_line); anything else is re-raised
            line = ort_error_line(exc)
            if line is None:
                raise
            raise InputError(f"ONNX Runtime ({PROVIDERS[self.provider]}) cannot load the model: {line}") from None

    def measure(
        self, model: onnx.ModelProto, protocol: MeasureProtocol, *, batch: int = 1, precision: str = "fp32"
    ) -> Measurement:
        return protocol.run(self._runner(self.session(model, precision), model, batch, precision))

    @contextlib.contextmanager
    def open_timer(self, model: onnx.ModelProto, *, batch: int = 1, precision: str = "fp32") -> Iterator[Timer]:
        """A session for `model` held open, timed run by run as `measure` times it, so that two can be open
        at once and timed in alternation (`base.measure_interleaved`).

        Its intra-op threads stop spinning when a run ends. ONNX Runtime's workers spin for more work after
        a run, and the idle session's spinning workers would take the cores of the one that runs: measured
        on mobilenet_v2 (224 px, batch 1, 2 threads, 2 cores) against a pruned plan, the ratio's 95%
        interval spanned 0.449-0.618 with spinning, 0.509-0.517 without (both 0.471 at 1 thread, which has
        no workers). Spinning within a run, between its parallel sections, is unchanged; each run wakes the
        workers once, a constant cost that both models of a comparison pay. Probes and lone measurements
        keep spinning, as a deployed model's session does: a probe's tiny kernel would otherwise run on
        the calling thread alone while the workers wake, and be timed as if one thread ran it."""
        run_once = self._runner(self.session(model, precision, stop_spinning=True), model, batch, precision)
        yield lambda runs: [run_once() for _ in range(runs)]

    def measure_probe(
        self, model: onnx.ModelProto, protocol: MeasureProtocol, *, batch: int = 1, precision: str = "fp32"
    ) -> Measurement:
        """A probe's latency as its layer costs inside a whole model: per run, the profiler's kernel
        times of its nodes without the layout reorders at its edges, with its output read by a node that
        is not timed either, as the next layer reads it in a model (see `ort_profile`). The protocol
        decides how many runs on wall time; the statistics are over the kernel times of the sampled runs
        (warm-up runs dropped). GPU providers launch kernels asynchronously, so their profiler times are
        not kernel times: there the probe is timed whole."""
        if self.provider != "cpu":
            return self.measure(model, protocol, batch=batch, precision=precision)
        model = with_sink(model)
        with tempfile.TemporaryDirectory(prefix="mdp-probe-") as tmp:
            sess = self.session(model, precision, profile_prefix=str(Path(tmp) / "probe"))
            wall = protocol.run(self._runner(sess, model, batch, precision))
            samples = kernel_times_ms(read_profile(sess.end_profiling()))[-wall.runs :]
        if not samples or max(samples) <= 0.0:
            return wall  # the profiler saw no kernels (a provider that does not report them)
        return summarize(samples, wall.seconds)

    def _runner(self, sess: Any, model: onnx.ModelProto, batch: int, precision: str) -> Callable[[], float]:
        """One timed run of `sess` on random inputs bound once (no copies inside the timed region)."""
        import onnxruntime as ort

        feeds = input_feeds(model, batch)
        if precision == "fp16":
            feeds = {k: v.astype(np.float16) if v.dtype == np.float32 else v for k, v in feeds.items()}
        device = "cpu" if self.provider == "cpu" else "cuda"
        binding = sess.io_binding()
        for name, value in feeds.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value, device, 0))
        for out in sess.get_outputs():
            binding.bind_output(out.name, device)

        def run_once() -> float:
            t = time.perf_counter_ns()
            sess.run_with_iobinding(binding)
            return (time.perf_counter_ns() - t) / 1e6

        return run_once


NCHWC_DOMAIN = "com.microsoft.nchwc"
# The probe's convolution, 16 channels in and 1 out: its rewritten filter has exactly one block of outputs.
_BLOCK_PROBE_CHANNELS = (16, 1)


@functools.cache
def nchwc_block() -> int | None:
    """The channel block ONNX Runtime's CPU convolutions run in on this host (MLAS's NCHWc layout: on x86-64,
    16 with AVX-512F and 8 otherwise), None when its graph optimiser does not rewrite convolutions into that
    layout.

    Read from the optimiser itself rather than from CPU flags, so that it holds for whichever kernels this
    build of ONNX Runtime picks (ARM builds have NCHWc kernels of their own): a convolution with one output
    channel is optimised and saved, and the rewrite pads its filter's output channels to a whole block.
    Measured on an AVX-512 host inside a ResNet export (1 thread, batch 1): a group of 32 kept at 24 ran at
    0.996x and 1.002x dense, at 16 at 0.943x and 0.973x.
    """
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    inputs, outputs = _BLOCK_PROBE_CHANNELS
    weight = numpy_helper.from_array(np.ones((outputs, inputs, 1, 1), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"])], "nchwc_block",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, inputs, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, outputs, 4, 4])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    with tempfile.TemporaryDirectory(prefix="mdp-nchwc-") as tmp:
        options = session_options(1)
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        ort.InferenceSession(model.SerializeToString(), sess_options=options, providers=[PROVIDERS["cpu"]])
        optimized = onnx.load(options.optimized_model_filepath)
    return block_of_optimized(optimized)


def block_of_optimized(optimized: onnx.ModelProto) -> int | None:
    """The output channels of the filter of the NCHWc convolution in `optimized` (see `nchwc_block`), None
    when no convolution was rewritten."""
    filters = {init.name: init for init in optimized.graph.initializer}
    for node in optimized.graph.node:
        if node.op_type == "Conv" and node.domain == NCHWC_DOMAIN and node.input[1] in filters:
            return int(filters[node.input[1]].dims[0])
    return None


def _gpu_name() -> str:
    """Best-effort GPU name for ORT's GPU providers (via cuda-python when present)."""
    try:
        from mdp_trt.latency.backends.cuda import device_properties

        return device_properties()["name"]
    except Exception:  # the provider works without cuda-python; the name is then unknown
        return "unknown NVIDIA GPU"
