"""Trained model + a split of a dataset → scores: the confusion matrix, the four metrics and
per-image per-class counts, optionally with test-time augmentation (flip, scales) and
sliding-window tiles. `score_loader` is the one scoring loop: training's per-epoch validation
and `fcngraph eval` both run it. `evaluate_run` writes eval-<split>[-tta].json, a per-image CSV
and per-image-<split>.npz into the run directory.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from .checkpoint import load_trained
from .data import FolderSegmentation, SyntheticShapes, Transformed, pad_collate
from .errors import DataError
from .io import atomic_write, atomic_write_text
from .metrics import ConfusionMatrix
from .sizing import PadToValid, next_side
from .spec import Spec


# -- per-image counts ------------------------------------------------------------------------------
@dataclass
class PerImage:
    """tp/gt/pred pixel counts per image and class ([N, C] int64 each)."""

    stems: list[str] = field(default_factory=list)
    tp: list[np.ndarray] = field(default_factory=list)
    gt: list[np.ndarray] = field(default_factory=list)
    pred: list[np.ndarray] = field(default_factory=list)

    def add(self, stem: str, pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore: int) -> None:
        keep = target != ignore  # [H, W]
        p, t = pred[keep].long(), target[keep].long()
        self.stems.append(stem)
        self.tp.append(torch.bincount(t[p == t], minlength=num_classes).cpu().numpy())
        self.gt.append(torch.bincount(t, minlength=num_classes).cpu().numpy())
        self.pred.append(torch.bincount(p, minlength=num_classes).cpu().numpy())

    def arrays(self) -> dict[str, np.ndarray]:
        return {"stems": np.array(self.stems), "tp": np.stack(self.tp), "gt": np.stack(self.gt),
                "pred": np.stack(self.pred)}

    def save(self, path: Path) -> None:
        atomic_write(path, lambda handle: np.savez_compressed(handle, **self.arrays()))

    def csv(self, classes: list[str]) -> str:
        import pandas as pd

        a = self.arrays()
        union = a["gt"] + a["pred"] - a["tp"]
        iou = np.where(union > 0, a["tp"] / np.maximum(union, 1), np.nan)  # [N, C]
        frame = pd.DataFrame(iou, columns=[f"iou_{c}" for c in classes])
        frame.insert(0, "miou", np.nanmean(np.where(union > 0, iou, np.nan), axis=1))
        frame.insert(0, "image", a["stems"])
        return frame.to_csv(index=False)


def load_per_image(run_dir: Path, split: str, num_classes: int | None = None) -> dict[str, np.ndarray]:
    """The per-image counts an eval or a validation wrote: stems [N], tp/gt/pred [N, C] (C =
    num_classes when given); a file that is not that is a one-line DataError."""
    import zipfile
    import zlib

    path = Path(run_dir) / f"per-image-{split}.npz"
    if not path.is_file():
        raise DataError(f"{path}: no per-image counts; run `fcngraph eval {run_dir} --split {split}`")
    try:
        with np.load(path, allow_pickle=False) as z:
            counts = {k: z[k] for k in ("stems", "tp", "gt", "pred")}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{path}: unreadable per-image counts ({' '.join(str(exc).split())[:200]})") from None
    stems, tp, gt, pred = (counts[k] for k in ("stems", "tp", "gt", "pred"))
    shape = (len(stems), num_classes or (tp.shape[-1] if tp.ndim == 2 else 0))
    if (stems.ndim != 1 or stems.dtype.kind != "U" or not len(stems) or shape[1] < 1
            or any(a.shape != shape or a.dtype.kind not in "iu" or (a < 0).any() for a in (tp, gt, pred))
            or (tp > np.minimum(gt, pred)).any()):
        raise DataError(f"{path}: not per-image counts (expected image names [N] and tp <= gt, pred: "
                        f"non-negative integers [N, {num_classes or 'C'}])")
    return counts


# -- inference with TTA and tiles --------------------------------------------------------------------
@dataclass(frozen=True)
class Inference:
    flip: bool = False
    scales: tuple[float, ...] = (1.0,)
    tile: int | None = None
    overlap: int = 0

    @property
    def tta(self) -> bool:
        return self.flip or self.scales != (1.0,)


MIN_SCALE, MAX_SCALE = 0.125, 8.0  # beyond: an image of a pixel or two, or 64x the memory


def parse_tta(text: str | None) -> tuple[bool, tuple[float, ...]]:
    """'flip', 'scales=0.75,1,1.25' or 'flip,scales=...' → (flip, scales)."""
    if not text:
        return False, (1.0,)
    flip, scales = False, (1.0,)
    for item in text.split("+"):
        if item == "flip":
            flip = True
        elif item.startswith("scales="):
            try:
                scales = tuple(float(v) for v in item[len("scales="):].split(","))
            except ValueError:
                raise DataError(f"--tta {text}: scales must be numbers, e.g. scales=0.75,1,1.25") from None
            if not all(MIN_SCALE <= v <= MAX_SCALE for v in scales):  # NaN fails too
                raise DataError(f"--tta {text}: scales must be between {MIN_SCALE} and {MAX_SCALE}")
        else:
            raise DataError(f"--tta {text}: expected flip, scales=0.75,1,1.25 or flip+scales=...")
    return flip, scales


def _tiled(net: torch.nn.Module, x: torch.Tensor, tile: int, overlap: int, num_classes: int) -> torch.Tensor:
    """Average of the scores of overlapping tile×tile windows (x: [B, C, H, W])."""
    b, _, h, w = x.shape
    if h <= tile and w <= tile:
        return net(x)
    stride = max(1, tile - overlap)
    out = x.new_zeros(b, num_classes, h, w)
    count = x.new_zeros(1, 1, h, w)
    tops = sorted({min(t, max(0, h - tile)) for t in range(0, max(1, h - overlap), stride)})
    lefts = sorted({min(s, max(0, w - tile)) for s in range(0, max(1, w - overlap), stride)})
    for top in tops:
        for left in lefts:
            window = x[..., top:top + tile, left:left + tile]
            out[..., top:top + tile, left:left + tile] += net(window)
            count[..., top:top + tile, left:left + tile] += 1
    return out / count


def probabilities(net: torch.nn.Module, x: torch.Tensor, how: Inference, num_classes: int) -> torch.Tensor:
    """Softmax scores [B, K, H, W], averaged over flips and scales, tiled when asked."""
    h, w = x.shape[-2:]
    total = None
    for scale in how.scales:
        size = [max(1, round(n * scale)) for n in x.shape[-2:]]  # a small image stays ≥ 1 pixel
        xs = x if scale == 1.0 else F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        for flipped in ((False, True) if how.flip else (False,)):
            xi = xs.flip(-1) if flipped else xs
            scores = _tiled(net, xi, how.tile, how.overlap, num_classes) if how.tile else net(xi)
            probs = scores.float().softmax(1)
            probs = probs.flip(-1) if flipped else probs
            if probs.shape[-2:] != (h, w):
                probs = F.interpolate(probs, size=(h, w), mode="bilinear", align_corners=False)
            total = probs if total is None else total + probs
    return total / (len(how.scales) * (2 if how.flip else 1))


# -- evaluation -----------------------------------------------------------------------------------
def autocast(device: torch.device | str, amp: str):
    """Mixed precision on CUDA when `amp` asks for it (bf16 or fp16); a no-op otherwise."""
    device = torch.device(device)
    enabled = amp != "none" and device.type == "cuda"
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype, enabled=enabled)


@torch.no_grad()
def score_loader(net: torch.nn.Module, loader: DataLoader, num_classes: int, device: torch.device | str,
                 ignore: int = 255, stems: list[str] | None = None, how: Inference = Inference(),
                 amp: str = "none") -> tuple[ConfusionMatrix, PerImage | None]:
    """Confusion matrix of `net` over a loader and, given the images' `stems` in the loader's order,
    their per-image counts. One process's share: a distributed caller all-reduces the matrix."""
    net.eval()
    confusion = ConfusionMatrix(num_classes, device, ignore)
    per_image = PerImage() if stems is not None else None
    for images, masks in loader:
        images = images.to(device, non_blocking=True)  # [B, C, H, W]
        masks = masks.to(device, non_blocking=True)  # [B, H, W]
        with autocast(device, amp):
            scores = probabilities(net, images, how, num_classes) if how.tta or how.tile else net(images)
        pred = scores.argmax(1)  # [B, H, W]
        confusion.update(pred, masks)
        if per_image is not None:
            for p, t in zip(pred, masks):
                per_image.add(stems[len(per_image.stems)], p, t, num_classes, ignore)
    return confusion, per_image


def split_dataset(spec: Spec, split: str, data_path: str | None, skip_bad: bool = False):
    """(dataset, stems, classes) of one split: a folder's split file, or the synthetic set's val."""
    d = spec.data
    path = data_path if data_path is not None else d.path
    if path is None:
        if split not in (d.val_split, d.train_split):
            raise DataError(f"the embedded synthetic data has only '{d.train_split}' and '{d.val_split}'")
        from .data import SYNTHETIC_CLASSES

        base = SyntheticShapes(d.val_samples if split == d.val_split else d.train_samples, d.size,
                               seed=2 if split == d.val_split else 1)
        return Transformed(base, d, None), [f"{split}_{i}" for i in range(len(base))], SYNTHETIC_CLASSES
    folder = FolderSegmentation(Path(path), split, spec.num_classes, d.ignore_index, skip_bad,
                                spec.input.channels, d.max_pixels, d.cache)
    return Transformed(folder, d, None), [s.mask.stem for s in folder.samples], folder.classes


def evaluate_run(source: Path, split: str = "val", data_path: str | None = None, how: Inference = Inference(),
                 which: str = "best", device: str = "cpu", backend: str | None = None) -> dict[str, Any]:
    """Score a run's checkpoint on a split; write eval-<split>[-tta].json, a per-image CSV and npz.
    `backend`: torch or onnxruntime (None: the fastest installed; scores agree within float noise)."""
    from .infer import on_backend

    trained = load_trained(Path(source), which, device)
    ckpt, state, spec, model = trained.path, trained.state, trained.spec, trained.model
    if how.tile and next_side(spec, how.tile) != how.tile:
        raise DataError(f"--tile {how.tile}: not a valid size for spec '{spec.name}'; "
                        f"the next valid one is {next_side(spec, how.tile)}")
    dataset, stems, classes = split_dataset(spec, split, data_path)
    loader = DataLoader(dataset, batch_size=1, shuffle=False,
                        collate_fn=functools.partial(pad_collate, ignore_index=spec.data.ignore_index))
    net = on_backend(model, backend, spec.input.channels, device)
    confusion, per_image = score_loader(PadToValid(net, spec), loader, spec.num_classes, device,
                                        spec.data.ignore_index, stems, how)
    scores = confusion.compute()
    run_dir = ckpt.parent
    tag = f"{split}-tta" if how.tta else split
    epoch = state.get("epoch")  # a hand-made checkpoint may have none, or no integer
    epoch = epoch + 1 if isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 0 else 0
    result = {"spec": spec.name, "checkpoint": ckpt.name, "epoch": epoch,
              "backend": "torch" if net is model else "onnxruntime",
              "split": split, "data": str(data_path or spec.data.path or "synthetic"), "images": len(stems),
              "tta": {"flip": how.flip, "scales": list(how.scales)}, "tile": how.tile, "overlap": how.overlap,
              "classes": list(classes), **scores, "confusion": confusion.matrix.tolist()}
    atomic_write_text(run_dir / f"eval-{tag}.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(run_dir / f"eval-{tag}-per-image.csv", per_image.csv(list(classes)))
    per_image.save(run_dir / f"per-image-{tag}.npz")
    return result


def table(result: dict[str, Any]) -> str:
    """The metrics and per-class IoU/accuracy as aligned text."""
    lines = [f"{result['spec']} on '{result['split']}' ({result['images']} images, {result['checkpoint']}, "
             f"epoch {result['epoch']}): mIoU {result['miou']:.4f}  pixel acc {result['pixel_acc']:.4f}  "
             f"mean acc {result['mean_acc']:.4f}  f.w. IoU {result['fwiou']:.4f}",
             f"{'class':<16} {'IoU':>7} {'acc':>7}"]
    for name, iou, acc in zip(result["classes"], result["iou"], result["acc"]):
        lines.append(f"{name:<16} {iou:>7.4f} {acc:>7.4f}")
    return "\n".join(lines)
