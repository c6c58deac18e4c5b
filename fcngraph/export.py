"""Spec or trained run → deployable ONNX: `<file>.onnx` plus a sidecar `<file>.onnx.json`.

The sidecar holds what predicting from the ONNX file alone needs: class names, palette,
normalisation (mean/std or Caffe BGR), the valid-input-size rule with how images are padded
and scores cropped, num_classes and the spec hash. Both files appear only when complete.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from .checkpoint import load_trained
from .compile import compile_spec
from .errors import FcngraphError
from .infer import Predictor, make_runner, onnx_bytes, size_fit
from .io import atomic_write, atomic_write_text, parse_json
from .shapes import analyze
from .spec import Spec, load_spec

SIDECAR_FORMAT = "fcngraph-onnx/1"


def sidecar_path(onnx: Path) -> Path:
    return onnx.with_name(onnx.name + ".json")


def class_names(spec: Spec) -> list[str]:
    from .data import SYNTHETIC_CLASSES, read_classes

    if spec.data.path is None and spec.num_classes == len(SYNTHETIC_CLASSES):
        return list(SYNTHETIC_CLASSES)
    names = read_classes(Path(spec.data.path))[0] if spec.data.path and Path(spec.data.path).is_dir() else None
    return list(names) if names else [f"class_{i}" for i in range(spec.num_classes)]


def deploy_meta(spec: Spec, classes: list[str] | None = None,
                palette: list[list[int]] | None = None) -> dict[str, Any]:
    """The sidecar's content for a spec (the same dict the run-side Predictor uses); `classes` and
    `palette` from a checkpoint win over what the spec's data folder says."""
    from .data import CAFFE_BGR_MEAN, palette_of
    from .shapes import valid_sizes

    analysis = analyze(spec)
    fit = size_fit(analysis)
    d = spec.data
    return {
        "format": SIDECAR_FORMAT,
        "spec": spec.name, "spec_hash": spec.digest(), "num_classes": spec.num_classes,
        "classes": list(classes) if classes else class_names(spec),
        "palette": [list(c) for c in (palette or palette_of(d, spec.num_classes))],
        "ignore_index": d.ignore_index,
        "normalise": {"caffe_bgr": d.caffe_bgr, "mean": list(CAFFE_BGR_MEAN if d.caffe_bgr else d.mean),
                      "std": None if d.caffe_bgr else list(d.std),
                      "rule": ("RGB/255 → BGR ×255 − mean" if d.caffe_bgr else
                               "(x − mean) / std, x = pixels in 0..1 (uint8 / 255, uint16 / 65535, float as is)")},
        "input": {"name": "image", "layout": "NCHW float32", "channels": spec.input.channels},
        "valid_sizes": valid_sizes(analysis).describe(),
        "size_fit": fit.to_json(),
        "padding": (f"pad each side's top/left by {fit.shift} and bottom/right up to the next side "
                    f"{fit.min} + k·{fit.step} with zeros after normalisation; crop the scores to "
                    f"[0, H) × [0, W)"),
    }


def load_model(source: Path) -> tuple[Spec, torch.nn.Module, dict[str, Any]]:
    """A spec file (fresh weights) or a run directory / checkpoint (trained weights, with the
    class names and palette the run trained with as `deploy_meta` overrides)."""
    if source.suffix == ".json":
        spec = load_spec(source)
        return spec, compile_spec(spec).eval(), {}
    trained = load_trained(source)
    return trained.spec, trained.model.eval(), trained.extras


def export_onnx(spec: Spec, path: Path, size: tuple[int, int] = (224, 224), opset: int = 17,
                model: torch.nn.Module | None = None, extras: dict[str, Any] | None = None) -> Path:
    """Write the model (eval mode; fresh weights unless `model` is given) to `path` and its
    sidecar beside it (`extras`: a checkpoint's classes/palette); returns `path`."""
    model = model if model is not None else compile_spec(spec).eval()
    meta = deploy_meta(spec, **(extras or {}))
    try:
        data = onnx_bytes(model, spec.input.channels, size, opset)
    except FcngraphError as exc:
        raise FcngraphError(f"'{spec.name}': {exc}") from exc
    atomic_write(path, lambda handle: handle.write(data))
    atomic_write_text(sidecar_path(path), json.dumps(meta, indent=2) + "\n")
    return path


def read_sidecar(onnx: Path) -> dict[str, Any]:
    path = sidecar_path(onnx)
    try:
        meta = parse_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FcngraphError(f"{path}: missing; an exported model needs its sidecar (fcngraph export writes "
                            "both)") from None
    except (OSError, ValueError) as exc:
        raise FcngraphError(f"{path}: not a sidecar ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != SIDECAR_FORMAT:
        raise FcngraphError(f"{path}: not a {SIDECAR_FORMAT} sidecar")
    return meta


def onnx_predictor(onnx: Path, threads: int = 0) -> Predictor:
    """A Predictor from an exported .onnx and its sidecar alone (no spec, no checkpoint)."""
    if not onnx.is_file():
        raise FcngraphError(f"{onnx}: no such ONNX file")
    return Predictor(make_runner(onnx, "onnxruntime", threads=threads), read_sidecar(onnx))
