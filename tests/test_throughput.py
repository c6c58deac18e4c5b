"""`run` reports img/s and achieved GFLOP/s (static FLOPs x 3 per image / training time)."""

import json

import pytest

from fcngraph.cli import main
from fcngraph.shapes import analyze
from fcngraph.spec import load_spec

from .conftest import SPECS

QUICK = ["--set", "data.size=32", "--set", "data.train_samples=16", "--set", "data.val_samples=8",
         "--set", "train.batch_size=8", "--quiet", "--epochs", "1"]


def test_run_summary_and_log_show_images_and_gflops_per_second(tmp_path, capsys):
    assert main(["run", str(SPECS / "unet-mini.json"), *QUICK, "--runs", str(tmp_path)]) == 0
    assert "GFLOP/s" in capsys.readouterr().out
    summary = json.loads(next(tmp_path.glob("*/summary.json")).read_text())
    flops = analyze(load_spec(SPECS / "unet-mini.json"), (32, 32)).flops
    assert summary["images_per_s"] == pytest.approx(16 / summary["train_s"], rel=1e-6)
    assert summary["gflops_per_s"] == pytest.approx(3 * flops * summary["images_per_s"] / 1e9, rel=1e-6)
