"""Checkpoint files and a run folder's saved state, for every command that reads or writes them.

Input: a run directory or a `.pt` file. Output: the checkpoint's dict (read safely: weights only,
every unreadable file a one-line error), a model rebuilt from the spec it carries, or the run's
summary. Writes are atomic: a kill leaves the previous file whole.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .compile import compile_spec
from .errors import FcngraphError
from .images import is_palette
from .io import atomic_write, parse_json
from .spec import Spec, load_spec


class CheckpointError(FcngraphError):
    """A checkpoint or run folder that cannot be read, or that does not fit what it is used for."""


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """torch.save through a temp file and rename: a kill never leaves half a checkpoint."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write(path, lambda handle: handle.write(buffer.getvalue()))


def run_checkpoint(model: torch.nn.Module, epoch: int, spec: Spec, classes: list[str],
                   palette: list[tuple[int, int, int]], **resume: Any) -> dict[str, Any]:
    """What a run's checkpoint carries: weights, the 0-based epoch, the spec (eval, predict and
    export need no spec file), class names and palette (predict needs no dataset folder);
    `resume`: last.pt's optimizer, best score and history."""
    return {"model": model.state_dict(), "epoch": epoch, **resume, "spec": spec.canonical(),
            "classes": classes, "palette": [list(c) for c in palette]}


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """What a checkpoint file holds (a file that cannot be read is a one-line error);
    weights_only=True refuses pickles that would run code."""
    if Path(path).exists() and not Path(path).is_file():  # a FIFO would block torch.load forever
        raise CheckpointError(f"{path}: cannot load checkpoint (not a regular file)")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickles before refusing them
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch/pickle raise many types for corrupt or unsafe files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if "weights_only" in first or "Weights only" in first:
            first = "it holds Python objects other than tensors; refused, as loading them could run code"
        raise CheckpointError(f"{path}: cannot load checkpoint ({first[:200]})") from None
    return state


def require_checkpoint(state: Any, path: Path, *keys: str) -> dict[str, Any]:
    """`state` if it is an fcngraph checkpoint with these keys; a one-line error otherwise."""
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict) or any(k not in state for k in keys):
        wanted = ", ".join(("model", *keys))
        raise CheckpointError(f"{path}: not an fcngraph checkpoint (expected a dict with {wanted})")
    return state


def load_resumable(path: Path, spec: Spec, device: torch.device | str) -> dict[str, Any]:
    """last.pt of an unfinished run of `spec`, with what resuming needs (optimizer, epoch, history)."""
    state = require_checkpoint(load_checkpoint(path, device), path, "optimizer", "epoch", "best", "history", "spec")
    if state["spec"] != spec.canonical():  # the run hash covers the spec, but a hand-edited folder may lie
        raise CheckpointError(f"{path}: it was trained from a different spec; resuming it with this one "
                              "would mix two experiments")
    return state


def restore_model(state: dict[str, Any], path: Path, device: torch.device | str = "cpu"):
    """(spec, model with the checkpoint's weights); a missing spec or mismatched weights → one line."""
    state = require_checkpoint(state, path)
    if not isinstance(state.get("spec"), dict):
        raise CheckpointError(f"{path}: checkpoint carries no spec; give it to a command that takes one")
    spec = load_spec(state["spec"], file=str(path))
    model = compile_spec(spec, device)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: weights do not fit the spec '{spec.name}' "
                              f"({' '.join(str(exc).split())[:200]})") from None
    return spec, model


@dataclass
class Trained:
    """A trained model read from a run directory or checkpoint file."""

    path: Path  # the checkpoint file
    state: dict[str, Any]
    spec: Spec
    model: torch.nn.Module

    @property
    def extras(self) -> dict[str, Any]:
        """The class names and palette the run trained with, where the checkpoint has them; names or
        colours that are not one name / one [r, g, b] in 0..255 per class are a one-line error."""
        extras = {key: self.state[key] for key in ("classes", "palette") if self.state.get(key) not in (None, [])}
        classes, palette, n = extras.get("classes"), extras.get("palette"), self.spec.num_classes
        if classes is not None and (not isinstance(classes, list) or len(classes) != n
                                    or not all(isinstance(c, str) for c in classes)):
            raise CheckpointError(f"{self.path}: its 'classes' are not {n} class names")
        if palette is not None and not is_palette(palette, n):
            raise CheckpointError(f"{self.path}: its 'palette' is not one [r, g, b] (0..255) per class")
        return extras


def load_trained(source: Path, which: str = "best", device: torch.device | str = "cpu") -> Trained:
    """The model in `source` (a run directory's best.pt or last.pt, or a checkpoint file)."""
    path = checkpoint_path(Path(source), which)
    state = load_checkpoint(path, device)
    spec, model = restore_model(state, path, device)
    return Trained(path, state, spec, model)


def checkpoint_path(source: Path, which: str = "best") -> Path:
    """best.pt (falling back to last.pt) or last.pt of a run directory, or a checkpoint file."""
    if source.is_dir():
        for name in ((f"{which}.pt", "last.pt") if which == "best" else (f"{which}.pt",)):
            if (source / name).is_file():
                return source / name
        raise CheckpointError(f"{source}: no {which}.pt in this run directory")
    if not source.is_file():
        raise CheckpointError(f"{source}: no such run directory or checkpoint")
    return source


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """The finished run's summary, None if there is none; a garbled one is a one-line error."""
    path = run_dir / "summary.json"
    if not path.is_file():
        return None
    try:
        summary = parse_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable summary ({exc}); delete it to rerun") from None
    problem = summary_problem(summary)
    if problem:
        raise CheckpointError(f"{path}: not a run summary ({problem}); delete it to rerun")
    return summary


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_history_row(row: Any) -> bool:
    """A metrics row as training writes it: an integer epoch, numbers, and per-class lists of
    numbers under 'iou' and 'acc'."""
    def fits(key: str, value: Any) -> bool:
        if key in ("iou", "acc"):
            return isinstance(value, list) and all(is_number(x) for x in value)
        return is_number(value)

    return (isinstance(row, dict) and isinstance(row.get("epoch"), int) and not isinstance(row["epoch"], bool)
            and all(fits(k, v) for k, v in row.items()))


def summary_problem(summary: Any) -> str | None:
    """What makes `summary` unusable by the commands that read it (the scores are numbers, classes
    names, iou one number per class, the confusion matrix square), or None."""
    if not isinstance(summary, dict):
        return "not a JSON object"
    for key in ("miou", "pixel_acc", "mean_acc", "fwiou"):
        if not is_number(summary.get(key)):
            return f"'{key}' is not a number"
    for key in ("best_miou", "best_epoch", "last_epoch", "last_miou", "epochs", "train_s"):
        if key in summary and not is_number(summary[key]):
            return f"'{key}' is not a number"
    if ("best_epoch" in summary) != ("best_miou" in summary):  # training writes both; readers print both
        return "'best_epoch' without 'best_miou' or the other way round"
    classes, iou, confusion = summary.get("classes"), summary.get("iou"), summary.get("confusion")
    if classes is not None and (not isinstance(classes, list) or not all(isinstance(c, str) for c in classes)):
        return "'classes' is not a list of names"
    if iou is not None and (not isinstance(iou, list) or not all(is_number(v) for v in iou)
                            or classes is not None and len(iou) != len(classes)):
        return "'iou' is not one number per class"
    if confusion is not None and (not isinstance(confusion, list) or any(
            not isinstance(row, list) or len(row) != len(confusion) or not all(is_number(v) for v in row)
            for row in confusion)):
        return "'confusion' is not a square matrix of numbers"
    return None
