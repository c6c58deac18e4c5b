"""Ops that keep channels and work per window or per element: `pool`, `unpool`,
`adaptive_pool`, `lrn`, `dropout`.

`pool` rounds like Caffe when `ceil` is true (PyTorch's ceil_mode), which the FCN
reference nets need to keep every input pixel for any input size; with `indices` a max
pool keeps its argmax positions for an `unpool` (SegNet), which restores the pool's input size.
`adaptive_pool` has a fixed output size, so its pixels have no fixed place in the input.
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field, model_validator

from ..errors import OpError
from .base import Coord, NodeId, NonNegInt, Op, PosInt, window_length

if TYPE_CHECKING:  # torch is imported where modules are built: checking a spec never needs it
    import torch


class Pool(Op):
    """Max or average pooling."""

    op: Literal["pool"]
    mode: Literal["max", "avg"] = Field("max", description="Max or average pooling.")
    kernel: PosInt = Field(2, description="Window size.")
    stride: PosInt | None = Field(None, description="Step; defaults to the kernel size.")
    pad: NonNegInt = Field(0, description="Implicit padding on each side.")
    ceil: bool = Field(False, description="Round the output size up, as Caffe does.")
    indices: bool = Field(False, description="Max only: keep the argmax positions for an `unpool`.")

    kind = "pool"
    fill = "#c7e9c0"
    shape = "invhouse"

    @model_validator(mode="after")
    def _pad_fits(self) -> Pool:
        if 2 * self.pad > self.kernel:  # PyTorch's own rule, checked before any tensor exists
            raise ValueError(f"pad {self.pad} is more than half of kernel {self.kernel}")
        if self.indices and self.mode != "max":
            raise ValueError("'indices' needs mode 'max'")
        return self

    @property
    def step(self) -> int:
        return self.stride or self.kernel

    def coord(self, ins, refs):
        return ins[0].window(self.kernel, self.step, self.pad)

    def length(self, ins, refs, offsets):
        return window_length(ins[0], self.kernel, self.step, self.pad, ceil=self.ceil)

    def exact(self, ins):
        if self.ceil or self.step == 1:  # nothing dropped (no vector arithmetic for valid_sizes)
            return True
        return (ins[0] + 2 * self.pad - self.kernel) % self.step == 0

    def flops(self, ins, out, in_hw, out_hw):
        return self.kernel ** 2 * out * out_hw[0] * out_hw[1]

    def build(self, ins, out):
        from torch import nn

        if self.mode == "max":
            return nn.MaxPool2d(self.kernel, self.step, self.pad, ceil_mode=self.ceil,
                                return_indices=self.indices)
        return nn.AvgPool2d(self.kernel, self.step, self.pad, ceil_mode=self.ceil)

    def emit(self, graph, node_id, args, refs, offsets):
        if not self.indices:
            return super().emit(graph, node_id, args, refs, offsets)
        pair = graph.create_node("call_module", node_id, tuple(args), name=f"{node_id}_with_indices")
        # an unpool finds the indices through this node's first argument (see Unpool.emit)
        return graph.create_node("call_function", operator.getitem, (pair, 0), name=node_id)

    def label(self):
        return f"{self.mode}pool {self.kernel}/{self.step}" + (" +idx" if self.indices else "")


def unpool_like(x: torch.Tensor, indices: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Max unpooling to `ref`'s spatial size (the pool's input), zeros elsewhere: what
    F.max_unpool2d computes, written as a scatter so that it exports to ONNX (ScatterElements)."""
    n, c = x.shape[:2]
    height, width = ref.shape[-2:]
    flat = x.new_zeros(n, c, height * width)  # [N, C, H*W]
    flat = flat.scatter(2, indices.flatten(2), x.flatten(2))  # indices are flat per channel
    return flat.view(n, c, height, width)  # [N, C, H, W]


class Unpool(Op):
    """Max unpooling with a named pool's indices (SegNet, DeconvNet): each value goes back to
    where its pool found the maximum; the output has the pool's input size."""

    op: Literal["unpool"]
    indices_of: NodeId = Field(description="The `pool` node (with `indices: true`) to invert.")

    kind = "upsample"
    fill = "#fcbba1"
    shape = "house"

    def refs(self):
        return {"indices_of": self.indices_of}

    def resolve_refs(self, nodes):
        pool = nodes.get(self.indices_of)
        if not isinstance(pool, Pool) or not pool.indices:
            raise OpError(f"'{self.indices_of}' is not a max `pool` with `indices: true`", "indices_of")
        return {"indices_of": self.indices_of, "size_of": pool.inputs[0]}

    def coord(self, ins, refs):
        if ins[0].scale != refs["indices_of"].scale:
            raise OpError(f"stride {ins[0].scale} differs from pool '{self.indices_of}''s "
                          f"{refs['indices_of'].scale}", "in")
        return refs["size_of"]

    def length(self, ins, refs, offsets):
        if isinstance(ins[0], np.ndarray):  # every side at once (valid_sizes): 0 where it does not run
            return np.where(ins[0] == refs["indices_of"], refs["size_of"], 0)
        if ins[0] != refs["indices_of"]:
            raise OpError(f"input is {ins[0]} px but pool '{self.indices_of}' gave {refs['indices_of']} px",
                          "in")
        return refs["size_of"]

    def flops(self, ins, out, in_hw, out_hw):
        return out * in_hw[0][0] * in_hw[0][1]

    def emit(self, graph, node_id, args, refs, offsets):
        pair = refs["indices_of"].args[0]  # the pool's fx output is getitem(pair, 0)
        indices = graph.create_node("call_function", operator.getitem, (pair, 1),
                                    name=f"{node_id}_indices")
        return graph.create_node("call_function", unpool_like, (args[0], indices, refs["size_of"]),
                                 name=node_id)

    def label(self):
        return f"unpool {self.indices_of}"


class AdaptivePool(Op):
    """Average or max pooling to a fixed output size (global pooling at 1, PSPNet's 1/2/3/6).

    Its output pixels cover input regions that depend on the input size, so they have no
    per-pixel alignment: `upsample` with `to` is the way back to a grid."""

    op: Literal["adaptive_pool"]
    mode: Literal["avg", "max"] = Field("avg", description="Average or max over each region.")
    size: PosInt = Field(1, description="Output side in pixels (1: global pooling).")

    kind = "pool"
    fill = "#a1d99b"
    shape = "invhouse"

    def coord(self, ins, refs):
        c = ins[0]
        return Coord(c.scale, c.shift, c.rf, gridless=True)  # rf: at least the input's

    def length(self, ins, refs, offsets):
        return self.size

    def flops(self, ins, out, in_hw, out_hw):
        return out * in_hw[0][0] * in_hw[0][1]

    def build(self, ins, out):
        from torch import nn

        return nn.AdaptiveAvgPool2d(self.size) if self.mode == "avg" else nn.AdaptiveMaxPool2d(self.size)

    def label(self):
        return f"adaptive {self.mode}pool → {self.size}x{self.size}"


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
        from torch import nn

        return nn.LocalResponseNorm(self.size, self.alpha, self.beta, self.k)


class Dropout(Op):
    """Dropout: element-wise as Caffe's, or whole channels (`channel`, nn.Dropout2d)."""

    op: Literal["dropout"]
    p: float = Field(0.5, ge=0.0, lt=1.0, description="Probability of dropping.")
    mode: Literal["element", "channel"] = Field("element", description="What is dropped.")

    kind = "other"
    fill = "#f0f0f0"

    def build(self, ins, out):
        from torch import nn

        return nn.Dropout(self.p) if self.mode == "element" else nn.Dropout2d(self.p)

    def label(self):
        return f"dropout {self.p}"
