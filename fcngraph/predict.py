"""Run directory, checkpoint or exported .onnx (+ sidecar) + images → palette PNG masks and
overlays (any image size: inputs are padded to a valid size and the scores cropped back), and,
when a ground-truth mask is given, a prediction | truth panel and the image's IoU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .errors import DataError
from .export import deploy_meta, load_model, onnx_predictor
from .images import MASK_SUFFIXES, find_file, read_image, read_mask, unit_scale
from .infer import Predictor, TorchOptions, make_runner
from .io import atomic_write
from .metrics import ConfusionMatrix

MAX_PIXELS = 40_000_000  # an exported model has no data settings: the default data.max_pixels


def load_predictor(source: Path, backend: str | None = None, device: str = "cpu") -> Predictor:
    """An exported .onnx (with its sidecar), or a run directory / checkpoint on `backend`; the
    palette and class names the run trained with travel in the checkpoint."""
    if source.suffix == ".onnx":
        return onnx_predictor(source)
    spec, model, extras = load_model(source)
    backend = backend or ("torch" if device != "cpu" else None)  # onnxruntime runs on CPU here
    runner = make_runner(model, backend, channels=spec.input.channels, options=TorchOptions(device))
    return Predictor(runner, deploy_meta(spec, **extras))


def _flat_palette(palette: list[tuple[int, int, int]]) -> list[int]:
    return [int(v) for colour in palette for v in colour] + [255, 255, 255] * (256 - len(palette))


def predict(source: Path, images: list[Path], out_dir: Path, device: str = "cpu",
            backend: str | None = None, masks_dir: Path | None = None, log=print) -> list[Path]:
    """Write <stem>.png (palette mask) and <stem>_overlay.png for each image; with masks_dir also
    <stem>_truth.png (prediction | truth) where masks_dir/<stem>.png exists. Returns the masks."""
    predictor = load_predictor(source, backend, device)
    flat = _flat_palette(predictor.palette)
    num_classes, ignore = predictor.meta["num_classes"], predictor.meta.get("ignore_index", 255)
    channels = predictor.meta["input"]["channels"]
    written = []
    for path in images:
        pixels = read_image(path, channels, MAX_PIXELS)  # [H, W, C]
        rgb = display_rgb(pixels)  # [H, W, 3] for overlays
        labels = predictor.labels(pixels)  # [H, W]
        mask = Image.fromarray(labels, mode="P")
        mask.putpalette(flat)
        colour = np.asarray(mask.convert("RGB"))
        outputs = [(mask, out_dir / f"{path.stem}.png"),
                   (Image.fromarray((0.5 * rgb + 0.5 * colour).astype(np.uint8)), out_dir / f"{path.stem}_overlay.png")]
        truth_path = find_file(masks_dir, path.stem, MASK_SUFFIXES) if masks_dir else None
        if truth_path is not None and truth_path.is_file():
            panel, truth = truth_panel(labels, truth_path, flat, predictor.palette)
            outputs.append((panel, out_dir / f"{path.stem}_truth.png"))
            log(f"{path.name}: mIoU {image_iou(labels, truth, num_classes, ignore):.4f}")
        for image, dest in outputs:
            atomic_write(dest, lambda handle, image=image: image.save(handle, format="PNG"))
        written.append(outputs[0][1])
    return written


def display_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] to draw overlays on: 8-bit grey or RGB as read; other stacks scaled to 0..1,
    averaged over channels (unless three) and stretched to their own range, so dim 16-bit data shows."""
    if image.dtype == np.uint8 and image.shape[2] in (1, 3):
        return np.repeat(image, 3, -1) if image.shape[2] == 1 else image
    unit = image.astype(np.float32) / unit_scale(image.dtype)
    unit = unit if unit.shape[2] == 3 else unit.mean(2, keepdims=True)  # [H, W, 3 or 1]
    low, high = float(unit.min()), float(unit.max())
    unit = (unit - low) / (high - low) if high > low else np.zeros_like(unit)
    return np.broadcast_to((unit * 255).round().astype(np.uint8), (*image.shape[:2], 3)).copy()


def truth_panel(labels: np.ndarray, truth_path: Path, flat: list[int],
                palette: list[tuple[int, int, int]]) -> tuple[Image.Image, np.ndarray]:
    """Prediction and ground truth side by side (palette colours; ignored pixels white)."""
    truth = read_mask(truth_path, MAX_PIXELS, palette)
    if truth.shape != labels.shape:
        raise DataError(f"{truth_path}: mask size {truth.shape[1]}x{truth.shape[0]} != image size "
                        f"{labels.shape[1]}x{labels.shape[0]}")
    panel = Image.fromarray(np.concatenate([labels, truth.clip(0, 255).astype(np.uint8)], axis=1), mode="P")
    panel.putpalette(flat)
    return panel, truth


def image_iou(labels: np.ndarray, truth: np.ndarray, num_classes: int, ignore: int) -> float:
    confusion = ConfusionMatrix(num_classes, ignore_index=ignore)
    confusion.update(torch.from_numpy(labels.astype(np.int64)), torch.from_numpy(truth.astype(np.int64)))
    return float(confusion.compute()["miou"])
