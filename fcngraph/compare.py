"""Specs or run directories → `RunRecord`s, the rows of a comparison report.

`compare_specs` trains each spec that has no finished run with the same spec hash (finished
runs are reused, unfinished ones resumed) and `read_run` reads what a run directory holds:
a finished summary, or the last evaluated epoch of an unfinished or failed run. Latency is
measured once per run, device and size and cached in the run directory, so a second report
from the same runs is identical; the qualitative predictions are deterministic on CPU.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .bench import alternate, forward_step, median
from .checkpoint import (
    CheckpointError,
    checkpoint_path,
    is_history_row,
    load_checkpoint,
    read_summary,
    require_checkpoint,
)
from .compile import compile_spec
from .data import Splits, make_splits
from .errors import FcngraphError
from .io import atomic_write_text, parse_json
from .shapes import analyze
from .spec import Spec, load_spec
from .train import run_dir_for, train_spec

LATENCY_SECONDS = 2.0  # time budget per measurement: many reps for small models, at least 5 for big ones


@dataclass
class RunRecord:
    """One variant of a report: what its run directory says, or why it says nothing."""

    name: str
    path: Path
    status: str  # complete, incomplete, failed, missing
    note: str = ""
    spec: Spec | None = None
    scores: dict[str, Any] = field(default_factory=dict)  # summary.json, or the last evaluated epoch
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        return list(self.scores.get("classes") or [])

    def checkpoint(self) -> Path | None:
        try:
            return checkpoint_path(self.path)
        except CheckpointError:
            return None


def _read_history(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
        try:
            row = parse_json(line)
        except ValueError:
            break  # a torn last line of a killed run
        if not is_history_row(row):
            break  # nor is anything after a line that is not a metrics row
        rows.append(row)
    return rows


def read_run(run_dir: Path) -> RunRecord:
    """A run directory → its record; never raises for a missing, unfinished or broken run."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return RunRecord(run_dir.name, run_dir, "missing", "no such run directory")
    try:
        if (run_dir / "spec.json").exists() and not (run_dir / "spec.json").is_file():
            raise ValueError("not a regular file")  # a FIFO: reading would wait forever
        doc = parse_json((run_dir / "spec.json").read_text(encoding="utf-8"))
        if not isinstance(doc, dict):  # a JSON string would be taken for a spec file's path
            raise ValueError("not a JSON object")
        spec = load_spec(doc, file=str(run_dir / "spec.json"))
    except (OSError, ValueError, FcngraphError) as exc:
        return RunRecord(run_dir.name, run_dir, "failed", f"spec.json unreadable: {str(exc).splitlines()[0]}")
    history = _read_history(run_dir)
    try:
        summary = read_summary(run_dir)
    except FcngraphError as exc:
        return RunRecord(spec.name, run_dir, "failed", str(exc), spec, {}, history)
    if summary is not None:
        start = f"from {Path(spec.train.init).name}" if spec.train.init else ""  # a staged run says its start
        return RunRecord(spec.name, run_dir, "complete", start, spec, summary, history)
    evaluated = [row for row in history if "miou" in row]
    last = {**(evaluated[-1] if evaluated else {}), "classes": None}
    failure = run_dir / "failed.txt"
    if failure.is_file():
        note = failure.read_bytes().decode("utf-8", errors="replace").strip()
        return RunRecord(spec.name, run_dir, "failed", note, spec, last, history)
    done = f"after epoch {history[-1]['epoch']}" if history else "before its first epoch"
    return RunRecord(spec.name, run_dir, "incomplete", f"stopped {done}", spec, last, history)


def compare_specs(specs: list[Spec], runs_root: Path, log: Callable[[str], None] = print,
                  progress: bool = False) -> list[RunRecord]:
    """Train (or reuse, or resume) each spec's run; a spec that fails becomes a failed record."""
    records = []
    for spec in specs:
        run_dir = run_dir_for(spec, runs_root)
        try:
            train_spec(spec, runs_root, resume=True, log=log, progress=progress)
        except FcngraphError as exc:
            log(f"{spec.name}: failed: {exc}")
            record = read_run(run_dir)
            if record.status != "failed":
                record.status, record.note = "failed", str(exc)
            records.append(record)
            continue
        records.append(read_run(run_dir))
    return records


def distinct_names(records: list[RunRecord]) -> list[RunRecord]:
    """Variant names are table columns: a later run with a name already used gets its directory added."""
    seen: set[str] = set()
    for record in records:
        if record.name in seen:
            record.name = f"{record.name} ({record.path.name})"
        seen.add(record.name)
    return records


# -- measurements that need the model ---------------------------------------------------------------
def data_key(spec: Spec) -> str:
    """Runs whose specs share this key were validated on the same images with the same classes."""
    return f"{spec.num_classes}:{spec.digest(('data',))}"


def load_splits(spec: Spec) -> Splits:
    return make_splits(spec.data, spec.train, spec.num_classes, skip_bad=True)


def eval_size(splits: Splits) -> tuple[int, int]:
    image, _ = splits.val[0]  # [3, H, W]
    return int(image.shape[1]), int(image.shape[2])


def gflops(spec: Spec, size: tuple[int, int]) -> float:
    try:
        return analyze(spec, size).flops / 1e9
    except FcngraphError:
        return math.nan  # the model does not run at that size


def latency_ms(record: RunRecord, size: tuple[int, int], device: str = "cpu", backend: str | None = None) -> float:
    """Median batch-1 forward time at `size` on the inference backend `eval`/`predict` use by
    default (onnxruntime when installed), measured once and cached in the run directory."""
    from .infer import default_backend, on_backend

    backend = backend or ("torch" if device != "cpu" else default_backend())
    cache_path = record.path / "latency.json"
    key = f"{device}:{backend}:{size[0]}x{size[1]}:threads={torch.get_num_threads()}"
    try:
        cache = parse_json(cache_path.read_text(encoding="utf-8")) if cache_path.is_file() else {}
    except (OSError, ValueError):
        cache = {}  # a cache that cannot be read is measured again
    if not isinstance(cache, dict):
        cache = {}
    if not isinstance(cache.get(key), (int, float)) or isinstance(cache[key], bool):
        model = on_backend(compile_spec(record.spec, device).eval(), backend, record.spec.input.channels, device)
        x = torch.randn(1, record.spec.input.channels, *size, device=device)  # [1, C, H, W]
        step = forward_step(model, x)
        first = alternate({"forward": step}, 1, torch.device(device), warmup=2)["forward"][0] / 1e3
        reps = max(5, min(200, int(LATENCY_SECONDS / max(first, 1e-6))))
        times = alternate({"forward": step}, reps, torch.device(device))
        cache[key] = round(median(times["forward"]), 3)
        atomic_write_text(cache_path, json.dumps(cache, indent=2, sort_keys=True) + "\n")
    return cache[key]


@torch.no_grad()
def predictions(record: RunRecord, splits: Splits, indices: list[int]) -> list[torch.Tensor] | None:
    """The record's label maps for validation images `indices`, or None without a checkpoint."""
    path = record.checkpoint()
    if path is None:
        return None
    net = _trained_net(record, path)
    return [net(splits.val[i][0][None]).argmax(1)[0] for i in indices]  # each [H, W]


def _trained_net(record: RunRecord, path: Path) -> torch.nn.Module:
    """The run's model with the weights at `path`, in eval mode, behind the padding wrapper so it
    labels any image size as training evaluated it."""
    from .sizing import PadToValid

    model = compile_spec(record.spec).eval()
    try:
        model.load_state_dict(require_checkpoint(load_checkpoint(path), path)["model"])
    except (RuntimeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: weights do not fit the run's spec '{record.spec.name}' "
                              f"({' '.join(str(exc).split())[:200]})") from None
    return PadToValid(model, record.spec)


# -- seeds, per-image counts, parallel runs --------------------------------------------------------
def per_image_counts(record: RunRecord, splits: Splits) -> dict[str, Any] | None:
    """Per validation image and class: tp, ground-truth and predicted pixels (int64 [N, C]) and ids,
    of the run's final weights (last.pt), which its summary's scores come from. Training writes them
    at every validation (<run>/per-image-<val split>.npz); older runs are scored once here, by the
    same scoring loop, and cached."""
    from torch.utils.data import DataLoader

    from .evaluate import load_per_image, score_loader

    if record.spec is None:
        return None
    split = record.spec.data.val_split
    if not (record.path / f"per-image-{split}.npz").is_file():
        path = record.path / "last.pt" if (record.path / "last.pt").is_file() else record.checkpoint()
        if path is None:
            return None
        _, per_image = score_loader(_trained_net(record, path), DataLoader(splits.val, batch_size=1),
                                    record.spec.num_classes, "cpu", record.spec.data.ignore_index,
                                    splits.val_stems)
        per_image.save(record.path / f"per-image-{split}.npz")
    counts = load_per_image(record.path, split, record.spec.num_classes)
    return {"ids": counts["stems"], "tp": counts["tp"], "gt": counts["gt"], "pred": counts["pred"]}


def _train_one(spec_data: dict[str, Any], runs_root: str, threads: int) -> None:
    """One run in a worker process: its own share of the cores, no progress output."""
    from .spec import load_spec as load

    if threads:
        torch.set_num_threads(threads)
    train_spec(load(spec_data), Path(runs_root), resume=True, log=lambda _: None, progress=False)


def run_on_ray(specs: list[Spec], runs_root: Path, address: str, threads: int,
               log: Callable[[str], None] = print) -> dict[int, str]:
    """Each run a Ray task needing `threads` CPUs (and a GPU when its device asks for CUDA), retried
    once when it fails; run directories must be on a filesystem every node sees. → {index: error}."""
    try:
        import ray
    except ImportError:
        raise FcngraphError("--ray needs Ray: pip install -e \".[ray]\"") from None
    ray.init(address=None if address == "local" else address, ignore_reinit_error=True,
             include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    task = ray.remote(max_retries=1, retry_exceptions=True)(_train_one)
    refs = [task.options(num_cpus=threads, num_gpus=1 if spec.train.device.startswith("cuda") else 0)
            .remote(spec.canonical(), str(Path(runs_root).resolve()), threads) for spec in specs]
    errors: dict[int, str] = {}
    for i, (spec, ref) in enumerate(zip(specs, refs)):
        try:
            ray.get(ref)
            log(f"{spec.name} (seed {spec.train.seed}): done on Ray")
        except Exception as exc:  # noqa: BLE001 — failed twice: reported in the table
            errors[i] = " ".join(str(exc).split()).split(" Traceback")[0][:300] or type(exc).__name__
            log(f"{spec.name} (seed {spec.train.seed}): failed on Ray after a retry: {errors[i]}")
    return errors


def run_in_processes(specs: list[Spec], runs_root: Path, jobs: int, threads: int,
                     log: Callable[[str], None] = print) -> dict[int, str]:
    """Runs in `jobs` spawned processes with `threads` torch threads each → {index: error}."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    errors: dict[int, str] = {}
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_train_one, spec.canonical(), str(runs_root), threads) for spec in specs]
        for i, (spec, future) in enumerate(zip(specs, futures)):
            try:
                future.result()
                log(f"{spec.name} (seed {spec.train.seed}): done")
            except Exception as exc:  # noqa: BLE001 — a worker's failure is reported in the table
                errors[i] = " ".join(str(exc).split()) or type(exc).__name__
                log(f"{spec.name} (seed {spec.train.seed}): failed: {errors[i]}")
    return errors


def run_all(specs: list[Spec], runs_root: Path, jobs: int = 1, threads: int = 0,
            log: Callable[[str], None] = print, progress: bool = False, ray: str | None = None
            ) -> list[RunRecord]:
    """Train every spec (seeds are separate specs); `jobs` > 1 runs them as that many processes with
    `threads` torch threads each (0: the cores split evenly), `ray` ('local', 'auto' or an address) as
    Ray tasks. Same specs → same numbers every way, given the same threads per run. A run that fails
    becomes a failed record, never an exception."""
    import os

    if jobs <= 1 and ray is None:
        if threads:
            torch.set_num_threads(threads)
        return compare_specs(specs, runs_root, log, progress)
    threads = threads or max(1, (os.cpu_count() or 1) // max(jobs, 1))
    if ray is not None:
        errors = run_on_ray(specs, runs_root, ray, threads, log)
    else:
        errors = run_in_processes(specs, runs_root, jobs, threads, log)
    records = []
    for i, spec in enumerate(specs):
        record = read_run(run_dir_for(spec, runs_root))
        if i in errors and record.status != "failed":
            record.status, record.note = "failed", errors[i]
        records.append(record)
    return records


def run_in_stages(specs: list[Spec], stages: list[int], runs_root: Path, **options: Any) -> list[RunRecord]:
    """`run_all` stage by stage: the runs of stage k start from (train.init) runs of earlier stages,
    so each stage waits for the one before; runs within a stage go in parallel as `run_all` allows."""
    records: list[RunRecord | None] = [None] * len(specs)
    for stage in sorted(set(stages)):
        indices = [i for i, s in enumerate(stages) if s == stage]
        for i, record in zip(indices, run_all([specs[i] for i in indices], runs_root, **options)):
            records[i] = record
    return records  # type: ignore[return-value]


def statistics(grid: dict[str, dict[int, RunRecord]], baseline: str | None = None,
               log: Callable[[str], None] = print):
    """display name → seed → record  →  `stats.Comparison` of the variants whose every seed has a
    checkpoint (others are named in the log), or None when fewer than one variant is left."""
    from .stats import compare, from_per_image

    splits_by_key: dict[str, Splits] = {}
    counts, classes = [], ()
    for name, by_seed in grid.items():
        per_seed = {}
        for seed, record in by_seed.items():
            if record.spec is None:
                break
            key = data_key(record.spec)
            if key not in splits_by_key:
                splits_by_key[key] = load_splits(record.spec)
            classes = tuple(splits_by_key[key].classes)
            arrays = per_image_counts(record, splits_by_key[key])
            if arrays is None:
                break
            per_seed[seed] = arrays
        if len(per_seed) != len(by_seed):
            log(f"statistics leave out {name}: a seed has no finished run")
            continue
        counts.append(from_per_image(name, per_seed))
    if not counts:
        return None
    names = [c.name for c in counts]
    return compare(counts, baseline if baseline in names else names[0], classes)
