"""Run directory or checkpoint + images → palette PNG masks and overlays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .compile import compile_spec
from .data import normalise, palette_of
from .errors import DataError
from .io import atomic_write
from .spec import load_spec
from .train import checkpoint_path, load_checkpoint


def predict(source: Path, images: list[Path], out_dir: Path, device: str = "cpu") -> list[Path]:
    """Write <stem>.png (palette mask) and <stem>_overlay.png for each image; return the masks."""
    ckpt = checkpoint_path(source)
    state = load_checkpoint(ckpt, device)
    spec = load_spec(state["spec"])
    model = compile_spec(spec, device).eval()
    model.load_state_dict(state["model"])
    palette = palette_of(spec.data, spec.num_classes)
    flat = [v for colour in palette for v in colour] + [255, 255, 255] * (256 - len(palette))
    written = []
    for path in images:
        try:
            with Image.open(path) as img:
                rgb = np.asarray(img.convert("RGB"))
        except OSError:
            raise DataError(f"{path}: unreadable image") from None
        x = normalise(torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 255, spec.data)
        with torch.no_grad():
            labels = model(x[None].to(device)).argmax(1)[0].to(torch.uint8).cpu().numpy()  # [H, W]
        mask = Image.fromarray(labels, mode="P")
        mask.putpalette(flat)
        colour = np.asarray(mask.convert("RGB"))
        overlay = Image.fromarray((0.5 * rgb + 0.5 * colour).astype(np.uint8))
        target = out_dir / f"{path.stem}.png"
        for image, dest in ((mask, target), (overlay, out_dir / f"{path.stem}_overlay.png")):
            atomic_write(dest, lambda handle, image=image: image.save(handle, format="PNG"))
        written.append(target)
    return written
