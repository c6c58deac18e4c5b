"""Static activation-memory estimate against the bytes autograd really saves (CPU)."""

import pytest
import torch

from fcngraph.cli import main
from fcngraph.compile import compile_spec
from fcngraph.memory import activation_bytes, saved_activation_bytes
from fcngraph.shapes import analyze
from fcngraph.spec import load_spec

from .conftest import SPECS, tiny_spec

# The estimate counts every tensor a node materialises; a training forward keeps most but not
# all of them (score maps, sums and upsampled maps feeding a concat are read once and freed), and
# keeps a few small things the estimate leaves out (dropout masks, BN statistics). Stated
# tolerance: within 20 % of the measured bytes.
TOLERANCE = 0.2


@pytest.mark.parametrize("name,size,batch", [("tiny", (24, 32), 2), ("fcn8s-mini", (64, 64), 2),
                                             ("unet-mini", (48, 64), 1), ("fcn32s-mini", (96, 64), 1)])
def test_estimate_is_within_tolerance_of_measured_saved_bytes(name, size, batch):
    spec = load_spec(tiny_spec()) if name == "tiny" else load_spec(SPECS / f"{name}.json")
    estimate = sum(activation_bytes(analyze(spec, size), batch).values())
    torch.manual_seed(0)
    measured = saved_activation_bytes(compile_spec(spec), torch.randn(batch, 3, *size))
    assert abs(estimate / measured - 1) <= TOLERANCE, (estimate, measured)


def test_estimate_scales_with_batch_and_crop_is_free():
    analysis = analyze(load_spec(tiny_spec()), (16, 16))
    one, four = activation_bytes(analysis, 1), activation_bytes(analysis, 4)
    assert all(four[n] == 4 * one[n] for n in one)
    assert one["out"] == 0 and one["input"] == 3 * 16 * 16 * 4
    assert one["c1"] == 2 * 4 * 16 * 16 * 4  # two conv layers, ReLU in place
    assert one["p1"] == 3 * 4 * 8 * 8 * 4  # output + int64 indices


def test_show_prints_activation_memory(capsys):
    assert main(["show", str(SPECS / "fcn8s-mini.json"), "--size", "64"]) == 0
    out = capsys.readouterr().out
    assert "act MiB" in out and "MiB activations per image in training" in out
