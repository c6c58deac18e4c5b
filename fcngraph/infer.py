"""Model → runner: a callable from an NCHW float32 batch to class scores, on a chosen backend.

Input: a compiled model (torch.nn.Module) or an exported .onnx file. Output: `Runner`
(numpy [B, C, H, W] float32 → numpy [B, K, H', W'] float32). Backends: 'torch' and
'onnxruntime' (imported only when used). The default is the fastest one installed, as
benchmarks/inference_backends.py measures it: onnxruntime when installed, else torch.
`Predictor` adds what a deployed model needs around it: normalisation, padding to a valid
input size and cropping back, the palette.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import FcngraphError
from .images import unit_scale

Runner = Callable[[np.ndarray], np.ndarray]
BACKENDS = ("torch", "onnxruntime")


class BackendError(FcngraphError):
    """A backend that is not installed, or cannot run this model."""


def available_backends() -> list[str]:
    return [b for b in BACKENDS if b == "torch" or importlib.util.find_spec(b) is not None]


def default_backend() -> str:
    """onnxruntime when installed: 0.4–0.9× the torch path's time on every benchmarked net
    (docs/performance.md); none of the torch-side options closed the gap."""
    return "onnxruntime" if "onnxruntime" in available_backends() else "torch"


@dataclass(frozen=True)
class TorchOptions:
    """Torch-path options. On CPU only inference_mode is kept (channels_last and torch.compile
    gave nothing measurable, docs/performance.md); the rest is for CUDA."""

    device: str = "cpu"
    amp: str = "none"  # none | bf16 | fp16 (CUDA autocast)
    channels_last: bool = False
    compile: bool = False
    cudnn_benchmark: bool = True


def torch_runner(model: torch.nn.Module, options: TorchOptions = TorchOptions()) -> Runner:
    device = torch.device(options.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BackendError(f"device '{options.device}' asked for, but CUDA is not available")
    if options.amp != "none" and device.type != "cuda":
        raise BackendError(f"amp '{options.amp}' needs a CUDA device")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = options.cudnn_benchmark
    layout = torch.channels_last if options.channels_last else torch.contiguous_format
    model = model.eval().to(device, memory_format=layout)
    forward = torch.compile(model) if options.compile else model
    dtype = torch.bfloat16 if options.amp == "bf16" else torch.float16

    def run(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))  # [B, C, H, W]
        x = x.to(device, non_blocking=True).contiguous(memory_format=layout)
        autocast = (torch.autocast(device.type, dtype=dtype) if options.amp != "none"
                    else contextlib.nullcontext())
        with torch.inference_mode(), autocast:
            scores = forward(x)  # [B, K, H', W']
        return scores.float().cpu().numpy()
    return run


def onnx_bytes(model: torch.nn.Module, channels: int, size: tuple[int, int] = (224, 224),
               opset: int = 17) -> bytes:
    """The model (eval mode, on CPU) as ONNX with dynamic batch and spatial axes."""
    model = model.eval().cpu()
    example = torch.zeros(1, channels, *size)  # [1, C, H, W]
    buffer = io.BytesIO()
    try:
        torch.onnx.export(model, (example,), buffer, dynamo=False, opset_version=opset,
                          input_names=["image"], output_names=["scores"],
                          dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                                        "scores": {0: "batch", 2: "height", 3: "width"}})
    except Exception as exc:  # the exporter's own errors are long; keep the first line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FcngraphError(f"ONNX export failed: {first}") from exc
    return buffer.getvalue()


def onnx_runner(model: bytes | Path, threads: int = 0) -> Runner:
    """An onnxruntime CPU session over an ONNX file or its bytes; `threads` 0 = its default."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise BackendError("backend 'onnxruntime' is not installed: pip install 'fcngraph[onnx]'") from None
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    source = str(model) if isinstance(model, Path) else model
    try:
        session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise BackendError(f"{model if isinstance(model, Path) else 'ONNX model'}: onnxruntime cannot "
                           f"load it ({str(exc).strip().splitlines()[0]})") from None
    name = session.get_inputs()[0].name

    def run(batch: np.ndarray) -> np.ndarray:
        return session.run(None, {name: np.ascontiguousarray(batch, dtype=np.float32)})[0]
    return run


def make_runner(model: torch.nn.Module | Path, backend: str | None = None, *, channels: int = 3,
                threads: int = 0, options: TorchOptions = TorchOptions()) -> Runner:
    """A runner for a compiled model or an .onnx file; backend None = `default_backend()`."""
    backend = backend or default_backend()
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend '{backend}' (choose from {', '.join(BACKENDS)})")
    if isinstance(model, Path):
        if backend != "onnxruntime":
            raise BackendError(f"{model}: an ONNX file runs on backend 'onnxruntime' only")
        return onnx_runner(model, threads)
    if backend == "onnxruntime":
        if options.device != "cpu":
            raise BackendError("backend 'onnxruntime' runs on CPU here; use --backend torch for CUDA")
        return onnx_runner(onnx_bytes(model, channels), threads)
    if threads:
        torch.set_num_threads(threads)
    return torch_runner(model, options)


class RunnerModule(torch.nn.Module):
    """A runner seen as a module on tensors, so code written for a model (padding, tiles, TTA)
    runs on any backend: scores = runner(x), as float32 tensors on the CPU."""

    def __init__(self, runner: Runner) -> None:
        super().__init__()
        self.runner = runner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.runner(x.float().cpu().numpy())))  # [B, K, H, W]


def on_backend(model: torch.nn.Module, backend: str | None, channels: int, device: str = "cpu") -> torch.nn.Module:
    """`model` itself on the torch path (or on a GPU), else wrapped to run on `backend`."""
    backend = backend or ("torch" if device != "cpu" else default_backend())
    if backend == "torch":
        return model
    return RunnerModule(make_runner(model.eval(), backend, channels=channels, options=TorchOptions(device)))


# -- deployment: normalisation, size fitting, palette -------------------------------------------
@dataclass(frozen=True)
class SizeFit:
    """How an arbitrary image side is fitted to the model: valid input sides are
    `min + k * step`; output pixel j sits on input pixel j + `shift`; output = input + `delta`.
    The image is padded by `shift` at top/left and up to the next valid side at bottom/right
    (zeros after normalisation, i.e. the mean colour), and the scores are cropped back."""

    min: int
    step: int
    shift: int
    delta: int

    def padded(self, n: int) -> int:
        """Smallest valid side that holds the image and yields an output covering it."""
        need = max(self.min, n - self.delta, n + self.shift)
        return self.min + -(-(need - self.min) // self.step) * self.step

    def to_json(self) -> dict[str, int]:
        return {"min": self.min, "step": self.step, "shift": self.shift, "delta": self.delta}


def size_fit(analysis: Any, limit: int = 1024) -> SizeFit:
    """Read the fitting rule off the static analysis (valid sides, output coordinate map)."""
    from .shapes import valid_sizes

    rule = valid_sizes(analysis, limit)
    sides = rule.exact or sorted(rule.outputs)
    gaps = {b - a for a, b in zip(sides, sides[1:])}
    deltas = {rule.outputs[n] - n for n in sides}
    coord = analysis.output.coord
    if not sides or len(gaps) > 1 or len(deltas) != 1 or coord.scale != 1 or coord.shift.denominator != 1:
        raise FcngraphError(f"'{analysis.spec.name}': valid input sizes follow no single step "
                            f"({rule.describe()}); cannot fit arbitrary images")
    return SizeFit(sides[0], gaps.pop() if gaps else 1, int(coord.shift), deltas.pop())


@dataclass
class Predictor:
    """A runner plus what is needed to turn an RGB image into a label map; `meta` is the
    deployment sidecar (what `fcngraph export` writes beside the .onnx)."""

    run: Runner
    meta: dict[str, Any]
    fit: SizeFit = field(init=False)

    def __post_init__(self) -> None:
        self.fit = SizeFit(**self.meta["size_fit"])

    @property
    def palette(self) -> list[tuple[int, int, int]]:
        return [tuple(c) for c in self.meta["palette"]]

    def normalise(self, rgb: np.ndarray) -> np.ndarray:
        """[H, W, C] (or grey [H, W]) uint8/uint16/float → float32 [C, H, W], as training normalised
        it: scaled to 0..1 by fcngraph.images' rule (uint8 / 255, uint16 / 65535, float as is)."""
        planes = rgb[..., None] if rgb.ndim == 2 else rgb  # [H, W, C]
        x = planes.astype(np.float32).transpose(2, 0, 1)  # [C, H, W]
        scale = unit_scale(planes.dtype)
        x = x / scale if scale != 1.0 else x
        norm = self.meta["normalise"]
        if norm["caffe_bgr"]:  # Caffe: BGR, 0..255, minus the BGR mean
            return x[::-1] * 255 - np.asarray(norm["mean"], np.float32)[:, None, None]
        mean, std = np.asarray(norm["mean"], np.float32), np.asarray(norm["std"], np.float32)
        if len(mean) != x.shape[0]:  # RGB statistics on a grey image: their average, as training did
            mean, std = np.full(x.shape[0], mean.mean(), np.float32), np.full(x.shape[0], std.mean(), np.float32)
        return (x - mean[:, None, None]) / std[:, None, None]

    def scores(self, rgb: np.ndarray) -> np.ndarray:
        """Class scores [K, H, W] for an image of any size (padded in, cropped out)."""
        x = self.normalise(rgb)
        h, w = x.shape[1:]
        fit, (ph, pw) = self.fit, (self.fit.padded(h), self.fit.padded(w))
        padded = np.zeros((1, x.shape[0], ph, pw), np.float32)  # [1, 3, H', W']
        padded[0, :, fit.shift:fit.shift + h, fit.shift:fit.shift + w] = x
        return self.run(padded)[0, :, :h, :w]  # [K, H, W]

    def labels(self, rgb: np.ndarray) -> np.ndarray:
        return self.scores(rgb).argmax(0).astype(np.uint8)  # [H, W]
