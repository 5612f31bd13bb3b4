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
from latency_db.records import check_record

FORMAT = "latency_db.jsonl"


def write_jsonl(path: Path, schema_version: int, records: Iterable[dict[str, Any]]) -> int:
    """Write header + records to a temp file next to `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    count = 0
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; an export follows the umask like any file
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
    """Yield the records of an export; anything else (not UTF-8, no header, a line that is not a
    well-formed record) raises FormatError naming the file and the line."""
    try:
        with open(path, encoding="utf-8") as src:
            header = _parse(src.readline(), path, 1)
            if not isinstance(header, dict) or header.get("format") != FORMAT:
                raise FormatError(f"{path}: not a latency_db JSONL export (no header)")
            for number, line in enumerate(src, start=2):
                if line.strip():
                    record = _parse(line, path, number)
                    try:
                        check_record(record)
                    except FormatError as exc:
                        raise FormatError(f"{path}:{number}: {exc}") from None
                    yield record
    except UnicodeDecodeError:
        raise FormatError(f"{path}: not a latency_db JSONL export (not UTF-8 text)") from None


def _parse(line: str, path: Path, number: int) -> Any:
    """One line's JSON; json.loads also raises ValueError on huge integers and RecursionError on deep nesting."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        if number == 1:
            raise FormatError(f"{path}: not a latency_db JSONL export (bad first line)") from None
        raise FormatError(f"{path}:{number}: invalid JSON ({exc.msg})") from None
    except RecursionError:
        raise FormatError(f"{path}:{number}: invalid JSON (nested too deeply)") from None
    except ValueError as exc:
        raise FormatError(f"{path}:{number}: invalid JSON ({exc})") from None
