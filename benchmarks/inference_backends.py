"""Inference backends side by side: each backend's forward time relative to onnxruntime.

For each (spec, batch, size): the same weights run by onnxruntime (the reference), the torch
path as `make_runner` builds it (inference_mode), and the torch-side options tried for CPU
(channels_last; mkldnn-layout weights; torch.compile with --compile). Runs alternate in one
process so machine-load drift hits every backend alike; the ratio is the median of per-round
ratios. 'default' names what `make_runner` picks with no backend given.

    python benchmarks/inference_backends.py [--threads 2] [--reps 3] [--quick]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fcngraph.bench import alternate, median, ratio  # noqa: E402
from fcngraph.compile import compile_spec  # noqa: E402
from fcngraph.infer import TorchOptions, default_backend, make_runner, torch_runner  # noqa: E402
from fcngraph.spec import load_spec  # noqa: E402

CASES = [("fcn8s-vgg16", (160, 224)), ("unet-padded", (128, 256))]
QUICK = [("fcn8s-mini", (64, 128)), ("unet-mini", (64, 128))]


def mkldnn_runner(model: torch.nn.Module):
    """Convolution weights pre-packed for oneDNN (torch.utils.mkldnn), eager otherwise."""
    from torch.utils import mkldnn

    packed = mkldnn.to_mkldnn(compile_spec_copy(model))

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return packed(torch.from_numpy(batch)).numpy()
    return run


def compile_spec_copy(model: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(model).eval()


def steps_for(model: torch.nn.Module, x: np.ndarray, with_compile: bool) -> dict:
    runners = {"onnxruntime": make_runner(model, "onnxruntime", threads=torch.get_num_threads()),
               "torch": make_runner(model, "torch"),
               "torch channels_last": torch_runner(compile_spec_copy(model), TorchOptions(channels_last=True))}
    try:
        runners["torch mkldnn weights"] = mkldnn_runner(model)
        runners["torch mkldnn weights"](x)
    except Exception as exc:  # not every module converts; say so rather than stop
        runners.pop("torch mkldnn weights")
        print(f"  (mkldnn conversion failed: {str(exc).splitlines()[0][:80]})")
    if with_compile:
        runners["torch.compile"] = torch_runner(compile_spec_copy(model), TorchOptions(compile=True))
    return {name: (lambda run=run: run(x)) for name, run in runners.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch and onnxruntime.")
    parser.add_argument("--reps", type=int, default=3, help="Timed rounds per case.")
    parser.add_argument("--batches", default="1,8", help="Comma-separated batch sizes.")
    parser.add_argument("--quick", action="store_true", help="The mini specs at small sizes (a smoke run).")
    parser.add_argument("--compile", action="store_true", help="Also time torch.compile (slow to compile).")
    parser.add_argument("--only", help="Comma-separated spec names to keep from the case list.")
    parser.add_argument("--sizes", help="Comma-separated input sides replacing each case's two sizes.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads; default backend: {default_backend()}")
    print("| spec | batch | size | backend | median ms | time / onnxruntime |")
    print("|---|---|---|---|---|---|")
    for name, sizes in QUICK if args.quick else CASES:
        if args.only and name not in args.only.split(","):
            continue
        spec = load_spec(ROOT / "specs" / f"{name}.json")
        torch.manual_seed(0)
        model = compile_spec(spec).eval()
        for batch in map(int, args.batches.split(",")):
            for size in map(int, args.sizes.split(",")) if args.sizes else sizes:
                x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
                times = alternate(steps_for(model, x, args.compile), args.reps, torch.device("cpu"))
                for backend in times:
                    print(f"| {name} | {batch} | {size} | {backend} | {median(times[backend]):.1f} | "
                          f"{ratio(times, backend, 'onnxruntime'):.3f} |", flush=True)


if __name__ == "__main__":
    main()
