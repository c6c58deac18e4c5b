"""Training runs: bad data is named before training, a SIGKILLed run resumes to the same
result, a NaN loss stops with the last good checkpoint kept, predict writes masks."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from fcngraph.cli import main
from fcngraph.data import FolderSegmentation, SyntheticShapes
from fcngraph.errors import DataError

from .conftest import CAMVID, ROOT, SPECS, make_folder

QUICK = ["--set", "data.size=32", "--set", "data.train_samples=48", "--set", "data.val_samples=16",
         "--set", "train.batch_size=8", "--quiet"]


def test_synthetic_data_is_seeded_and_has_every_class():
    a, b = SyntheticShapes(16, 48, seed=3), SyntheticShapes(16, 48, seed=3)
    assert torch.equal(a[5][0], b[5][0]) and torch.equal(a[5][1], b[5][1])
    labels = torch.cat([a[i][1].flatten() for i in range(16)]).unique().tolist()
    assert labels == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("damage,words", [
    ("unreadable", "unreadable image"),
    ("size", "mask size 10x10 != image size 16x20"),
    ("label", "label 7 outside [0, 3) and not 255"),
    ("empty_split", "empty split"),
    ("missing_folder", "missing mask folder"),
])
def test_bad_data_is_named(tmp_path, damage, words):
    root = make_folder(tmp_path / "d")
    bad = root / "masks" / "s1.png"
    if damage == "unreadable":
        bad = root / "images" / "s1.png"
        bad.write_bytes(b"not a png")
    elif damage == "size":
        Image.fromarray(np.zeros((10, 10), np.uint8)).save(bad)
    elif damage == "label":
        Image.fromarray(np.full((20, 16), 7, np.uint8)).save(bad)
    elif damage == "empty_split":
        (root / "splits" / "train.txt").write_text("\n")
    else:
        for f in (root / "masks").iterdir():
            f.unlink()
        (root / "masks").rmdir()
    with pytest.raises(DataError) as info:
        FolderSegmentation(root, "train", 3)
    assert words in str(info.value)
    if damage in ("unreadable", "size", "label"):
        assert "s1.png" in str(info.value)
        kept = FolderSegmentation(root, "train", 3, skip_bad=True)
        assert len(kept) == 3 and len(kept.skipped) == 1


def test_cli_run_on_bad_data_exits_2_before_training(tmp_path, capsys):
    root = make_folder(tmp_path / "d", classes=6)
    Image.fromarray(np.full((20, 16), 9, np.uint8)).save(root / "masks" / "s2.png")
    code = main(["run", str(SPECS / "fcn32s-mini.json"), "--data", str(root), "--runs", str(tmp_path / "r"),
                 "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "s2.png" in err and err.count("\n") == 1
    assert not list((tmp_path / "r").glob("*/last.pt"))


def test_camvid_folder_loads_if_present():
    if not CAMVID.is_dir():
        pytest.skip("../shared/data/camvid is not beside this checkout")
    val = FolderSegmentation(CAMVID, "val", 11)
    image, mask = val[0]
    assert len(val) == 101 and image.shape == (3, 180, 240) and mask.shape == (180, 240)
    assert set(mask.unique().tolist()) <= set(range(11)) | {255}


def run_cli(args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "fcngraph", "run", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    args = [str(SPECS / "fcn8s-mini.json"), *QUICK, "--epochs", "6"]
    straight = run_cli([*args, "--runs", str(tmp_path / "a")])
    assert straight.wait(timeout=600) == 0, straight.stdout.read().decode()
    victim = run_cli([*args, "--runs", str(tmp_path / "b")])
    deadline = time.time() + 300
    while not list((tmp_path / "b").glob("*/last.pt")) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # into the next epoch
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    (run_b,) = (tmp_path / "b").iterdir()
    assert not (run_b / "summary.json").exists(), "killed too late to test resuming"
    assert run_cli([*args, "--runs", str(tmp_path / "b")]).wait(timeout=60) == 2  # needs --resume
    resumed = run_cli([*args, "--runs", str(tmp_path / "b"), "--resume"])
    output = resumed.stdout.read().decode()
    assert resumed.wait(timeout=600) == 0, output
    (run_a,) = (tmp_path / "a").iterdir()
    assert run_a.name == run_b.name  # same spec → same hash
    a, b = (json.loads((r / "summary.json").read_text()) for r in (run_a, run_b))
    assert a["confusion"] == b["confusion"] and a["miou"] == b["miou"]
    wa, wb = (torch.load(r / "last.pt", weights_only=True)["model"] for r in (run_a, run_b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert len((run_b / "metrics.jsonl").read_text().splitlines()) == 6


KILL_INSIDE_WRITE = """
import io, os, signal, sys, torch
from pathlib import Path
from fcngraph import checkpoint
real_atomic_write = checkpoint.atomic_write

def dying_atomic_write(path, write):  # inside the real write: half the new bytes on disk, then SIGKILL
    def half_then_die(handle):
        data = io.BytesIO()
        write(data)
        handle.write(data.getvalue()[: len(data.getvalue()) // 2])
        handle.flush()
        os.fsync(handle.fileno())
        os.kill(os.getpid(), signal.SIGKILL)
    return real_atomic_write(path, half_then_die)

checkpoint.atomic_write = dying_atomic_write
checkpoint.save_checkpoint(Path(sys.argv[1]), {"model": {"w": torch.full((1000,), 2.0)}, "epoch": 2})
"""


def test_a_kill_inside_the_checkpoint_write_keeps_the_previous_checkpoint(tmp_path):
    from fcngraph.checkpoint import load_checkpoint, save_checkpoint

    path = tmp_path / "run" / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.full((1000,), 1.0)}, "epoch": 1})
    victim = subprocess.run([sys.executable, "-c", KILL_INSIDE_WRITE, str(path)], cwd=ROOT, timeout=120)
    assert victim.returncode == -signal.SIGKILL  # died inside the write, after half the bytes
    state = load_checkpoint(path)  # the previous checkpoint, whole
    assert state["epoch"] == 1 and torch.equal(state["model"]["w"], torch.full((1000,), 1.0))
    assert [p.name for p in path.parent.iterdir() if p.suffix == ".pt"] == ["last.pt"]


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, capsys):
    code = main(["run", str(SPECS / "fcn32s-mini.json"), *QUICK, "--epochs", "3", "--runs", str(tmp_path),
                 "--set", "train.lr=1e30", "--set", "train.optimizer=sgd", "--set", "train.warmup_iters=0"])
    err = capsys.readouterr().err
    assert code == 2 and "loss became nan" in err.lower() and "last good checkpoint" in err
    assert not list(tmp_path.glob("*/summary.json"))


def test_predict_writes_palette_masks(tmp_path, capsys):
    assert main(["run", str(SPECS / "unet-mini.json"), *QUICK, "--epochs", "1", "--runs", str(tmp_path / "r")]) == 0
    image = tmp_path / "x.png"
    Image.fromarray((SyntheticShapes(1, 48, 9)[0][0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(image)
    (run,) = (tmp_path / "r").iterdir()
    assert main(["predict", str(run), str(image), "-o", str(tmp_path / "out")]) == 0
    mask = Image.open(tmp_path / "out" / "x.png")
    assert mask.mode == "P" and mask.size == (48, 48)
    assert (tmp_path / "out" / "x_overlay.png").is_file()


def test_set_override_errors_are_one_line(tmp_path, capsys):
    assert main(["run", str(SPECS / "fcn8s-mini.json"), "--set", "train.lr=-1", "--runs", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--set train.lr" in err and err.count("\n") == 1


def test_tensorboard_logs_loss_and_validation_metrics(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # 6 steps an epoch; `iterations` ends the second epoch after 2 of them
    assert main(["run", str(SPECS / "unet-mini.json"), *QUICK, "--set", "train.iterations=8", "--runs",
                 str(tmp_path), "--tensorboard"]) == 0
    (board,) = tmp_path.glob("*/tensorboard")
    events = EventAccumulator(str(board))
    events.Reload()
    assert {"train/loss", "train/lr", "val/miou", "val/fwiou"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("val/miou")] == [1, 2]
    summary = json.loads(next(tmp_path.glob("*/summary.json")).read_text())
    assert events.Scalars("val/miou")[-1].value == pytest.approx(summary["miou"])
    steps = [e.value for e in events.Scalars("train/loss")]
    rows = [json.loads(line) for line in next(tmp_path.glob("*/metrics.jsonl")).read_text().splitlines()]
    assert len(steps) == 8  # an epoch's loss is the mean over the steps it took, a short last one too
    assert [r["loss"] for r in rows] == pytest.approx([np.mean(steps[:6]), np.mean(steps[6:])], rel=1e-6)
