"""Statistics speed: `stats.compare` (vectorised numpy, B = 2000) against a plain Python loop
bootstrap of the same size, in one process, on synthetic per-image counts.

    python benchmarks/stats_speed.py [--variants 4] [--seeds 3] [--images 100] [--classes 11]

Prints the time of a whole comparison (intervals, paired differences, per-class intervals,
permutation tests, ranking; target < 1 s), the time of one variant's loop bootstrap, and the ratio.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fcngraph.stats import RESAMPLES, Resamples, VariantCounts, _resampled_miou, compare  # noqa: E402


def loop_bootstrap(counts: np.ndarray, r: Resamples) -> list[float]:
    """One variant's resampled mIoU, one resample and one seed at a time."""
    out = []
    for w_img, w_seed in zip(r.image_weights, r.seed_weights):
        idx = np.repeat(np.arange(counts.shape[1]), w_img.astype(int))
        per_seed = []
        for seed_counts in counts:
            tp, gt, pred = seed_counts[idx].sum(0)
            union = gt + pred - tp
            per_seed.append(float(np.mean(tp[union > 0] / union[union > 0])))
        out.append(float(np.dot(w_seed, per_seed) / w_seed.sum()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, default=4, help="Variants compared.")
    parser.add_argument("--seeds", type=int, default=3, help="Seeds per variant.")
    parser.add_argument("--images", type=int, default=100, help="Validation images.")
    parser.add_argument("--classes", type=int, default=11, help="Classes (CamVid: 11).")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 500, size=(1, args.images, args.classes)).repeat(args.seeds, 0)
    variants = []
    for v in range(args.variants):
        tp = rng.binomial(gt, 0.5 + 0.05 * v)
        counts = np.stack([tp, gt, tp + rng.binomial(gt - tp, 0.5)], 2)
        variants.append(VariantCounts(f"v{v}", tuple(range(args.seeds)),
                                      tuple(map(str, range(args.images))), counts))
    start = time.perf_counter()
    compare(variants)
    whole = time.perf_counter() - start
    r = Resamples.draw(args.images, args.seeds)
    start = time.perf_counter()
    _resampled_miou(variants[0].counts, r)
    fast_one = time.perf_counter() - start
    start = time.perf_counter()
    loop_bootstrap(variants[0].counts, r)
    loop_one = time.perf_counter() - start
    print(f"{args.variants} variants × {args.seeds} seeds × {args.images} images × {args.classes} classes, "
          f"B = {RESAMPLES}")
    print(f"whole comparison: {whole:.3f} s (target < 1 s)")
    print(f"one variant's bootstrap: vectorised {fast_one * 1e3:.1f} ms, loop {loop_one * 1e3:.0f} ms, "
          f"ratio {loop_one / fast_one:.0f}x")


if __name__ == "__main__":
    main()
