"""Compiled spec → ONNX file (TorchScript-based exporter, dynamic batch and spatial axes)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from .compile import compile_spec
from .errors import FcngraphError
from .spec import Spec


def export_onnx(spec: Spec, path: Path, size: tuple[int, int] = (224, 224), opset: int = 17) -> Path:
    """Write `spec`'s model (eval mode) to `path`; the file appears only when complete."""
    model = compile_spec(spec).eval()
    example = torch.zeros(1, spec.input.channels, *size)  # [1, C, H, W]
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        staged = Path(tmp) / path.name
        try:
            torch.onnx.export(model, (example,), str(staged), dynamo=False, opset_version=opset,
                              input_names=["image"], output_names=["scores"],
                              dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                                            "scores": {0: "batch", 2: "height", 3: "width"}})
        except Exception as exc:  # the exporter's own errors are long; keep the first line
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise FcngraphError(f"ONNX export of '{spec.name}' failed: {first}") from exc
        staged.replace(path)
    return path
