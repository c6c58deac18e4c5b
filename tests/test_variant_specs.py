"""The shipped variant specs (unet-bilinear, attention-unet, unetplusplus, segnet-vgg16,
deeplab-largefov-vgg16) against hand-written PyTorch nets (tests/handwritten_variant_nets.py) and
the parameter counts in ../shared/reference/variants-and-data-facts.md: equal outputs in eval mode at
two input sizes, parameter counts static = compiled = oracle = reference, forward and backward at two
sizes (one not a multiple of the total stride where the net allows it), and each net's size rule."""

import pytest
import torch

from fcngraph.cli import main
from fcngraph.compile import compile_spec
from fcngraph.diagram import layout, to_dot
from fcngraph.errors import SpecError
from fcngraph.memory import activation_bytes
from fcngraph.shapes import analyze, valid_sizes
from fcngraph.spec import load_spec

from .conftest import SPECS
from .diagram_nets import shuffled
from .handwritten_variant_nets import (
    AttentionUNet,
    DeepLabLargeFOV,
    SegNet,
    UNetBilinear,
    UNetPlusPlus,
    copy_weights,
    unetplusplus_key,
)


def gates(channels: int) -> int:
    """Parameters of one attention gate with inner width channels / 2 (convs with bias, BNs)."""
    inner = channels // 2
    return 2 * (channels * inner + inner + 2 * inner) + (inner + 1 + 2)


UNET_PADDED = 31_037_698  # the fact file: unet-padded = the bilinear=False U-Net
PARAMS = {
    "unet-bilinear": 17_263_042,  # the fact file (3 in, 2 classes)
    "attention-unet": UNET_PADDED + sum(gates(c) for c in (512, 256, 128, 64)),
    "unetplusplus": 9_163_560,  # widths 32..512, 4 heads of 2 classes; the oracle's count
    "segnet-vgg16": 29_449_355,  # "about 29.5 M" (11 classes); the oracle's count
    "deeplab-largefov-vgg16": 20_505_429,  # "20.5 M" (21 classes); the oracle's count
}
ROUNDED = {"segnet-vgg16": 29.4, "deeplab-largefov-vgg16": 20.5}  # millions, as the papers state them
ORACLES = {  # hand-written net, two sizes where spec and oracle agree
    "unet-bilinear": (UNetBilinear, [(32, 32), (48, 64)]),
    "attention-unet": (AttentionUNet, [(32, 32), (48, 32)]),
    "unetplusplus": (UNetPlusPlus, [(32, 32), (48, 64)]),
    "segnet-vgg16": (SegNet, [(64, 64), (50, 70)]),  # unpooling restores odd sizes too
    "deeplab-largefov-vgg16": (DeepLabLargeFOV, [(33, 47), (64, 64)]),
}
RUN_SIZES = {  # forward + backward; the second size is no multiple of the total stride where allowed
    "unet-bilinear": [(32, 32), (37, 45)],
    "attention-unet": [(32, 32), (48, 64)],  # multiples of 16 only (see test_size_rules)
    "unetplusplus": [(32, 32), (37, 45)],
    "segnet-vgg16": [(64, 64), (50, 70)],
    "deeplab-largefov-vgg16": [(33, 47), (64, 64)],
}
SIZE_RULES = {
    "unet-bilinear": "runs on any size ≥ 16",
    "attention-unet": "runs on sizes ≡ 0 (mod 16), ≥ 16",
    "unetplusplus": "runs on any size ≥ 16",
    "segnet-vgg16": "runs on any size ≥ 32",
    "deeplab-largefov-vgg16": "runs on any size ≥ 1",
}


def spec(name):
    return load_spec(SPECS / f"{name}.json")


def compiled_with_random_norms(name):
    """The compiled spec with BatchNorm statistics and affine parameters away from 0/1, so eval mode
    checks that each BN sits where the oracle has it."""
    torch.manual_seed(0)
    model = compile_spec(spec(name))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    return model


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_count_static_compiled_oracle_and_reference(name):
    model = compile_spec(spec(name))
    hand = ORACLES[name][0]()
    counts = {analyze(spec(name)).params, sum(p.numel() for p in model.parameters()),
              sum(p.numel() for p in hand.parameters())}
    assert counts == {PARAMS[name]}
    if name in ROUNDED:
        assert round(PARAMS[name] / 1e6, 1) in (ROUNDED[name], ROUNDED[name] + 0.1)  # "about 29.5 M"


@pytest.mark.parametrize("name", sorted(ORACLES))
def test_compiled_equals_the_hand_written_net_in_eval_mode(name):
    make, sizes = ORACLES[name]
    model = compiled_with_random_norms(name).eval()
    hand = make().eval()
    if name == "unetplusplus":  # names agree up to the prefix; its order is the graph's, not ours
        hand.load_state_dict({unetplusplus_key(k): v for k, v in model.state_dict().items()})
    else:
        copy_weights(model, hand, tags=("w_g", "w_x", "psi"))
    for size in sizes:
        x = torch.randn(1, 3, *size)  # [1, 3, H, W]
        with torch.no_grad():
            got, expected = model(x), hand(x)
        if name == "unetplusplus":
            expected = expected[-1]  # eval mode: the main output, X(0,4)'s head
        assert got.shape == expected.shape == (1, spec(name).num_classes, *size)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_unetplusplus_trains_all_four_heads_main_first():
    model = compiled_with_random_norms("unetplusplus").train()
    hand = UNetPlusPlus().train()
    hand.load_state_dict({unetplusplus_key(k): v for k, v in model.state_dict().items()})
    x = torch.randn(2, 3, 32, 32)  # [2, 3, H, W]; batch 2 for batch statistics
    got, expected = model(x), hand(x)
    assert len(got) == 4
    for a, b in zip(got, [expected[3], *expected[:3]]):  # (main = final4, aux final1..3)
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert spec("unetplusplus").aux_outputs == {"final1": 1.0, "final2": 1.0, "final3": 1.0}


@pytest.mark.parametrize("name", sorted(RUN_SIZES))
def test_validates_compiles_and_runs_forward_and_backward_at_two_sizes(name):
    model = compile_spec(spec(name)).train()
    for size in RUN_SIZES[name]:
        info = analyze(spec(name), size).output
        outputs = model(torch.randn(1, 3, *size))  # batch 1: BN has H*W values per channel
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        assert outputs[0].shape == (1, info.channels, *info.size) == (1, spec(name).num_classes, *size)
        model.zero_grad()
        sum(out.square().mean() for out in outputs).backward()
        missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        assert not missing


@pytest.mark.parametrize("name", sorted(SIZE_RULES))
def test_size_rules(name):
    rule = valid_sizes(analyze(spec(name)), 100).describe()
    assert SIZE_RULES[name] in rule and "output = input" in rule


def test_attention_unet_rejects_a_side_that_is_no_multiple_of_16_in_one_line():
    with pytest.raises(SpecError) as err:
        analyze(spec("attention-unet"), (40, 40))
    assert "\n" not in str(err.value) and "att4" in str(err.value)


def test_attention_unet_is_unet_padded_plus_four_gates():
    padded, attention = spec("unet-padded"), spec("attention-unet")
    added = set(attention.nodes) - set(padded.nodes)
    assert added == {f"att{i}.{part}" for i in range(1, 5) for part in ("w_g", "w_x", "sum", "psi", "gated", "cat")}
    assert set(padded.nodes) - set(attention.nodes) == {"cat1", "cat2", "cat3", "cat4"}  # now in the gate block
    assert attention.nodes["att4.cat"].inputs == ["att4.gated", "up4"]
    assert attention.nodes["dec4"].inputs == ["att4.cat"]
    assert attention.nodes["att2.gated"].inputs == ["enc2", "att2.psi"]  # the skip times its gate


def test_deeplab_largefov_has_output_stride_8_and_a_large_field_of_view():
    nodes = analyze(spec("deeplab-largefov-vgg16")).nodes
    assert nodes["fc8"].coord.scale == 8
    assert nodes["fc6"].coord.rf > 200  # fc6's dilation 12 at stride 8 spans 2 * 12 * 8 input pixels


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_show_prints_each_spec(name, capsys):
    assert main(["show", str(SPECS / f"{name}.json"), "--size", "64"]) == 0
    assert f"total: {PARAMS[name]:,} params" in capsys.readouterr().out


def test_memory_estimate_takes_norm_and_act_per_layer():
    bytes_ = activation_bytes(analyze(spec("segnet-vgg16"), (32, 32)))
    assert bytes_["dec1"] == (2 * 64 + 11) * 32 * 32 * 4  # conv + BN (ReLU in place), then a bare conv


MEDIAN_FREQUENCY = [0.281, 0.202, 4.775, 0.148, 1.0, 0.422, 3.852, 1.971, 0.788, 6.367, 8.859]  # fact file


def test_segnet_trains_with_the_camvid_median_frequency_weights():
    train = spec("segnet-vgg16").train
    assert train.class_weights == MEDIAN_FREQUENCY and (train.optimizer, train.lr) == ("sgd", 0.1)


MIRRORS = {  # encoder node → decoder node drawn on the same row of the U
    "unet-bilinear": {"inc": "up4", "down1": "up3", "down2": "up2", "down3": "up1"},
    "attention-unet": {"enc1": "dec1", "enc2": "dec2", "enc3": "dec3", "enc4": "dec4"},
    "unetplusplus": {"x0_0": "x0_4", "x1_0": "x1_3", "x2_0": "x2_2", "x3_0": "x3_1"},
    "segnet-vgg16": {f"enc{i}": f"dec{i}" for i in range(1, 6)},
}


@pytest.mark.parametrize("name", sorted(MIRRORS))
def test_drawn_as_a_u_whatever_the_node_order(name):
    data = spec(name).canonical()
    drawn = {to_dot(layout(analyze(load_spec(shuffled(data, seed))), compact=False)).source for seed in range(3)}
    assert len(drawn) == 1
    boxes = layout(analyze(spec(name))).boxes
    for enc, dec in MIRRORS[name].items():
        assert boxes[enc].level == boxes[dec].level and boxes[enc].column < boxes[dec].column
