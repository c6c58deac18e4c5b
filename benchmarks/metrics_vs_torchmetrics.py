"""Confusion-matrix update throughput: fcngraph's bincount `ConfusionMatrix` against
torchmetrics' `MulticlassConfusionMatrix` on the same tensors, alternating calls in one process.

    pip install torchmetrics   # in the test extras
    python benchmarks/metrics_vs_torchmetrics.py [--classes 21] [--batch 8] [--size 512] [--device cpu]

Prints the median time per update of each and the throughput ratio fcngraph / torchmetrics
(target ≥ 1.0), against torchmetrics with its default argument checks and without them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fcngraph.bench import alternate, median, ratio  # noqa: E402
from fcngraph.metrics import ConfusionMatrix  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=21, help="Number of classes (VOC: 21).")
    parser.add_argument("--batch", type=int, default=8, help="Label maps per update.")
    parser.add_argument("--size", type=int, default=512, help="Side of each label map.")
    parser.add_argument("--reps", type=int, default=20, help="Timed updates of each side.")
    parser.add_argument("--device", default="cpu", help="cpu or cuda.")
    args = parser.parse_args()
    try:
        from torchmetrics.classification import MulticlassConfusionMatrix
    except ImportError:
        sys.exit("torchmetrics is not installed: pip install torchmetrics")
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    pred = torch.randint(0, args.classes, (args.batch, args.size, args.size), generator=g).to(device)
    target = torch.randint(0, args.classes, (args.batch, args.size, args.size), generator=g)
    target[torch.rand(target.shape, generator=g) < 0.1] = 255  # ignored pixels, as in VOC
    target = target.to(device)

    ours = ConfusionMatrix(args.classes, device)
    checked = MulticlassConfusionMatrix(args.classes, ignore_index=255).to(device)
    unchecked = MulticlassConfusionMatrix(args.classes, ignore_index=255, validate_args=False).to(device)
    times = alternate({"fcngraph": lambda: ours.update(pred, target),
                       "torchmetrics": lambda: checked.update(pred, target),
                       "torchmetrics (validate_args=False)": lambda: unchecked.update(pred, target)},
                      args.reps, device)
    assert torch.equal(ours.matrix.cpu(), checked.compute().cpu()), "the two disagree"
    for name, values in times.items():
        print(f"{name:36s} {median(values):8.2f} ms per update of {args.batch}x{args.size}x{args.size}")
    for name in ("torchmetrics", "torchmetrics (validate_args=False)"):
        print(f"throughput fcngraph / {name}: {ratio(times, name, 'fcngraph'):.2f} (target >= 1.0)")


if __name__ == "__main__":
    main()
