"""What every op provides, and the arithmetic they share.

An op is a frozen pydantic model (its JSON schema) plus rules on one spatial axis: output
length, affine coordinate map to input pixels, receptive field; and its module builder,
fx emitter and diagram style. Axes are square throughout, so one 1-D rule serves H and W.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ..errors import OpError

if TYPE_CHECKING:
    import torch


# An identifier, or dotted parts for expanded block nodes (`layer2.0.conv1`, as torchvision names modules).
NodeId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")]
MAX_INT = 2**31 - 1  # no size, stride or pad is larger; bigger ones overflow the vectorised size scan
PosInt = Annotated[int, Field(ge=1, le=MAX_INT)]
NonNegInt = Annotated[int, Field(ge=0, le=MAX_INT)]


@dataclass(frozen=True)
class Coord:
    """Pixel i of a node is centred on input pixel `scale * i + shift`; `rf` is its field width.

    `gridless` marks a node after an adaptive pool: its pixels cover input regions that depend
    on the input size, so it has no per-pixel alignment until `upsample` with `to` restores one.
    """

    scale: Fraction
    shift: Fraction
    rf: Fraction
    gridless: bool = False

    @staticmethod
    def identity() -> Coord:
        return Coord(Fraction(1), Fraction(0), Fraction(1))

    def window(self, kernel: int, stride: int, pad: int, dilation: int = 1) -> Coord:
        """The map after a sliding window (conv or pool) over this node."""
        extent = dilation * (kernel - 1)
        if stride == 1 and extent == 2 * pad:  # a 'same' window: only the field grows (fast path)
            if not extent:  # 1x1: the same map
                return self
            return Coord(self.scale, self.shift, _plus(self.rf, extent, self.scale), self.gridless)
        return Coord(self.scale * stride, self.shift + self.scale * (Fraction(extent, 2) - pad),
                     _plus(self.rf, extent, self.scale), self.gridless)


def _plus(a: Fraction, n: int, scale: Fraction) -> Fraction:
    """a + n * scale; integers without Fraction arithmetic, which costs a microsecond per
    operation and would be most of a 100,000-conv chain's coordinate maps."""
    if a.denominator == 1 and scale.denominator == 1:
        return Fraction(a.numerator + n * scale.numerator)
    return a + n * scale


def window_length(n: int, kernel: int, stride: int, pad: int, dilation: int = 1,
                  ceil: bool = False) -> int:
    """Output length of a conv/pool window over n pixels; `ceil` rounds up as Caffe's pooling
    and PyTorch's ceil_mode do (they differ only when kernel < stride without padding, where
    PyTorch, which runs the model, also drops a window that would start past the input)."""
    if stride == 1:  # no rounding; one operation, since n may be a numpy vector (valid_sizes)
        grow = 2 * pad - dilation * (kernel - 1)
        return n + grow if grow else n  # a 'same' window: the vector itself, not a copy
    span = n + (2 * pad - dilation * (kernel - 1) - 1)
    if not ceil:
        return span // stride + 1
    out = -(-span // stride) + 1
    return out - ((out - 1) * stride >= n + pad)  # the last window must start inside the image


GRIDLESS_FIX = ("comes after an adaptive pool, so it has no per-pixel alignment; resize it with "
                "an `upsample` with `to: {target}` first")


def crop_offset(source: Coord, target: Coord, what: str, field: str = "in", fix: str = "",
                names: tuple[str, str] = ("the input", "the target")) -> int:
    """Offset that aligns `source` pixels with `target` pixels, derived as Caffe's coord_map did.

    `names` are the two nodes' ids and `fix` the options the caller offers, for the message."""
    for name, c in zip(names, (source, target)):
        if c.gridless:
            raise OpError(f"cannot align {what}: '{name}' " + GRIDLESS_FIX.format(target=names[1]), field)
    if source.scale is target.scale and source.shift is target.shift:
        return 0  # one map passed on by 'same' windows and fusions: no Fraction arithmetic to do
    if source.scale != target.scale:
        raise OpError(f"cannot align {what}: stride {source.scale} vs {target.scale}", field)
    offset = (target.shift - source.shift) / source.scale
    if offset.denominator != 1 or offset < 0:
        why = "negative" if offset < 0 else "not an integer"
        grids = (f"the grids differ: pixel 0 of '{names[0]}' is centred on input pixel "
                 f"{source.shift}, of '{names[1]}' on {target.shift}, at stride {source.scale}")
        if offset.denominator != 1:
            grids += " (half a pixel apart; hand-written PyTorch code ignores this)"
        raise OpError(f"cannot align {what}: crop offset {offset} is {why}; {grids}"
                      + (f"; fix: {fix}" if fix else ""), field)
    return int(offset)


class Op(BaseModel):
    """Base of every node model: `op` tag (in subclasses), `in` edges, shared rules."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    inputs_: NodeId | list[NodeId] = Field(alias="in", description="Input node id(s).")

    arity: ClassVar[tuple[int, int | None]] = (1, 1)
    kind: ClassVar[str] = "other"  # diagram category
    fill: ClassVar[str] = "#eeeeee"  # diagram fill colour
    shape: ClassVar[str] = "box"  # diagram node shape (graphviz)

    @property
    def inputs(self) -> list[str]:
        return [self.inputs_] if isinstance(self.inputs_, str) else list(self.inputs_)

    @property
    def name(self) -> str:
        return self.op  # type: ignore[attr-defined]

    def refs(self) -> dict[str, str]:
        """Nodes read for their size or alignment only, by field name."""
        return {}

    # -- static rules ----------------------------------------------------------------------
    def bind(self, ins: list[int]) -> Any:
        """This node's rules below (channels .. flops) for inputs of `ins` channels, with what they
        all derive from the fields worked out once (a conv's layers); the op itself for most ops.
        May raise the OpError that `channels` would."""
        return self

    def channels(self, ins: list[int], num_classes: int) -> int:
        return ins[0]

    def coord(self, ins: list[Coord], refs: dict[str, Coord]) -> Coord:
        return ins[0]

    def resolve_refs(self, nodes: dict[str, Op]) -> dict[str, str]:
        """`refs()`, plus nodes implied by them (an unpool reads its pool's input size)."""
        return self.refs()

    def residual(self, ins: list[Coord], refs: dict[str, Coord]) -> list[Fraction]:
        """Sub-pixel shift left between inputs aligned by size (`align_by: size`); else none."""
        return []

    def offsets(self, ins: list[Coord], refs: dict[str, Coord]) -> list[int]:
        """Per-input crop offsets (fusion and crop ops); empty for others."""
        return []

    def length(self, ins: list[int], refs: dict[str, int], offsets: list[int]) -> int:
        return ins[0]

    def exact(self, ins: list[int]) -> bool:
        """False when striding with floor rounding silently drops input pixels."""
        return True

    def normalised_sides(self, ins: list[int]) -> list[int]:
        """One axis's side of every map this node instance-normalises (torch needs more than one
        pixel there); none for most ops."""
        return []

    def params(self, ins: list[int], out: int) -> int:
        return 0

    def flops(self, ins: list[int], out: int, in_hw: list[tuple[int, int]],
              out_hw: tuple[int, int]) -> int:
        """Floating-point operations (a multiply-add counts 2) for one image."""
        return 0

    # -- build -----------------------------------------------------------------------------
    def build(self, ins: list[int], out: int) -> torch.nn.Module | None:
        """The node's module, or None for ops emitted as plain functions."""
        return None

    def emit(self, graph: Any, node_id: str, args: list[Any], refs: dict[str, Any],
             offsets: list[int]) -> Any:
        """Add this node to a torch.fx graph (last fx node named `node_id`); default: call its module."""
        return graph.create_node("call_module", node_id, tuple(args), name=node_id)

    def label(self) -> str:
        """A short description for tables and diagrams."""
        return self.name


def per_layer(value: Any, layers: int, field: str) -> list[Any]:
    """Broadcast an int (or 'same') to every layer of a stack, or check a list's length."""
    if isinstance(value, list):
        if len(value) != layers:
            raise OpError(f"has {len(value)} entries for {layers} layers", field)
        return value
    return [value] * layers


def ceil_div(a: int, b: int) -> int:
    return math.ceil(a / b)
