"""Training throughput of `fcngraph run` (its data pipeline and loop) against a minimal hand-written
loop over tensors decoded into memory beforehand, on CamVid, in one process, alternating rounds.

Same spec, model, initial weights, batch, crop, scale/flip augmentation, class weights,
optimiser and (fixed, no warm-up) learning rate on both sides; the minimal side
(benchmarks/minimal.py) cuts its batches from pre-normalised float tensors, trains with plain
cross-entropy and skips what a run adds around the steps (checkpoints, validation: neither is
in the run's train time).

    python benchmarks/run_vs_minimal_loop.py [--spec specs/camvid/unet.json] [--steps 15] [--rounds 10]
        [--threads 1] [--workers 0] [--val-images 8]

Both sides are timed over the same steps, those between the first and the last progress line the
run logs (steps 6-15 of 15 on CamVid: warm-up and set-up excluded), by the wall clock and by the
process's CPU time, which machine load inflates far less (on a shared machine the wall-clock ratio
of one round can swing by ±30 %). Prints images/s of each side per round and the medians over the
rounds, with the median of the per-round ratios run / minimal (target ≥ 0.95); the side that goes
first alternates between rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from minimal import ROOT, batches, parser, predecode

from fcngraph.cli import load_with_overrides
from fcngraph.compile import compile_spec
from fcngraph.data import class_frequencies, class_weights, find_samples, make_splits
from fcngraph.sizing import PadToValid
from fcngraph.spec import Spec
from fcngraph.train import train_spec

Marks = dict[int, tuple[float, float]]  # steps done → (wall clock s, this process's CPU s)
STEP_LINE = re.compile(r"epoch \d+/\d+ step (\d+)/")  # the run's progress line after a step


def collected(side: Callable[[], Marks]) -> Marks:
    """One side after a full garbage collection, so the previous side's garbage is not collected
    inside this side's timed steps."""
    gc.collect()
    return side()


def now() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def minimal_loop(spec: Spec, pairs, weights: torch.Tensor | None) -> Marks:
    """The loop a person would write by hand, over `train.iterations` steps; a mark after each."""
    t, d = spec.train, spec.data
    torch.manual_seed(t.seed)
    net = PadToValid(compile_spec(spec), spec).train()  # the same wrapper the run trains through
    optimizer = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[t.optimizer]
    extra = {"momentum": t.momentum} if t.optimizer == "sgd" else {}
    optimizer = optimizer(net.parameters(), lr=t.lr, weight_decay=t.weight_decay, **extra)
    marks: Marks = {0: now()}
    while len(marks) <= t.iterations:
        for images, masks in batches(pairs, t, d.ignore_index):  # [B, C, h, w], [B, h, w]
            loss = F.cross_entropy(net(images), masks, weight=weights, ignore_index=d.ignore_index)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            marks[len(marks)] = now()
            if len(marks) > t.iterations:
                break
    return marks


def fcngraph_run(spec: Spec) -> Marks:
    """`fcngraph run`'s train_spec in a fresh runs folder; a mark at each progress line it logs
    (every few steps), so both sides are timed over the same steps, warm-up excluded."""
    marks: Marks = {}

    def log(text: str) -> None:
        if match := STEP_LINE.match(text):
            marks[int(match[1])] = now()
    with tempfile.TemporaryDirectory() as root, contextlib.redirect_stderr(io.StringIO()):  # no tty: lines
        train_spec(spec, Path(root), log=log, progress=True)
    return marks


def rates(marks: Marks, first: int, last: int, batch: int) -> tuple[float, float]:
    """Images/s over steps first+1 .. last, by the wall clock and by CPU time."""
    (wall0, cpu0), (wall1, cpu1) = marks[first], marks[last]
    images = (last - first) * batch
    return images / (wall1 - wall0), images / (cpu1 - cpu0)


def short_val_view(root: Path, val_split: str, keep: int, into: Path) -> Path:
    """The dataset seen through symlinks (nothing copied) with a val split of its first `keep`
    images: the run validates once at the end, outside its train time, so this only saves wall time."""
    for name in ("images", "masks", "classes.json", "splits/train.txt"):
        if (root / name).exists():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            (into / name).symlink_to((root / name).resolve())
    stems = [sample.mask.stem for sample in find_samples(root, val_split)[:keep]]
    (into / "splits" / f"{val_split}.txt").write_text("\n".join(stems))
    return into


def loss_weights(spec: Spec) -> torch.Tensor | None:
    """The run's class weights, computed once here (the run computes them before its timer starts)."""
    kind = spec.train.class_weights
    if not isinstance(kind, str):
        return torch.tensor(kind) if kind else None
    splits = make_splits(spec.data, spec.train, spec.num_classes)
    freq = class_frequencies(splits.train.base, spec.num_classes, spec.data.ignore_index)
    return torch.tensor(class_weights(kind, freq), dtype=torch.float32)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--spec", default=str(ROOT / "specs" / "camvid" / "unet.json"), help="Spec to train.")
    p.add_argument("--steps", type=int, default=15, help="Training steps per round and side (timed: those "
                   "between the run's first and last progress line, every 5th on CamVid).")
    p.add_argument("--workers", type=int, default=0, help="train.workers of the fcngraph side.")
    p.add_argument("--val-images", type=int, default=8, help="Images the run validates on after training "
                   "(not timed; fewer save wall time).")
    p.set_defaults(threads=1, rounds=10)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        view = short_val_view(Path(args.data), "val", args.val_images, Path(tmp))
        sets = [f"train.iterations={args.steps}", 'train.device="cpu"', f"train.threads={args.threads}",
                f"train.workers={args.workers}", f"data.path={json.dumps(str(view))}", 'data.val_split="val"',
                'train.schedule="fixed"', "train.warmup_iters=0"]  # one learning rate on both sides
        spec = load_with_overrides(argparse.Namespace(set=sets), args.spec)
        if spec.train.loss != "ce" or spec.aux_outputs:
            raise SystemExit(f"{spec.name}: the minimal loop trains plain cross-entropy without aux outputs")
        results = rounds(spec, args.rounds)
    run, minimal, run_cpu, minimal_cpu = (statistics.median(column) for column in zip(*results))
    wall = statistics.median(r[0] / r[1] for r in results)
    cpu = statistics.median(r[2] / r[3] for r in results)
    print(f"{spec.name}, batch {spec.train.batch_size}, crops of {spec.train.crop_size}, {args.threads} threads, "
          f"{args.workers} workers, {args.rounds} rounds (medians): run {run:.2f} img/s, minimal {minimal:.2f} img/s, "
          f"ratio {wall:.3f} (target >= 0.95); by CPU time {run_cpu:.2f} / {minimal_cpu:.2f} img/s, ratio {cpu:.3f}"
          + (" (workers' CPU not counted)" if args.workers else ""))


def rounds(spec: Spec, count: int) -> list[tuple[float, ...]]:
    """Alternating rounds of both sides: per round (run, minimal) images/s by wall clock and CPU time."""
    pairs, weights = predecode(Path(spec.data.path), spec.data.train_split, spec.data), loss_weights(spec)
    results = []
    for round_ in range(count):
        run, hand = partial(fcngraph_run, spec), partial(minimal_loop, spec, pairs, weights)
        if round_ % 2:  # alternate which side goes first, so neither always runs on a warmer machine
            ours, minimal = collected(run), collected(hand)
        else:
            minimal, ours = collected(hand), collected(run)
        if len(ours) < 2:
            raise SystemExit(f"the run logged progress at steps {sorted(ours)}; give more --steps")
        first, last = min(ours), max(ours)
        (wall, cpu), (wall_min, cpu_min) = (rates(m, first, last, spec.train.batch_size) for m in (ours, minimal))
        results.append((wall, wall_min, cpu, cpu_min))
        print(f"round {round_ + 1}, steps {first + 1}-{last}: run {wall:6.2f} img/s, minimal {wall_min:6.2f} img/s, "
              f"ratio {wall / wall_min:.3f}; by CPU time {cpu:6.2f} / {cpu_min:6.2f}, ratio {cpu / cpu_min:.3f}",
              flush=True)
    return results


if __name__ == "__main__":
    main()
