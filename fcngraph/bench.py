"""Timing helpers: forward and forward+backward of a model, measured by alternating runs.

Input: models built for the same input. Output: medians in ms and ratios, measured side by
side in one process (alternating so that drift in machine load hits both equally).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forward_step(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        with torch.no_grad():
            model(x)
    return step


def train_step(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor) -> Callable[[], None]:
    """Forward + summed cross-entropy + backward, as the FCN reference trains."""
    def step() -> None:
        model.zero_grad(set_to_none=True)
        out = model(x)
        outputs = out if isinstance(out, tuple) else (out,)  # auxiliary outputs train too
        loss = sum(F.cross_entropy(o, target, ignore_index=255, reduction="sum") for o in outputs)
        loss.backward()
    return step


def alternate(steps: dict[str, Callable[[], None]], reps: int, device: torch.device,
              warmup: int = 1) -> dict[str, list[float]]:
    """Run each step `reps` times, interleaved; return per-run milliseconds by name."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    _sync(device)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(reps):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            _sync(device)
            times[name].append((time.perf_counter() - start) * 1e3)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def ratio(times: dict[str, list[float]], numerator: str, denominator: str) -> float:
    """Median of per-round ratios: robust to slow rounds that hit both sides."""
    return statistics.median(a / b for a, b in zip(times[numerator], times[denominator]))
