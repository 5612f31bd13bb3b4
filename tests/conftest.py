"""Fixtures shared across test modules."""

from __future__ import annotations

from pathlib import Path

import pytest


class FamilyExports:
    """Each family exported once per session and exporter (tests/families.py), on first request."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.paths: dict[tuple[str, bool, bool, bool], Path] = {}

    def path(self, name: str, *, fold_bn: bool, dynamo: bool, dynamic_batch: bool = False) -> Path:
        key = (name, fold_bn, dynamo, dynamic_batch)
        if key not in self.paths:
            import torch

            from tests import families

            if dynamo and not families.DYNAMO_AVAILABLE:
                pytest.skip("the dynamo exporter needs onnxscript (pip install onnxscript)")
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # tiny models: two OpenMP threads on a shared 2-core machine only spin
            try:
                suffix = ".dynamo" if dynamo else ".fold" if fold_bn else ""
                suffix += ".batch" if dynamic_batch else ""
                self.paths[key] = families.export(families.make(name), self.folder / f"{name}{suffix}.onnx",
                                                  families.input_shape(name), fold_bn=fold_bn, dynamo=dynamo,
                                                  dynamic_batch=dynamic_batch)
            finally:
                torch.set_num_threads(threads)
        return self.paths[key]


@pytest.fixture(scope="session")
def family_exports(tmp_path_factory) -> FamilyExports:
    pytest.importorskip("torch")
    return FamilyExports(tmp_path_factory.mktemp("families"))
