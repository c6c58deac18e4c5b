"""Training throughput of `fcngraph run` against a minimal hand-written PyTorch loop on the
same model (the mini FCN-8s), the same data and the same optimiser, in one process, in
alternating rounds so that machine load hits both alike.

    python benchmarks/run_vs_minimal_loop.py [--spec specs/fcn8s-mini.json] [--epochs 2] [--rounds 3]

Prints training images/s of each round and the median ratio run / minimal (target ≥ 0.95).
Both count training steps only (fcngraph's per-epoch validation is not in its train time).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fcngraph.compile import compile_spec  # noqa: E402
from fcngraph.data import make_splits, pad_collate  # noqa: E402
from fcngraph.overrides import apply_overrides  # noqa: E402
from fcngraph.spec import Spec, load_spec  # noqa: E402
from fcngraph.train import train_spec  # noqa: E402


def minimal_loop(spec: Spec) -> float:
    """The loop a person would write by hand: images/s over the training steps."""
    t = spec.train
    torch.manual_seed(t.seed)
    model = compile_spec(spec)
    splits = make_splits(spec.data, t, spec.num_classes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    seen, seconds = 0, 0.0
    for epoch in range(t.epochs):
        splits.train.epoch = epoch
        start = time.perf_counter()
        loader = DataLoader(splits.train, batch_size=t.batch_size, shuffle=True, collate_fn=pad_collate)
        model.train()
        for images, masks in loader:  # [B, 3, H, W], [B, H, W]
            loss = F.cross_entropy(model(images), masks, ignore_index=255)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += images.shape[0]
        seconds += time.perf_counter() - start
    return seen / seconds


def fcngraph_run(spec: Spec) -> float:
    """`fcngraph run` on the same spec in a fresh runs folder: images/s from its metrics."""
    with tempfile.TemporaryDirectory() as root:
        train_spec(spec, Path(root), log=lambda _: None, progress=False)
        (metrics,) = Path(root).glob("*/metrics.jsonl")
        rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    return sum(r["images_per_s"] * r["train_s"] for r in rows) / sum(r["train_s"] for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(ROOT / "specs" / "fcn8s-mini.json"), help="Spec to train.")
    parser.add_argument("--epochs", type=int, default=2, help="Epochs per round.")
    parser.add_argument("--rounds", type=int, default=3, help="Alternating rounds of each side.")
    args = parser.parse_args()
    spec = apply_overrides(load_spec(args.spec), [f"train.epochs={args.epochs}", 'train.device="cpu"'])
    ratios = []
    for round_ in range(args.rounds):
        minimal = minimal_loop(spec)
        ours = fcngraph_run(spec)
        ratios.append(ours / minimal)
        print(f"round {round_ + 1}: fcngraph run {ours:7.1f} img/s   minimal loop {minimal:7.1f} img/s   "
              f"ratio {ours / minimal:.3f}")
    print(f"{spec.name}, {torch.get_num_threads()} threads: median ratio run / minimal = "
          f"{statistics.median(ratios):.3f} (target >= 0.95)")


if __name__ == "__main__":
    main()
