"""Oracle tests of the variant ops: small compiled specs against hand-written PyTorch
(tests/handwritten_variants.py) with equal weights; plus half-pixel alignment by size,
auxiliary outputs and the training loss they feed, and ONNX export of index unpooling."""

import json
from fractions import Fraction

import pytest
import torch

from fcngraph.compile import compile_spec
from fcngraph.errors import SpecError
from fcngraph.export import export_onnx
from fcngraph.settings import TrainSettings
from fcngraph.shapes import analyze, valid_sizes
from fcngraph.spec import load_spec
from fcngraph.train import segmentation_loss, training_loss

from .handwritten_variants import attention_gate, copy_in_order, pyramid, residual_stack, segnet_pair, squeeze_excite

ORACLES = {
    "residual": (lambda: residual_stack(4, 2), [(16, 16), (15, 15)]),
    "attention": (attention_gate, [(16, 16), (20, 13)]),
    "se": (squeeze_excite, [(9, 9), (16, 12)]),
    "psp": (pyramid, [(24, 24), (37, 29)]),  # adaptive pools at two input sizes
    "segnet": (segnet_pair, [(16, 16), (17, 15)]),  # odd sizes: unpool restores the pool's input
}


@pytest.mark.parametrize("name", sorted(ORACLES))
@pytest.mark.parametrize("train", [False, True])
def test_compiled_matches_handwritten(name, train):
    make, sizes = ORACLES[name]
    torch.manual_seed(0)
    hand, data = make()
    spec = load_spec(data)
    compiled = compile_spec(spec)
    copy_in_order(compiled, hand)
    compiled.train(train)
    hand.train(train)
    for size in sizes:
        x = torch.randn(2, spec.input.channels, *size)  # [2, C, H, W]
        expected = hand(x)
        got = compiled(x)
        info = analyze(spec, size).output
        assert got.shape == expected.shape == (2, info.channels, *info.size)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_unpool_gradient_matches_handwritten():
    torch.manual_seed(0)
    hand, data = segnet_pair()
    compiled = compile_spec(load_spec(data))
    copy_in_order(compiled, hand)
    x = torch.randn(1, 3, 17, 17)
    compiled(x).square().sum().backward()
    hand(x).square().sum().backward()
    torch.testing.assert_close(compiled.enc[0].weight.grad, hand.enc[0].weight.grad)


def test_unpool_exports_to_onnx(tmp_path):
    _, data = segnet_pair()
    path = export_onnx(load_spec(data), tmp_path / "segnet.onnx", size=(16, 16))
    assert b"ScatterElements" in path.read_bytes()  # index unpooling as a scatter


# -- half-pixel grids ---------------------------------------------------------------------------
def resnet_like_skip(**concat) -> dict:
    """A 3x3 stride-2 pad-1 conv, x2 upsampling and a concat with the skip (grids ½ px apart)."""
    return {"name": "half", "num_classes": 2, "nodes": {
        "skip": {"op": "conv", "in": "input", "out": 4, "pad": 1},
        "down": {"op": "conv", "in": "skip", "out": 4, "stride": 2, "pad": 1},
        "up": {"op": "upsample", "in": "down", "factor": 2},
        "cat": {"op": "concat", "in": ["skip", "up"], **concat}}, "output": "cat"}


def test_half_pixel_error_explains_and_names_fixes():
    with pytest.raises(SpecError) as info:
        analyze(load_spec(resnet_like_skip()))
    message = info.value.message
    assert "half a pixel" in message and "`to: skip`" in message and 'align_by: "size"' in message


def test_align_by_size_matches_handwritten_and_records_the_shift():
    spec = load_spec(resnet_like_skip(align_by="size"))
    analysis = analyze(spec, (32, 32))
    assert analysis.nodes["cat"].residual == (Fraction(0), Fraction(1, 2))
    model = compile_spec(spec)
    x = torch.randn(1, 3, 33, 33)  # 33 → 17 → 34: 'up' cropped top-left to 33
    with torch.no_grad():
        skip = model.skip(x)
        up = torch.nn.functional.interpolate(model.down(skip), scale_factor=2.0, mode="bilinear")
        torch.testing.assert_close(model(x), torch.cat([skip, up[:, :, :33, :33]], 1))


def test_valid_sizes_say_what_happens_at_multiples():
    text = valid_sizes(analyze(load_spec(resnet_like_skip(align_by="size"))), 128).describe()
    assert "≡ 1 (mod 2)" in text and "at multiples of 2" in text and "output = input" in text


def test_gridless_input_must_be_global_to_broadcast():
    data = {"name": "g", "num_classes": 2, "nodes": {
        "x": {"op": "conv", "in": "input", "out": 4, "pad": 1},
        "p": {"op": "adaptive_pool", "in": "x", "size": 2},
        "m": {"op": "mul", "in": ["x", "p"]}}, "output": "m"}
    with pytest.raises(SpecError, match="has no pixel grid .* not 1 px") as info:
        analyze(load_spec(data), (16, 16))
    assert info.value.node == "m"


# -- auxiliary outputs ---------------------------------------------------------------------------
def aux_spec() -> dict:
    return {"name": "aux", "num_classes": 3, "nodes": {
        "c1": {"op": "conv", "in": "input", "out": 4, "pad": 1},
        "p1": {"op": "pool", "in": "c1"},
        "c2": {"op": "conv", "in": "p1", "out": 4, "pad": 1},
        "aux_score": {"op": "score", "in": "p1", "init": "kaiming"},
        "aux_up": {"op": "upsample", "in": "aux_score", "to": "input"},
        "score": {"op": "score", "in": "c2", "init": "kaiming"},
        "up": {"op": "upsample", "in": "score", "to": "input"}},
        "output": "up", "aux_outputs": {"aux_up": 0.4}}


def test_aux_outputs_in_train_mode_only_and_weighted_in_the_loss():
    model = compile_spec(load_spec(aux_spec()))
    x, target = torch.randn(2, 3, 16, 16), torch.randint(0, 3, (2, 16, 16))
    main, aux = model.train()(x)
    assert main.shape == aux.shape == (2, 3, 16, 16) and model.aux_weights == [0.4]
    eval_out = model.eval()(x)
    assert isinstance(eval_out, torch.Tensor)
    torch.testing.assert_close(eval_out, main)
    t = TrainSettings()
    expected = segmentation_loss(main, target, t, 255) + 0.4 * segmentation_loss(aux, target, t, 255)
    torch.testing.assert_close(training_loss((main, aux), target, t, 255, [0.4]), expected)
    assert not isinstance(compile_spec(load_spec(aux_spec()), aux=False).train()(x), tuple)


def test_aux_output_at_another_stride_is_an_error():
    data = aux_spec()
    data["aux_outputs"] = {"aux_score": 0.4}
    del data["nodes"]["aux_up"]
    with pytest.raises(SpecError, match="stride 2, the output 'up' at 1") as info:
        analyze(load_spec(data))
    assert info.value.path == "$.aux_outputs.aux_score"


def test_dotted_ids_become_nested_modules():
    """Block instances get ids like `layer1.0.conv1`; weights then read as torchvision's do."""
    torch.manual_seed(0)
    hand, data = residual_stack(4, 1)
    rename = {"b0_body": "layer1.0.body", "b0": "layer1.0.add", "d_body": "layer2.0.body",
              "d_down": "layer2.0.downsample", "d": "layer2.0.add"}
    text = json.dumps(data)
    for old, new in sorted(rename.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(f'"{old}"', f'"{new}"')
    compiled = compile_spec(load_spec(json.loads(text)))
    assert "layer2.0.downsample.0.weight" in compiled.state_dict()
    copy_in_order(compiled, hand)
    x = torch.randn(1, 4, 12, 12)
    torch.testing.assert_close(compiled.eval()(x), hand.eval()(x))


def test_export_keeps_the_main_output_only(tmp_path):
    path = export_onnx(load_spec(aux_spec()), tmp_path / "aux.onnx", size=(16, 16))
    data = path.read_bytes()
    assert b"score.weight" in data and b"aux_score" not in data
