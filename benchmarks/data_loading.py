"""Data loading throughput alone: fcngraph's folder loader (decoded-image cache, augment,
normalise, collate through a DataLoader, as `fcngraph run` does) against the minimal loop over
pre-decoded tensors (benchmarks/minimal.py), on the CamVid copy, in one process, alternating rounds.

    python benchmarks/data_loading.py [--data DIR] [--images 96] [--rounds 3] [--workers 0] [--no-cache]

Prints images/s of each side per round and the median ratio fcngraph / minimal. This is loading
only; whether loading keeps up with training is what run_vs_minimal_loop.py measures.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch
from minimal import batches, parser, predecode
from torch.utils.data import DataLoader, Subset

from fcngraph.data import FolderSegmentation, Transformed, pad_collate
from fcngraph.settings import DataSettings, TrainSettings


def fcngraph_rate(dataset, batch: int, workers: int) -> float:
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers, collate_fn=pad_collate)
    start, seen = time.perf_counter(), 0
    for images, _ in loader:
        seen += images.shape[0]
    return seen / (time.perf_counter() - start)


def minimal_rate(pairs, train: TrainSettings) -> float:
    start, seen = time.perf_counter(), 0
    for images, _ in batches(pairs, train):
        seen += images.shape[0]
    return seen / (time.perf_counter() - start)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--images", type=int, default=96, help="Training images loaded per round.")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers on the fcngraph side.")
    p.add_argument("--batch", type=int, default=16, help="Batch size.")
    p.add_argument("--no-cache", action="store_true", help="Decode every image on every load (data.cache false).")
    p.add_argument("--crop", type=int, default=176, help="Training crop side.")
    p.add_argument("--scale", type=float, nargs=2, default=(1.0, 1.0), help="Random rescale range.")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = DataSettings(path=args.data)
    train = TrainSettings(crop_size=args.crop, scale_range=tuple(args.scale), flip=True, batch_size=args.batch)
    folder = FolderSegmentation(Path(args.data), "train", 11, cache=not args.no_cache)
    dataset = Transformed(Subset(folder, range(min(args.images, len(folder)))), data, train)
    pairs = predecode(Path(args.data), "train", data, args.images)
    ours, minimal = [], []
    for _ in range(args.rounds):
        ours.append(fcngraph_rate(dataset, args.batch, args.workers))
        minimal.append(minimal_rate(pairs, train))
        print(f"fcngraph {ours[-1]:8.1f} img/s   minimal (pre-decoded) {minimal[-1]:8.1f} img/s", flush=True)
    print(f"median ratio fcngraph / minimal: {statistics.median(ours) / statistics.median(minimal):.3f}")


if __name__ == "__main__":
    main()
