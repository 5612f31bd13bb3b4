"""Where the database lives unless told otherwise."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

ENV_VAR = "MDP_TRT_DB"


def default_db_path() -> Path:
    """`$MDP_TRT_DB` if set, else the per-user cache dir: measurements are expensive but re-creatable."""
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_cache_dir("mdp-trt")) / "latency.sqlite"
