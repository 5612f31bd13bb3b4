"""latency_db: a SQLite store of measured layer latencies, shareable between machines.

Independent of mdp_trt: it stores opaque probe signatures, device fingerprints and fit records, and
knows nothing of ONNX or backends.
"""

from latency_db.canonical import canonical_json, content_hash
from latency_db.errors import CorruptDatabase, DatabaseError, ForeignDatabase, FormatError, NewerSchema
from latency_db.paths import ENV_VAR, default_db_path
from latency_db.store import (
    CalibrationRecord,
    Entry,
    EntryKey,
    FingerprintStats,
    LatencyDB,
    fingerprint_hash,
)

__all__ = [
    "ENV_VAR",
    "CalibrationRecord",
    "CorruptDatabase",
    "DatabaseError",
    "Entry",
    "EntryKey",
    "FingerprintStats",
    "ForeignDatabase",
    "FormatError",
    "LatencyDB",
    "NewerSchema",
    "canonical_json",
    "content_hash",
    "default_db_path",
    "fingerprint_hash",
]
