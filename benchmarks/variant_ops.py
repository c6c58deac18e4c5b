"""Compiled vs hand-written PyTorch for the variant ops: a stack of ResNet BasicBlocks (conv-BN-
ReLU-conv-BN, add, ReLU) and an attention gate (tests/handwritten_variants.py), same weights,
same input, alternating runs in one process. Prints medians and compiled/hand ratios.

    python benchmarks/variant_ops.py [--size 128] [--width 32] [--blocks 4]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fcngraph.bench import alternate, median, ratio  # noqa: E402
from fcngraph.cli import parse_size  # noqa: E402
from fcngraph.compile import compile_spec  # noqa: E402
from fcngraph.spec import load_spec  # noqa: E402
from tests.handwritten_variants import attention_gate, copy_in_order, residual_stack  # noqa: E402


def forward(model, x):
    def step() -> None:
        with torch.no_grad():
            model(x)
    return step


def forward_backward(model, x):
    def step() -> None:
        model.zero_grad(set_to_none=True)
        model(x).square().mean().backward()  # these blocks output features, not class scores
    return step


def compare(name: str, hand: torch.nn.Module, data: dict, size: tuple[int, int], reps: int,
            device: torch.device) -> None:
    spec = load_spec(data)
    compiled = compile_spec(spec)
    copy_in_order(compiled, hand)
    compiled.to(device).train()
    hand.to(device).train()
    x = torch.randn(2, spec.input.channels, *size, device=device)  # [2, C, H, W]
    fwd = alternate({"compiled": forward(compiled, x), "hand": forward(hand, x)}, reps, device)
    both = alternate({"compiled": forward_backward(compiled, x), "hand": forward_backward(hand, x)},
                     reps, device)
    for label, times in (("forward", fwd), ("forward+back", both)):
        print(f"{name:16s} {label:13s} compiled {median(times['compiled']):8.2f} ms  "
              f"hand-written {median(times['hand']):8.2f} ms  ratio {ratio(times, 'compiled', 'hand'):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=parse_size, default=(128, 128), help="Input size, N or HxW.")
    parser.add_argument("--width", type=int, default=32, help="Channels of the blocks.")
    parser.add_argument("--blocks", type=int, default=4, help="BasicBlocks before the stride-2 one.")
    parser.add_argument("--reps", type=int, default=9, help="Timed rounds.")
    parser.add_argument("--device", default="cpu", help="cpu or cuda.")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    print(f"{device}, {torch.get_num_threads()} threads, batch 2 x {args.size[0]}x{args.size[1]}, "
          f"{args.reps} alternating rounds")
    compare(f"residual x{args.blocks + 1}", *residual_stack(args.width, args.blocks), args.size, args.reps, device)
    compare("attention gate", *attention_gate(3, args.width), args.size, args.reps, device)


if __name__ == "__main__":
    main()
