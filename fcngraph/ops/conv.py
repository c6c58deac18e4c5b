"""Convolution ops: `conv` (a stack of convs at one resolution) and `score` (1x1 to classes).

Each layer is Conv2d [+ norm] [+ activation], flattened into one nn.Sequential so that
weights read `conv1.0.weight`, `conv1.2.weight`, ... as in torchvision's VGG features.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, NamedTuple

from pydantic import Field

from ..errors import OpError
from .act import ActName, NormName, check_norm, norm_params, post
from .base import Coord, NonNegInt, Op, PosInt, per_layer, window_length

if TYPE_CHECKING:
    from torch import nn


Init = Literal["default", "kaiming", "zeros", "normal"]


Window = tuple[int, int, int, int]  # kernel, stride, pad, dilation


class Layer(NamedTuple):
    cin: int
    cout: int
    kernel: int
    stride: int
    pad: int
    dilation: int
    norm: str
    act: str


def init_conv(conv: nn.Module, how: str) -> None:
    """Initialise a conv's weight and bias; 'default' keeps PyTorch's own init."""
    from torch import nn

    if how == "default":
        return
    if how == "zeros":
        nn.init.zeros_(conv.weight)
    elif how == "kaiming":  # U-Net: std sqrt(2 / fan_in)
        nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
    elif how == "normal":
        nn.init.normal_(conv.weight, std=0.01)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


class Conv(Op):
    """A stack of convolutions at one resolution (a VGG stage, a U-Net double conv, fc6)."""

    op: Literal["conv"]
    out: PosInt | Annotated[list[PosInt], Field(min_length=1)] = Field(
        description="Output channels, one int per layer.")
    kernel: PosInt | list[PosInt] = Field(3, description="Kernel size (per layer or shared).")
    stride: PosInt | list[PosInt] = Field(1, description="Stride (per layer or shared).")
    pad: NonNegInt | list[NonNegInt] | Literal["same"] = Field(
        0, description="Zero padding, per layer, or 'same' to keep the size at stride 1.")
    dilation: PosInt | list[PosInt] = Field(1, description="Dilation (per layer or shared).")
    groups: PosInt = Field(1, description="Channel groups of every layer.")
    bias: bool = Field(True, description="Learn a bias per output channel.")
    norm: NormName | list[NormName] = Field(
        "none", description="Normalisation after each conv (per layer or shared).")
    norm_groups: PosInt = Field(32, description="Groups for norm 'group'.")
    act: ActName | list[ActName] = Field(
        "relu", description="Activation after each conv and norm (per layer or shared).")
    init: Init = Field("default", description="Weight init: PyTorch default, kaiming, zeros, normal.")

    kind = "conv"
    fill = "#9ecae1"

    def windows(self) -> list[Window]:
        """(kernel, stride, pad, dilation) per layer; channels play no part in geometry."""
        n = len(self.out) if isinstance(self.out, list) else 1
        if (isinstance(self.kernel, int) and isinstance(self.stride, int) and isinstance(self.pad, int)
                and isinstance(self.dilation, int)):  # one window for every layer, no 'same' to check
            return [(self.kernel, self.stride, self.pad, self.dilation)] * n
        windows = []
        for k, s, p, d in zip(per_layer(self.kernel, n, "kernel"), per_layer(self.stride, n, "stride"),
                              per_layer(self.pad, n, "pad"), per_layer(self.dilation, n, "dilation")):
            if p == "same":
                if s != 1 or (d * (k - 1)) % 2:
                    raise OpError("'same' needs stride 1 and an odd effective kernel", "pad")
                p = d * (k - 1) // 2
            windows.append((k, s, p, d))
        return windows

    @property
    def outs(self) -> list[int]:
        return self.out if isinstance(self.out, list) else [self.out]

    def layers(self, cin: int, windows: list[Window] | None = None) -> list[Layer]:
        """Every layer with its channels, checked against groups (`windows`: those of `windows()`)."""
        outs, groups, layers = self.outs, self.groups, []
        windows = self.windows() if windows is None else windows
        for cout, (k, s, p, d), norm, act in zip(outs, windows, per_layer(self.norm, len(outs), "norm"),
                                                  per_layer(self.act, len(outs), "act")):
            for c in (cin, cout) if groups > 1 else ():  # any count divides into one group
                if c % groups:
                    raise OpError(f"{c} channels do not divide into {groups} groups", "groups")
            check_norm(norm, cout, self.norm_groups)
            layers.append(Layer(cin, cout, k, s, p, d, norm, act))
            cin = cout
        return layers

    def bind(self, ins: list[int]) -> Stack:
        windows = self.windows()
        return Stack(self, self.layers(ins[0], windows), windows)

    # the rules: those that need channels read the layers (built per call here; once per node where
    # the analysis binds the node), the geometry only the windows
    def channels(self, ins, num_classes):
        return self.bind(ins).channels(ins, num_classes)

    def coord(self, ins, refs):
        return stack_coord(ins[0], self.windows())

    def length(self, ins, refs, offsets):
        return stack_length(ins[0], self.windows())

    def normalised_sides(self, ins):
        windows = self.windows()
        return instance_sides(ins[0], windows, per_layer(self.norm, len(windows), "norm"))

    def exact(self, ins):
        return stack_exact(ins[0], self.windows())

    def params(self, ins, out):
        return self.bind(ins).params(ins, out)

    def flops(self, ins, out, in_hw, out_hw):
        return self.bind(ins).flops(ins, out, in_hw, out_hw)

    def build(self, ins, out):
        from torch import nn

        modules: list[nn.Module] = []
        for layer in self.layers(ins[0]):
            conv = nn.Conv2d(layer.cin, layer.cout, layer.kernel, layer.stride, layer.pad,
                             layer.dilation, self.groups, bias=self.bias)
            init_conv(conv, self.init)
            modules += [conv, *post(layer.act, layer.norm, layer.cout, self.norm_groups)]
        return nn.Sequential(*modules)

    def label(self):
        outs = self.outs
        k = self.kernel if isinstance(self.kernel, int) else "/".join(map(str, self.kernel))
        return f"conv {k}x{k} ×{len(outs)}" if len(outs) > 1 else f"conv {k}x{k}"


def stack_coord(c: Coord, windows: list[Window]) -> Coord:
    for k, s, p, d in windows:
        c = c.window(k, s, p, d)
    return c


def instance_sides(n: Any, windows: list[Window], norms: list[str]) -> list[Any]:
    """The side of each layer's output that an instance norm follows (every layer's: a later one
    may be larger again), for an input side n."""
    sides = []
    if "instance" in norms:
        for norm, (k, s, p, d) in zip(norms, windows):
            n = window_length(n, k, s, p, d)
            sides += [n] if norm == "instance" else []
    return sides


def stack_length(n: Any, windows: list[Window]) -> Any:
    for k, s, p, d in windows:
        n = window_length(n, k, s, p, d)
    return n


def stack_exact(n: Any, windows: list[Window]) -> Any:
    exact = True  # `&`, not `if`: also runs on a numpy vector of lengths (valid_sizes)
    for k, s, p, d in windows:
        if s != 1:
            exact = exact & ((n + (2 * p - d * (k - 1) - 1)) % s == 0)
        n = window_length(n, k, s, p, d)
    return exact


class Stack:
    """A conv node bound to its input channels (`Conv.bind`): its layers, built once, and the rules
    that read them. The analysis asks each node for channels, coordinate map, lengths, parameters
    and FLOPs; rebuilding the layers for every question cost more than the rest of validating a
    100,000-node spec. Other questions (inputs, offsets) go to the op itself."""

    __slots__ = ("op", "layers", "windows")

    def __init__(self, op: Conv, layers: list[Layer], windows: list[Window]) -> None:
        self.op, self.layers, self.windows = op, layers, windows

    def channels(self, ins, num_classes):
        return self.layers[-1].cout

    def coord(self, ins, refs):
        return stack_coord(ins[0], self.windows)

    def length(self, ins, refs, offsets):
        return stack_length(ins[0], self.windows)

    def exact(self, ins):
        return stack_exact(ins[0], self.windows)

    def normalised_sides(self, ins):
        if len(self.layers) == 1 and self.layers[0].norm != "instance":  # the common case, at no cost
            return []
        return instance_sides(ins[0], self.windows, [layer.norm for layer in self.layers])

    def params(self, ins, out):
        total, groups, bias = 0, self.op.groups, int(self.op.bias)
        for layer in self.layers:
            total += layer.cin // groups * layer.kernel ** 2 * layer.cout
            total += layer.cout * bias + norm_params(layer.norm, layer.cout)
        return total

    def flops(self, ins, out, in_hw, out_hw):
        (h, w), total, groups = in_hw[0], 0, self.op.groups
        for cin, cout, k, s, p, d, _, _ in self.layers:
            h, w = window_length(h, k, s, p, d), window_length(w, k, s, p, d)
            total += 2 * cin // groups * k ** 2 * cout * h * w
        return total


class Score(Op):
    """1x1 convolution to `num_classes` scores; zero-initialised as in the FCN reference."""

    op: Literal["score"]
    bias: bool = Field(True, description="Learn a bias per class.")
    init: Init = Field("zeros", description="Weight init (the FCN reference zeroes score layers).")

    kind = "score"
    fill = "#fdae6b"

    def channels(self, ins, num_classes):
        return num_classes

    def params(self, ins, out):
        return ins[0] * out + out * int(self.bias)

    def flops(self, ins, out, in_hw, out_hw):
        return 2 * ins[0] * out * out_hw[0] * out_hw[1]

    def build(self, ins, out):
        from torch import nn

        conv = nn.Conv2d(ins[0], out, 1, bias=self.bias)
        init_conv(conv, self.init)
        return conv

    def label(self):
        return "score 1x1"

