"""Names of the host device, for fingerprints: stable across reboots, different across machines."""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path


@functools.cache
def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what `platform` knows, plus the architecture."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                return f"{value.strip()} ({platform.machine()})"
    return f"{platform.processor() or 'unknown cpu'} ({platform.machine()})"


def default_threads() -> int:
    """The cores this process may run on (its affinity mask), so a pinned container is respected."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1
