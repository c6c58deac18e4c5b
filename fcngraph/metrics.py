"""Predictions and labels → one confusion matrix (on the device, via bincount) → the FCN
paper's four metrics (§5) and per-class IoU / accuracy.

Classes absent from both ground truth and prediction are left out of the means (nanmean),
as the reference score.py does. Under torch.distributed the matrices are summed across ranks.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


class ConfusionMatrix:
    """n[i, j] = pixels of class i predicted as j."""

    def __init__(self, num_classes: int, device: torch.device | str = "cpu", ignore_index: int = 255) -> None:
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """pred, target: [...] class indices of the same shape (pred may also be [B, C, H, W] scores)."""
        if pred.dim() == target.dim() + 1:
            pred = pred.argmax(1)
        n = self.num_classes
        index = target.reshape(-1).long() * n + pred.reshape(-1)  # [N]
        # ignored pixels go to one spare bin rather than being masked out: a boolean selection
        # costs a nonzero() and a gather, this costs one elementwise where
        index = torch.where(target.reshape(-1) == self.ignore_index, n * n, index)
        self.matrix += torch.bincount(index, minlength=n * n + 1)[:n * n].view(n, n)

    def all_reduce(self) -> None:
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.matrix)

    def compute(self) -> dict[str, float | list[float]]:
        n = self.matrix.double()
        tp = n.diag()
        gt = n.sum(1)  # t_i
        predicted = n.sum(0)
        union = gt + predicted - tp
        present = union > 0
        iou = torch.where(present, tp / union.clamp(min=1), torch.nan)
        acc = torch.where(gt > 0, tp / gt.clamp(min=1), torch.nan)
        total = gt.sum().clamp(min=1)
        return {
            "pixel_acc": float(tp.sum() / total),
            "mean_acc": float(acc.nanmean()),
            "miou": float(iou.nanmean()),
            "fwiou": float((gt[present] * iou[present]).sum() / total),
            "iou": [float(v) for v in iou],
            "acc": [float(v) for v in acc],
        }
