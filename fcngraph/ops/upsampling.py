"""Upsampling ops: `tconv` (transposed conv, bilinear-initialised, optionally frozen, with
optional norm and activation, as LinkNet's decoder) and `upsample` (fixed bilinear/nearest
interpolation by a factor or to another node's size; `to` also restores a pixel grid).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from ..errors import OpError
from .act import ActName, check_norm, norm_params, post
from .base import Coord, NodeId, NonNegInt, Op, PosInt

if TYPE_CHECKING:  # torch is imported where modules are built: checking a spec never needs it
    import torch


def bilinear_kernel(size: int) -> torch.Tensor:
    """The 2-D bilinear interpolation filter of FCN's surgery.upsample_filt (size x size)."""
    import torch

    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    ramp = 1 - (torch.arange(size, dtype=torch.float64) - center).abs() / factor  # [size]
    return (ramp[:, None] * ramp[None, :]).float()  # [size, size]


class Tconv(Op):
    """Transposed convolution ("backwards-strided convolution", FCN §3.3)."""

    op: Literal["tconv"]
    factor: PosInt = Field(description="Upsampling factor (the stride).")
    kernel: PosInt | None = Field(None, description="Kernel size; defaults to 2 x factor.")
    pad: NonNegInt = Field(0, description="Padding (cropped from the output).")
    out: PosInt | None = Field(None, description="Output channels; defaults to the input's.")
    init: Literal["bilinear", "kaiming", "zeros", "default"] = Field(
        "bilinear", description="bilinear: class-diagonal interpolation filter (needs out == in).")
    learnable: bool = Field(True, description="False freezes the weights (Caffe lr_mult 0).")
    bias: bool = Field(False, description="Learn a bias (the FCN deconvs have none).")
    norm: Literal["none", "batch", "group", "instance"] = Field(
        "none", description="Normalisation after the transposed conv.")
    norm_groups: PosInt = Field(32, description="Groups for norm 'group'.")
    act: ActName = Field("none", description="Activation after the transposed conv (and norm).")

    kind = "tconv"
    fill = "#fc9272"
    shape = "house"

    @property
    def size(self) -> int:
        return self.kernel or 2 * self.factor

    @model_validator(mode="after")
    def _pad_fits(self) -> Tconv:
        if self.pad >= self.size:
            raise ValueError(f"pad {self.pad} must be smaller than kernel {self.size}")
        return self

    def channels(self, ins, num_classes):
        out = self.out or ins[0]
        if self.init == "bilinear" and out != ins[0]:
            raise OpError(f"bilinear init needs out == in channels ({out} != {ins[0]})", "init")
        check_norm(self.norm, out, self.norm_groups)
        return out

    def coord(self, ins, refs):
        c, k, s = ins[0], self.size, self.factor
        return Coord(c.scale / s, c.shift + c.scale * (self.pad - Fraction(k - 1, 2)) / s,
                     c.rf + c.scale * (math.ceil(k / s) - 1), c.gridless)

    def length(self, ins, refs, offsets):
        return (ins[0] - 1) * self.factor - 2 * self.pad + self.size

    def normalised_sides(self, ins):
        return [self.length(ins, {}, [])] if self.norm == "instance" else []

    def params(self, ins, out):
        return ins[0] * out * self.size ** 2 + out * int(self.bias) + norm_params(self.norm, out)

    def flops(self, ins, out, in_hw, out_hw):
        return 2 * ins[0] * out * self.size ** 2 * in_hw[0][0] * in_hw[0][1]

    def build(self, ins, out):
        import torch
        from torch import nn

        tconv = nn.ConvTranspose2d(ins[0], out, self.size, self.factor, self.pad, bias=self.bias)
        with torch.no_grad():
            if self.init == "bilinear":
                tconv.weight.zero_()
                tconv.weight[range(out), range(out)] = bilinear_kernel(self.size)  # class-diagonal
            elif self.init == "kaiming":
                nn.init.kaiming_normal_(tconv.weight, mode="fan_in", nonlinearity="relu")
            elif self.init == "zeros":
                tconv.weight.zero_()
            if tconv.bias is not None and self.init != "default":
                tconv.bias.zero_()
        tconv.requires_grad_(self.learnable)
        after = post(self.act, self.norm, out, self.norm_groups)
        return nn.Sequential(tconv, *after) if after else tconv  # weights `up.0.weight` then

    def label(self):
        extras = [x for x in (self.norm, self.act) if x != "none"]
        return (f"tconv ×{self.factor} k{self.size}" + ("" if self.learnable else " fixed")
                + "".join(f" + {x}" for x in extras))


def resize_like(x: torch.Tensor, ref: torch.Tensor, mode: str, align_corners: bool | None):
    """Interpolate x to ref's spatial size (the `upsample` op's `to` form)."""
    import torch.nn.functional as F

    return F.interpolate(x, size=ref.shape[-2:], mode=mode, align_corners=align_corners)


class Upsample(Op):
    """Fixed interpolation, by an integer factor or to the size of another node."""

    op: Literal["upsample"]
    factor: PosInt | None = Field(None, description="Integer upsampling factor.")
    to: NodeId | None = Field(None, description="Resize to this node's spatial size instead.")
    mode: Literal["bilinear", "nearest"] = Field("bilinear", description="Interpolation.")
    align_corners: bool = Field(False, description="Bilinear only: align corner pixels.")

    kind = "upsample"
    fill = "#fcbba1"
    shape = "house"

    @model_validator(mode="after")
    def _one_target(self) -> Upsample:
        if (self.factor is None) == (self.to is None):
            raise ValueError("give exactly one of 'factor' and 'to'")
        return self

    def refs(self):
        return {"to": self.to} if self.to else {}

    def coord(self, ins, refs):
        c = ins[0]
        if self.to:  # the ratio depends on the sizes; take the target's grid
            return Coord(refs["to"].scale, refs["to"].shift, c.rf + c.scale)
        f = self.factor
        # output pixel j samples input (j + 1/2) / f - 1/2 (half-pixel centres)
        return Coord(c.scale / f, c.shift + c.scale * Fraction(1 - f, 2 * f),
                     c.rf + c.scale * (self.mode == "bilinear"), c.gridless)

    def length(self, ins, refs, offsets):
        return refs["to"] if self.to else ins[0] * self.factor

    def flops(self, ins, out, in_hw, out_hw):
        return (7 if self.mode == "bilinear" else 1) * out * out_hw[0] * out_hw[1]

    def _align(self) -> bool | None:
        return self.align_corners if self.mode == "bilinear" else None

    def emit(self, graph, node_id, args, refs, offsets):
        import torch.nn.functional as F

        if self.to:
            return graph.create_node("call_function", resize_like,
                                     (args[0], refs["to"], self.mode, self._align()), name=node_id)
        return graph.create_node("call_function", F.interpolate, (args[0],), {
            "scale_factor": float(self.factor), "mode": self.mode, "align_corners": self._align()},
            name=node_id)

    def label(self):
        return f"{self.mode} ×{self.factor}" if self.factor else f"{self.mode} to {self.to}"
