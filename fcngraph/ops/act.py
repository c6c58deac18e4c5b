"""Activation and normalisation: the one ACTIVATIONS / NORMS table every op's `act` and
`norm` fields use, and the standalone `act` and `norm` ops.

Input: a tensor of C channels. Output: the same shape, per element (act) or normalised
over batch / channel groups / each image (norm).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from ..errors import OpError
from .base import Op, PosInt

if TYPE_CHECKING:
    from torch import nn


ActName = Literal["relu", "leaky_relu", "gelu", "silu", "elu", "tanh", "sigmoid", "softmax", "none"]
NormName = Literal["none", "batch", "group", "instance"]
LEAKY_SLOPE = 0.01  # PyTorch's default; the `act` op takes another `slope`

# inplace only where the input is a fresh tensor no other node reads (after a conv, add, ...);
# torch.nn comes in as the first argument: checking a spec never imports torch
# (tests/test_spec_language.py::test_validate_imports_no_torch)
ACTIVATIONS: dict[str, Callable[[Any, bool, float], nn.Module]] = {
    "relu": lambda nn, inplace, slope: nn.ReLU(inplace=inplace),
    "leaky_relu": lambda nn, inplace, slope: nn.LeakyReLU(slope, inplace=inplace),
    "gelu": lambda nn, inplace, slope: nn.GELU(),
    "silu": lambda nn, inplace, slope: nn.SiLU(inplace=inplace),
    "elu": lambda nn, inplace, slope: nn.ELU(inplace=inplace),
    "tanh": lambda nn, inplace, slope: nn.Tanh(),
    "sigmoid": lambda nn, inplace, slope: nn.Sigmoid(),
    "softmax": lambda nn, inplace, slope: nn.Softmax(dim=1),  # over channels
}


def make_act(name: str, inplace: bool = True, slope: float = LEAKY_SLOPE) -> nn.Module | None:
    """The activation module for an `act` field, or None for 'none'."""
    from torch import nn

    return None if name == "none" else ACTIVATIONS[name](nn, inplace, slope)


def check_norm(name: str, channels: int, groups: int, field: str = "norm_groups") -> None:
    if name == "group" and channels % groups:
        raise OpError(f"{channels} channels do not divide into {groups} groups", field)


def make_norm(name: str, channels: int, groups: int = 32) -> nn.Module | None:
    """The normalisation module for a `norm` field (affine, as torchvision's), or None."""
    from torch import nn

    if name == "batch":
        return nn.BatchNorm2d(channels)
    if name == "group":
        return nn.GroupNorm(groups, channels)
    if name == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    return None


def norm_params(name: str, channels: int) -> int:
    return 0 if name == "none" else 2 * channels  # weight and bias


def post(act: str, norm: str = "none", channels: int = 0, groups: int = 32) -> list[nn.Module]:
    """[norm] [act] modules that follow a layer, in that order."""
    modules = [make_norm(norm, channels, groups), make_act(act)]
    return [m for m in modules if m is not None]


class Act(Op):
    """A standalone activation (ReLU after a residual add, the sigmoid of an attention gate)."""

    op: Literal["act"]
    fn: ActName = Field(description="Activation function; softmax is over channels.")
    slope: float = Field(LEAKY_SLOPE, description="Negative slope of leaky_relu.")

    kind = "other"  # folded into its stage in compact diagrams, like dropout
    fill = "#e5f5e0"

    def flops(self, ins, out, in_hw, out_hw):
        return out * out_hw[0] * out_hw[1]

    def build(self, ins, out):
        from torch import nn

        return make_act(self.fn, inplace=False, slope=self.slope) or nn.Identity()  # input may be read elsewhere

    def label(self):
        return self.fn if self.fn != "leaky_relu" else f"leaky_relu {self.slope:g}"


class Norm(Op):
    """A standalone normalisation layer (batch, group or instance)."""

    op: Literal["norm"]
    kind_: Literal["batch", "group", "instance"] = Field(
        "batch", alias="norm", description="batch, group or instance normalisation.")
    groups: PosInt = Field(32, description="Groups for group norm.")

    kind = "norm"
    fill = "#dadaeb"

    def channels(self, ins, num_classes):
        check_norm(self.kind_, ins[0], self.groups, "groups")
        return ins[0]

    def params(self, ins, out):
        return norm_params(self.kind_, out)

    def normalised_sides(self, ins):
        return [ins[0]] if self.kind_ == "instance" else []

    def flops(self, ins, out, in_hw, out_hw):
        return 4 * out * out_hw[0] * out_hw[1]

    def build(self, ins, out):
        return make_norm(self.kind_, out, self.groups)

    def label(self):
        return f"{self.kind_}norm"
