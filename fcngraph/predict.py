"""Run directory, checkpoint or exported .onnx (+ sidecar) + images → palette PNG masks and overlays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .errors import DataError
from .export import deploy_meta, load_model, onnx_predictor
from .infer import Predictor, TorchOptions, make_runner
from .io import atomic_write


def load_predictor(source: Path, backend: str | None = None, device: str = "cpu") -> Predictor:
    """An exported .onnx (with its sidecar), or a run directory / checkpoint on `backend`."""
    if source.suffix == ".onnx":
        return onnx_predictor(source)
    spec, model = load_model(source)
    backend = backend or ("torch" if device != "cpu" else None)  # onnxruntime runs on CPU here
    runner = make_runner(model, backend, channels=spec.input.channels, options=TorchOptions(device))
    return Predictor(runner, deploy_meta(spec))


def predict(source: Path, images: list[Path], out_dir: Path, device: str = "cpu",
            backend: str | None = None) -> list[Path]:
    """Write <stem>.png (palette mask) and <stem>_overlay.png for each image; return the masks."""
    predictor = load_predictor(source, backend, device)
    palette = predictor.palette
    flat = [v for colour in palette for v in colour] + [255, 255, 255] * (256 - len(palette))
    written = []
    for path in images:
        try:
            with Image.open(path) as img:
                rgb = np.asarray(img.convert("RGB"))
        except OSError:
            raise DataError(f"{path}: unreadable image") from None
        labels = predictor.labels(rgb)  # [H, W]
        mask = Image.fromarray(labels, mode="P")
        mask.putpalette(flat)
        colour = np.asarray(mask.convert("RGB"))
        overlay = Image.fromarray((0.5 * rgb + 0.5 * colour).astype(np.uint8))
        target = out_dir / f"{path.stem}.png"
        for image, dest in ((mask, target), (overlay, out_dir / f"{path.stem}_overlay.png")):
            atomic_write(dest, lambda handle, image=image: image.save(handle, format="PNG"))
        written.append(target)
    return written
