"""`fcngraph run` under torchrun: two gloo processes on CPU train one model (DDP, a distributed
sampler, disjoint validation shards) and their summed confusion matrix equals a one-process
evaluation of the saved weights over the whole validation set."""

import json
import os
import subprocess
import sys

import torch
from torch.utils.data import DataLoader

from fcngraph.compile import compile_spec
from fcngraph.data import make_splits, pad_collate
from fcngraph.evaluate import score_loader
from fcngraph.overrides import apply_overrides
from fcngraph.spec import load_spec

from .conftest import ROOT, SPECS

SETTINGS = ["data.size=32", "data.train_samples=32", "data.val_samples=10", "train.batch_size=4",
            "train.epochs=2", "train.lr=0.01", "train.device=\"cpu\""]


def test_two_gloo_processes_match_one_process_evaluation(tmp_path):
    spec_path = SPECS / "unet-mini.json"  # has BatchNorm: buffers must agree across ranks too
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "fcngraph", "run", str(spec_path), "--runs", str(tmp_path), "--quiet"]
    for setting in SETTINGS:
        command += ["--set", setting]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("unet-mini: val mIoU") == 1  # rank 0 alone speaks and writes
    (run_dir,) = tmp_path.iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 2

    spec = apply_overrides(load_spec(spec_path), SETTINGS)
    model = compile_spec(spec)
    model.load_state_dict(torch.load(run_dir / "last.pt", weights_only=True)["model"])
    splits = make_splits(spec.data, spec.train, spec.num_classes)
    loader = DataLoader(splits.val, batch_size=3, collate_fn=pad_collate)
    single, _ = score_loader(model, loader, spec.num_classes, "cpu")
    assert single.matrix.sum() == 10 * 32 * 32
    assert (single.matrix.sum(0) > 0).sum() > 1, "the model predicts one class: too weak a check"
    assert single.matrix.tolist() == summary["confusion"]
