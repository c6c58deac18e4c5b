"""Registry-parametrized op tests: every op's schema, shape rule, parameter count and module
agree with what PyTorch really does; plus oracle tests of the shared arithmetic."""

import json

import numpy as np
import pytest
import torch

from fcngraph.compile import compile_spec
from fcngraph.ops import REGISTRY
from fcngraph.ops.upsampling import bilinear_kernel
from fcngraph.shapes import analyze
from fcngraph.spec import json_schema, load_spec

# one or more sample nodes per op, reading from a 5-channel 'feat' node at stride 2
SAMPLES = {
    "conv": [{"out": [6, 7], "kernel": [3, 1], "pad": "same"},
             {"out": [6, 6], "pad": 1, "bias": False, "norm": ["batch", "instance"],
              "act": ["relu", "none"]},  # conv-BN-ReLU → conv-IN in one node
             {"out": 4, "kernel": 5, "stride": 2, "pad": 1, "dilation": 2, "norm": "group",
              "norm_groups": 2, "act": "gelu"},
             {"out": 10, "kernel": 3, "groups": 5, "bias": False, "norm": "batch"}],
    "pool": [{"mode": "max", "kernel": 3, "stride": 2, "pad": 1, "ceil": True},
             {"mode": "avg", "kernel": 2},
             {"mode": "max", "kernel": 2, "indices": True}],
    "adaptive_pool": [{"size": 1}, {"mode": "max", "size": 3}],
    "unpool": [{"in": "pidx", "indices_of": "pidx"}],
    "act": [{"fn": "relu"}, {"fn": "leaky_relu", "slope": 0.2}, {"fn": "softmax"}, {"fn": "gelu"}],
    "norm": [{"norm": "batch"}, {"norm": "group", "groups": 5}, {"norm": "instance"}],
    "lrn": [{"size": 3}],
    "dropout": [{"p": 0.3, "mode": "channel"}],
    "score": [{}, {"init": "kaiming", "bias": False}],
    "tconv": [{"factor": 2}, {"factor": 3, "kernel": 5, "pad": 1, "out": 4, "init": "kaiming",
                              "bias": True},
              {"factor": 2, "out": 4, "init": "kaiming", "norm": "batch", "act": "relu"}],
    "upsample": [{"factor": 2}, {"to": "input", "mode": "nearest"}],
    "scale": [{"value": 0.01}],
    "add": [{"in": ["feat2", "feat"]}, {"in": ["feat", "feat2"], "align": "feat2", "act": "relu"}],
    "concat": [{"in": ["feat", "feat2"], "align": "feat2"},
               {"in": ["feat", "feat2"], "align": "feat2", "align_by": "size", "act": "tanh"}],
    "mul": [{"in": ["feat", "gate"]}, {"in": ["glob", "feat"], "act": "sigmoid"},
            {"in": ["feat2", "feat"]}],
    "crop": [{"to": "feat2"}, {"to": "feat2", "offset": 0}],
}
CASES = [(op, i) for op, samples in SAMPLES.items() for i in range(len(samples))]


def spec_with(op: str, fields: dict) -> dict:
    node = {"op": op, "in": "feat", **fields}
    return {"name": f"op-{op}", "num_classes": 3, "nodes": {
        "feat": {"op": "conv", "in": "input", "out": 5, "kernel": 3, "stride": 2, "pad": 1},
        "feat2": {"op": "conv", "in": "feat", "out": 5, "kernel": 3, "pad": 0},  # 1 px smaller, shift +1
        "gate": {"op": "conv", "in": "feat", "out": 1, "pad": 1, "act": "sigmoid"},  # 1 channel
        "glob": {"op": "adaptive_pool", "in": "feat", "size": 1},  # 5 x 1 x 1, no pixel grid
        "pidx": {"op": "pool", "in": "feat", "kernel": 2, "indices": True},
        "node": node,
    }, "output": "node"}


def prune_helpers(data: dict) -> None:
    """Drop helper nodes that no other node reads (an unused node would be an error)."""
    nodes = data["nodes"]
    while unused := [n for n in nodes if n not in ("feat", "node")
                     and not any(n in json.dumps(body) for other, body in nodes.items() if other != n)]:
        for n in unused:
            del nodes[n]


def test_every_registered_op_has_a_sample():
    assert set(SAMPLES) == set(REGISTRY)


@pytest.mark.parametrize("op,index", CASES)
@pytest.mark.parametrize("size", [(17, 17), (24, 31)])
def test_op_static_rules_match_pytorch(op, index, size):
    data = spec_with(op, SAMPLES[op][index])
    prune_helpers(data)
    analysis = analyze(load_spec(data), size)
    model = compile_spec(analysis).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))
    info = analysis.nodes["node"]
    assert out.shape == (2, info.channels, *info.size)
    real = sum(p.numel() for p in getattr(model, "node", torch.nn.Module()).parameters())
    assert info.params == real
    assert REGISTRY[op].fill.startswith("#") and info.op.label()


@pytest.mark.parametrize("op", sorted(REGISTRY))
def test_schema_lists_every_op(op):
    schema = json_schema()
    assert any(f"{op}" == d.get("properties", {}).get("op", {}).get("const")
               for d in schema["$defs"].values())


def reference_upsample_filt(size):
    """The FCN surgery formula, written out with numpy (independent of bilinear_kernel)."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    og = np.ogrid[:size, :size]
    return (1 - abs(og[0] - center) / factor) * (1 - abs(og[1] - center) / factor)


@pytest.mark.parametrize("size", [2, 3, 4, 16, 32, 63, 64])
def test_bilinear_kernel_matches_fcn_formula(size):
    np.testing.assert_allclose(bilinear_kernel(size).numpy(), reference_upsample_filt(size), rtol=1e-6)


def test_bilinear_tconv_interpolates_interior_pixels():
    """A k4 s2 bilinear tconv reproduces a linear ramp exactly away from the borders."""
    data = {"name": "up", "num_classes": 1, "input": {"channels": 1},
            "nodes": {"up": {"op": "tconv", "in": "input", "factor": 2}}, "output": "up"}
    model = compile_spec(load_spec(data))
    ramp = torch.arange(8.0).repeat(8, 1)[None, None]  # [1, 1, 8, 8], value = column
    with torch.no_grad():
        out = model(ramp)[0, 0, 4:-4, 4:-4]  # interior
    steps = out[:, 1:] - out[:, :-1]
    torch.testing.assert_close(steps, torch.full_like(steps, 0.5))


def test_frozen_tconv_gets_no_gradient_and_learnable_does():
    data = {"name": "up", "num_classes": 2, "nodes": {
        "s": {"op": "score", "in": "input", "init": "kaiming"},
        "a": {"op": "tconv", "in": "s", "factor": 2, "learnable": False},
        "b": {"op": "tconv", "in": "a", "factor": 2}}, "output": "b"}
    model = compile_spec(load_spec(data))
    model(torch.randn(1, 3, 8, 8)).sum().backward()
    assert model.a.weight.grad is None and model.b.weight.grad is not None
