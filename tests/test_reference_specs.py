"""The shipped specs against the numbers in ../shared/reference/fcn-unet-facts.md."""

import pytest
import torch

from fcngraph.compile import compile_spec
from fcngraph.shapes import analyze, valid_sizes
from fcngraph.spec import load_spec

from .conftest import SPECS

PARAMS = {  # reference §1.9 (deconv weights included) and §4.1
    "fcn32s-vgg16": 136_152_917,
    "fcn16s-vgg16": 134_815_994,
    "fcn8s-vgg16": 134_489_759,
    "fcn8s-atonce-vgg16": 134_489_759,
    "fcn-alexnet": 58_704_590,
    "unet-original": 31_030_658,
}
CROPS = {  # reference §1.2/§1.3: offsets as the Caffe prototxts carry them
    "fcn32s-vgg16": {"score": (19,)},
    "fcn16s-vgg16": {"fuse_pool4": (0, 5), "score": (27,)},
    "fcn8s-vgg16": {"fuse_pool4": (0, 5), "fuse_pool3": (0, 9), "score": (31,)},
    "fcn8s-atonce-vgg16": {"fuse_pool4": (0, 5), "fuse_pool3": (0, 9), "score": (31,)},
    "fcn-alexnet": {"score": (18,)},
}
FCNS = ["fcn32s-vgg16", "fcn16s-vgg16", "fcn8s-vgg16", "fcn8s-atonce-vgg16", "fcn-alexnet"]


def spec(name):
    return load_spec(SPECS / f"{name}.json")


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_counts_match_reference_static_and_real(name):
    analysis = analyze(spec(name))
    assert analysis.params == PARAMS[name]
    model = compile_spec(analysis)
    assert sum(p.numel() for p in model.parameters()) == PARAMS[name]


@pytest.mark.parametrize("name", sorted(CROPS))
def test_crop_offsets_are_derived_like_caffe(name):
    analysis = analyze(spec(name))
    derived = {node: info.offsets for node, info in analysis.nodes.items() if info.offsets}
    assert derived == CROPS[name]


@pytest.mark.parametrize("name", FCNS)
@pytest.mark.parametrize("size", [(1, 1), (37, 53), (224, 224), (500, 375)])
def test_fcn_output_size_equals_input_statically(name, size):
    assert analyze(spec(name), size).output.size == size


@pytest.mark.parametrize("size", [(1, 1), (37, 53)])
def test_fcn8s_real_output_size_equals_input(size):
    model = compile_spec(spec("fcn8s-vgg16")).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, *size))
    assert out.shape == (1, 21, *size)


def test_feature_sizes_for_500_match_reference_table():
    nodes = analyze(spec("fcn32s-vgg16"), (500, 500)).nodes
    sizes = {n: nodes[n].size[0] for n in ("conv1", "pool1", "pool2", "pool3", "pool4", "pool5", "fc6")}
    assert sizes == {"conv1": 698, "pool1": 349, "pool2": 175, "pool3": 88, "pool4": 44,
                     "pool5": 22, "fc6": 16}


@pytest.mark.parametrize("name,rf", [("fcn32s-vgg16", 404), ("fcn-alexnet", 355)])
def test_score_fr_receptive_field_matches_table_1(name, rf):
    assert analyze(spec(name)).nodes["score_fr"].coord.rf == rf


def test_unet_original_valid_sizes_and_output():
    analysis = analyze(spec("unet-original"), (572, 572))
    assert analysis.output.size == (388, 388)
    rule = valid_sizes(analysis, 700)
    assert rule.exact == list(range(188, 701, 16))
    assert all(rule.outputs[n] == n - 184 for n in rule.exact)
    assert "≡ 12 (mod 16)" in rule.describe() and "input − 184" in rule.describe()
    nodes = analysis.nodes
    assert [nodes[n].size[0] for n in ("enc1", "enc2", "enc3", "enc4", "enc5")] == [568, 280, 136, 64, 28]
    assert [nodes[n].offsets[0] for n in ("cat4", "cat3", "cat2", "cat1")] == [4, 16, 40, 88]


def test_unet_original_real_forward_572_to_388():
    model = compile_spec(spec("unet-original")).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 1, 572, 572))
    assert out.shape == (1, 2, 388, 388)


def test_fcn16s_is_fcn32s_plus_the_pool4_skip():
    s32, s16 = spec("fcn32s-vgg16"), spec("fcn16s-vgg16")
    assert set(s16.nodes) - set(s32.nodes) == {"upscore2", "score_pool4", "fuse_pool4", "upscore16"}
    assert set(s32.nodes) - set(s16.nodes) == {"upscore"}
    assert s16.train.lr == 1e-12 and s16.train.momentum == 0.99  # inherited and overridden


def test_fcn8s_atonce_scales_are_fixed_constants():
    s = spec("fcn8s-atonce-vgg16")
    assert s.nodes["scale_pool4"].value == 0.01 and s.nodes["scale_pool3"].value == 0.0001
    assert s.nodes["score_pool4"].inputs == ["scale_pool4"]


def test_deconvs_are_bilinear_class_diagonal_and_frozen():
    model = compile_spec(spec("fcn32s-mini"))
    weight = model.upscore.weight  # [C, C, 64, 64]
    assert not weight.requires_grad
    off_diagonal = weight.clone()
    off_diagonal[range(6), range(6)] = 0
    assert off_diagonal.abs().max() == 0
    assert torch.equal(weight[0, 0], weight[5, 5])
    assert model.score_fr.weight.abs().max() == 0  # score layers start at zero


def test_shipped_schema_is_current(tmp_path):
    import json

    from fcngraph.spec import json_schema
    assert json.loads((SPECS / "schema.json").read_text()) == json_schema()
