"""Spec (with train/data settings) → trained model, in a run directory.

`train_spec` is the whole loop: data, model, optimiser, epochs of training and validation,
atomic `last`/`best` checkpoints, metrics JSONL/CSV, a summary and a log. A rerun with
`resume=True` continues from `last` and ends where an uninterrupted run would (per-epoch
seeding). Under torchrun it uses DistributedDataParallel; rank 0 writes.
"""

from __future__ import annotations

import io
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Subset

from .compile import compile_spec
from .data import class_frequencies, class_weights, data_identity, make_splits, pad_collate
from .errors import FcngraphError
from .io import atomic_write, atomic_write_text, safe_stem
from .metrics import ConfusionMatrix
from .settings import TrainSettings
from .shapes import analyze
from .sizing import PadToValid, check_sizes
from .spec import Spec


class TrainingError(FcngraphError):
    """Training cannot go on (a NaN loss, an unfinished run without --resume, ...)."""


def run_hash(spec: Spec, skip_bad: bool = False) -> str:
    """Hash of what defines the experiment: the resolved spec with the data folder's location
    replaced by its identity (split files, classes, file names), plus --skip-bad."""
    import hashlib

    data = spec.canonical()
    data["data"]["path"] = data_identity(spec.data)
    data["skip_bad"] = skip_bad
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


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
        try:
            return int(self.path.read_text().strip())
        except (OSError, ValueError):
            return None

    def __exit__(self, *exc: object) -> None:
        if self._holder() == os.getpid():
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


def autocast(device: torch.device, amp: str):
    enabled = amp != "none" and device.type == "cuda"
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype, enabled=enabled)


@torch.no_grad()
def sync_buffers(model: torch.nn.Module, world: World) -> None:
    """Give every rank rank 0's buffers (BatchNorm running stats). DDP broadcasts them before each
    training forward, but that forward then updates each rank's copy with its own batch, so
    without this the ranks would validate their shards with different models."""
    if world.size > 1:
        for buffer in model.buffers():
            dist.broadcast(buffer, 0)


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader: DataLoader, num_classes: int, device: torch.device,
             amp: str = "none", ignore: int = 255, per_image_path: Path | None = None,
             stems: list[str] | None = None) -> ConfusionMatrix:
    """Confusion matrix of the model over a loader (summed across ranks when distributed);
    with per_image_path also the per-image counts `fcngraph eval` writes (one process only)."""
    from .evaluate import PerImage

    model.eval()
    confusion, per_image = ConfusionMatrix(num_classes, device, ignore), PerImage()
    for images, masks in loader:
        images = images.to(device, non_blocking=True)  # [B, C, H, W]
        masks = masks.to(device, non_blocking=True)  # [B, H, W]
        with autocast(device, amp):
            pred = model(images).argmax(1)  # [B, H, W]
        confusion.update(pred, masks)
        if per_image_path is not None:
            for p, m in zip(pred, masks):
                per_image.add((stems or [])[len(per_image.stems)] if stems else str(len(per_image.stems)),
                              p, m, num_classes, ignore)
    confusion.all_reduce()
    if per_image_path is not None and per_image.stems:
        per_image.save(per_image_path)
    return confusion


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


# -- the run ---------------------------------------------------------------------------------------
def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """torch.save through a temp file and rename: a kill never leaves half a checkpoint."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write(path, lambda handle: handle.write(buffer.getvalue()))


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """What a checkpoint file holds (a file that cannot be read is a one-line error);
    weights_only=True refuses pickles that would run code."""
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickles before refusing them
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch/pickle raise many types for corrupt or unsafe files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if "weights_only" in first or "Weights only" in first:
            first = "it holds Python objects other than tensors; refused, as loading them could run code"
        raise TrainingError(f"{path}: cannot load checkpoint ({first[:200]})") from None
    return state


def require_checkpoint(state: Any, path: Path, *keys: str) -> dict[str, Any]:
    """`state` if it is an fcngraph checkpoint with these keys; a one-line error otherwise."""
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict) or any(k not in state for k in keys):
        wanted = ", ".join(("model", *keys))
        raise TrainingError(f"{path}: not an fcngraph checkpoint (expected a dict with {wanted})")
    return state


def restore_model(state: dict[str, Any], path: Path, device: torch.device | str = "cpu"):
    """(spec, model with the checkpoint's weights); a missing spec or mismatched weights → one line."""
    from .spec import load_spec

    state = require_checkpoint(state, path)
    if not isinstance(state.get("spec"), dict):
        raise TrainingError(f"{path}: checkpoint carries no spec; give it to a command that takes one")
    spec = load_spec(state["spec"], file=str(path))
    model = compile_spec(spec, device)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError, TypeError) as exc:
        raise TrainingError(f"{path}: weights do not fit the spec '{spec.name}' "
                            f"({' '.join(str(exc).split())[:200]})") from None
    return spec, model


def checkpoint_path(source: Path, which: str = "best") -> Path:
    """best.pt (falling back to last.pt) or last.pt of a run directory, or a checkpoint file."""
    if source.is_dir():
        for name in ((f"{which}.pt", "last.pt") if which == "best" else (f"{which}.pt",)):
            if (source / name).is_file():
                return source / name
        raise TrainingError(f"{source}: no {which}.pt in this run directory")
    if not source.is_file():
        raise TrainingError(f"{source}: no such run directory or checkpoint")
    return source


def _write_metrics(run_dir: Path, history: list[dict[str, Any]]) -> None:
    import pandas as pd

    atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in history))
    flat = [{k: v for k, v in row.items() if not isinstance(v, list)} for row in history]
    atomic_write_text(run_dir / "metrics.csv", pd.DataFrame(flat).to_csv(index=False))


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """The finished run's summary, None if there is none; a garbled one is a one-line error."""
    path = run_dir / "summary.json"
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TrainingError(f"{path}: unreadable summary ({exc}); delete it to rerun") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("miou"), (int, float)):
        raise TrainingError(f"{path}: not a run summary (no 'miou'); delete it to rerun")
    return summary


def run_class_weights(spec: Spec, splits, run_dir: Path) -> list[float] | None:
    """The loss's class weights: the spec's list, or computed once from the training split and
    stored in <run dir>/class_weights.json (reused on resume)."""
    kind = spec.train.class_weights
    if not isinstance(kind, str):
        return kind
    path = run_dir / "class_weights.json"
    if path.is_file():
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
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
    if not world.main:
        return _train(spec, run_dir, device, world, resume, skip_bad, log, progress, tensorboard)
    run_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(run_dir):
        return _train(spec, run_dir, device, world, resume, skip_bad, log, progress, tensorboard)


def _train(spec: Spec, run_dir: Path, device: torch.device, world: World, resume: bool, skip_bad: bool,
           log: Callable[[str], None], progress: bool, tensorboard: bool) -> dict[str, Any]:
    t, d = spec.train, spec.data

    def say(text: str) -> None:
        if world.main:
            log(text)
            with open(run_dir / "log.txt", "a", encoding="utf-8") as handle:
                handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")

    if world.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "failed.txt").unlink(missing_ok=True)  # a resumed run is no longer a failed one
        atomic_write_text(run_dir / "spec.json", json.dumps(spec.canonical(), indent=2) + "\n")
    splits = make_splits(d, t, spec.num_classes, skip_bad, spec.input.channels)
    if splits.skipped:
        say(f"skipped {len(splits.skipped)} bad sample(s): " + "; ".join(splits.skipped[:3]))
    check_sizes(spec, data_sizes(spec, splits), d.pad, str(d.path or "synthetic data"))
    weights = run_class_weights(spec, splits, run_dir)  # atomic writes: ranks may race harmlessly
    torch.manual_seed(t.seed)
    model = compile_spec(spec, device)
    padded = PadToValid(model, spec) if d.pad else model  # any image size: pad in, crop scores back
    net: torch.nn.Module = DistributedDataParallel(padded) if world.size > 1 else padded
    if t.init and not (resume and (run_dir / "last.pt").exists()):
        from .surgery import init_from  # surgery reads checkpoints through this module

        surgery = init_from(spec, Path(t.init), t.init_map, model)
        model.load_state_dict(surgery.state)
        say(f"initialised from {t.init} ({t.init_map}): " + surgery.describe().splitlines()[0])
    optimizer = make_optimizer(model, t)
    loader_args = {"batch_size": t.batch_size, "num_workers": t.workers, "pin_memory": device.type == "cuda",
                   "collate_fn": pad_collate, "persistent_workers": False}
    val_indices = list(range(world.rank, len(splits.val), world.size))  # no padding: exact counts
    val_loader = DataLoader(Subset(splits.val, val_indices), shuffle=False, **loader_args)
    steps_per_epoch = math.ceil(len(splits.train) / (t.batch_size * world.size))
    total_steps = t.iterations or t.epochs * steps_per_epoch
    epochs = math.ceil(total_steps / steps_per_epoch)

    start_epoch, best, history = 0, -1.0, []
    if resume and (run_dir / "last.pt").exists():
        state = require_checkpoint(load_checkpoint(run_dir / "last.pt", device), run_dir / "last.pt",
                                   "optimizer", "epoch", "best", "history", "spec")
        if state.get("spec") != spec.canonical():  # the hash ignores nothing that matters, but a hand-
            raise TrainingError(f"{run_dir / 'last.pt'}: it was trained from a different spec; resuming "
                                "it with this one would mix two experiments")  # edited folder may lie
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, best, history = state["epoch"] + 1, state["best"], state["history"]
        say(f"resuming {run_dir} after epoch {start_epoch}")
    params = sum(p.numel() for p in model.parameters())
    say(f"{spec.name}: {params:,} params on {device}, "
        f"{len(splits.train)} train / {len(splits.val)} val images, {epochs} epochs x {steps_per_epoch} steps")
    bar = Progress(say, progress and world.main)
    board = open_tensorboard(run_dir, tensorboard and world.main)
    started, confusion = time.time(), None
    flops_at: dict[tuple[int, ...], int] = {}  # static forward FLOPs per image, by input size
    for epoch in range(start_epoch, epochs):
        torch.manual_seed(t.seed * 1009 + epoch)  # dropout and sampling depend on (seed, epoch) only
        splits.train.epoch = epoch
        if world.size > 1:
            sampler = DistributedSampler(splits.train, world.size, world.rank, shuffle=True, seed=t.seed)
            sampler.set_epoch(epoch)
        else:
            sampler = RandomSampler(splits.train, generator=torch.Generator().manual_seed(t.seed * 31 + epoch))
        loader = DataLoader(splits.train, sampler=sampler, **loader_args)
        net.train()
        epoch_start, seen, loss_sum, flops = time.time(), 0, 0.0, 0
        for i, (images, masks) in enumerate(loader):
            step = epoch * steps_per_epoch + i
            if step >= total_steps:
                break
            for group in optimizer.param_groups:
                group["lr"] = t.lr * group["lr_mult"] * lr_factor(step, total_steps, t)
            images = images.to(device, non_blocking=True)  # [B, 3, H, W]
            masks = masks.to(device, non_blocking=True)  # [B, H, W]
            with autocast(device, t.amp):
                loss = training_loss(net(images), masks, t, d.ignore_index, model.aux_weights, weights)
            if not torch.isfinite(loss):
                message = (f"loss became {loss.item()} at epoch {epoch + 1}, step {i + 1}; "
                           f"stopped, last good checkpoint kept in {run_dir / 'last.pt'}")
                if world.main:  # reports show why the run has no summary
                    atomic_write_text(run_dir / "failed.txt", message + "\n")
                raise TrainingError(message)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += images.shape[0] * world.size
            size = tuple(images.shape[-2:])
            flops_at.setdefault(size, analyze(spec, size).flops)  # type: ignore[arg-type]
            flops += 3 * flops_at[size] * images.shape[0] * world.size  # backward ≈ 2× forward
            loss_sum += loss.item()
            rate = seen / max(time.time() - epoch_start, 1e-9)
            remaining = (total_steps - step - 1) * t.batch_size * world.size / max(rate, 1e-9)
            if board is not None:
                board.add_scalar("train/loss", loss.item(), step)
                board.add_scalar("train/lr", optimizer.param_groups[0]["lr"], step)
            bar.step(epoch, epochs, i + 1, steps_per_epoch, loss.item(), optimizer.param_groups[0]["lr"],
                     rate, remaining, flops / max(time.time() - epoch_start, 1e-9) / 1e9)
        bar.end_epoch()
        train_seconds = time.time() - epoch_start
        row: dict[str, Any] = {"epoch": epoch + 1, "loss": loss_sum / max(1, i + 1),
                               "images_per_s": seen / max(train_seconds, 1e-9), "train_s": train_seconds,
                               "gflops_per_s": flops / max(train_seconds, 1e-9) / 1e9}
        if (epoch + 1) % t.eval_every == 0 or epoch + 1 == epochs:
            sync_buffers(model, world)
            confusion = evaluate(padded, val_loader, spec.num_classes, device, t.amp, d.ignore_index,
                                 per_image_path=run_dir / f"per-image-{d.val_split}.npz" if world.size == 1
                                 else None, stems=splits.val_stems)
            scores = confusion.compute()
            row.update(scores)
            if board is not None:
                for name in ("miou", "pixel_acc", "mean_acc", "fwiou"):
                    board.add_scalar(f"val/{name}", scores[name], epoch + 1)
            say(f"epoch {epoch + 1}/{epochs}: loss {row['loss']:.4f}, val mIoU {scores['miou']:.4f}, "
                f"pixel acc {scores['pixel_acc']:.4f}, {row['images_per_s']:.1f} img/s, "
                f"{row['gflops_per_s']:.1f} GFLOP/s")
        history.append(row)
        if world.main:
            _write_metrics(run_dir, history)
            is_best = row.get("miou", -1.0) > best
            best = max(best, row.get("miou", -1.0))
            meta = {"spec": spec.canonical(), "classes": splits.classes,
                    "palette": [list(c) for c in splits.palette]}  # predict needs no dataset folder
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                     "best": best, "history": history, **meta}
            save_checkpoint(run_dir / "last.pt", state)
            if is_best:
                best_state = {"model": model.state_dict(), "epoch": epoch, **meta}
                save_checkpoint(run_dir / "best.pt", best_state)
    final = confusion
    if final is None:  # resumed after the last epoch: evaluate what was saved
        sync_buffers(model, world)
        final = evaluate(padded, val_loader, spec.num_classes, device, t.amp, d.ignore_index)
    train_s = sum(r["train_s"] for r in history)
    summary = {"spec": spec.name, "hash": spec.digest(), "status": "complete", "epochs": epochs,
               "steps": total_steps, "params": params, "train_s": train_s, "wall_s": time.time() - started,
               "images_per_s": sum(r["images_per_s"] * r["train_s"] for r in history) / max(train_s, 1e-9),
               "gflops_per_s": sum(r.get("gflops_per_s", 0.0) * r["train_s"] for r in history) / max(train_s, 1e-9),
               "classes": splits.classes, "world_size": world.size,
               **final.compute(), "confusion": final.matrix.tolist(), "checkpoint": "last",
               **best_and_last(history)}
    if board is not None:
        board.close()
    if world.main:
        atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
        say(f"done: last epoch val mIoU {summary['miou']:.4f} (pixel acc {summary['pixel_acc']:.4f}, mean acc "
            f"{summary['mean_acc']:.4f}, f.w. IoU {summary['fwiou']:.4f}), {summary['images_per_s']:.1f} img/s, "
            f"{summary['gflops_per_s']:.1f} GFLOP/s; best.pt holds epoch "
            f"{summary['best_epoch']} (val mIoU {summary['best_miou']:.4f}) -> {run_dir}")
    return summary
