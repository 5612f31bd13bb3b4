"""Export every architecture family of tests/families.py to ONNX, as users export them.

Writes DIR/<name>.onnx (TorchScript exporter, BatchNormalization kept), DIR/<name>.fold.onnx
(TorchScript exporter, BN folded into the convs: the default eval export) and, with --dynamo,
DIR/<name>.dynamo.onnx (the dynamo exporter at opset 18, which folds BN itself, so it has one variant;
needs onnxscript). Weights are seeded and trained-looking (`families.make`), inputs 1x3x64x64 unless
a family says otherwise. The files feed benchmarks/coverage.py.

Usage: python benchmarks/export_families.py -o DIR [--dynamo] [--fold-bn both|yes|no] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import families


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", type=Path, required=True, help="folder to write the .onnx files into")
    parser.add_argument("--dynamo", action="store_true", help="also write <name>.dynamo.onnx (needs onnxscript)")
    parser.add_argument("--fold-bn", choices=("both", "yes", "no"), default="both",
                        help="TorchScript variants: BN kept (no), folded (yes) or both")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="these families only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--input-size", type=int, default=None, metavar="N",
                        help="export at N x N instead of each family's test size (the detectors, whose anchors "
                             "are built for their size, keep it)")
    args = parser.parse_args()
    names = args.only or list(families.FAMILIES)
    unknown = sorted(set(names) - set(families.FAMILIES))
    if unknown:
        parser.error(f"unknown families {', '.join(unknown)}; known: {', '.join(families.FAMILIES)}")
    if args.dynamo and not families.DYNAMO_AVAILABLE:
        parser.error("--dynamo needs the onnxscript package (pip install onnxscript)")
    folds = {"both": (False, True), "yes": (True,), "no": (False,)}[args.fold_bn]
    args.out.mkdir(parents=True, exist_ok=True)
    for name in names:
        model = families.make(name, seed=args.seed)
        shape = families.input_shape(name)
        if args.input_size and not name.startswith("yolo"):
            shape = (*shape[:2], args.input_size, args.input_size)
        variants = [(f"{name}.fold.onnx" if fold else f"{name}.onnx", fold, False) for fold in folds]
        if args.dynamo:
            variants.append((f"{name}.dynamo.onnx", True, True))
        for filename, fold, dynamo in variants:
            start = time.perf_counter()
            path = families.export(model, args.out / filename, shape, fold_bn=fold, dynamo=dynamo)
            print(f"{path}  ({time.perf_counter() - start:.2f} s)", flush=True)


if __name__ == "__main__":
    main()
