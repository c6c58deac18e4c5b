"""Compiled FCN-8s vs the hand-written PyTorch FCN-8s (tests/handwritten.py), same weights,
same input, alternating runs in one process. Prints medians and the compiled/hand ratio.

    python benchmarks/compile_vs_handwritten.py [--spec specs/fcn8s-vgg16.json] [--size 224]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fcngraph.bench import alternate, forward_step, median, ratio, train_step  # noqa: E402
from fcngraph.cli import parse_size  # noqa: E402
from fcngraph.compile import compile_spec  # noqa: E402
from fcngraph.spec import load_spec  # noqa: E402
from tests.handwritten import HandFCN8s, copy_weights  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spec", default=str(ROOT / "specs/fcn8s-vgg16.json"), help="An FCN-8s spec.")
    parser.add_argument("--size", type=parse_size, default=(224, 224), help="Input size, N or HxW.")
    parser.add_argument("--reps", type=int, default=7, help="Timed rounds.")
    parser.add_argument("--device", default="cpu", help="cpu or cuda.")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    spec = load_spec(args.spec)
    compiled = compile_spec(spec)
    conv1 = compiled.conv1[0]
    hand = HandFCN8s(spec.num_classes, conv1.out_channels, compiled.fc6[0].out_channels)
    copy_weights(compiled, hand)
    compiled.to(device).train()
    hand.to(device).train()
    x = torch.randn(1, 3, *args.size, device=device)  # [1, 3, H, W]
    target = torch.randint(0, spec.num_classes, (1, *args.size), device=device)  # [1, H, W]
    fwd = alternate({"compiled": forward_step(compiled, x), "hand": forward_step(hand, x)}, args.reps, device)
    both = alternate({"compiled": train_step(compiled, x, target), "hand": train_step(hand, x, target)},
                     args.reps, device)
    print(f"{spec.name} on {device}, {torch.get_num_threads()} threads, 1x3x{args.size[0]}x{args.size[1]}, "
          f"{args.reps} alternating rounds")
    print(f"forward       compiled {median(fwd['compiled']):8.1f} ms  hand-written {median(fwd['hand']):8.1f} ms"
          f"  ratio {ratio(fwd, 'compiled', 'hand'):.3f}")
    print(f"forward+back  compiled {median(both['compiled']):8.1f} ms  hand-written {median(both['hand']):8.1f} ms"
          f"  ratio {ratio(both, 'compiled', 'hand'):.3f}")


if __name__ == "__main__":
    main()
