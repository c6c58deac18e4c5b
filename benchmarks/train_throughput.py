"""Achieved training GFLOP/s against the machine's measured peak, in one process.

Achieved = static forward FLOPs per image × 3 (backward ≈ 2× forward) × batch ÷ the time of
one SGD step (forward, cross-entropy, backward, update). Peak = the faster of a large float32
matmul and a large 3x3 convolution, timed in the same rounds, alternating with the steps, so
machine-load drift hits both. Also printed: FLOPs per byte of activations (fcngraph.memory),
the arithmetic intensity that says whether a net can be compute-bound at all.

    python benchmarks/train_throughput.py [--threads 2] [--reps 3] [--skip-vgg]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fcngraph.bench import alternate, median  # noqa: E402
from fcngraph.compile import compile_spec  # noqa: E402
from fcngraph.memory import activation_bytes  # noqa: E402
from fcngraph.shapes import analyze  # noqa: E402
from fcngraph.spec import load_spec  # noqa: E402

CASES = [("fcn8s-vgg16", 1, 224), ("fcn8s-mini", 16, 64), ("fcn16s-mini", 16, 64), ("fcn32s-mini", 16, 64),
         ("unet-mini", 16, 64)]
MATMUL = 2048
CONV = (4, 256, 56)  # batch, channels, side: a VGG conv3-sized layer


def peak_steps() -> tuple[dict, dict]:
    a, b = torch.randn(MATMUL, MATMUL), torch.randn(MATMUL, MATMUL)
    n, c, s = CONV
    x, w = torch.randn(n, c, s, s), torch.randn(c, c, 3, 3)
    steps = {"peak matmul": lambda: a @ b, "peak conv": lambda: F.conv2d(x, w, padding=1)}
    flops = {"peak matmul": 2 * MATMUL ** 3, "peak conv": 2 * n * c * c * 9 * s * s}
    return steps, flops


def train_step(name: str, batch: int, size: int) -> tuple:
    spec = load_spec(ROOT / "specs" / f"{name}.json")
    analysis = analyze(spec, (size, size))
    torch.manual_seed(0)
    model = compile_spec(spec).train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-6, momentum=0.9)
    x = torch.randn(batch, 3, size, size)  # [B, 3, H, W]
    target = torch.randint(0, spec.num_classes, (batch, *analysis.output.size))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), target).backward()
        optimizer.step()
    intensity = analysis.flops / sum(activation_bytes(analysis).values())
    return step, 3 * analysis.flops * batch, intensity


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="CPU threads.")
    parser.add_argument("--reps", type=int, default=3, help="Timed rounds.")
    parser.add_argument("--skip-vgg", action="store_true", help="Only the mini specs (fast).")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    steps, flops = peak_steps()
    intensity = {}
    for name, batch, size in CASES:
        if args.skip_vgg and "vgg" in name:
            continue
        key = f"{name} b{batch} {size}px"
        steps[key], flops[key], intensity[key] = train_step(name, batch, size)
    times = alternate(steps, args.reps, torch.device("cpu"))
    rate = {k: flops[k] / (median(v) / 1e3) / 1e9 for k, v in times.items()}
    peak = max(rate["peak matmul"], rate["peak conv"])
    print(f"torch {torch.__version__}, {args.threads} threads, {args.reps} alternating rounds")
    print(f"measured peak: matmul {MATMUL}² {rate['peak matmul']:.1f} GFLOP/s, conv 3x3 {CONV} "
          f"{rate['peak conv']:.1f} GFLOP/s")
    print("| net | step ms | img/s | achieved GFLOP/s | share of peak | FLOPs per activation byte |")
    print("|---|---|---|---|---|---|")
    for key in intensity:
        batch = int(key.split(" b")[1].split()[0])
        print(f"| {key} | {median(times[key]):.0f} | {batch / (median(times[key]) / 1e3):.3g} | {rate[key]:.1f} | "
              f"{rate[key] / peak:.0%} | {intensity[key]:.0f} |")


if __name__ == "__main__":
    main()
