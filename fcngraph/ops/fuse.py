"""Fusion and alignment ops: `add`, `concat`, `mul`, `crop`, `scale`.

Inputs of `add`/`concat`/`mul` at the same stride are aligned by cropping each one to the
`align` input (default: the first); the offsets come from the coordinate maps, so the
FCN skips' 5/9 and U-Net's crop-and-concat need no numbers in the spec. `align_by: size`
opts out, cropping from the top-left like hand-written code (`x[..., :H, :W]`). `mul`
broadcasts 1-channel gates and global (1x1, grid-less) inputs, as attention and SE need.
"""

from __future__ import annotations

import operator
from fractions import Fraction
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from ..errors import OpError
from .act import ActName, make_act
from .base import Coord, NodeId, NonNegInt, Op, crop_offset

if TYPE_CHECKING:  # torch is imported where modules are built: checking a spec never needs it
    import torch


def crop_to(x: torch.Tensor, ref: torch.Tensor, offset: int) -> torch.Tensor:
    """x[..., offset:offset+H_ref, offset:offset+W_ref], like Caffe's Crop layer (axis 2)."""
    return x[:, :, offset:offset + ref.shape[2], offset:offset + ref.shape[3]]


BROADCAST = -1  # the offset of a mul input that multiplies every pixel (grid-less, 1x1)


def check_fits(length: int, offset: int, target: int, what: str) -> Any:
    """True if `target` px at `offset` fit in `length`, else OpError. On numpy vectors of lengths
    (valid_sizes scans every side at once) the mask of sides where it fits: no branch on it."""
    fits = length >= offset + target
    if isinstance(fits, np.ndarray):
        return fits
    if not fits:
        raise OpError(f"{what} is {length} px, too small to crop {target} px at offset {offset}",
                      "in")
    return True


def where_fits(fits: Any, length: Any) -> Any:
    """`length`, or on vectors 0 (the node does not run) on the sides where an input did not fit."""
    return length if fits is True or fits.all() else np.where(fits, length, 0)


class Fuse(Op):
    """Common rules of `add`, `concat` and `mul`: many inputs, aligned to one of them."""

    align: NodeId | None = Field(None, description="Input the others are cropped to (default: the first).")
    align_by: Literal["coords", "size"] = Field(
        "coords", description="coords: crop offsets from the coordinate maps; size: crop from the "
        "top-left to the align input's size as hand-written code does (sub-pixel shifts are kept).")
    act: ActName = Field("none", description="Activation after the fusion (ReLU after a residual add).")

    arity = (2, None)
    kind = "fuse"
    fill = "#ffffb2"
    shape = "ellipse"
    broadcasts: ClassVar[bool] = False  # mul: a grid-less 1x1 input multiplies every pixel

    @model_validator(mode="after")
    def _align_is_input(self) -> Fuse:
        if self.align is not None and self.align not in self.inputs:
            raise ValueError(f"align '{self.align}' is not one of the inputs {self.inputs}")
        return self

    def ref_index(self, gridless: list[bool]) -> int:
        if self.align:
            return self.inputs.index(self.align)
        if self.broadcasts:  # the first input with a pixel grid
            return next((i for i, g in enumerate(gridless) if not g), 0)
        return 0

    def _ref_of(self, offsets: list[int]) -> int:
        return self.ref_index([off == BROADCAST for off in offsets])

    def _target(self, ins: list[Coord]) -> tuple[int, Coord]:
        index = self.ref_index([c.gridless and self.broadcasts for c in ins])
        return index, ins[index]

    def _broadcast(self, c: Coord) -> bool:
        return self.broadcasts and c.gridless

    def offsets(self, ins, refs):
        index, target = self._target(ins)
        ref = self.inputs[index]
        fix = (f"resize with an `upsample` with `to: {ref}`, or set `align_by: \"size\"` on this node "
               "to align by size (top-left) as hand-written code does")
        offsets = []
        for name, c in zip(self.inputs, ins):
            if name == ref or self._broadcast(c):
                offsets.append(0 if name == ref else BROADCAST)
                continue
            by_size = not (c.gridless or target.gridless) and c.scale == target.scale
            if self.align_by == "size" and by_size:  # top-left crop, as x[..., :H, :W] does
                offsets.append(0)
                continue
            offsets.append(crop_offset(c, target, f"input '{name}' to '{ref}'", fix=fix,
                                       names=(name, ref)))
        return offsets

    def residual(self, ins, refs):
        if self.align_by != "size":
            return []
        target = self._target(ins)[1]
        return [Fraction(0) if self._broadcast(c) else (target.shift - c.shift) / c.scale for c in ins]

    def coord(self, ins, refs):
        target = self._target(ins)[1]
        return Coord(target.scale, target.shift, max(c.rf for c in ins), target.gridless)

    def length(self, ins, refs, offsets):
        target, fits = ins[self._ref_of(offsets)], True
        for name, n, off in zip(self.inputs, ins, offsets):
            if off == 0 and n is target:  # the align input, or one of the very same lengths: fits
                continue
            if off != BROADCAST:
                fits = fits & check_fits(n, off, target, f"input '{name}'")
            elif isinstance(n, np.ndarray):  # every side at once (valid_sizes)
                fits = fits & (n == 1)
            elif n != 1:
                raise OpError(f"input '{name}' has no pixel grid (adaptive pool) and is {n} px, "
                              "not 1 px; only a global input broadcasts", "in")
        return where_fits(fits, target)

    def aligned(self, graph, args, offsets):
        """Each input cropped to the align input (which is left as it is)."""
        ref = args[self._ref_of(offsets)]
        return [a if a is ref or off == BROADCAST else graph.create_node("call_function", crop_to, (a, ref, off),
                                                    name=f"{a.name}_aligned")
                for a, off in zip(args, offsets)]

    def build(self, ins, out):
        return make_act(self.act)  # in place: the fused tensor is new

    def emit(self, graph, node_id, args, refs, offsets):
        name = f"{node_id}_pre" if self.act != "none" else node_id
        value = self.combine(graph, name, self.aligned(graph, args, offsets))
        if self.act == "none":
            return value
        return graph.create_node("call_module", node_id, (value,), name=node_id)

    def combine(self, graph, name, terms):
        raise NotImplementedError

    def with_act(self, text: str) -> str:
        return text if self.act == "none" else f"{text} + {self.act}"


def chain(graph, name, fn, terms):
    """fn(fn(t0, t1), t2) ..., the last fx node named `name`."""
    total = terms[0]
    for i, term in enumerate(terms[1:], 2):
        total = graph.create_node("call_function", fn, (total, term),
                                  name=name if i == len(terms) else f"{name}_{i}")
    return total


class Add(Fuse):
    """Element-wise sum (the FCN skip fusion)."""

    op: Literal["add"]

    def channels(self, ins, num_classes):
        if len(set(ins)) > 1:
            raise OpError(f"channel mismatch: inputs have {ins} channels", "in")
        return ins[0]

    def flops(self, ins, out, in_hw, out_hw):
        return (len(ins) - 1) * out * out_hw[0] * out_hw[1]

    def combine(self, graph, name, terms):
        return chain(graph, name, operator.add, terms)

    def label(self):
        return self.with_act("sum")


class Concat(Fuse):
    """Channel concatenation (U-Net's copy-and-crop)."""

    op: Literal["concat"]

    def channels(self, ins, num_classes):
        return sum(ins)

    def combine(self, graph, name, terms):
        import torch

        return graph.create_node("call_function", torch.cat, (terms,), {"dim": 1}, name=name)

    def label(self):
        return self.with_act("concat")


class Mul(Fuse):
    """Element-wise product with broadcasting: a 1-channel gate times C channels (attention),
    or a C x 1 x 1 global descriptor times C x H x W (squeeze-excitation)."""

    op: Literal["mul"]

    broadcasts: ClassVar[bool] = True

    def channels(self, ins, num_classes):
        widest = max(ins)
        if any(c not in (1, widest) for c in ins):
            raise OpError(f"channel mismatch: inputs have {ins} channels (each must be 1 or {widest})",
                          "in")
        return widest

    def flops(self, ins, out, in_hw, out_hw):
        return (len(ins) - 1) * out * out_hw[0] * out_hw[1]

    def combine(self, graph, name, terms):
        return chain(graph, name, operator.mul, terms)

    def label(self):
        return self.with_act("×")


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
        return [crop_offset(ins[0], refs["to"], f"'{self.inputs[0]}' to '{self.to}'", "to",
                            fix=f"`upsample` with `to: {self.to}` instead of a crop",
                            names=(self.inputs[0], self.to))]

    def coord(self, ins, refs):
        c = ins[0]
        off = self.offsets(ins, refs)[0]
        return Coord(c.scale, c.shift + c.scale * off, c.rf)

    def length(self, ins, refs, offsets):
        return where_fits(check_fits(ins[0], offsets[0], refs["to"], f"input '{self.inputs[0]}'"), refs["to"])

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
