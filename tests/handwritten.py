"""A hand-written PyTorch FCN-8s, written from the VGG16 / voc-fcn8s layer table in
../shared/reference/fcn-unet-facts.md (§1.1, §1.2): the oracle for the compiled spec.

Crop offsets 5, 9 and 31 are typed in here as literals, exactly as the reference nets carry
them; the compiled spec derives them from coordinate maps.
"""

from __future__ import annotations

import torch
from torch import nn


def vgg_stage(cin: int, cout: int, layers: int, first_pad: int = 1) -> nn.Sequential:
    modules: list[nn.Module] = []
    for i in range(layers):
        modules += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=first_pad if i == 0 else 1),
                    nn.ReLU(inplace=True)]
    return nn.Sequential(*modules)


class HandFCN8s(nn.Module):
    def __init__(self, num_classes: int = 21, width: int = 64, fc: int = 4096) -> None:
        super().__init__()
        w = width
        self.conv1 = vgg_stage(3, w, 2, first_pad=100)
        self.conv2 = vgg_stage(w, 2 * w, 2)
        self.conv3 = vgg_stage(2 * w, 4 * w, 3)
        self.conv4 = vgg_stage(4 * w, 8 * w, 3)
        self.conv5 = vgg_stage(8 * w, 8 * w, 3)
        self.pool = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.fc6 = nn.Sequential(nn.Conv2d(8 * w, fc, 7), nn.ReLU(inplace=True))
        self.drop6 = nn.Dropout(0.5)
        self.fc7 = nn.Sequential(nn.Conv2d(fc, fc, 1), nn.ReLU(inplace=True))
        self.drop7 = nn.Dropout(0.5)
        self.score_fr = nn.Conv2d(fc, num_classes, 1)
        self.score_pool4 = nn.Conv2d(8 * w, num_classes, 1)
        self.score_pool3 = nn.Conv2d(4 * w, num_classes, 1)
        self.upscore2 = nn.ConvTranspose2d(num_classes, num_classes, 4, 2, bias=False)
        self.upscore_pool4 = nn.ConvTranspose2d(num_classes, num_classes, 4, 2, bias=False)
        self.upscore8 = nn.ConvTranspose2d(num_classes, num_classes, 16, 8, bias=False)
        for deconv in (self.upscore2, self.upscore_pool4, self.upscore8):
            deconv.requires_grad_(False)  # the reference fixes them (lr_mult 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2], x.shape[3]
        pool3 = self.pool(self.conv3(self.pool(self.conv2(self.pool(self.conv1(x))))))  # stride 8
        pool4 = self.pool(self.conv4(pool3))  # stride 16
        pool5 = self.pool(self.conv5(pool4))  # stride 32
        score_fr = self.score_fr(self.drop7(self.fc7(self.drop6(self.fc6(pool5)))))
        upscore2 = self.upscore2(score_fr)
        score_pool4 = self.score_pool4(pool4)
        fuse_pool4 = upscore2 + score_pool4[:, :, 5:5 + upscore2.shape[2], 5:5 + upscore2.shape[3]]
        upscore_pool4 = self.upscore_pool4(fuse_pool4)
        score_pool3 = self.score_pool3(pool3)
        fuse_pool3 = upscore_pool4 + score_pool3[:, :, 9:9 + upscore_pool4.shape[2],
                                                 9:9 + upscore_pool4.shape[3]]
        upscore8 = self.upscore8(fuse_pool3)
        return upscore8[:, :, 31:31 + h, 31:31 + w]


def copy_weights(compiled: nn.Module, hand: HandFCN8s) -> None:
    """Load the compiled spec's weights into the hand-written model (names differ only in
    the shared pool)."""
    hand.load_state_dict(compiled.state_dict(), strict=True)
