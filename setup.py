"""Packaging for mdp-trt: the compiler (`mdp_trt`) and its latency store (`latency_db`)."""

from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="mdp-trt",
    version="0.1.0",
    description="Latency-aware structured pruning compiler for ONNX vision models (MDP, CVPR 2025)",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["mdp_trt", "mdp_trt.*", "latency_db", "latency_db.*"]),
    install_requires=[
        "numpy>=1.24",
        "onnx>=1.16",
        "onnxruntime>=1.18",
        "typer>=0.12",
        "rich>=13",
        "platformdirs>=3",
        "pyomo>=6.7",
        "highspy>=1.7",
    ],
    extras_require={
        # onnxscript: torch's dynamo exporter needs it, and the tests export real architectures both ways
        "test": ["pytest>=7", "hypothesis>=6", "torch==2.13.0", "onnxscript>=0.5", "ruff", "pyscipopt>=5",
                 "matplotlib>=3.7"],
        "torch": ["torch>=2.1"],
        "trt": ["tensorrt>=10,<12", "cuda-python>=12,<14"],  # cuda-python: the major of the driver's CUDA
        "minlp": ["pyscipopt>=5"],
        "plots": ["matplotlib>=3.7"],
    },
    entry_points={"console_scripts": ["mdp-trt=mdp_trt.cli:main"]},
)
