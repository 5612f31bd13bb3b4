"""The ONNX-only path never imports torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("torch")  # without torch installed the property holds trivially


def test_onnx_only_path_does_not_import_torch(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        import mdp_trt, mdp_trt.build, mdp_trt.cli
        from mdp_trt.io import save_model_atomic
        from mdp_trt.zoo import build
        from pathlib import Path
        path = Path({str(tmp_path / "toy.onnx")!r})
        save_model_atomic(build("toy", input_size=32, batch=None), path)
        code = mdp_trt.cli.main(["analyze", str(path)])
        print("exit", code)
        print("torch loaded:", sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "exit 0" in result.stdout
    assert "torch loaded: []" in result.stdout
