"""The hand-written baseline the data benchmarks compare fcngraph against, shared by
data_loading.py (loading only) and run_vs_minimal_loop.py (training throughput).

What a person would write with the whole dataset in memory: every image decoded once, before
timing, to a normalised float tensor; each batch cut from those tensors with the same
augmentation the spec asks for (random scale, crop padded with ignore, flip), then stacked.
Also the argument-parser preamble both scripts share.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CAMVID = ROOT.parent / "shared" / "data" / "camvid"

from fcngraph.data import find_samples  # noqa: E402
from fcngraph.settings import DataSettings, TrainSettings  # noqa: E402

Pair = tuple[torch.Tensor, torch.Tensor]  # image [C, H, W] float (normalised), mask [H, W] int64


def parser(doc: str) -> argparse.ArgumentParser:
    """The options every data benchmark has: the folder, the alternating rounds, the threads."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--data", default=str(CAMVID), help="Dataset folder (default: the CamVid copy).")
    p.add_argument("--rounds", type=int, default=3, help="Alternating rounds of each side.")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads for both sides.")
    return p


def predecode(root: Path, split: str, data: DataSettings, limit: int | None = None) -> list[Pair]:
    """Every image of a split decoded and normalised once (PIL → float tensors), masks as int64."""
    mean, std = torch.tensor(data.mean)[:, None, None], torch.tensor(data.std)[:, None, None]
    pairs = []
    for sample in find_samples(root, split)[:limit]:
        rgb = np.asarray(Image.open(sample.image).convert("RGB"))  # [H, W, 3] uint8
        image = torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 255  # [3, H, W]
        mask = torch.from_numpy(np.asarray(Image.open(sample.mask)).astype(np.int64))  # [H, W]
        pairs.append(((image - mean) / std, mask))
    return pairs


def cut(image: torch.Tensor, mask: torch.Tensor, train: TrainSettings, ignore: int) -> Pair:
    """One training sample: random scale (bilinear image, nearest mask), crop, flip."""
    low, high = train.scale_range
    if (low, high) != (1.0, 1.0):
        size = [max(1, round(n * random.uniform(low, high))) for n in image.shape[1:]]
        image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
        mask = F.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0].long()
    if train.crop_size:
        c = train.crop_size
        pad_h, pad_w = max(0, c - image.shape[1]), max(0, c - image.shape[2])
        image = F.pad(image, (0, pad_w, 0, pad_h))
        mask = F.pad(mask, (0, pad_w, 0, pad_h), value=ignore)
        top, left = random.randint(0, image.shape[1] - c), random.randint(0, image.shape[2] - c)
        image, mask = image[:, top:top + c, left:left + c], mask[top:top + c, left:left + c]
    if train.flip and random.random() < 0.5:
        image, mask = image.flip(-1), mask.flip(-1)
    return image, mask


def batches(pairs: list[Pair], train: TrainSettings, ignore: int = 255) -> Iterator[Pair]:
    """One shuffled epoch of stacked batches: images [B, C, h, w], masks [B, h, w]."""
    order = list(range(len(pairs)))
    random.shuffle(order)
    for i in range(0, len(order), train.batch_size):
        cuts = [cut(*pairs[j], train, ignore) for j in order[i:i + train.batch_size]]
        yield torch.stack([c[0] for c in cuts]), torch.stack([c[1] for c in cuts])
