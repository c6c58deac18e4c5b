"""The confusion-matrix metrics against a slow, independent numpy loop (the paper's §5 formulas)."""

import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fcngraph.metrics import ConfusionMatrix


def slow_metrics(pred, target, n, ignore=255):
    counts = np.zeros((n, n), dtype=np.int64)
    for p, t in zip(pred.ravel(), target.ravel()):
        if t != ignore:
            counts[t, p] += 1
    ious, accs, fw = [], [], 0.0
    total = counts.sum()
    for i in range(n):
        t_i = counts[i].sum()
        union = t_i + counts[:, i].sum() - counts[i, i]
        if union > 0:
            ious.append(counts[i, i] / union)
            fw += t_i * counts[i, i] / union
        if t_i > 0:
            accs.append(counts[i, i] / t_i)
    return {"pixel_acc": np.trace(counts) / total, "mean_acc": np.mean(accs), "miou": np.mean(ious),
            "fwiou": fw / total}


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 7), st.integers(1, 3), st.integers(0, 10_000))
def test_metrics_match_slow_reference(n, batches, seed):
    rng = np.random.default_rng(seed)
    confusion = ConfusionMatrix(n)
    preds, targets = [], []
    for _ in range(batches):
        pred = rng.integers(0, n, (2, 5, 6))
        target = rng.integers(0, n - 1, (2, 5, 6))  # the last class never appears in ground truth
        target[rng.random(target.shape) < 0.2] = 255
        confusion.update(torch.from_numpy(pred), torch.from_numpy(target))
        preds.append(pred)
        targets.append(target)
    ours = confusion.compute()
    expected = slow_metrics(np.concatenate(preds), np.concatenate(targets), n)
    for key, value in expected.items():
        assert math.isclose(ours[key], value, rel_tol=1e-9), key


def test_class_absent_from_truth_and_prediction_is_left_out():
    confusion = ConfusionMatrix(3)
    confusion.update(torch.tensor([0, 0, 1]), torch.tensor([0, 0, 1]))
    scores = confusion.compute()
    assert scores["miou"] == 1.0 and math.isnan(scores["iou"][2])


def test_scores_argmax_is_taken_for_4d_predictions():
    confusion = ConfusionMatrix(2)
    scores = torch.tensor([[[[0.1, 0.9]], [[0.8, 0.2]]]])  # [1, 2, 1, 2]: predicts 1, 0
    confusion.update(scores, torch.tensor([[[1, 0]]]))
    assert confusion.compute()["pixel_acc"] == 1.0


def test_confusion_matrix_equals_torchmetrics():
    from torchmetrics.classification import MulticlassConfusionMatrix, MulticlassJaccardIndex

    g = torch.Generator().manual_seed(3)
    pred = torch.randint(0, 5, (4, 33, 47), generator=g)
    target = torch.randint(0, 5, (4, 33, 47), generator=g)
    target[torch.rand(target.shape, generator=g) < 0.1] = 255
    ours = ConfusionMatrix(5)
    ours.update(pred, target)
    reference = MulticlassConfusionMatrix(5, ignore_index=255)(pred, target)  # [true, predicted]
    assert torch.equal(ours.matrix.cpu(), reference)
    jaccard = MulticlassJaccardIndex(5, ignore_index=255, average="macro")(pred, target)
    assert math.isclose(ours.compute()["miou"], float(jaccard), rel_tol=1e-6)
