"""The interchange records (JSONL lines, a merged file's rows) checked before anything is stored.

SQLite's columns take any value, so a record of the wrong shape would otherwise be stored as it
comes (a latency as text, NaN as NULL) or fail as a KeyError halfway through an import. Each record
is checked whole first, and a bad one is a `FormatError` naming the field.
"""

from __future__ import annotations

import math
from typing import Any

from latency_db.canonical import canonical_json
from latency_db.errors import FormatError

_TEXT, _COUNT, _NUMBER, _OBJECT, _LIST = "text", "count", "number", "object", "list"

FIELDS: dict[str, dict[str, str]] = {
    "fingerprint": {"hash": _TEXT, "fingerprint": _OBJECT, "created": _NUMBER},
    "probe": {"signature": _TEXT, "probe": _OBJECT},
    "entry": {
        "fingerprint": _TEXT, "signature": _TEXT, "k_in": _COUNT, "k_out": _COUNT, "median_ms": _NUMBER,
        "p10_ms": _NUMBER, "p90_ms": _NUMBER, "runs": _COUNT, "seconds": _NUMBER, "created": _NUMBER,
    },
    "calibration": {
        "fingerprint": _TEXT, "model_hash": _TEXT, "method": _TEXT, "coefficients": _OBJECT,
        "residuals": _LIST, "points": _LIST, "created": _NUMBER,
    },
}

_WANTED = {
    _TEXT: "a string",
    _COUNT: "a whole number from 0 to 2**63 - 1",
    _NUMBER: "a finite number >= 0",
    _OBJECT: "a JSON object of finite values",
    _LIST: "a JSON list of finite values",
}


def check_record(record: Any) -> str:
    """The record's type, once every field that type needs holds the right kind of value."""
    if not isinstance(record, dict):
        raise FormatError(f"a record is {type(record).__name__}, not a JSON object")
    kind = record.get("type")
    if not isinstance(kind, str) or kind not in FIELDS:
        raise FormatError(f"unknown record type {kind!r} (expected one of {', '.join(FIELDS)})")
    for name, wanted in FIELDS[kind].items():
        if name not in record:
            raise FormatError(f"{kind} record without {name!r}")
        if not _holds(record[name], wanted):
            raise FormatError(f"{kind} record: {name!r} must be {_WANTED[wanted]}, got {_short(record[name])}")
    return kind


def _holds(value: Any, wanted: str) -> bool:
    if wanted == _TEXT:
        return isinstance(value, str)
    if isinstance(value, bool):
        return False
    if wanted == _COUNT:
        return isinstance(value, int) and 0 <= value < 2**63
    if wanted == _NUMBER:
        return isinstance(value, int | float) and math.isfinite(value) and value >= 0
    if not isinstance(value, dict if wanted == _OBJECT else list):
        return False
    try:
        canonical_json(value)
    except (TypeError, ValueError):  # NaN or infinity inside
        return False
    return True


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
