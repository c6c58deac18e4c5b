"""Datasets → (image [C,H,W] float, mask [H,W] int64) pairs, with augmentation.

Sources: the embedded synthetic set (seeded, generated on the fly, nothing downloaded), a
VOC-layout folder (JPEGImages|images, SegmentationClass|masks, ImageSets/Segmentation|splits),
or a plain images/ + masks/ pair. Images are JPEG/PNG (grayscale or RGB) or multi-channel TIFF/.npy
stacks, masks PNG or integer .npy/.tif, both found by stem; values are scaled to 0..1 as
fcngraph.images documents. Bad files are reported by name before training starts.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .errors import DataError
from .images import IMAGE_SUFFIXES, MASK_SUFFIXES, find_file, is_palette, read_image, read_mask, to_unit
from .io import parse_json
from .settings import DataSettings, TrainSettings

SYNTHETIC_CLASSES = ["background", "box", "disc", "triangle", "line", "ring"]
SYNTHETIC_PALETTE = [(0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200),
                     (245, 130, 48)]
CAFFE_BGR_MEAN = (104.00698793, 116.66876762, 122.67891434)  # the FCN reference's BGR mean


# -- the embedded synthetic set ---------------------------------------------------------------
class SyntheticShapes(Dataset):
    """Seeded scenes of boxes, discs, triangles, thin lines and rings on textured backgrounds.
    Colours overlap between classes, so shape and boundaries matter; lines are 1-2 px thin,
    which a stride-32 prediction cannot resolve but fine skips can."""

    classes = SYNTHETIC_CLASSES
    palette = SYNTHETIC_PALETTE

    def __init__(self, samples: int, size: int, seed: int) -> None:
        self.samples, self.size, self.seed = samples, size, seed

    def __len__(self) -> int:
        return self.samples

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        s = self.size
        yy, xx = torch.meshgrid(torch.arange(s, dtype=torch.float32), torch.arange(s, dtype=torch.float32),
                                indexing="ij")  # [S, S] each
        image = self._background(g, yy, xx)  # [3, S, S]
        mask = torch.zeros(s, s, dtype=torch.int64)
        for _ in range(int(torch.randint(3, 7, (1,), generator=g))):
            cls = int(torch.randint(1, len(self.classes), (1,), generator=g))
            region = self._shape(cls, g, yy, xx)  # [S, S] bool
            colour = self._colour(cls, g)  # [3]
            stripes = torch.sin((xx + yy) * float(torch.rand(1, generator=g)) * 1.5) * 0.08
            image = torch.where(region, colour[:, None, None] + stripes, image)
            mask[region] = cls
        image = image + 0.06 * torch.randn(image.shape, generator=g)
        return image.clamp(0, 1), mask

    def _background(self, g, yy, xx):
        base = torch.rand(3, 1, 1, generator=g) * 0.6 + 0.2
        tilt = (torch.rand(3, 1, 1, generator=g) - 0.5) * 0.6
        freq = float(torch.rand(1, generator=g)) * 0.5 + 0.1
        texture = 0.1 * torch.sin(xx * freq) * torch.cos(yy * freq * 0.7)
        return base + tilt * (xx / self.size) + texture

    def _colour(self, cls, g):
        hue = (cls - 1) / (len(self.classes) - 1) + float(torch.randn(1, generator=g)) * 0.12
        angles = hue * 2 * math.pi + torch.tensor([0.0, 2.09, 4.19])
        return 0.5 + 0.35 * torch.cos(angles)

    def _shape(self, cls, g, yy, xx):
        s = self.size
        cy, cx = (torch.rand(2, generator=g) * s).tolist()
        r = float(torch.rand(1, generator=g)) * s * 0.15 + s * 0.06
        if cls == 1:  # box
            h, w = (torch.rand(2, generator=g) * s * 0.25 + s * 0.06).tolist()
            return ((yy - cy).abs() < h / 2) & ((xx - cx).abs() < w / 2)
        if cls == 2:  # disc
            return (yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2
        if cls == 3:  # triangle pointing up
            return (yy < cy + r) & ((xx - cx).abs() < (yy - cy + r) * 0.6)
        if cls == 4:  # thin line
            angle = float(torch.rand(1, generator=g)) * math.pi
            width = 0.6 + float(torch.rand(1, generator=g)) * 0.6
            dist = ((yy - cy) * math.cos(angle) - (xx - cx) * math.sin(angle)).abs()
            along = ((yy - cy) * math.sin(angle) + (xx - cx) * math.cos(angle)).abs()
            return (dist < width) & (along < s * 0.4)
        dist = ((yy - cy) ** 2 + (xx - cx) ** 2).sqrt()  # ring
        return (dist < r) & (dist > r * 0.6)


# -- folders -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sample:
    image: Path
    mask: Path


def _first_dir(root: Path, names: tuple[str, ...], what: str) -> Path:
    for name in names:
        if (root / name).is_dir():
            return root / name
    raise DataError(f"{root}: missing {what} folder (looked for {', '.join(names)})")


def find_samples(root: Path, split: str) -> list[Sample]:
    """The (image, mask) pairs of one split of a VOC-layout or images/masks folder."""
    if not root.is_dir():
        raise DataError(f"{root}: no such dataset folder")
    images = _first_dir(root, ("JPEGImages", "images"), "image")
    masks = _first_dir(root, ("SegmentationClass", "masks"), "mask")
    split_dir = next((root / d for d in ("ImageSets/Segmentation", "splits") if (root / d).is_dir()), None)
    if split_dir is not None:
        split_file = split_dir / f"{split}.txt"
        if not split_file.is_file():
            raise DataError(f"{split_file}: missing split file")
        stems = [line.strip() for line in read_text(split_file).splitlines() if line.strip()]
        if not stems:
            raise DataError(f"{split_file}: empty split")
        for stem in stems:  # a split names files inside the dataset, never paths out of it
            if "/" in stem or "\\" in stem or stem.startswith(".."):
                raise DataError(f"{split_file}: stem '{stem}' is a path; a split lists file stems only")
    else:
        stems = sorted({p.stem for p in masks.iterdir() if p.suffix in MASK_SUFFIXES})
        if not stems:
            raise DataError(f"{masks}: no masks ({', '.join(MASK_SUFFIXES)})")
    return [Sample(find_file(images, stem, IMAGE_SUFFIXES), find_file(masks, stem, MASK_SUFFIXES))
            for stem in stems]


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None


def read_classes(root: Path) -> tuple[list[str] | None, list[tuple[int, int, int]] | None]:
    path = root / "classes.json"
    if not path.is_file():
        return None, None
    try:
        meta = parse_json(read_text(path))
        if not isinstance(meta.get("classes"), list):
            raise TypeError("'classes' must be a list of names")
        classes = [str(c) for c in meta["classes"]]
        palette = meta.get("palette") or None
        if palette is not None:
            if not is_palette(palette, len(classes)):
                raise TypeError("palette needs one [r, g, b] per class, integers 0..255")
            palette = [tuple(c) for c in palette]
        return classes, palette
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DataError(f"{path}: not a classes file ({exc})") from None


def load_pair(sample: Sample, palette: list[tuple[int, int, int]] | None, channels: int = 3,
              max_pixels: int = 40_000_000) -> tuple[np.ndarray, np.ndarray]:
    """Image [H, W, C] (C = `channels`; uint8, uint16 or float: fcngraph.images) and labels [H, W]."""
    image = read_image(sample.image, channels, max_pixels)
    mask = read_mask(sample.mask, max_pixels, palette)
    if mask.shape != image.shape[:2]:
        raise DataError(f"{sample.mask}: mask size {mask.shape[1]}x{mask.shape[0]} != image size "
                        f"{image.shape[1]}x{image.shape[0]}")
    return image, mask


class FolderSegmentation(Dataset):
    """A split of a segmentation folder; every sample is checked when the dataset is made."""

    def __init__(self, root: Path, split: str, num_classes: int, ignore_index: int = 255,
                 skip_bad: bool = False, channels: int = 3, max_pixels: int = 40_000_000,
                 cache: bool = False) -> None:
        self.root, self.channels, self.max_pixels = root, channels, max_pixels
        self.cache: dict[Path, tuple[np.ndarray, np.ndarray]] | None = {} if cache else None
        self.classes, self.palette = read_classes(root)
        if self.classes is not None and len(self.classes) != num_classes:
            raise DataError(f"{root / 'classes.json'}: {len(self.classes)} classes, spec has {num_classes}")
        self.classes = self.classes or [f"class_{i}" for i in range(num_classes)]
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.samples, self.skipped, self.sizes = [], [], set()
        for sample in find_samples(root, split):
            try:
                self._check(sample)
                self.samples.append(sample)
            except DataError as exc:
                if not skip_bad:
                    raise
                self.skipped.append(str(exc))
        if not self.samples:
            raise DataError(f"{root}: split '{split}' has no usable samples")

    def _check(self, sample: Sample) -> None:
        if not sample.image.is_file():
            raise DataError(f"{sample.image}: missing image")
        image, mask = load_pair(sample, self.palette, self.channels, self.max_pixels)
        self.sizes.add(image.shape[:2])
        if self.cache is not None:  # decoded once here, never again (the loader's main cost otherwise)
            self.cache[sample.image] = (image, mask)
        bad = ((mask >= self.num_classes) | (mask < 0)) & (mask != self.ignore_index)
        if bad.any():
            raise DataError(f"{sample.mask}: label {int(mask[bad][0])} outside [0, {self.num_classes}) "
                            f"and not {self.ignore_index}")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        sample = self.samples[index]
        cached = self.cache.get(sample.image) if self.cache is not None else None
        image, mask = cached or load_pair(sample, self.palette, self.channels, self.max_pixels)
        return to_unit(image), torch.from_numpy(mask.copy())  # [C, H, W] scaled to 0..1 (uint), [H, W]


# -- augmentation and normalisation --------------------------------------------------------------
@contextlib.contextmanager
def single_threaded():
    """torch ops on one thread inside. Per-sample pixel work is small, and a multi-threaded op waits
    for its slowest thread: on a busy 2-core machine, loading CamVid crops with torch's 2 intra-op
    threads ran at 39 img/s against 225 with one (the results are the same: no reductions). DataLoader
    workers already run on one thread; this does the same for loading in the training process.
    The setting is global: another Python thread's ops run on one thread meanwhile (0.5 µs to flip)."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class Transformed(Dataset):
    """Random scale, crop (padding labels with ignore), flip; then mean/std normalisation.
    Randomness comes from (seed, epoch, index), so a resumed run sees the same augmentations."""

    def __init__(self, base: Dataset, data: DataSettings, train: TrainSettings | None) -> None:
        self.base, self.data, self.train = base, data, train
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        with single_threaded():
            image, mask = self.base[index]
            if self.train is not None:
                g = torch.Generator().manual_seed((self.train.seed * 7919 + self.epoch) * 1_000_003 + index)
                image, mask = augment(image, mask, self.train, self.data.ignore_index, g)
            return normalise(image, self.data), mask


def augment(image, mask, train: TrainSettings, ignore: int, g: torch.Generator):
    low, high = train.scale_range
    if (low, high) != (1.0, 1.0):
        factor = low + (high - low) * float(torch.rand(1, generator=g))
        size = [max(1, round(n * factor)) for n in image.shape[1:]]
        image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
        mask = F.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0].long()
    if train.crop_size:
        c = train.crop_size
        pad_h, pad_w = max(0, c - image.shape[1]), max(0, c - image.shape[2])
        if pad_h or pad_w:  # F.pad copies even when there is nothing to add
            image = F.pad(image, (0, pad_w, 0, pad_h))
            mask = F.pad(mask, (0, pad_w, 0, pad_h), value=ignore)
        top = int(torch.randint(0, image.shape[1] - c + 1, (1,), generator=g))
        left = int(torch.randint(0, image.shape[2] - c + 1, (1,), generator=g))
        image, mask = image[:, top:top + c, left:left + c], mask[top:top + c, left:left + c]
    if train.flip and bool(torch.rand(1, generator=g) < 0.5):
        image, mask = image.flip(-1), mask.flip(-1)
    return image, mask


def normalise(image: torch.Tensor, data: DataSettings) -> torch.Tensor:
    if data.caffe_bgr:  # Caffe parity: BGR, 0..255, minus the BGR mean
        return image.flip(0) * 255 - torch.tensor(CAFFE_BGR_MEAN)[:, None, None]
    mean, std = torch.tensor(data.mean), torch.tensor(data.std)
    if len(mean) != image.shape[0]:  # the default RGB statistics on a grayscale image: their average
        mean, std = mean.mean().expand(image.shape[0]), std.mean().expand(image.shape[0])
    return (image - mean[:, None, None]).div_(std[:, None, None])  # [C, H, W]; in place on the new tensor


def pad_collate(batch, ignore_index: int = 255):
    """Stack samples, padding smaller ones (image 0, mask ignore) to the largest in the batch."""
    with single_threaded():  # copies: one thread keeps up with memory, more only wait on a busy machine
        return _pad_stack(batch, ignore_index)


def _pad_stack(batch, ignore_index: int):
    h = max(img.shape[1] for img, _ in batch)
    w = max(img.shape[2] for img, _ in batch)
    if all(img.shape[1:] == (h, w) for img, _ in batch):  # crops, one-size data: padding copies for nothing
        return torch.stack([img for img, _ in batch]), torch.stack([m for _, m in batch])  # (3x faster)
    images = torch.stack([F.pad(img, (0, w - img.shape[2], 0, h - img.shape[1])) for img, _ in batch])
    masks = torch.stack([F.pad(m, (0, w - m.shape[1], 0, h - m.shape[0]), value=ignore_index)
                         for _, m in batch])
    return images, masks  # [B, 3, H, W], [B, H, W]


@dataclass
class Splits:
    train: Dataset
    val: Dataset
    classes: list[str]
    palette: list[tuple[int, int, int]]
    skipped: list[str]
    val_stems: list[str] = field(default_factory=list)


class Grayscale(Dataset):
    """The synthetic set for a 1-channel spec: RGB averaged to one channel."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.base[index]
        return image.mean(0, keepdim=True), mask  # [1, H, W]


def make_splits(data: DataSettings, train: TrainSettings, num_classes: int,
                skip_bad: bool = False, channels: int = 3) -> Splits:
    """The training and validation datasets a spec's settings describe."""
    if data.path is None:
        if num_classes != len(SYNTHETIC_CLASSES):
            raise DataError(f"the embedded synthetic data has {len(SYNTHETIC_CLASSES)} classes, "
                            f"the spec has num_classes {num_classes}; give --data for other data")
        if channels not in (1, 3):
            raise DataError(f"the embedded synthetic data has 1 or 3 channels, the spec wants {channels}")
        tr = SyntheticShapes(data.train_samples, data.size, seed=1)
        va = SyntheticShapes(data.val_samples, data.size, seed=2)
        if channels == 1:
            tr, va = Grayscale(tr), Grayscale(va)
        return Splits(Transformed(tr, data, train), Transformed(va, data, None),
                      SYNTHETIC_CLASSES, SYNTHETIC_PALETTE, [], [f"{data.val_split}_{i}" for i in range(len(va))])
    root = Path(data.path)
    tr = FolderSegmentation(root, data.train_split, num_classes, data.ignore_index, skip_bad, channels,
                            data.max_pixels, data.cache)
    va = FolderSegmentation(root, data.val_split, num_classes, data.ignore_index, skip_bad, channels,
                            data.max_pixels, data.cache)
    return Splits(Transformed(tr, data, train), Transformed(va, data, None), tr.classes,
                  palette_of(data, num_classes), tr.skipped + va.skipped, [s.mask.stem for s in va.samples])


def palette_of(data: DataSettings, num_classes: int) -> list[tuple[int, int, int]]:
    """Class colours: the synthetic set's, a folder's classes.json palette, or fixed seeded ones."""
    if data.path is None:
        return SYNTHETIC_PALETTE
    _, palette = read_classes(Path(data.path))
    if palette:
        return palette
    return [tuple(int(v) for v in np.random.default_rng(i).integers(0, 256, 3)) for i in range(num_classes)]


def data_identity(data: DataSettings) -> str:
    """What the data is, not where it lies: a hash of the split files, classes.json and the file
    names they resolve to, so moving the folder or the checkout keeps the run hash."""
    if data.path is None:
        return "synthetic"
    root, digest = Path(data.path), hashlib.sha256()
    for rel in ("classes.json", f"splits/{data.train_split}.txt", f"splits/{data.val_split}.txt",
                f"ImageSets/Segmentation/{data.train_split}.txt", f"ImageSets/Segmentation/{data.val_split}.txt"):
        if (root / rel).is_file():
            digest.update(rel.encode() + b"\0" + (root / rel).read_bytes() + b"\0")
    for sub in ("images", "JPEGImages", "masks", "SegmentationClass"):
        if (root / sub).is_dir():  # names and sizes: cheap, and catch replaced files
            for f in sorted((root / sub).iterdir()):  # names as bytes: a name need not be UTF-8
                size = f.stat().st_size if f.exists() else -1  # a dangling link is no error here
                digest.update(os.fsencode(f"{sub}/{f.name}") + f":{size}\n".encode())
    return digest.hexdigest()[:12]


def class_frequencies(dataset: Dataset, num_classes: int, ignore: int) -> np.ndarray:
    """Per class: its pixel count / pixels of the images where it appears (SegNet's freq(c))."""
    pixels, image_pixels = np.zeros(num_classes), np.zeros(num_classes)
    for index in range(len(dataset)):  # type: ignore[arg-type]
        _, mask = dataset[index]
        labels = mask[mask != ignore].numpy()
        counts = np.bincount(labels, minlength=num_classes)[:num_classes]
        pixels += counts
        image_pixels += (counts > 0) * labels.size
    return np.where(image_pixels > 0, pixels / np.maximum(image_pixels, 1), 0.0)


def class_weights(kind: str, freq: np.ndarray) -> list[float]:
    """median_frequency: median(f)/f_c (Eigen & Fergus; SegNet); inverse_sqrt: 1/sqrt(f_c) scaled to
    mean 1 over present classes. Absent classes get weight 0 (they never appear in the loss)."""
    present = freq > 0
    if not present.any():
        raise DataError("class weights: the training split has no labelled pixels")
    if kind == "median_frequency":
        weights = np.where(present, np.median(freq[present]) / np.where(present, freq, 1), 0.0)
    else:
        raw = np.where(present, 1 / np.sqrt(np.where(present, freq, 1)), 0.0)
        weights = raw / raw[present].mean()
    return [float(w) for w in weights]
