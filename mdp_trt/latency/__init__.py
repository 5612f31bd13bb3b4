"""Measured latency: backends, probes, grids, layer tables, calibration and prediction.

The stages the pipeline calls:
- `get_backend(name)`: a timing backend (`auto`, `ort`, `tensorrt`, `analytic`, ...).
- `profile_tables(structure, backend, db)`: per-layer `LatencyTable`s, measuring what is missing.
- `calibrate(model, structure, tables, backend, db)` / `stored_calibration(...)`: the whole-model part.
- `predict_latency(structure, tables, calibration, plan)`: predicted latency of a plan.
- `bench_model(model, backend)`: measured latency and FPS of a whole model.
- `open_db(path)`: the latency database (default path: `default_db_path()`).
"""

from latency_db import default_db_path
from mdp_trt.latency.backends import BACKEND_NAMES, Backend, get_backend, session_options
from mdp_trt.latency.bench import BenchResult, bench_model
from mdp_trt.latency.calibrate import Calibration, calibrate, stored_calibration
from mdp_trt.latency.grid import DEFAULT_GRID, GridConfig, channel_levels, group_levels
from mdp_trt.latency.measurement import Measurement
from mdp_trt.latency.predict import layer_sum, predict_latency
from mdp_trt.latency.profile import ProfileResult, model_opset, plan_probes, profile_tables
from mdp_trt.latency.protocol import BENCH_PROTOCOL, PROBE_PROTOCOL, MeasureProtocol
from mdp_trt.latency.store import open_db, resolve_db_path
from mdp_trt.latency.tables import LatencyTable

__all__ = [
    "BACKEND_NAMES",
    "BENCH_PROTOCOL",
    "DEFAULT_GRID",
    "PROBE_PROTOCOL",
    "Backend",
    "BenchResult",
    "Calibration",
    "GridConfig",
    "LatencyTable",
    "MeasureProtocol",
    "Measurement",
    "ProfileResult",
    "bench_model",
    "calibrate",
    "channel_levels",
    "default_db_path",
    "get_backend",
    "group_levels",
    "layer_sum",
    "model_opset",
    "open_db",
    "plan_probes",
    "predict_latency",
    "profile_tables",
    "resolve_db_path",
    "session_options",
    "stored_calibration",
]
