"""Fusion and alignment ops: `add`, `concat`, `crop`, `scale`.

Inputs of `add`/`concat` at the same stride are aligned by cropping each one to the
`align` input (default: the first); the offsets come from the coordinate maps, so the
FCN skips' 5/9 and U-Net's crop-and-concat need no numbers in the spec.
"""

from __future__ import annotations

import operator
from typing import Literal

import torch
from pydantic import Field, model_validator

from ..errors import OpError
from .base import Coord, NodeId, NonNegInt, Op, crop_offset


def crop_to(x: torch.Tensor, ref: torch.Tensor, offset: int) -> torch.Tensor:
    """x[..., offset:offset+H_ref, offset:offset+W_ref], like Caffe's Crop layer (axis 2)."""
    return x[:, :, offset:offset + ref.shape[2], offset:offset + ref.shape[3]]


def check_fits(length: int, offset: int, target: int, what: str) -> None:
    if length < offset + target:
        raise OpError(f"{what} is {length} px, too small to crop {target} px at offset {offset}",
                      "in")


class Fuse(Op):
    """Common rules of `add` and `concat`: many inputs, aligned to one of them."""

    align: NodeId | None = Field(None, description="Input the others are cropped to (default: the first).")

    arity = (2, None)
    kind = "fuse"
    fill = "#ffffb2"
    shape = "ellipse"

    @model_validator(mode="after")
    def _align_is_input(self) -> Fuse:
        if self.align is not None and self.align not in self.inputs:
            raise ValueError(f"align '{self.align}' is not one of the inputs {self.inputs}")
        return self

    @property
    def ref_index(self) -> int:
        return self.inputs.index(self.align) if self.align else 0

    def offsets(self, ins, refs):
        target = ins[self.ref_index]
        return [crop_offset(c, target, f"input '{name}' to '{self.inputs[self.ref_index]}'")
                for name, c in zip(self.inputs, ins)]

    def coord(self, ins, refs):
        target = ins[self.ref_index]
        return Coord(target.scale, target.shift, max(c.rf for c in ins))

    def length(self, ins, refs, offsets):
        target = ins[self.ref_index]
        for name, n, off in zip(self.inputs, ins, offsets):
            check_fits(n, off, target, f"input '{name}'")
        return target

    def aligned(self, graph, args, offsets):
        """Each input cropped to the align input (which is left as it is)."""
        ref = args[self.ref_index]
        return [a if a is ref else graph.create_node("call_function", crop_to, (a, ref, off),
                                                    name=f"{a.name}_aligned")
                for a, off in zip(args, offsets)]


class Add(Fuse):
    """Element-wise sum (the FCN skip fusion)."""

    op: Literal["add"]

    def channels(self, ins, num_classes):
        if len(set(ins)) > 1:
            raise OpError(f"channel mismatch: inputs have {ins} channels", "in")
        return ins[0]

    def flops(self, ins, out, in_hw, out_hw):
        return (len(ins) - 1) * out * out_hw[0] * out_hw[1]

    def emit(self, graph, node_id, args, refs, offsets):
        terms = self.aligned(graph, args, offsets)
        total = terms[0]
        for i, term in enumerate(terms[1:], 2):
            name = node_id if i == len(terms) else f"{node_id}_{i}"
            total = graph.create_node("call_function", operator.add, (total, term), name=name)
        return total

    def label(self):
        return "sum"


class Concat(Fuse):
    """Channel concatenation (U-Net's copy-and-crop)."""

    op: Literal["concat"]

    def channels(self, ins, num_classes):
        return sum(ins)

    def emit(self, graph, node_id, args, refs, offsets):
        parts = self.aligned(graph, args, offsets)
        return graph.create_node("call_function", torch.cat, (parts,), {"dim": 1}, name=node_id)

    def label(self):
        return "concat"


class Crop(Op):
    """Crop to the size of node `to`; the offset is derived from the coordinate maps unless given."""

    op: Literal["crop"]
    to: NodeId = Field(description="Node whose spatial size the output takes.")
    offset: Literal["auto"] | NonNegInt = Field("auto", description="'auto' or pixels from the top-left.")

    kind = "crop"
    fill = "#d9d9d9"

    def refs(self):
        return {"to": self.to}

    def offsets(self, ins, refs):
        if self.offset != "auto":
            return [self.offset]
        return [crop_offset(ins[0], refs["to"], f"'{self.inputs[0]}' to '{self.to}'", "to")]

    def coord(self, ins, refs):
        c = ins[0]
        off = self.offsets(ins, refs)[0]
        return Coord(c.scale, c.shift + c.scale * off, c.rf)

    def length(self, ins, refs, offsets):
        check_fits(ins[0], offsets[0], refs["to"], f"input '{self.inputs[0]}'")
        return refs["to"]

    def emit(self, graph, node_id, args, refs, offsets):
        return graph.create_node("call_function", crop_to, (args[0], refs["to"], offsets[0]),
                                 name=node_id)

    def label(self):
        return f"crop to {self.to}"


class Scale(Op):
    """Multiply by a fixed constant (FCN-8s at-once scales pool4 by 0.01, pool3 by 0.0001)."""

    op: Literal["scale"]
    value: float = Field(description="The constant factor.")

    fill = "#f7f7f7"

    def flops(self, ins, out, in_hw, out_hw):
        return out * out_hw[0] * out_hw[1]

    def emit(self, graph, node_id, args, refs, offsets):
        return graph.create_node("call_function", operator.mul, (args[0], self.value), name=node_id)

    def label(self):
        return f"× {self.value:g}"
