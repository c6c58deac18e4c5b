"""Per-image confusion counts over seeds → comparisons a reviewer can check.

Input: per variant, per seed, per validation image the class counts tp, gt, pred (int64
[n_images, n_classes]). Output: mean ± std over seeds, a 95 % bootstrap interval of mIoU,
paired differences against a baseline (bootstrap interval, paired permutation p-value),
per-class differences, a ranking that bolds a leader only when it is significantly ahead,
and one sentence per variant. mIoU is pooled over images as in the FCN paper (§5), so every
resample re-pools counts; all resamples are drawn once (seed `SEED`) and shared by every
variant, which keeps the images and seeds paired.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from .errors import FcngraphError

RESAMPLES = 2000  # bootstrap resamples and permutations
SEED = 0  # the fixed seed of every resample: the same run folders give the same report
ALPHA = 0.05  # two-sided; intervals are 95 %


class StatsError(FcngraphError):
    """Runs that cannot be compared: different images, classes or seeds."""


@dataclass(frozen=True)
class VariantCounts:
    """counts[s, i, k, c]: seed s, image i, k = 0 tp / 1 ground-truth pixels / 2 predicted pixels, class c."""

    name: str
    seeds: tuple[int, ...]
    image_ids: tuple[str, ...]
    counts: np.ndarray  # [S, N, 3, C] int64

    @property
    def shape(self) -> tuple[int, int, int]:
        s, n, _, c = self.counts.shape
        return s, n, c


def from_per_image(name: str, per_seed: dict[int, dict[str, np.ndarray]]) -> VariantCounts:
    """Adapter from data-eval's per-image layout ({seed: {"ids", "tp", "gt", "pred"}}, arrays
    [n_images, n_classes]) to `VariantCounts`; images are ordered by id so seeds line up."""
    seeds = tuple(sorted(per_seed))
    if not seeds:
        raise StatsError(f"{name}: no evaluated seeds")
    ids = tuple(sorted(str(i) for i in per_seed[seeds[0]]["ids"]))
    stacked = []
    for seed in seeds:
        part = per_seed[seed]
        order = np.argsort(np.asarray([str(i) for i in part["ids"]]), kind="stable")
        if tuple(str(part["ids"][j]) for j in order) != ids:
            raise StatsError(f"{name}: seed {seed} was evaluated on other images than seed {seeds[0]}")
        stacked.append(np.stack([np.asarray(part[k], dtype=np.int64)[order] for k in ("tp", "gt", "pred")], 1))
    return VariantCounts(name, seeds, ids, np.stack(stacked))  # [S, N, 3, C]


# -- the statistic ----------------------------------------------------------------------------------
def iou_from_pooled(pooled: np.ndarray) -> np.ndarray:
    """pooled [..., 3, C] summed counts → per-class IoU [..., C], NaN where a class is in neither."""
    tp, gt, pred = pooled[..., 0, :], pooled[..., 1, :], pooled[..., 2, :]
    union = gt + pred - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)


def miou_from_iou(iou: np.ndarray) -> np.ndarray:
    """Mean over present classes (the reference score.py's nanmean) without all-NaN warnings."""
    present = ~np.isnan(iou)
    return np.where(present, iou, 0).sum(-1) / np.maximum(present.sum(-1), 1)


@dataclass(frozen=True)
class Resamples:
    """Shared draws: image multiplicities [B, N] and seed multiplicities [B, S], plus permutation flips [P, N]."""

    image_weights: np.ndarray
    seed_weights: np.ndarray
    flips: np.ndarray
    exact: bool  # flips enumerate all 2^N swaps

    @classmethod
    def draw(cls, n_images: int, n_seeds: int, resamples: int = RESAMPLES, seed: int = SEED) -> Resamples:
        rng = np.random.default_rng(seed)
        images = rng.multinomial(n_images, np.full(n_images, 1 / n_images), size=resamples)
        if n_seeds > 1:  # two-stage: seeds too, so the interval covers seed-to-seed spread
            seeds = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=resamples)
        else:
            seeds = np.ones((resamples, 1), dtype=np.int64)
        exact = 2 ** n_images <= resamples
        if exact:
            flips = np.array(list(itertools.product((0, 1), repeat=n_images)), dtype=np.int8)
        else:
            flips = rng.integers(0, 2, size=(resamples, n_images), dtype=np.int8)
        return cls(images.astype(np.float64), seeds.astype(np.float64), flips, exact)


def _resampled_iou(counts: np.ndarray, r: Resamples) -> np.ndarray:
    """counts [S, N, 3, C] → per-class IoU of each resample, seeds averaged with their weights: [B, C]."""
    s, n, _, c = counts.shape
    pooled = np.matmul(r.image_weights[None], counts.reshape(s, n, 3 * c).astype(np.float64))  # [S, B, 3C]
    iou = iou_from_pooled(pooled.reshape(s, -1, 3, c))  # [S, B, C]
    weights = r.seed_weights.T[:, :, None] * ~np.isnan(iou)  # [S, B, C]
    with np.errstate(invalid="ignore"):
        return np.where(weights.sum(0) > 0, (np.nan_to_num(iou) * weights).sum(0) / weights.sum(0), np.nan)


def _resampled_miou(counts: np.ndarray, r: Resamples) -> np.ndarray:
    """counts [S, N, 3, C] → mIoU of each resample: the weighted mean over seeds of per-seed mIoU, [B]."""
    s, n, _, c = counts.shape
    pooled = np.matmul(r.image_weights[None], counts.reshape(s, n, 3 * c).astype(np.float64))  # [S, B, 3C]
    miou = miou_from_iou(iou_from_pooled(pooled.reshape(s, -1, 3, c)))  # [S, B]
    return (r.seed_weights * miou.T).sum(1) / r.seed_weights.sum(1)


def seed_mious(counts: np.ndarray) -> np.ndarray:
    """counts [S, N, 3, C] → each seed's mIoU over all images, [S]."""
    return miou_from_iou(iou_from_pooled(counts.sum(1)))


def interval(values: np.ndarray) -> tuple[float, float]:
    low, high = np.nanquantile(values, [ALPHA / 2, 1 - ALPHA / 2])
    return float(low), float(high)


def permutation_p(a: np.ndarray, b: np.ndarray, flips: np.ndarray, exact: bool) -> float:
    """Two-sided paired permutation test of mean-over-seeds mIoU(a) − mIoU(b): under the null the
    two variants' predictions of an image are exchangeable, so each flip swaps whole images
    (in every seed at once). a, b: [S, N, 3, C]; flips [P, N] of 0/1."""
    s, n, _, c = a.shape
    a2, b2 = a.reshape(s, n, 3 * c).astype(np.float64), b.reshape(s, n, 3 * c).astype(np.float64)
    delta = b2 - a2  # what a gains on an image when it is swapped
    moved = np.matmul(flips.astype(np.float64)[None], delta)  # [S, P, 3C]
    pa = a2.sum(1)[:, None] + moved
    pb = b2.sum(1)[:, None] - moved
    diff = (miou_from_iou(iou_from_pooled(pa.reshape(s, -1, 3, c)))
            - miou_from_iou(iou_from_pooled(pb.reshape(s, -1, 3, c)))).mean(0)  # [P]
    observed = float((seed_mious(a) - seed_mious(b)).mean())
    extreme = np.abs(diff) >= abs(observed) - 1e-12
    if exact:
        return float(extreme.mean())
    return float((1 + extreme.sum()) / (1 + len(diff)))  # Monte Carlo: the observed labelling counts once


# -- results ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Summary:
    """One variant: mean ± std of mIoU over seeds, its 95 % interval, each seed's value."""

    name: str
    mean: float
    std: float
    low: float
    high: float
    per_seed: tuple[float, ...]
    n_images: int


@dataclass(frozen=True)
class Difference:
    """variant − baseline: mean paired mIoU difference, 95 % interval, p-value, per-class intervals."""

    variant: str
    baseline: str
    diff: float
    low: float
    high: float
    p: float
    per_class: tuple[tuple[float, float, float], ...]  # (diff, low, high) per class, NaN if absent
    n_seeds: int
    n_images: int

    @property
    def significant(self) -> bool:
        """Both the interval and the test must agree, so a borderline case never reads as a win."""
        return self.p < ALPHA and (self.low > 0 or self.high < 0)

    def sentence(self) -> str:
        p = "p < 0.001" if self.p < 0.001 else f"p = {self.p:.3f}"
        seeds = f"{self.n_seeds} seed{'s' if self.n_seeds != 1 else ''}"
        verdict = "" if self.significant else " (not significant)"
        return (f"{self.variant} vs {self.baseline}: {self.diff:+.2f} mIoU [{self.low:.2f}, {self.high:.2f}], "
                f"{p}, {seeds} × {self.n_images} images{verdict}")


@dataclass(frozen=True)
class Comparison:
    """Everything the report prints about a set of variants against one baseline."""

    baseline: str
    summaries: dict[str, Summary]
    differences: dict[str, Difference]  # against the baseline, baseline excluded
    leaders: tuple[str, ...]  # one name: significantly best (bold); several: tied
    leader_test: Difference | None = None  # best vs runner-up
    resamples: int = RESAMPLES
    seed: int = SEED
    classes: tuple[str, ...] = field(default=())

    @property
    def bold(self) -> str | None:
        """The variant to print in bold: a lone leader among two or more variants."""
        return self.leaders[0] if len(self.leaders) == 1 and len(self.summaries) > 1 else None

    def to_json(self) -> dict:
        """Plain JSON data (NaN → null): the layout of stats.json, documented in docs/statistics.md."""
        return _no_nan({
            "method": {"bootstrap": "two-stage percentile (seeds, then images), images shared across variants",
                       "test": "paired permutation, swapping whole images in every seed",
                       "resamples": self.resamples, "seed": self.seed, "alpha": ALPHA,
                       "statistic": "mIoU pooled over images, mean over seeds"},
            "baseline": self.baseline, "leaders": list(self.leaders), "classes": list(self.classes),
            "variants": {n: {"mean": s.mean, "std": s.std, "ci": [s.low, s.high], "per_seed": list(s.per_seed),
                             "n_images": s.n_images} for n, s in self.summaries.items()},
            "differences": {n: {"vs": d.baseline, "diff": d.diff, "ci": [d.low, d.high], "p": d.p,
                                "significant": d.significant, "sentence": d.sentence(),
                                "per_class": [list(v) for v in d.per_class]}
                            for n, d in self.differences.items()},
        })


def _no_nan(value):
    if isinstance(value, float):
        return None if np.isnan(value) else value
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_no_nan(v) for v in value]
    return value


def _check_paired(variants: list[VariantCounts]) -> None:
    first = variants[0]
    for v in variants[1:]:
        if v.image_ids != first.image_ids:
            raise StatsError(f"{v.name} was evaluated on other images than {first.name}; "
                             "paired statistics need the same images")
        if v.seeds != first.seeds:
            raise StatsError(f"{v.name} has seeds {list(v.seeds)} but {first.name} has {list(first.seeds)}; "
                             "seeds are paired, so they must match")
        if v.counts.shape[-1] != first.counts.shape[-1]:
            raise StatsError(f"{v.name} has {v.counts.shape[-1]} classes, {first.name} {first.counts.shape[-1]}")


def summarize(v: VariantCounts, r: Resamples) -> Summary:
    per_seed = seed_mious(v.counts)
    low, high = interval(_resampled_miou(v.counts, r))
    std = float(per_seed.std(ddof=1)) if len(per_seed) > 1 else 0.0
    return Summary(v.name, float(per_seed.mean()), std, low, high, tuple(float(x) for x in per_seed), v.shape[1])


def paired_difference(v: VariantCounts, base: VariantCounts, r: Resamples) -> Difference:
    diff = float((seed_mious(v.counts) - seed_mious(base.counts)).mean())
    low, high = interval(_resampled_miou(v.counts, r) - _resampled_miou(base.counts, r))
    class_boot = _resampled_iou(v.counts, r) - _resampled_iou(base.counts, r)  # [B, C]
    class_point = (iou_from_pooled(v.counts.sum(1)) - iou_from_pooled(base.counts.sum(1)))  # [S, C]
    per_class = []
    for c in range(class_boot.shape[1]):
        column = class_boot[:, c]
        if np.isnan(column).all():
            per_class.append((np.nan, np.nan, np.nan))
            continue
        point = np.nanmean(class_point[:, c]) if not np.isnan(class_point[:, c]).all() else np.nan
        per_class.append((float(point), *interval(column)))
    p = permutation_p(v.counts, base.counts, r.flips, r.exact)
    s, n, _ = v.shape
    return Difference(v.name, base.name, diff, low, high, p, tuple(per_class), s, n)


def compare(variants: list[VariantCounts], baseline: str | None = None, classes: tuple[str, ...] = (),
            resamples: int = RESAMPLES, seed: int = SEED) -> Comparison:
    """All statistics of the report from per-image counts; `baseline` defaults to the first variant."""
    if not variants:
        raise StatsError("no variants to compare")
    names = [v.name for v in variants]
    baseline = baseline or names[0]
    if baseline not in names:
        raise StatsError(f"baseline '{baseline}' is not one of the variants: {', '.join(names)}")
    _check_paired(variants)
    s, n, _ = variants[0].shape
    r = Resamples.draw(n, s, resamples, seed)
    by_name = {v.name: v for v in variants}
    summaries = {v.name: summarize(v, r) for v in variants}
    base = by_name[baseline]
    differences = {v.name: paired_difference(v, base, r) for v in variants if v.name != baseline}
    leaders, test = rank(variants, summaries, r)
    return Comparison(baseline, summaries, differences, leaders, test, resamples, seed, tuple(classes))


def rank(variants: list[VariantCounts], summaries: dict[str, Summary], r: Resamples
         ) -> tuple[tuple[str, ...], Difference | None]:
    """The leaders: the best variant alone when it is significantly ahead of every other, else the
    best together with each variant it does not beat significantly (they are tied)."""
    order = sorted(variants, key=lambda v: -summaries[v.name].mean)
    best = order[0]
    if len(order) == 1:
        return (best.name,), None
    tests = [paired_difference(best, other, r) for other in order[1:]]
    tied = tuple(t.baseline for t in tests if not t.significant)
    return (best.name, *tied), tests[0]
