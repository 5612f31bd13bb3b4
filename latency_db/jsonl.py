"""The JSONL interchange format: a header line, then one record per line.

It is the human-readable, diff-able and version-tolerant way to move measurements between machines
(the SQLite file itself can also be merged directly).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from latency_db.canonical import canonical_json
from latency_db.errors import FormatError

FORMAT = "latency_db.jsonl"


def write_jsonl(path: Path, schema_version: int, records: Iterable[dict[str, Any]]) -> int:
    """Write header + records to a temp file next to `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    count = 0
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(canonical_json({"type": "header", "format": FORMAT, "schema_version": schema_version}))
            out.write("\n")
            for record in records:
                out.write(canonical_json(record))
                out.write("\n")
                count += 1
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return count


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the records of an export; raises FormatError on a missing or foreign header."""
    with open(path, encoding="utf-8") as src:
        first = src.readline()
        try:
            header = json.loads(first)
        except json.JSONDecodeError as exc:
            raise FormatError(f"{path}: not a latency_db JSONL export (bad first line)") from exc
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise FormatError(f"{path}: not a latency_db JSONL export (no header)")
        for number, line in enumerate(src, start=2):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise FormatError(f"{path}:{number}: invalid JSON ({exc.msg})") from exc
