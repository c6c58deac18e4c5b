"""Spec (with train/data settings) → trained model, in a run directory.

Input: a spec. Output: <runs>/<name>-<run hash>/ holding atomic last.pt/best.pt, metrics JSONL/CSV,
per-image validation counts, summary.json and a log. `_train` reads as the loop: setup helpers, then
per epoch `train_one_epoch`, `validate`, `save_epoch`. `resume=True` continues from last.pt and ends
where an uninterrupted run would (per-epoch seeding). Under torchrun: DDP, and rank 0 writes.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, Subset

from .checkpoint import (
    CheckpointError,
    is_history_row,
    is_number,
    load_resumable,
    read_summary,
    run_checkpoint,
    save_checkpoint,
)
from .compile import compile_spec
from .data import Splits, class_frequencies, class_weights, data_identity, make_splits, pad_collate
from .errors import FcngraphError
from .evaluate import autocast, score_loader
from .io import atomic_write_text, parse_json, safe_stem
from .metrics import ConfusionMatrix
from .settings import TrainSettings
from .shapes import analyze
from .sizing import PadToValid, check_sizes
from .spec import Spec
from .surgery import init_from


class TrainingError(FcngraphError):
    """Training cannot go on (a NaN loss, an unfinished run without --resume, ...)."""


def run_hash(spec: Spec, skip_bad: bool = False) -> str:
    """Hash of what defines the experiment: the resolved spec with the data folder's location
    replaced by its identity (split files, classes, file names) and the initial weights' location
    by theirs (see `init_identity`), plus --skip-bad."""
    import hashlib

    data = spec.canonical()
    data["data"]["path"] = data_identity(spec.data)
    if spec.train.init:
        data["train"]["init"] = init_identity(Path(spec.train.init))
    data["skip_bad"] = skip_bad
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def init_identity(source: Path) -> str:
    """What `train.init` names, not where it lies: a run directory by its folder name (which holds
    its own run hash, so it may not exist yet when a staged experiment plans its runs), a file by a
    hash of its bytes; moving the checkout keeps the run hash."""
    import hashlib

    if source.is_file():
        with open(source, "rb") as handle:
            return "sha256:" + hashlib.file_digest(handle, "sha256").hexdigest()[:12]
    return "run:" + source.name


def run_dir_for(spec: Spec, runs_root: Path, skip_bad: bool = False) -> Path:
    """runs/<spec-name>-<run hash>; characters unsafe in a file name become '_'."""
    return Path(runs_root) / f"{safe_stem(spec.name)}-{run_hash(spec, skip_bad)}"


class RunLock:
    """<run dir>/lock holding the pid: a second process training the same folder is refused.
    A lock left by a dead process (SIGKILL) is taken over."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / "lock"

    def __enter__(self) -> RunLock:
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is not None and _alive(holder):
                    raise TrainingError(f"{self.path.parent}: another run (pid {holder}) is training in this "
                                        "folder; wait for it or stop it") from None
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write(str(os.getpid()))
            return self
        raise TrainingError(f"{self.path}: cannot take the run lock")

    def _holder(self) -> int | None:
        """The pid in the lock; None for one that names no other process (garbage, ≤ 0 — which
        kill() reads as process groups —, too large, or this process's own: all stale)."""
        try:
            pid = int(self.path.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if 0 < pid < 2**31 and pid != os.getpid() else None

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError, ValueError):
            if int(self.path.read_text().strip()) == os.getpid():
                self.path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- pieces of the loop ---------------------------------------------------------------------------
@dataclass
class World:
    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_world(device: torch.device) -> World:
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size()) if size > 1 else World()


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise TrainingError(f"device '{name}' asked for, but CUDA is not available")
        if device.index is None and "LOCAL_RANK" in os.environ:
            device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


def param_groups(model: torch.nn.Module, t: TrainSettings) -> list[dict[str, Any]]:
    """Weights with decay; biases with lr x bias_lr_mult and no decay (Caffe's convention).
    Frozen parameters (learnable: false) are left out."""
    weights, biases = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (biases if name.endswith("bias") else weights).append(p)
    return [{"params": weights, "lr_mult": 1.0, "weight_decay": t.weight_decay},
            {"params": biases, "lr_mult": t.bias_lr_mult, "weight_decay": 0.0}]


def make_optimizer(model: torch.nn.Module, t: TrainSettings) -> torch.optim.Optimizer:
    groups = param_groups(model, t)
    if t.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=t.lr, momentum=t.momentum)
    cls = torch.optim.Adam if t.optimizer == "adam" else torch.optim.AdamW
    return cls(groups, lr=t.lr)


def lr_factor(step: int, total: int, t: TrainSettings) -> float:
    if step < t.warmup_iters:
        return (step + 1) / t.warmup_iters
    progress = min(1.0, (step - t.warmup_iters) / max(1, total - t.warmup_iters))
    if t.schedule == "poly":
        return (1 - progress) ** t.poly_power
    if t.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0


def segmentation_loss(scores: torch.Tensor, target: torch.Tensor, t: TrainSettings,
                      ignore: int, weights: list[float] | None = None) -> torch.Tensor:
    """scores [B, C, H, W], target [B, H, W]; cross-entropy (mean or summed), Dice, or both.
    `weights`: the class weights (computed ones for median_frequency/inverse_sqrt)."""
    if weights is None and isinstance(t.class_weights, list):
        weights = t.class_weights
    weight = torch.tensor(weights, device=scores.device, dtype=torch.float32) if weights else None
    loss = scores.new_zeros(())
    if t.loss in ("ce", "ce+dice"):
        loss = loss + F.cross_entropy(scores.float(), target, weight=weight, ignore_index=ignore,
                                      reduction=t.reduction)
    if t.loss in ("dice", "ce+dice"):
        keep = (target != ignore).unsqueeze(1)  # [B, 1, H, W]
        probs = scores.float().softmax(1) * keep
        onehot = F.one_hot(target.clamp(0, scores.shape[1] - 1), scores.shape[1]).permute(0, 3, 1, 2) * keep
        inter = (probs * onehot).sum((0, 2, 3))
        denom = probs.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
        loss = loss + 1 - ((2 * inter + 1) / (denom + 1)).mean()
    return loss


def training_loss(outputs: torch.Tensor | tuple[torch.Tensor, ...], target: torch.Tensor,
                  t: TrainSettings, ignore: int, aux_weights: list[float],
                  weights: list[float] | None = None) -> torch.Tensor:
    """The main output's loss plus each auxiliary output's (deep supervision, aux heads),
    weighted by its `aux_outputs` weight; a model without aux outputs returns one tensor."""
    if not isinstance(outputs, tuple):
        return segmentation_loss(outputs, target, t, ignore, weights)
    main, *aux = outputs
    loss = segmentation_loss(main, target, t, ignore, weights)
    for weight, scores in zip(aux_weights, aux, strict=True):
        loss = loss + weight * segmentation_loss(scores, target, t, ignore, weights)
    return loss


@torch.no_grad()
def sync_buffers(model: torch.nn.Module, world: World) -> None:
    """Give every rank rank 0's buffers (BatchNorm running stats). DDP broadcasts them before each
    training forward, but that forward then updates each rank's copy with its own batch, so
    without this the ranks would validate their shards with different models."""
    if world.size > 1:
        for buffer in model.buffers():
            dist.broadcast(buffer, 0)


def best_and_last(history: list[dict[str, Any]]) -> dict[str, Any]:
    """Which epoch best.pt holds and its score, next to the last epoch's."""
    scored = [r for r in history if "miou" in r]
    best = max(scored, key=lambda r: r["miou"]) if scored else {"epoch": 0, "miou": float("nan")}
    return {"best_epoch": best["epoch"], "best_miou": best["miou"],
            "last_epoch": history[-1]["epoch"] if history else 0,
            "last_miou": scored[-1]["miou"] if scored else float("nan")}


def data_sizes(spec: Spec, splits) -> set[tuple[int, int]]:
    """(H, W) of every training/validation image: folder sizes read while checking, the synthetic side."""
    sizes = set()
    for part in (splits.train.base, splits.val.base):
        sizes |= getattr(part, "sizes", set()) or {(spec.data.size, spec.data.size)}
    return sizes


# -- progress -------------------------------------------------------------------------------------
class Progress:
    """A one-line progress bar on a terminal; plain log lines otherwise (CI)."""

    def __init__(self, log: Callable[[str], None], enabled: bool) -> None:
        self.log, self.enabled = log, enabled
        self.tty = enabled and sys.stderr.isatty()

    def step(self, epoch: int, epochs: int, step: int, steps: int, loss: float, lr: float,
             rate: float, eta: float, gflops: float = 0.0) -> None:
        if not self.enabled:
            return
        text = (f"epoch {epoch + 1}/{epochs} step {step}/{steps} loss {loss:.4f} lr {lr:.2e} "
                f"{rate:.1f} img/s {gflops:.1f} GFLOP/s eta {eta / 60:.1f} min")
        if self.tty:
            width = 30
            done = int(width * step / steps)
            sys.stderr.write(f"\r[{'#' * done}{'.' * (width - done)}] {text}")
            sys.stderr.flush()
        elif step == steps or step % max(1, steps // 4) == 0:
            self.log(text)

    def end_epoch(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


def open_tensorboard(run_dir: Path, enabled: bool):
    """A SummaryWriter logging into <run dir>/tensorboard, or None when not asked for."""
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise TrainingError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
    return SummaryWriter(str(run_dir / "tensorboard"))


class Meter:
    """The epoch in progress: loss, images and FLOPs summed per step, shown on the progress bar and
    in TensorBoard; at the epoch's end, its row of metrics."""

    def __init__(self, run: Run, plan: Plan, progress: bool, tensorboard: bool) -> None:
        self.run, self.plan = run, plan
        self.bar = Progress(run.say, progress and run.world.main)
        self.board = open_tensorboard(run.dir, tensorboard and run.world.main)
        self.flops_at: dict[tuple[int, ...], int] = {}  # static forward FLOPs per image, by input size
        self.start()

    def start(self) -> None:
        self.started, self.seen, self.loss_sum, self.flops, self.steps = time.time(), 0, 0.0, 0, 0

    def step(self, epoch: int, i: int, step: int, images: torch.Tensor, loss: float, lr: float) -> None:
        """Count step `i` of the epoch (`step` of the run), on a batch `images` [B, C, H, W]."""
        batch, size = images.shape[0] * self.run.world.size, tuple(images.shape[-2:])
        if size not in self.flops_at:
            self.flops_at[size] = analyze(self.run.spec, size).flops  # type: ignore[arg-type]
        self.seen += batch
        self.flops += 3 * self.flops_at[size] * batch  # backward ≈ 2× forward
        self.loss_sum, self.steps = self.loss_sum + loss, self.steps + 1
        rate = self.seen / max(time.time() - self.started, 1e-9)
        remaining = (self.plan.total_steps - step - 1) * self.run.spec.train.batch_size * self.run.world.size
        if self.board is not None:
            self.board.add_scalar("train/loss", loss, step)
            self.board.add_scalar("train/lr", lr, step)
        self.bar.step(epoch, self.plan.epochs, i + 1, self.plan.steps_per_epoch, loss, lr, rate,
                      remaining / max(rate, 1e-9), self.flops / max(time.time() - self.started, 1e-9) / 1e9)

    def row(self, epoch: int) -> dict[str, Any]:
        """The epoch's metrics: mean loss over its steps, throughput, seconds."""
        self.bar.end_epoch()
        seconds = time.time() - self.started
        return {"epoch": epoch + 1, "loss": self.loss_sum / max(1, self.steps),
                "images_per_s": self.seen / max(seconds, 1e-9), "train_s": seconds,
                "gflops_per_s": self.flops / max(seconds, 1e-9) / 1e9}

    def validated(self, row: dict[str, Any], epoch: int) -> None:
        """The epoch's validation scores (in `row`) to TensorBoard and the log."""
        if self.board is not None:
            for name in ("miou", "pixel_acc", "mean_acc", "fwiou"):
                self.board.add_scalar(f"val/{name}", row[name], epoch + 1)
        self.run.say(f"epoch {epoch + 1}/{self.plan.epochs}: loss {row['loss']:.4f}, val mIoU {row['miou']:.4f}, "
                     f"pixel acc {row['pixel_acc']:.4f}, {row['images_per_s']:.1f} img/s, "
                     f"{row['gflops_per_s']:.1f} GFLOP/s")

    def close(self) -> None:
        if self.board is not None:
            self.board.close()


# -- the run ---------------------------------------------------------------------------------------
def _write_metrics(run_dir: Path, history: list[dict[str, Any]]) -> None:
    import pandas as pd

    atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in history))
    flat = [{k: v for k, v in row.items() if not isinstance(v, list)} for row in history]
    atomic_write_text(run_dir / "metrics.csv", pd.DataFrame(flat).to_csv(index=False))


def run_class_weights(spec: Spec, splits, run_dir: Path) -> list[float] | None:
    """The loss's class weights: the spec's list, or computed once from the training split and
    stored in <run dir>/class_weights.json (reused on resume)."""
    kind = spec.train.class_weights
    if not isinstance(kind, str):
        return kind
    path = run_dir / "class_weights.json"
    if path.is_file():
        try:
            stored = parse_json(path.read_text(encoding="utf-8"))
            if stored.get("kind") == kind and len(stored["weights"]) == spec.num_classes:
                return [float(w) for w in stored["weights"]]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass  # recompute below
    freq = class_frequencies(splits.train.base, spec.num_classes, spec.data.ignore_index)
    weights = class_weights(kind, freq)
    atomic_write_text(path, json.dumps({"kind": kind, "classes": splits.classes, "frequency": freq.tolist(),
                                        "weights": weights}, indent=2) + "\n")
    return weights


def train_spec(spec: Spec, runs_root: Path = Path("runs"), *, resume: bool = False, skip_bad: bool = False,
               log: Callable[[str], None] = print, progress: bool = True, tensorboard: bool = False
               ) -> dict[str, Any]:
    """Train and validate `spec`; returns the summary written to <run dir>/summary.json."""
    if spec.train.threads:
        torch.set_num_threads(spec.train.threads)
    device = resolve_device(spec.train.device)
    world = setup_world(device)
    run_dir = run_dir_for(spec, runs_root, skip_bad)
    finished = read_summary(run_dir)
    if finished is not None:
        log(f"{run_dir}: already finished; reusing its results")
        return finished
    if (run_dir / "last.pt").exists() and not resume:
        raise TrainingError(f"{run_dir}: an unfinished run is there; pass --resume to continue it")
    run = Run(spec, run_dir, device, world, log)
    if not world.main:
        return _train(run, resume, skip_bad, progress, tensorboard)
    run_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(run_dir):
        return _train(run, resume, skip_bad, progress, tensorboard)


def _train(run: Run, resume: bool, skip_bad: bool, progress: bool, tensorboard: bool) -> dict[str, Any]:
    """Set up, then per epoch: train, validate (every eval_every epochs and the last), save."""
    spec, resuming = run.spec, resume and (run.dir / "last.pt").exists()
    open_run_dir(run)
    splits, weights = load_data(run, skip_bad)
    model, padded, net = build_model(run, resuming)
    optimizer = make_optimizer(model, spec.train)
    criterion = partial(training_loss, t=spec.train, ignore=spec.data.ignore_index,
                        aux_weights=model.aux_weights, weights=weights)
    plan = Plan.of(spec.train, len(splits.train), run.world)
    val_loader = validation_loader(run, splits.val)
    start, best, history = resume_from(run, model, optimizer) if resuming else (0, -1.0, [])
    params = sum(p.numel() for p in model.parameters())
    run.say(f"{spec.name}: {params:,} params on {run.device}, {len(splits.train)} train / "
            f"{len(splits.val)} val images, {plan.epochs} epochs x {plan.steps_per_epoch} steps")
    meter, started, confusion = Meter(run, plan, progress, tensorboard), time.time(), None
    for epoch in range(start, plan.epochs):
        row = train_one_epoch(run, net, criterion, optimizer, splits.train, plan, epoch, meter)
        if plan.validates(epoch):
            confusion = validate(run, padded, val_loader, splits.val_stems)
            row.update(confusion.compute())
            meter.validated(row, epoch)
        history.append(row)
        if run.world.main:
            best = save_epoch(run, model, optimizer, splits, epoch, history, best)
    if confusion is None:  # resumed after the last epoch: evaluate what was saved
        confusion = validate(run, padded, val_loader)
    meter.close()
    return finish(run, summarize(run, plan, params, splits.classes, history, confusion, started))


# -- setup -----------------------------------------------------------------------------------------
@dataclass
class Run:
    """One training run: its spec, its folder, where it computes; rank 0 alone speaks and writes."""

    spec: Spec
    dir: Path
    device: torch.device
    world: World
    log: Callable[[str], None]

    def say(self, text: str) -> None:
        """Log a line, and append it with the time to <run dir>/log.txt."""
        if self.world.main:
            self.log(text)
            with open(self.dir / "log.txt", "a", encoding="utf-8", errors="backslashreplace") as handle:
                handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")


@dataclass(frozen=True)
class Plan:
    """The run's length: optimiser steps per epoch and in all (train.iterations may end the last
    epoch early), epochs, and which epochs validate."""

    steps_per_epoch: int
    total_steps: int
    epochs: int
    eval_every: int

    @classmethod
    def of(cls, t: TrainSettings, train_images: int, world: World) -> Plan:
        steps_per_epoch = math.ceil(train_images / (t.batch_size * world.size))
        total_steps = t.iterations or t.epochs * steps_per_epoch
        return cls(steps_per_epoch, total_steps, math.ceil(total_steps / steps_per_epoch), t.eval_every)

    def validates(self, epoch: int) -> bool:
        return (epoch + 1) % self.eval_every == 0 or epoch + 1 == self.epochs


def open_run_dir(run: Run) -> None:
    """Mark the folder as this spec's run: spec.json written, an earlier failure note removed."""
    if run.world.main:
        run.dir.mkdir(parents=True, exist_ok=True)
        (run.dir / "failed.txt").unlink(missing_ok=True)  # a resumed run is no longer a failed one
        atomic_write_text(run.dir / "spec.json", json.dumps(run.spec.canonical(), indent=2) + "\n")


def load_data(run: Run, skip_bad: bool) -> tuple[Splits, list[float] | None]:
    """The training and validation sets (sizes checked against the spec; bad samples skipped with
    --skip-bad) and the loss's class weights."""
    spec = run.spec
    splits = make_splits(spec.data, spec.train, spec.num_classes, skip_bad, spec.input.channels)
    if splits.skipped:
        run.say(f"skipped {len(splits.skipped)} bad sample(s): " + "; ".join(splits.skipped[:3]))
    check_sizes(spec, data_sizes(spec, splits), spec.data.pad, str(spec.data.path or "synthetic data"))
    return splits, run_class_weights(spec, splits, run.dir)  # atomic writes: ranks may race harmlessly


def build_model(run: Run, resuming: bool) -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module]:
    """(model, padded, net): the spec compiled with train.seed's initialisation, or train.init's
    weights when not resuming; behind the padding wrapper that validation calls; and what
    training calls, under DDP when distributed."""
    spec = run.spec
    torch.manual_seed(spec.train.seed)
    model = compile_spec(spec, run.device)
    padded = PadToValid(model, spec) if spec.data.pad else model  # any image size: pad in, crop scores back
    net: torch.nn.Module = DistributedDataParallel(padded) if run.world.size > 1 else padded
    if spec.train.init and not resuming:
        surgery = init_from(spec, Path(spec.train.init), spec.train.init_map, model)
        model.load_state_dict(surgery.state)
        run.say(f"initialised from {spec.train.init} ({spec.train.init_map}): "
                + surgery.describe().splitlines()[0])
    return model, padded, net


def resume_from(run: Run, model: torch.nn.Module, optimizer: torch.optim.Optimizer
                ) -> tuple[int, float, list[dict[str, Any]]]:
    """Weights and optimiser state from last.pt; (first epoch to run, best val mIoU, metric rows).
    A last.pt whose parts are not what training wrote is a one-line error."""
    path = run.dir / "last.pt"
    state = load_resumable(path, run.spec, run.device)
    epoch, best, history = state["epoch"], state["best"], state["history"]
    if not (isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 0 and is_number(best)
            and isinstance(history, list) and all(is_history_row(r) and is_number(r.get("train_s"))
                                                  and is_number(r.get("images_per_s")) for r in history)):
        raise CheckpointError(f"{path}: not a training checkpoint (its epoch, best score or history is garbled); "
                              "delete it to start over")
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise CheckpointError(f"{path}: cannot resume from it ({' '.join(str(exc).split())[:200]})") from None
    run.say(f"resuming {run.dir} after epoch {epoch + 1}")
    return epoch + 1, float(best), history


def loader_settings(run: Run) -> dict[str, Any]:
    """What training and validation batches share: size, workers, pinned memory on CUDA, and
    images padded to the largest in the batch."""
    t = run.spec.train
    return {"batch_size": t.batch_size, "num_workers": t.workers, "pin_memory": run.device.type == "cuda",
            "collate_fn": partial(pad_collate, ignore_index=run.spec.data.ignore_index),
            "persistent_workers": False}


def training_loader(run: Run, train_set: Dataset, epoch: int) -> DataLoader:
    """This epoch's batches in an order fixed by (seed, epoch); under DDP this rank's share."""
    t, world = run.spec.train, run.world
    if world.size > 1:
        sampler = DistributedSampler(train_set, world.size, world.rank, shuffle=True, seed=t.seed)
        sampler.set_epoch(epoch)
    else:
        sampler = RandomSampler(train_set, generator=torch.Generator().manual_seed(t.seed * 31 + epoch))
    return DataLoader(train_set, sampler=sampler, **loader_settings(run))


def validation_loader(run: Run, val_set: Dataset) -> DataLoader:
    """This rank's share of the validation images, in order; no padding, so the counts are exact."""
    indices = list(range(run.world.rank, len(val_set), run.world.size))
    return DataLoader(Subset(val_set, indices), shuffle=False, **loader_settings(run))


# -- an epoch --------------------------------------------------------------------------------------
def train_one_epoch(run: Run, net: torch.nn.Module, criterion: Callable[..., torch.Tensor],
                    optimizer: torch.optim.Optimizer, train_set: Dataset, plan: Plan, epoch: int,
                    meter: Meter) -> dict[str, Any]:
    """One epoch of optimiser steps; its row of metrics (mean loss, images/s, GFLOP/s)."""
    t = run.spec.train
    torch.manual_seed(t.seed * 1009 + epoch)  # dropout and sampling depend on (seed, epoch) only
    train_set.epoch = epoch  # augmentation too
    net.train()
    meter.start()
    for i, (images, masks) in enumerate(training_loader(run, train_set, epoch)):
        step = epoch * plan.steps_per_epoch + i
        if step >= plan.total_steps:
            break
        set_lr(optimizer, t, step, plan.total_steps)
        images = images.to(run.device, non_blocking=True)  # [B, C, H, W]
        masks = masks.to(run.device, non_blocking=True)  # [B, H, W]
        with autocast(run.device, t.amp):
            loss = criterion(net(images), masks)
        stop_unless_finite(run, loss, epoch, i)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        meter.step(epoch, i, step, images, loss.item(), optimizer.param_groups[0]["lr"])
    return meter.row(epoch)


def set_lr(optimizer: torch.optim.Optimizer, t: TrainSettings, step: int, total_steps: int) -> None:
    """The schedule's learning rate at `step`, times each group's multiplier (biases: bias_lr_mult)."""
    for group in optimizer.param_groups:
        group["lr"] = t.lr * group["lr_mult"] * lr_factor(step, total_steps, t)


def stop_unless_finite(run: Run, loss: torch.Tensor, epoch: int, i: int) -> None:
    """A NaN or infinite loss ends the run before it reaches the weights; last.pt keeps the last
    good epoch and failed.txt says why (reports show it)."""
    if torch.isfinite(loss):
        return
    message = (f"loss became {loss.item()} at epoch {epoch + 1}, step {i + 1}; "
               f"stopped, last good checkpoint kept in {run.dir / 'last.pt'}")
    if run.world.main:
        atomic_write_text(run.dir / "failed.txt", message + "\n")
    raise TrainingError(message)


def validate(run: Run, model: torch.nn.Module, loader: DataLoader, stems: list[str] | None = None
             ) -> ConfusionMatrix:
    """The validation confusion matrix, every rank's share summed; given the split's `stems` (one
    process only) also per-image-<val split>.npz, the counts `fcngraph eval` writes."""
    spec = run.spec
    sync_buffers(model, run.world)
    stems = stems if run.world.size == 1 else None  # a rank's share is not the split's order
    confusion, per_image = score_loader(model, loader, spec.num_classes, run.device, spec.data.ignore_index,
                                        stems, amp=spec.train.amp)
    confusion.all_reduce()
    if per_image is not None and per_image.stems:
        per_image.save(run.dir / f"per-image-{spec.data.val_split}.npz")
    return confusion


def save_epoch(run: Run, model: torch.nn.Module, optimizer: torch.optim.Optimizer, splits: Splits,
               epoch: int, history: list[dict[str, Any]], best: float) -> float:
    """metrics.jsonl/csv and last.pt; best.pt too when this epoch's val mIoU beats `best`.
    Returns the new best."""
    score = history[-1].get("miou", -1.0)
    _write_metrics(run.dir, history)
    save_checkpoint(run.dir / "last.pt", run_checkpoint(
        model, epoch, run.spec, splits.classes, splits.palette, optimizer=optimizer.state_dict(),
        best=max(best, score), history=history))
    if score > best:
        save_checkpoint(run.dir / "best.pt", run_checkpoint(model, epoch, run.spec, splits.classes, splits.palette))
    return max(best, score)


# -- the end ---------------------------------------------------------------------------------------
def summarize(run: Run, plan: Plan, params: int, classes: list[str], history: list[dict[str, Any]],
              confusion: ConfusionMatrix, started: float) -> dict[str, Any]:
    """summary.json: the last validation's scores and confusion matrix, the run's throughput, and
    which epoch best.pt holds."""
    train_s = sum(r["train_s"] for r in history)
    return {"spec": run.spec.name, "hash": run.spec.digest(), "status": "complete", "epochs": plan.epochs,
            "steps": plan.total_steps, "params": params, "train_s": train_s, "wall_s": time.time() - started,
            "images_per_s": sum(r["images_per_s"] * r["train_s"] for r in history) / max(train_s, 1e-9),
            "gflops_per_s": sum(r.get("gflops_per_s", 0.0) * r["train_s"] for r in history) / max(train_s, 1e-9),
            "classes": classes, "world_size": run.world.size,
            **confusion.compute(), "confusion": confusion.matrix.tolist(), "checkpoint": "last",
            **best_and_last(history)}


def finish(run: Run, summary: dict[str, Any]) -> dict[str, Any]:
    """Write summary.json (its presence marks the run finished) and say how it ended."""
    if run.world.main:
        atomic_write_text(run.dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    run.say(f"done: last epoch val mIoU {summary['miou']:.4f} (pixel acc {summary['pixel_acc']:.4f}, mean acc "
            f"{summary['mean_acc']:.4f}, f.w. IoU {summary['fwiou']:.4f}), {summary['images_per_s']:.1f} img/s, "
            f"{summary['gflops_per_s']:.1f} GFLOP/s; best.pt holds epoch "
            f"{summary['best_epoch']} (val mIoU {summary['best_miou']:.4f}) -> {run.dir}")
    return summary
