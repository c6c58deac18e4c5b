"""Data loading throughput: fcngraph's folder loader (decode PNGs, augment, normalise, collate
through a DataLoader, as `fcngraph run` does) against a minimal loop over pre-decoded tensors
(random crop + flip on tensors in memory), on the CamVid copy, in one process, alternating rounds.

    python benchmarks/data_loading.py [--data DIR] [--images 96] [--rounds 3] [--workers 0] [--no-cache]

Prints images/s of each side per round and the median ratio fcngraph / minimal. Loading alone is
measured here; whether it keeps up with training is the ratio of this rate to the model's step rate.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fcngraph.data import FolderSegmentation, Transformed, pad_collate  # noqa: E402
from fcngraph.settings import DataSettings, TrainSettings  # noqa: E402


def fcngraph_rate(dataset, batch: int, workers: int) -> float:
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers, collate_fn=pad_collate)
    start, seen = time.perf_counter(), 0
    for images, _ in loader:
        seen += images.shape[0]
    return seen / (time.perf_counter() - start)


def minimal_rate(tensors, batch: int, crop: int) -> float:
    start, seen = time.perf_counter(), 0
    order = torch.randperm(len(tensors))
    for i in range(0, len(order), batch):
        images, masks = [], []
        for j in order[i:i + batch].tolist():
            image, mask = tensors[j]
            top = int(torch.randint(0, image.shape[1] - crop + 1, (1,)))
            left = int(torch.randint(0, image.shape[2] - crop + 1, (1,)))
            image, mask = image[:, top:top + crop, left:left + crop], mask[top:top + crop, left:left + crop]
            if torch.rand(1) < 0.5:
                image, mask = image.flip(-1), mask.flip(-1)
            images.append(image)
            masks.append(mask)
        seen += torch.stack(images).shape[0]
        torch.stack(masks)
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "camvid"), help="Dataset folder.")
    parser.add_argument("--images", type=int, default=96, help="Training images loaded per round.")
    parser.add_argument("--rounds", type=int, default=3, help="Alternating rounds of each side.")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers on the fcngraph side.")
    parser.add_argument("--batch", type=int, default=16, help="Batch size.")
    parser.add_argument("--no-cache", action="store_true", help="Decode every image on every load (data.cache false).")
    parser.add_argument("--crop", type=int, default=176, help="Training crop side.")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data, train = DataSettings(path=args.data), TrainSettings(crop_size=args.crop, flip=True)
    folder = FolderSegmentation(Path(args.data), "train", 11, cache=not args.no_cache)
    subset = Subset(folder, range(min(args.images, len(folder))))
    dataset = Transformed(subset, data, train)
    mean, std = torch.tensor(data.mean)[:, None, None], torch.tensor(data.std)[:, None, None]
    tensors = [((img - mean) / std, mask) for img, mask in (subset[i] for i in range(len(subset)))]
    ours, minimal = [], []
    for _ in range(args.rounds):
        ours.append(fcngraph_rate(dataset, args.batch, args.workers))
        minimal.append(minimal_rate(tensors, args.batch, args.crop))
        print(f"fcngraph {ours[-1]:8.1f} img/s   minimal (pre-decoded) {minimal[-1]:8.1f} img/s")
    print(f"median ratio fcngraph / minimal: {statistics.median(ours) / statistics.median(minimal):.3f}")


if __name__ == "__main__":
    main()
