"""Plots for the build output: kept channels per group, per-layer latency, the importance/latency curve.

matplotlib is optional (`pip install mdp-trt[plots]`); without it the build says so and skips plots.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mdp_trt.io import atomic_path


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip("."), dpi=120, bbox_inches="tight")


def kept_channels(groups: Sequence[dict], path: Path) -> None:
    """Bar chart: each prunable group's width, dense vs kept."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.22 * len(groups)), 3.5))
    ids = [g["id"] for g in groups]
    ax.bar(ids, [g["size"] for g in groups], color="#cccccc", label="dense")
    ax.bar(ids, [g["kept"] for g in groups], color="#2b7bba", label="kept")
    ax.set_ylabel("channels")
    ax.set_title("Kept channels per group")
    ax.tick_params(axis="x", labelrotation=90, labelsize=6)
    ax.legend()
    _save(fig, path)
    plt.close(fig)


def layer_latency(layers: Sequence[dict], path: Path) -> None:
    """Bar chart: each layer's table latency at the dense and at the pruned widths."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.18 * len(layers)), 3.5))
    xs = range(len(layers))
    ax.bar(xs, [la["dense_ms"] for la in layers], color="#cccccc", label="dense")
    ax.bar(xs, [la["pruned_ms"] for la in layers], color="#d9641e", label="pruned")
    ax.set_ylabel("latency (ms, from tables)")
    ax.set_xlabel("layer")
    ax.set_title("Per-layer latency, dense vs pruned")
    ax.legend()
    _save(fig, path)
    plt.close(fig)


def pareto(curve: Sequence[dict], chosen: tuple[float, float], target_ms: float, path: Path) -> None:
    """Importance kept vs predicted latency over budgets, with the chosen plan and the target marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    points = sorted((p["latency"], p["importance"]) for p in curve)
    ax.plot([p[0] for p in points], [p[1] for p in points], "o-", color="#2b7bba", ms=3, label="optimal plans")
    ax.plot([chosen[0]], [chosen[1]], "*", color="#d9641e", ms=14, label="chosen")
    ax.axvline(target_ms, color="#999999", ls="--", label="target")
    ax.set_xlabel("predicted latency (ms)")
    ax.set_ylabel("importance kept (fraction)")
    ax.set_title("Importance vs latency")
    ax.legend()
    _save(fig, path)
    plt.close(fig)
