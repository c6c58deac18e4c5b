"""Oracle test: the compiled FCN-8s spec equals a hand-written PyTorch FCN-8s, same weights."""

import pytest
import torch

from fcngraph.compile import compile_spec
from fcngraph.overrides import apply_overrides
from fcngraph.spec import load_spec

from .conftest import SPECS
from .handwritten import HandFCN8s, copy_weights


def narrow_fcn8s():
    """The exact fcn8s-vgg16 spec at 1/8 width (fc 512, 6 classes): a quick second oracle case."""
    outs = {"conv1": [8, 8], "conv2": [16, 16], "conv3": [32] * 3, "conv4": [64] * 3, "conv5": [64] * 3,
            "fc6": 512, "fc7": 512}
    sets = [f"nodes.{node}.out={out}" for node, out in outs.items()] + ["num_classes=6"]
    return apply_overrides(load_spec(SPECS / "fcn8s-vgg16.json"), sets)


def randomise(model):
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():  # zero score layers would hide skip mistakes
            p.copy_(torch.randn_like(p) * 0.05)


@pytest.mark.parametrize("narrow,width,fc,classes,size", [
    (True, 8, 512, 6, (45, 61)),
    (False, 64, 4096, 21, (40, 33)),
])
def test_compiled_fcn8s_equals_handwritten(narrow, width, fc, classes, size):
    spec = narrow_fcn8s() if narrow else load_spec(SPECS / "fcn8s-vgg16.json")
    compiled = compile_spec(spec).eval()
    randomise(compiled)
    hand = HandFCN8s(classes, width, fc).eval()
    copy_weights(compiled, hand)
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        assert torch.equal(compiled(x), hand(x))


def test_gradients_match_handwritten():
    compiled = compile_spec(narrow_fcn8s()).train()
    randomise(compiled)
    hand = HandFCN8s(6, 8, 512).train()
    copy_weights(compiled, hand)
    x = torch.randn(2, 3, 32, 32)
    for model in (compiled, hand):
        torch.manual_seed(3)  # same dropout masks
        model(x).square().sum().backward()
    hand_params = dict(hand.named_parameters())
    for name, a in compiled.named_parameters():
        b = hand_params[name]
        assert (a.grad is None) == (b.grad is None), name
        if a.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, msg=name)
