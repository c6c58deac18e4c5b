"""Hand-written PyTorch versions of the shipped variant specs, the oracles of test_variant_specs.py.

Each is written from the paper's / reference implementation's layer description (the facts in
../shared/reference/variants-and-data-facts.md), not from the spec: the widely used bilinear U-Net,
Attention U-Net on the padded U-Net, UNet++ with deep supervision, SegNet (VGG16-BN, index
unpooling) and DeepLab-v1 LargeFOV. Weights are copied from the compiled spec by position and shape
(or by name where the names agree), see `copy_weights`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(cin: int, cout: int, bias: bool) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=bias), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def double_conv(cin: int, cout: int, mid: int | None = None, bias: bool = False) -> nn.Sequential:
    mid = mid or cout
    return nn.Sequential(*conv_bn_relu(cin, mid, bias), *conv_bn_relu(mid, cout, bias))


def copy_weights(compiled: nn.Module, hand: nn.Module, tags: tuple[str, ...] = ()) -> None:
    """Load the compiled spec's tensors into `hand` in state-dict order, each checked by shape;
    a tag in a compiled name must be in the matching hand name too (`w_g` and `w_x` have equal
    shapes, so only their names tell them apart)."""
    source, target = compiled.state_dict(), hand.state_dict()
    assert len(source) == len(target), (len(source), len(target))
    for (name, value), key in zip(source.items(), target):
        assert value.shape == target[key].shape, (name, key)
        assert all(tag in key for tag in tags if tag in name), (name, key)
    hand.load_state_dict(dict(zip(target, source.values())))


# -- U-Net, bilinear=True (the common PyTorch layout) --------------------------------------------
class Up(nn.Module):
    """x2 bilinear (align_corners), zero-pad to the skip, concat [skip, up], double conv."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = double_conv(cin, cout, cin // 2)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        dy, dx = skip.shape[2] - x.shape[2], skip.shape[3] - x.shape[3]
        x = F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        return self.conv(torch.cat([skip, x], 1))


class UNetBilinear(nn.Module):
    def __init__(self, cin: int = 3, classes: int = 2) -> None:
        super().__init__()
        self.inc = double_conv(cin, 64)
        self.downs = nn.ModuleList(double_conv(a, b) for a, b in ((64, 128), (128, 256), (256, 512), (512, 512)))
        self.ups = nn.ModuleList(Up(a, b) for a, b in ((1024, 256), (512, 128), (256, 64), (128, 64)))
        self.outc = nn.Conv2d(64, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(F.max_pool2d(skips[-1], 2)))
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        return self.outc(x)


# -- Attention U-Net on the padded U-Net --------------------------------------------------------
class AttentionGate(nn.Module):
    """x * sigmoid(BN(psi(relu(BN(W_g g) + BN(W_x x))))), psi broadcast over x's channels."""

    def __init__(self, channels: int, inner: int) -> None:
        super().__init__()
        self.w_g = nn.Sequential(nn.Conv2d(channels, inner, 1), nn.BatchNorm2d(inner))
        self.w_x = nn.Sequential(nn.Conv2d(channels, inner, 1), nn.BatchNorm2d(inner))
        self.psi = nn.Sequential(nn.Conv2d(inner, 1, 1), nn.BatchNorm2d(1), nn.Sigmoid())

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return x * self.psi(F.relu(self.w_g(g) + self.w_x(x)))  # [B, C, H, W] * [B, 1, H, W]


class AttentionUNet(nn.Module):
    """unet-padded (same-padded BN double convs, dropout after enc4/enc5, 2x2 up-convs) with a
    gate on every skip; parameters in execution order: enc1..5, then (up, gate, dec) per level."""

    def __init__(self, cin: int = 3, classes: int = 2) -> None:
        super().__init__()
        widths = [64, 128, 256, 512, 1024]
        self.encs = nn.ModuleList(double_conv(a, b) for a, b in zip([cin, *widths], widths))
        self.dec = nn.ModuleList()
        for c in reversed(widths[:-1]):  # 512, 256, 128, 64
            self.dec.append(nn.ModuleList([nn.ConvTranspose2d(2 * c, c, 2, 2), AttentionGate(c, c // 2),
                                           double_conv(2 * c, c)]))
        self.score = nn.Conv2d(64, classes, 1)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, enc in enumerate(self.encs):
            x = enc(F.max_pool2d(x, 2) if i else x)
            x = self.dropout(x) if i >= 3 else x
            skips.append(x)
        skips.pop()
        for up, gate, conv in self.dec:
            g = up(x)
            x = conv(torch.cat([gate(skips.pop(), g), g], 1))
        return self.score(x)


# -- UNet++ with deep supervision -----------------------------------------------------------------
class UNetPlusPlus(nn.Module):
    """X(i,0) down the encoder; X(i,j) = VGG block(cat[X(i,0..j-1), up(X(i+1,j-1))]); heads on X(0,1..4).
    Module names conv{i}_{j} and final{j}; `forward` returns [o1, o2, o3, o4]."""

    def __init__(self, cin: int = 3, classes: int = 2, widths=(32, 64, 128, 256, 512)) -> None:
        super().__init__()
        for i, w in enumerate(widths):
            setattr(self, f"conv{i}_0", double_conv(widths[i - 1] if i else cin, w, bias=True))
        for j in range(1, 5):
            for i in range(5 - j):
                setattr(self, f"conv{i}_{j}", double_conv(widths[i] * j + widths[i + 1], widths[i], bias=True))
        for j in range(1, 5):
            setattr(self, f"final{j}", nn.Conv2d(widths[0], classes, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        grid: dict[tuple[int, int], torch.Tensor] = {(0, 0): self.conv0_0(x)}
        for i in range(1, 5):
            grid[i, 0] = getattr(self, f"conv{i}_0")(F.max_pool2d(grid[i - 1, 0], 2))
        for j in range(1, 5):
            for i in range(5 - j):
                up = F.interpolate(grid[i + 1, j - 1], scale_factor=2, mode="bilinear", align_corners=True)
                grid[i, j] = getattr(self, f"conv{i}_{j}")(torch.cat([*(grid[i, k] for k in range(j)), up], 1))
        return [getattr(self, f"final{j}")(grid[0, j]) for j in range(1, 5)]


def unetplusplus_key(compiled_key: str) -> str:
    """`x0_1.3.weight` (the spec's X(0,1)) → `conv0_1.3.weight`; heads keep their names."""
    return "conv" + compiled_key[1:] if compiled_key.startswith("x") else compiled_key


# -- SegNet, VGG16-BN encoder ---------------------------------------------------------------------
VGG16 = [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]]


def conv_stack(cin: int, outs: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for cout in outs:
        layers += conv_bn_relu(cin, cout, bias=True)
        cin = cout
    return nn.Sequential(*layers)


class SegNet(nn.Module):
    def __init__(self, cin: int = 3, classes: int = 11) -> None:
        super().__init__()
        self.encoder = nn.ModuleList(conv_stack(a, outs) for a, outs in zip([cin, 64, 128, 256, 512], VGG16))
        # the decoder mirrors the encoder: stage s ends at the channels of encoder stage s - 1
        mirrored = [[512, 512, 512], [512, 512, 256], [256, 256, 128], [128, 64]]
        self.decoder = nn.ModuleList(conv_stack(outs[0], outs) for outs in mirrored)
        self.last = nn.Sequential(*conv_bn_relu(64, 64, bias=True), nn.Conv2d(64, classes, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stack = []
        for stage in self.encoder:
            x = stage(x)
            size = x.shape[2:]
            x, indices = F.max_pool2d(x, 2, 2, return_indices=True)
            stack.append((indices, size))
        for stage in [*self.decoder, self.last]:
            indices, size = stack.pop()
            x = stage(F.max_unpool2d(x, indices, 2, 2, output_size=size))
        return x


# -- DeepLab-v1 LargeFOV ----------------------------------------------------------------------------
class DeepLabLargeFOV(nn.Module):
    def __init__(self, cin: int = 3, classes: int = 21) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for stage, outs in enumerate(VGG16):
            dilation = 2 if stage == 4 else 1
            for cout in outs:
                layers += [nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation), nn.ReLU(inplace=True)]
                cin = cout
            layers.append(nn.MaxPool2d(3, 2 if stage < 3 else 1, 1, ceil_mode=True))
        self.features = nn.Sequential(*layers)
        self.fc6 = nn.Conv2d(512, 1024, 3, padding=12, dilation=12)
        self.fc7 = nn.Conv2d(1024, 1024, 1)
        self.fc8 = nn.Conv2d(1024, classes, 1)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        x = self.features(x)  # [B, 512, H/8, W/8] (rounded up)
        x = self.dropout(F.relu(self.fc6(x)))
        x = self.dropout(F.relu(self.fc7(x)))
        return F.interpolate(self.fc8(x), size=size, mode="bilinear", align_corners=True)
