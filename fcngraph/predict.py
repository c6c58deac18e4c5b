"""Run directory, checkpoint or exported .onnx (+ sidecar) + images → palette PNG masks and
overlays (any image size: inputs are padded to a valid size and the scores cropped back), and,
when a ground-truth mask is given, a prediction | truth panel and the image's IoU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .data import _open
from .errors import DataError
from .export import deploy_meta, load_model, onnx_predictor
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
    grey = predictor.meta["input"]["channels"] == 1
    written = []
    for path in images:
        with _open(path, MAX_PIXELS, "image") as img:
            pixels = np.asarray(img.convert("L" if grey else "RGB"))
        rgb = np.repeat(pixels[..., None], 3, -1) if pixels.ndim == 2 else pixels  # [H, W, 3] for overlays
        labels = predictor.labels(pixels)  # [H, W]
        mask = Image.fromarray(labels, mode="P")
        mask.putpalette(flat)
        colour = np.asarray(mask.convert("RGB"))
        outputs = [(mask, out_dir / f"{path.stem}.png"),
                   (Image.fromarray((0.5 * rgb + 0.5 * colour).astype(np.uint8)), out_dir / f"{path.stem}_overlay.png")]
        truth_path = masks_dir / f"{path.stem}.png" if masks_dir else None
        if truth_path is not None and truth_path.is_file():
            panel, truth = truth_panel(labels, truth_path, flat)
            outputs.append((panel, out_dir / f"{path.stem}_truth.png"))
            log(f"{path.name}: mIoU {image_iou(labels, truth, num_classes, ignore):.4f}")
        for image, dest in outputs:
            atomic_write(dest, lambda handle, image=image: image.save(handle, format="PNG"))
        written.append(outputs[0][1])
    return written


def truth_panel(labels: np.ndarray, truth_path: Path, flat: list[int]) -> tuple[Image.Image, np.ndarray]:
    """Prediction and ground truth side by side (palette colours; ignored pixels white)."""
    with _open(truth_path, MAX_PIXELS, "mask") as m:
        truth = np.asarray(m.convert("L") if m.mode not in ("P", "L") else m)
    if truth.shape != labels.shape:
        raise DataError(f"{truth_path}: mask size {truth.shape[1]}x{truth.shape[0]} != image size "
                        f"{labels.shape[1]}x{labels.shape[0]}")
    panel = Image.fromarray(np.concatenate([labels, truth.astype(np.uint8)], axis=1), mode="P")
    panel.putpalette(flat)
    return panel, truth


def image_iou(labels: np.ndarray, truth: np.ndarray, num_classes: int, ignore: int) -> float:
    confusion = ConfusionMatrix(num_classes, ignore_index=ignore)
    confusion.update(torch.from_numpy(labels.astype(np.int64)), torch.from_numpy(truth.astype(np.int64)))
    return float(confusion.compute()["miou"])
