"""The shipped ResNet-encoder specs against hand-written PyTorch nets (tests/handwritten_resnet.py)
and the parameter counts in ../shared/reference/variants-and-data-facts.md."""

import json

import pytest
import torch

from fcngraph.cli import main
from fcngraph.compile import compile_spec
from fcngraph.diagram import layout, to_dot
from fcngraph.errors import SpecError
from fcngraph.shapes import analyze, output_length
from fcngraph.spec import load_spec
from fcngraph.surgery import init_from, read_weights

from . import handwritten_resnet as hand
from .conftest import SPECS
from .diagram_nets import as_spec, shuffled
from .handwritten_variants import copy_in_order

ORACLES = {  # spec → hand-written net; blocks per stage
    "resnet34-unet": lambda: hand.UNet([3, 4, 6, 3]),
    "resnet18-unet": lambda: hand.UNet([2, 2, 2, 2]),
    "linknet-resnet34": lambda: hand.LinkNet([3, 4, 6, 3]),
    "fpn-resnet34": lambda: hand.FPN([3, 4, 6, 3]),
    "pspnet-resnet34": lambda: hand.PSPNet([3, 4, 6, 3]),
    "deeplabv3-resnet34": lambda: hand.DeepLabV3([3, 4, 6, 3]),
}
FACT_PARAMS = {  # variants-and-data-facts.md: smp Unet(resnet34) with 1 class; encoders without fc
    "resnet34-unet": 24_436_369,
    "encoders/resnet34": 21_284_672,
    "encoders/resnet18": 11_176_512,
}
ENCODER_PARAMS = {"resnet18-unet": 11_176_512}  # the rest use ResNet-34: 21,284,672


def spec(name):
    return load_spec(SPECS / f"{name}.json")


@pytest.mark.parametrize("name", sorted(FACT_PARAMS))
def test_parameter_counts_match_the_fact_file(name):
    assert analyze(spec(name)).params == FACT_PARAMS[name]


def test_unet_extra_class_adds_145_parameters():
    data = json.loads((SPECS / "resnet34-unet.json").read_text())
    data["num_classes"], data["nodes"]["head"]["out"] = 3, 3
    assert analyze(load_spec(data, file=SPECS / "resnet34-unet.json")).params == 24_436_369 + 2 * 145


def test_resnet34_unet_spec_is_short():
    assert len((SPECS / "resnet34-unet.json").read_text().splitlines()) < 60


@pytest.mark.parametrize("name", sorted(ORACLES))
def test_encoder_is_the_resnet_layer_table(name):
    """Every ResNet spec carries torchvision's encoder: same parameter count, BasicBlocks ReLU'd after the add."""
    nodes = spec(name).nodes
    adds = [n for n in nodes if n.startswith("layer") and n.endswith(".add")]
    assert len(adds) == (8 if "18" in name else 16) and all(nodes[n].act == "relu" for n in adds)
    encoder = sum(p.numel() for k, p in compile_spec(spec(name)).named_parameters()
                  if k.split(".")[0] in ("conv1", "layer1", "layer2", "layer3", "layer4"))
    assert encoder == ENCODER_PARAMS.get(name, 21_284_672)


@pytest.mark.parametrize("name", sorted(ORACLES))
def test_spec_equals_hand_written_net(name):
    """Weights copied by position; eval-mode outputs equal at a multiple of 32 and at 96x80 (80 is not)."""
    torch.manual_seed(0)
    analysis = analyze(spec(name))
    model, ref = compile_spec(analysis).eval(), ORACLES[name]().eval()
    assert sum(p.numel() for p in ref.parameters()) == analysis.params
    with torch.no_grad():  # random BN statistics and affines so BN is not the identity
        for value in model.state_dict().values():
            if value.is_floating_point() and value.dim() == 1:
                value.add_(torch.rand_like(value) * 0.1)
    copy_in_order(model, ref)
    for h, w in [(64, 64), (96, 80)]:
        x = torch.randn(1, 3, h, w)
        with torch.no_grad():
            out, expected = model(x), ref(x)
        assert out.shape == (1, 1, h, w)
        torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", sorted(ORACLES))
def test_train_step_at_a_non_multiple_size(name):
    """Forward + backward in train mode at 80x72 (not a multiple of 16 or 32); batch 2 so the BN after
    a global pool has more than one value per channel."""
    model = compile_spec(spec(name)).train()
    x = torch.randn(2, 3, 80, 72)
    outs = model(x)
    outs = outs if isinstance(outs, tuple) else (outs,)
    assert len(outs) == 1 + ("pspnet" in name) and all(o.shape == (2, 1, 80, 72) for o in outs)
    sum(o.square().mean() for o in outs).backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", sorted(ORACLES))
def test_camvid_size_runs_with_output_equal_to_input(name):
    """The size rule: decoders crop top-left to the skip (align_by size), heads resize `to` the input,
    so 240x180 (180 is not a multiple of 32) gives a 240x180 output; any even size does."""
    analysis = analyze(spec(name))
    for n in (180, 240, 250, 256):
        assert output_length(analysis, n)[0] == n


def test_pspnet_aux_head_weight():
    assert spec("pspnet-resnet34").aux_outputs == {"aux": 0.4}


def test_torchvision_resnet_state_dict_loads_with_map_resnet(tmp_path):
    """A state dict in torchvision's ResNet-34 layout (+ fc) fills every encoder tensor of the U-Net."""
    torch.manual_seed(0)
    resnet = hand.ResNet([3, 4, 6, 3])
    resnet.fc = torch.nn.Linear(512, 1000)
    path = tmp_path / "resnet34.pth"
    torch.save(resnet.state_dict(), path)
    surgery = init_from(spec("resnet34-unet"), path, "resnet")
    assert sorted(surgery.unused) == ["fc.bias", "fc.weight"] and not surgery.mismatched
    assert len(surgery.copied) == len(resnet.state_dict()) - 2
    assert surgery.copied["layer2.0.conv1.1.running_var"] == "layer2.0.bn1.running_var"
    assert surgery.copied["conv1.0.weight"] == "conv1.weight"
    for key, source in surgery.copied.items():
        assert torch.equal(surgery.state[key], resnet.state_dict()[source])
    out = tmp_path / "init.pt"
    assert main(["init-from", str(SPECS / "linknet-resnet34.json"), str(path), "--map", "resnet", "-o", str(out)]) == 0
    assert torch.equal(read_weights(out)["layer4.2.conv2.1.weight"], resnet.layer4[2].bn2.weight)


def test_a_spec_elsewhere_extends_a_resnet_spec_by_name_and_patches_one_field(tmp_path):
    child = tmp_path / "mine.json"
    child.write_text(json.dumps({"extends": "resnet34-unet", "name": "mine", "num_classes": 5,
                                 "nodes": {"head": {"out": 5}}}))
    spec_ = load_spec(child)
    assert spec_.nodes["head"].out == 5 and spec_.nodes["head"].kernel == 3
    assert analyze(spec_).params == 24_436_369 + 4 * 145


@pytest.mark.parametrize("compact", [False, True])
@pytest.mark.parametrize("name", sorted(ORACLES))
def test_shuffled_node_order_draws_the_same_dot(name, compact):
    """The resolved (expanded) spec with its nodes listed in three orders draws one DOT."""
    resolved = spec(name).canonical()
    drawn = {to_dot(layout(analyze(as_spec(shuffled(resolved, seed))), compact)).source for seed in range(3)}
    assert len(drawn) == 1


def test_a_block_typo_names_the_instance_and_the_definition(tmp_path):
    child = tmp_path / "typo.json"
    child.write_text(json.dumps({"extends": "resnet34-unet", "name": "typo",
                                 "blocks": {"up": {"nodes": {"conv": {"in": "cta"}}}}}))
    with pytest.raises(SpecError) as info:
        load_spec(child)
    assert info.value.path == "$.blocks.up.nodes.conv.in" and "instance 'decoder0'" in info.value.message
