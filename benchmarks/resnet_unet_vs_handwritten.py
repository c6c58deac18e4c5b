"""Compiled ResNet-34 U-Net (specs/resnet34-unet.json) vs the hand-written PyTorch U-Net
(tests/handwritten_resnet.py), same weights, same input, alternating runs in one process: forward
and forward+backward medians and the compiled/hand ratio (goal ≤ 1.02). Also the spec's
validation time (load + expand + analyze, best of N; goal < 50 ms).

    python benchmarks/resnet_unet_vs_handwritten.py [--spec specs/resnet34-unet.json] [--size 224]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fcngraph.bench import alternate, forward_step, median, ratio, train_step  # noqa: E402
from fcngraph.cli import parse_size  # noqa: E402
from fcngraph.compile import compile_spec  # noqa: E402
from fcngraph.shapes import analyze  # noqa: E402
from fcngraph.spec import load_spec  # noqa: E402
from tests.handwritten_resnet import UNet  # noqa: E402
from tests.handwritten_variants import copy_in_order  # noqa: E402


def validation_ms(path: str, reps: int) -> float:
    """Best of `reps`: read, expand (extends, blocks, defaults), validate and analyse the spec."""
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        analyze(load_spec(path))
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spec", default=str(ROOT / "specs/resnet34-unet.json"),
                        help="A ResNet-34 U-Net spec in the smp Unet layout (1 class).")
    parser.add_argument("--size", type=parse_size, default=(224, 224), help="Input size, N or HxW.")
    parser.add_argument("--reps", type=int, default=7, help="Timed rounds.")
    parser.add_argument("--device", default="cpu", help="cpu or cuda.")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"validation of {Path(args.spec).name}: {validation_ms(args.spec, 20):.1f} ms (best of 20; goal < 50)")
    data = json.loads(Path(args.spec).read_text())
    data["num_classes"] = data["nodes"]["head"]["out"] = 2  # 1-class cross-entropy has zero gradients
    compiled = compile_spec(load_spec(data, file=args.spec))
    hand = UNet([3, 4, 6, 3], classes=2)
    copy_in_order(compiled, hand)
    compiled.to(device).train()
    hand.to(device).train()
    x = torch.randn(1, 3, *args.size, device=device)  # [1, 3, H, W]
    target = torch.randint(0, 2, (1, *args.size), device=device)  # [1, H, W]
    fwd = alternate({"compiled": forward_step(compiled, x), "hand": forward_step(hand, x)}, args.reps, device)
    both = alternate({"compiled": train_step(compiled, x, target), "hand": train_step(hand, x, target)},
                     args.reps, device)
    print(f"resnet34-unet on {device}, {torch.get_num_threads()} threads, 1x3x{args.size[0]}x{args.size[1]}, "
          f"{args.reps} alternating rounds")
    print(f"forward       compiled {median(fwd['compiled']):8.1f} ms  hand-written {median(fwd['hand']):8.1f} ms"
          f"  ratio {ratio(fwd, 'compiled', 'hand'):.3f}")
    print(f"forward+back  compiled {median(both['compiled']):8.1f} ms  hand-written {median(both['hand']):8.1f} ms"
          f"  ratio {ratio(both, 'compiled', 'hand'):.3f}  (goal ≤ 1.02)")


if __name__ == "__main__":
    main()
