"""Ops that keep channels and work per window or per element: `pool`, `lrn`, `dropout`.

`pool` rounds like Caffe when `ceil` is true (PyTorch's ceil_mode), which the FCN
reference nets need to keep every input pixel for any input size.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from torch import nn

from .base import NonNegInt, Op, PosInt, window_length


class Pool(Op):
    """Max or average pooling."""

    op: Literal["pool"]
    mode: Literal["max", "avg"] = Field("max", description="Max or average pooling.")
    kernel: PosInt = Field(2, description="Window size.")
    stride: PosInt | None = Field(None, description="Step; defaults to the kernel size.")
    pad: NonNegInt = Field(0, description="Implicit padding on each side.")
    ceil: bool = Field(False, description="Round the output size up, as Caffe does.")

    kind = "pool"
    fill = "#c7e9c0"
    shape = "invhouse"

    @model_validator(mode="after")
    def _pad_fits(self) -> Pool:
        if 2 * self.pad > self.kernel:  # PyTorch's own rule, checked before any tensor exists
            raise ValueError(f"pad {self.pad} is more than half of kernel {self.kernel}")
        return self

    @property
    def step(self) -> int:
        return self.stride or self.kernel

    def coord(self, ins, refs):
        return ins[0].window(self.kernel, self.step, self.pad)

    def length(self, ins, refs, offsets):
        return window_length(ins[0], self.kernel, self.step, self.pad, ceil=self.ceil)

    def exact(self, ins):
        return self.ceil or (ins[0] + 2 * self.pad - self.kernel) % self.step == 0

    def flops(self, ins, out, in_hw, out_hw):
        return self.kernel ** 2 * out * out_hw[0] * out_hw[1]

    def build(self, ins, out):
        if self.mode == "max":
            return nn.MaxPool2d(self.kernel, self.step, self.pad, ceil_mode=self.ceil)
        return nn.AvgPool2d(self.kernel, self.step, self.pad, ceil_mode=self.ceil)

    def label(self):
        return f"{self.mode}pool {self.kernel}/{self.step}"


class Lrn(Op):
    """Local response normalisation across channels (AlexNet); alpha is divided by size, as Caffe."""

    op: Literal["lrn"]
    size: PosInt = Field(5, description="Channels in the normalisation window.")
    alpha: float = Field(1e-4, description="Scale of the squared sum.")
    beta: float = Field(0.75, description="Exponent.")
    k: float = Field(1.0, description="Additive constant.")

    kind = "norm"
    fill = "#dadaeb"

    def flops(self, ins, out, in_hw, out_hw):
        return (self.size + 3) * out * out_hw[0] * out_hw[1]

    def build(self, ins, out):
        return nn.LocalResponseNorm(self.size, self.alpha, self.beta, self.k)


class Dropout(Op):
    """Dropout: element-wise as Caffe's, or whole channels (`channel`, nn.Dropout2d)."""

    op: Literal["dropout"]
    p: float = Field(0.5, ge=0.0, lt=1.0, description="Probability of dropping.")
    mode: Literal["element", "channel"] = Field("element", description="What is dropped.")

    kind = "other"
    fill = "#f0f0f0"

    def build(self, ins, out):
        return nn.Dropout(self.p) if self.mode == "element" else nn.Dropout2d(self.p)

    def label(self):
        return f"dropout {self.p}"
