"""Hand-written PyTorch blocks of common FCN/U-Net variants, written from the papers' layer
descriptions (ResNet BasicBlock, Oktay et al.'s attention gate, squeeze-excitation, PSPNet's
pyramid pooling, SegNet's index unpooling), with the equivalent spec of each: the oracles
for the new ops. Weights are copied in state-dict order (names differ, order and shapes match).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def copy_in_order(compiled: nn.Module, hand: nn.Module) -> None:
    """Load the compiled spec's tensors into `hand`, matched by position and checked by shape."""
    source, target = compiled.state_dict(), hand.state_dict()
    assert len(source) == len(target), (list(source), list(target))
    for (name, value), key in zip(source.items(), target):
        assert value.shape == target[key].shape, (name, key)
    hand.load_state_dict(dict(zip(target, source.values())))


def conv_bn(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)]


# -- ResNet BasicBlock (ReLU after the add) --------------------------------------------------
class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(*conv_bn(cin, cout, stride), nn.ReLU(inplace=True), *conv_bn(cout, cout))
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(self.body(x) + identity)


def residual_stack(width: int, blocks: int) -> tuple[nn.Module, dict]:
    """`blocks` BasicBlocks at `width`, then one stride-2 block to 2 x width with a downsample."""
    hand = nn.Sequential(*[BasicBlock(width, width) for _ in range(blocks)], BasicBlock(width, 2 * width, 2))
    nodes, prev = {}, "input"
    block = {"op": "conv", "pad": 1, "bias": False, "norm": "batch", "act": ["relu", "none"]}
    for i in range(blocks):
        nodes[f"b{i}_body"] = {**block, "in": prev, "out": [width, width]}
        nodes[f"b{i}"] = {"op": "add", "in": [f"b{i}_body", prev], "act": "relu"}
        prev = f"b{i}"
    nodes["d_body"] = {**block, "in": prev, "out": [2 * width] * 2, "stride": [2, 1]}
    nodes["d_down"] = {"op": "conv", "in": prev, "out": 2 * width, "kernel": 1, "stride": 2,
                       "bias": False, "norm": "batch", "act": "none"}
    nodes["d"] = {"op": "add", "in": ["d_body", "d_down"], "act": "relu"}
    spec = {"name": "residual-stack", "num_classes": 2, "input": {"channels": width},
            "nodes": nodes, "output": "d"}
    return hand, spec


# -- attention gate (Oktay et al. 2018) --------------------------------------------------------
class AttentionGate(nn.Module):
    """x: skip features; g: coarser gating features; alpha = sigmoid(psi(relu(theta x + phi g)))."""

    def __init__(self, cin: int, width: int) -> None:
        super().__init__()
        self.x = nn.Sequential(nn.Conv2d(cin, width, 3, padding=1), nn.ReLU(inplace=True))
        self.g = nn.Sequential(nn.Conv2d(width, 2 * width, 3, 2, 1), nn.ReLU(inplace=True))
        self.theta = nn.Conv2d(width, width // 2, 1, 2, bias=False)
        self.phi = nn.Conv2d(2 * width, width // 2, 1)
        self.psi = nn.Conv2d(width // 2, 1, 1)

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        x = self.x(inp)
        g = self.g(x)
        alpha = torch.sigmoid(self.psi(F.relu(self.theta(x) + self.phi(g))))  # [B, 1, H/2, W/2]
        alpha = F.interpolate(alpha, size=x.shape[2:], mode="bilinear", align_corners=False)
        return x * alpha


def attention_gate(cin: int = 3, width: int = 8) -> tuple[nn.Module, dict]:
    nodes = {
        "x": {"op": "conv", "in": "input", "out": width, "pad": 1},
        "g": {"op": "conv", "in": "x", "out": 2 * width, "stride": 2, "pad": 1},
        "theta": {"op": "conv", "in": "x", "out": width // 2, "kernel": 1, "stride": 2, "bias": False,
                  "act": "none"},
        "phi": {"op": "conv", "in": "g", "out": width // 2, "kernel": 1, "act": "none"},
        "f": {"op": "add", "in": ["theta", "phi"], "act": "relu"},
        "psi": {"op": "conv", "in": "f", "out": 1, "kernel": 1, "act": "sigmoid"},
        "alpha": {"op": "upsample", "in": "psi", "to": "x"},
        "gated": {"op": "mul", "in": ["x", "alpha"]},
    }
    return AttentionGate(cin, width), {"name": "attention-gate", "num_classes": 2,
                                       "input": {"channels": cin}, "nodes": nodes, "output": "gated"}


# -- squeeze-excitation ----------------------------------------------------------------------
class SqueezeExcite(nn.Module):
    def __init__(self, cin: int, width: int, reduction: int = 4) -> None:
        super().__init__()
        self.x = nn.Sequential(nn.Conv2d(cin, width, 3, padding=1), nn.ReLU(inplace=True))
        self.fc1 = nn.Conv2d(width, width // reduction, 1)
        self.fc2 = nn.Conv2d(width // reduction, width, 1)

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        x = self.x(inp)
        w = torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))  # [B, C, 1, 1]
        return x * w


def squeeze_excite(cin: int = 3, width: int = 8) -> tuple[nn.Module, dict]:
    nodes = {
        "x": {"op": "conv", "in": "input", "out": width, "pad": 1},
        "squeeze": {"op": "adaptive_pool", "in": "x", "size": 1},
        "fc1": {"op": "conv", "in": "squeeze", "out": width // 4, "kernel": 1},
        "fc2": {"op": "conv", "in": "fc1", "out": width, "kernel": 1, "act": "sigmoid"},
        "excite": {"op": "mul", "in": ["x", "fc2"]},
    }
    return SqueezeExcite(cin, width), {"name": "se", "num_classes": 2, "input": {"channels": cin},
                                       "nodes": nodes, "output": "excite"}


# -- PSPNet pyramid pooling module --------------------------------------------------------------
class Pyramid(nn.Module):
    def __init__(self, cin: int, width: int, bins: tuple[int, ...]) -> None:
        super().__init__()
        self.feat = nn.Sequential(nn.Conv2d(cin, width, 3, padding=1), nn.ReLU(inplace=True))
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(b), nn.Conv2d(width, width // 4, 1, bias=False),
                          nn.BatchNorm2d(width // 4), nn.ReLU(inplace=True)) for b in bins)

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        feat = self.feat(inp)
        ups = [F.interpolate(stage(feat), size=feat.shape[2:], mode="bilinear", align_corners=False)
               for stage in self.stages]
        return torch.cat([feat, *ups], 1)  # [B, 2 x width, H, W]


def pyramid(cin: int = 3, width: int = 8, bins: tuple[int, ...] = (1, 2, 3, 6)) -> tuple[nn.Module, dict]:
    nodes: dict = {"feat": {"op": "conv", "in": "input", "out": width, "pad": 1}}
    for b in bins:
        nodes[f"pool{b}"] = {"op": "adaptive_pool", "in": "feat", "size": b}
        nodes[f"conv{b}"] = {"op": "conv", "in": f"pool{b}", "out": width // 4, "kernel": 1,
                             "bias": False, "norm": "batch"}
        nodes[f"up{b}"] = {"op": "upsample", "in": f"conv{b}", "to": "feat"}
    nodes["ppm"] = {"op": "concat", "in": ["feat", *(f"up{b}" for b in bins)]}
    return Pyramid(cin, width, bins), {"name": "psp", "num_classes": 2, "input": {"channels": cin},
                                       "nodes": nodes, "output": "ppm"}


# -- SegNet pool / unpool pair ------------------------------------------------------------------
class SegNetPair(nn.Module):
    def __init__(self, cin: int, width: int) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(cin, width, 3, padding=1), nn.ReLU(inplace=True))
        self.pool = nn.MaxPool2d(2, 2, return_indices=True)
        self.mid = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True))
        self.unpool = nn.MaxUnpool2d(2, 2)
        self.dec = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True))

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        enc = self.enc(inp)
        pooled, indices = self.pool(enc)
        return self.dec(self.unpool(self.mid(pooled), indices, output_size=enc.shape[2:]))


def segnet_pair(cin: int = 3, width: int = 4) -> tuple[nn.Module, dict]:
    nodes = {
        "enc": {"op": "conv", "in": "input", "out": width, "pad": 1},
        "pool": {"op": "pool", "in": "enc", "indices": True},
        "mid": {"op": "conv", "in": "pool", "out": width, "pad": 1},
        "unpool": {"op": "unpool", "in": "mid", "indices_of": "pool"},
        "dec": {"op": "conv", "in": "unpool", "out": width, "pad": 1},
    }
    return SegNetPair(cin, width), {"name": "segnet-pair", "num_classes": 2, "input": {"channels": cin},
                                    "nodes": nodes, "output": "dec"}
