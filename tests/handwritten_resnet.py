"""Hand-written PyTorch ResNet-18/34 segmentation nets, the oracles of the shipped ResNet specs.

Written from the layer descriptions in ../shared/reference/variants-and-data-facts.md (He et al.'s
ResNet in torchvision's layout; segmentation_models_pytorch's Unet and Linknet layouts; FPN,
PSPNet and DeepLabv3 heads as each spec's description states), not generated from the specs.
Each module registers its layers in the spec's node order, so weights copy over by position.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(cin: int, cout: int, kernel: int = 3, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (kernel - 1) // 2
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=pad, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class BasicBlock(nn.Module):
    """conv3x3(stride)-BN-ReLU, conv3x3-BN, + shortcut, ReLU (torchvision's names)."""

    def __init__(self, cin: int, width: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 3, stride, dilation, dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, dilation, dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = None
        if stride != 1 or cin != width:
            self.downsample = nn.Sequential(nn.Conv2d(cin, width, 1, stride, bias=False), nn.BatchNorm2d(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))  # N×width×H/s×W/s
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    """ResNet-18/34 without avgpool/fc; `dilations` turns stage strides into dilation (DeepLab/PSPNet)."""

    def __init__(self, blocks: list[int], dilations: tuple[int, ...] = (1, 1, 1, 1)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        cin = 64
        for stage, (count, width, dilation) in enumerate(zip(blocks, (64, 128, 256, 512), dilations), 1):
            stride = 2 if stage > 1 and dilation == 1 else 1
            layer = [BasicBlock(cin, width, stride, dilation)]
            layer += [BasicBlock(width, width, 1, dilation) for _ in range(count - 1)]
            setattr(self, f"layer{stage}", nn.Sequential(*layer))
            cin = width

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stem = F.relu(self.bn1(self.conv1(x)))  # N×64×H/2×W/2
        features = [stem]
        y = F.max_pool2d(stem, 3, 2, 1)  # N×64×H/4×W/4
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            y = stage(y)
            features.append(y)
        return features  # stem, layer1 (/4), layer2 (/8), layer3, layer4


def crop(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return x[..., :like.shape[2], :like.shape[3]]  # top-left, as hand-written decoders do


def up2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


def resize(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


class UNet(nn.Module):
    """segmentation_models_pytorch's Unet layout: decoder 256/128/64/32/16, conv3x3 head."""

    def __init__(self, blocks: list[int], classes: int = 1) -> None:
        super().__init__()
        self.encoder = ResNet(blocks)
        ins, skips, outs = (512, 256, 128, 64, 32), (256, 128, 64, 64, 0), (256, 128, 64, 32, 16)
        self.decoder = nn.ModuleList(
            nn.Sequential(conv_bn_relu(cin + skip, cout), conv_bn_relu(cout, cout))
            for cin, skip, cout in zip(ins, skips, outs))
        self.head = nn.Conv2d(16, classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder(x)
        y, skips = features[-1], features[-2::-1]  # layer3, layer2, layer1, stem
        for i, block in enumerate(self.decoder):
            y = up2(y)
            if i < len(skips):
                y = torch.cat([crop(y, skips[i]), skips[i]], dim=1)
            y = block(y)
        return self.head(y)  # N×classes×H×W (even H, W)


class LinkBlock(nn.Sequential):
    """LinkNet decoder block: 1x1 to C/4, tconv x2, 1x1 to cout; BN + ReLU after each."""

    def __init__(self, cin: int, cout: int) -> None:
        mid = cin // 4
        super().__init__(conv_bn_relu(cin, mid, 1),
                         nn.ConvTranspose2d(mid, mid, 4, 2, 1), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
                         conv_bn_relu(mid, cout, 1))


class LinkNet(nn.Module):
    def __init__(self, blocks: list[int], classes: int = 1) -> None:
        super().__init__()
        self.encoder = ResNet(blocks)
        self.decoder = nn.ModuleList(LinkBlock(cin, cout) for cin, cout in
                                     [(512, 256), (256, 128), (128, 64), (64, 64), (64, 32)])
        self.head = nn.Conv2d(32, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder(x)
        y, skips = features[-1], features[-2::-1]
        for i, block in enumerate(self.decoder):
            y = block(y)
            if i < len(skips):
                y = crop(y, skips[i]) + skips[i]
        return self.head(y)


class FPN(nn.Module):
    """Laterals 1x1 256, top-down nearest x2 + add, 3x3 smoothing to 128 + BN + ReLU, summed at P2."""

    def __init__(self, blocks: list[int], classes: int = 1) -> None:
        super().__init__()
        self.encoder = ResNet(blocks)
        self.lateral = nn.ModuleList(nn.Conv2d(c, 256, 1) for c in (512, 256, 128, 64))  # P5..P2
        self.smooth = nn.ModuleList(conv_bn_relu(256, 128) for _ in range(4))
        self.classifier = nn.Conv2d(128, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder(x)[:0:-1]  # layer4, layer3, layer2, layer1
        laterals = [conv(f) for conv, f in zip(self.lateral, features)]
        pyramid = [laterals[0]]  # P5, P4, P3, P2
        for lateral in laterals[1:]:
            pyramid.append(crop(up2(pyramid[-1]), lateral) + lateral)
        smoothed = [conv(p) for conv, p in zip(self.smooth, pyramid)]
        p2 = smoothed[-1]
        merged = p2 + sum(resize(s, p2) for s in reversed(smoothed[:-1]))  # N×128×H/4×W/4
        return resize(self.classifier(merged), x)


class PSPNet(nn.Module):
    """Dilated ResNet (output stride 8), pyramid pooling 1/2/3/6, aux head on layer3."""

    def __init__(self, blocks: list[int], classes: int = 1) -> None:
        super().__init__()
        self.encoder = ResNet(blocks, (1, 1, 2, 4))
        self.bins = (1, 2, 3, 6)
        self.stages = nn.ModuleList(conv_bn_relu(512, 128, 1) for _ in self.bins)
        self.bottleneck = conv_bn_relu(1024, 512)
        self.classifier = nn.Conv2d(512, classes, 1)
        self.aux_conv = conv_bn_relu(256, 256)
        self.aux_classifier = nn.Conv2d(256, classes, 1)

    def forward(self, x: torch.Tensor):
        *_, c3, c4 = self.encoder(x)  # both N×C×H/8×W/8
        pooled = [resize(conv(F.adaptive_avg_pool2d(c4, size)), c4) for conv, size in zip(self.stages, self.bins)]
        out = resize(self.classifier(self.bottleneck(torch.cat([c4, *pooled], dim=1))), x)
        if not self.training:
            return out
        return out, resize(self.aux_classifier(self.aux_conv(c3)), x)


class DeepLabV3(nn.Module):
    """Dilated ResNet (output stride 16), ASPP 1x1 + 3x3 rates 6/12/18 + image pooling, 256 each."""

    def __init__(self, blocks: list[int], classes: int = 1) -> None:
        super().__init__()
        self.encoder = ResNet(blocks, (1, 1, 1, 2))
        self.branches = nn.ModuleList([conv_bn_relu(512, 256, 1)] + [conv_bn_relu(512, 256, 3, r) for r in (6, 12, 18)])
        self.pool_conv = conv_bn_relu(512, 256, 1)
        self.project = conv_bn_relu(1280, 256, 1)
        self.classifier = nn.Conv2d(256, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c4 = self.encoder(x)[-1]  # N×512×H/16×W/16
        image = resize(self.pool_conv(F.adaptive_avg_pool2d(c4, 1)), c4)
        y = self.project(torch.cat([b(c4) for b in self.branches] + [image], dim=1))
        return resize(self.classifier(y), x)
