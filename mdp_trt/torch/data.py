"""The batches a PyTorch-path step runs on, taken once from whatever the caller's data is."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

Batch = tuple[Any, Any]  # (inputs: a tensor or a tuple of tensors, targets)


def first_batches(data: Iterable[Batch], steps: int) -> list[Batch]:
    """The first `steps` batches of `data`, as a list, so that a one-shot iterator (a DataLoader's
    iterator, a generator) can serve several passes (Taylor scores, block ablation, BN statistics)."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    batches = list(itertools.islice(data, steps))
    if not batches:
        raise ValueError("data yielded no batch")
    return batches
