"""stats.py against independent computations: a loop bootstrap, an exact permutation test."""

import itertools

import numpy as np
import pytest

from fcngraph.stats import (
    RESAMPLES,
    Resamples,
    StatsError,
    VariantCounts,
    _resampled_miou,
    compare,
    from_per_image,
    interval,
    permutation_p,
    seed_mious,
)


def fake_counts(rng, n_seeds, n_images, n_classes, skill):
    """Per-image counts of a classifier that is right with probability `skill` per pixel."""
    gt = rng.integers(20, 200, size=(n_seeds, n_images, n_classes))
    gt[..., -1] = np.where(rng.random((n_seeds, n_images)) < 0.8, 0, gt[..., -1])  # a rare class
    gt = np.broadcast_to(gt[:1], gt.shape).copy()  # the same images in every seed
    tp = rng.binomial(gt, skill)
    pred = tp + rng.binomial(gt - tp, 0.5)  # some errors land in the same class's prediction count
    return np.stack([tp, gt, pred], 2).astype(np.int64)  # [S, N, 3, C]


def variant(name, counts):
    s, n = counts.shape[:2]
    return VariantCounts(name, tuple(range(s)), tuple(f"img{i:03d}" for i in range(n)), counts)


def loop_miou(counts):
    """counts [N, 3, C] → pooled mIoU, written as plainly as possible."""
    tp, gt, pred = counts.sum(0)
    ious = [t / (g + p - t) for t, g, p in zip(tp, gt, pred) if g + p - t > 0]
    return sum(ious) / len(ious)


def test_single_seed_interval_matches_a_loop_bootstrap():
    rng = np.random.default_rng(1)
    counts = fake_counts(rng, 1, 60, 5, 0.7)
    result = compare([variant("a", counts)])
    loop_rng = np.random.default_rng(123)  # independent draws: agreement is statistical
    boot = [loop_miou(counts[0][loop_rng.integers(0, 60, 60)]) for _ in range(RESAMPLES)]
    low, high = np.quantile(boot, [0.025, 0.975])
    s = result.summaries["a"]
    assert s.mean == pytest.approx(loop_miou(counts[0]))
    assert s.low == pytest.approx(low, abs=0.004) and s.high == pytest.approx(high, abs=0.004)
    assert s.low < s.mean < s.high


def test_vectorised_bootstrap_equals_loop_on_the_same_draws():
    rng = np.random.default_rng(2)
    a, b = fake_counts(rng, 3, 20, 4, 0.6), fake_counts(rng, 3, 20, 4, 0.8)
    r = Resamples.draw(20, 3, resamples=200)
    loop = []
    for w_img, w_seed in zip(r.image_weights, r.seed_weights):
        idx = np.repeat(np.arange(20), w_img.astype(int))
        per_seed = [loop_miou(b[s][idx]) - loop_miou(a[s][idx]) for s in range(3)]
        loop.append(np.dot(w_seed, per_seed) / w_seed.sum())
    fast = _resampled_miou(b, r) - _resampled_miou(a, r)
    np.testing.assert_allclose(fast, loop, atol=1e-12)


def test_permutation_p_equals_exact_enumeration():
    rng = np.random.default_rng(3)
    a, b = fake_counts(rng, 2, 8, 3, 0.55), fake_counts(rng, 2, 8, 3, 0.75)
    observed = np.mean([loop_miou(a[s]) - loop_miou(b[s]) for s in range(2)])
    extreme = 0
    for swap in itertools.product((False, True), repeat=8):
        swap = np.array(swap)
        x = np.where(swap[None, :, None, None], b, a)
        y = np.where(swap[None, :, None, None], a, b)
        d = np.mean([loop_miou(x[s]) - loop_miou(y[s]) for s in range(2)])
        extreme += abs(d) >= abs(observed) - 1e-12
    r = Resamples.draw(8, 2)
    assert r.exact
    assert permutation_p(a, b, r.flips, r.exact) == pytest.approx(extreme / 256)


def test_identical_variants_are_tied_and_different_ones_are_not():
    rng = np.random.default_rng(4)
    weak, strong = fake_counts(rng, 3, 100, 11, 0.5), fake_counts(rng, 3, 100, 11, 0.7)
    same = compare([variant("one", weak), variant("two", weak.copy())])
    d = same.differences["two"]
    assert d.low <= 0 <= d.high and not d.significant and d.p == 1.0
    assert set(same.leaders) == {"one", "two"}
    assert "(not significant)" in d.sentence()
    apart = compare([variant("weak", weak), variant("strong", strong)], baseline="weak")
    d = apart.differences["strong"]
    assert d.significant and d.low > 0 and d.p < 0.001
    assert apart.leaders == ("strong",)
    assert d.sentence().startswith("strong vs weak: +0.") and "p < 0.001, 3 seeds × 100 images" in d.sentence()
    assert all(low <= diff <= high for diff, low, high in d.per_class if not np.isnan(diff))


def test_seed_spread_widens_the_interval():
    rng = np.random.default_rng(5)
    base = fake_counts(rng, 1, 50, 4, 0.6)[0]
    calm = np.stack([base] * 3)
    noisy = np.stack([base, fake_counts(rng, 1, 50, 4, 0.4)[0], fake_counts(rng, 1, 50, 4, 0.8)[0]])
    noisy[:, :, 1] = base[None, :, 1]  # same ground truth
    noisy[:, :, 0] = np.minimum(noisy[:, :, 0], noisy[:, :, 1])
    width = {name: compare([variant(name, c)]).summaries[name] for name, c in (("calm", calm), ("noisy", noisy))}
    assert width["noisy"].std > 0 == width["calm"].std
    assert width["noisy"].high - width["noisy"].low > width["calm"].high - width["calm"].low


def test_adapter_orders_images_and_rejects_mismatches():
    ids = np.array(["b", "a"])
    part = {"ids": ids, "tp": np.array([[1, 2], [3, 4]]), "gt": np.array([[2, 2], [4, 4]]),
            "pred": np.array([[1, 3], [3, 5]])}
    v = from_per_image("x", {7: part, 3: {**part}})
    assert v.seeds == (3, 7) and v.image_ids == ("a", "b") and v.counts.shape == (2, 2, 3, 2)
    assert v.counts[0, 0, 0].tolist() == [3, 4]
    with pytest.raises(StatsError, match="other images"):
        from_per_image("x", {1: part, 2: {**part, "ids": np.array(["a", "c"])}})
    other = VariantCounts("y", (3, 7), ("a", "c"), v.counts)
    with pytest.raises(StatsError, match="other images"):
        compare([v, other])
    with pytest.raises(StatsError, match="baseline 'z'"):
        compare([v], baseline="z")


def test_interval_and_seed_mious_basics():
    assert interval(np.arange(1001.0)) == pytest.approx((25.0, 975.0))
    counts = np.array([[[[1, 0], [2, 0], [1, 1]]]])  # class 1 absent everywhere except one wrong pixel
    assert seed_mious(counts).tolist() == pytest.approx([(0.5 + 0.0) / 2])


def test_report_tables_bold_only_a_significant_leader():
    from fcngraph.report import _statistics_markdown, leader_line, statistics_csv, statistics_tables

    rng = np.random.default_rng(6)
    weak, strong = fake_counts(rng, 2, 40, 4, 0.5), fake_counts(rng, 2, 40, 4, 0.8)
    classes = ("a", "b", "c", "d")
    apart = compare([variant("weak", weak), variant("strong", strong)], classes=classes)
    table, bold, per_class = statistics_tables(apart)
    assert table["variant"].tolist() == ["strong", "weak"] and bold.values.sum() == 1
    assert bold.loc[0, "mIoU mean ± std"] and list(per_class.index) == list(classes)
    assert "**" in "\n".join(_statistics_markdown(apart)) and leader_line(apart).startswith("Best: strong")
    tied = compare([variant("one", weak), variant("two", weak.copy())], classes=classes)
    assert statistics_tables(tied)[1].values.sum() == 0 and "**" not in "\n".join(_statistics_markdown(tied))
    assert leader_line(tied).startswith("Tied for best: one, two")
    csv = statistics_csv(apart).set_index("variant")
    assert bool(csv.loc["strong", "significant"]) and csv.loc["strong", "p"] < 0.001
    assert apart.to_json()["differences"]["strong"]["ci"][0] > 0


def test_confusion_and_seed_band_figures(tmp_path):
    import matplotlib.pyplot as plt

    from fcngraph.compare import RunRecord
    from fcngraph.report import confusion_figure, curves_figure, normalised_confusion

    def record(name, matrix, mious):
        history = [{"epoch": e + 1, "loss": 1.0 / (e + 1), "miou": m} for e, m in enumerate(mious)]
        return RunRecord(name, tmp_path, "complete", scores={"confusion": matrix, "classes": ["x", "y"]},
                         history=history)

    base = [record("base", [[3, 1], [0, 4]], [0.1, 0.2]), record("base", [[1, 3], [0, 4]], [0.3, 0.4])]
    other = [record("other", [[4, 0], [2, 2]], [0.2, 0.5])]
    np.testing.assert_allclose(normalised_confusion(base), [[0.5, 0.5], [0, 1]])
    figure = confusion_figure([base[0], other[0]], "base", {"base": base, "other": other})
    diff = figure.axes[3].images[0].get_array()  # the second row's difference panel
    np.testing.assert_allclose(diff, [[0.5, -0.5], [0.5, -0.5]])
    plt.close(figure)
    curves = curves_figure([base[0], other[0]], {"base": base, "other": other})
    mean_line = curves.axes[1].lines[0]
    np.testing.assert_allclose(mean_line.get_ydata(), [0.2, 0.3])
    assert len(curves.axes[1].collections) == 1  # one band: only 'base' has several seeds
    plt.close(curves)


def test_qualitative_images_are_picked_by_rule():
    from fcngraph.report import pick_images

    gt = np.array([[10, 0, 0], [10, 5, 0], [10, 5, 2], [10, 9, 0]])  # class 2 rarest, then class 1

    def arrays(tp):
        tp = np.asarray(tp)
        return {"ids": np.arange(4), "tp": tp, "gt": gt, "pred": gt}  # pred = gt counts, only tp varies

    base = arrays([[10, 0, 0], [1, 5, 0], [10, 5, 2], [10, 9, 0]])  # image 1 is the baseline's worst
    other = arrays([[10, 0, 0], [1, 5, 0], [10, 5, 2], [10, 0, 0]])  # they disagree most on image 3
    picks = pick_images({"base": base, "other": other}, "base", ["bg", "b", "c"])
    assert picks == [(3, "largest disagreement"), (1, "base's worst"), (2, "rare class: c")]
    same = pick_images({"base": base, "twin": base}, "base", ["bg", "b", "c"])
    assert [reason for _, reason in same] == ["base's worst", "rare class: c", "rare class: b"]
