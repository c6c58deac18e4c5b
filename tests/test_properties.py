"""Property tests: random valid specs → the statically inferred shape of every node equals the
real tensor's; random mutations of valid specs → a working model or a SpecError naming the
node and JSON path, never another exception."""

import copy
import json

import torch
import torch.fx as fx
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fcngraph.compile import compile_spec
from fcngraph.errors import SpecError
from fcngraph.shapes import analyze
from fcngraph.spec import load_spec

from .conftest import tiny_spec

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


def propose(draw, names):
    """One random node reading from existing node ids."""
    pick = st.sampled_from(names)
    ops = ["conv", "conv", "pool", "score", "tconv", "upsample", "dropout", "scale", "lrn", "crop",
           "act", "norm", "adaptive_pool", "unpool"]
    op = draw(st.sampled_from(ops + ["add", "concat", "mul"] * (len(names) > 1)))
    node = {"op": op, "in": draw(pick)}
    if op == "conv":
        layers = draw(st.integers(1, 2))
        node.update(out=draw(st.lists(st.integers(1, 6), min_size=layers, max_size=layers)),
                    kernel=draw(st.integers(1, 4)), stride=draw(st.integers(1, 2)),
                    pad=draw(st.sampled_from([0, 1, 2])), dilation=draw(st.integers(1, 2)),
                    norm=draw(st.sampled_from(["none", "batch"])),
                    act=draw(st.sampled_from(["relu", "none", ["none", "sigmoid"]])))
        if isinstance(node["act"], list) and layers == 1:
            node["act"] = "none"
    elif op == "pool":
        kernel = draw(st.integers(1, 3))
        node.update(kernel=kernel, stride=draw(st.integers(1, 3)), pad=draw(st.integers(0, kernel // 2)),
                    ceil=draw(st.booleans()), mode=draw(st.sampled_from(["max", "avg"])))
        node["indices"] = node["mode"] == "max" and draw(st.booleans())
    elif op == "unpool":
        node["indices_of"] = draw(pick)
    elif op == "adaptive_pool":
        node.update(size=draw(st.integers(1, 3)), mode=draw(st.sampled_from(["max", "avg"])))
    elif op == "act":
        node["fn"] = draw(st.sampled_from(["relu", "leaky_relu", "sigmoid", "tanh", "gelu", "softmax"]))
    elif op == "norm":
        node["norm"] = draw(st.sampled_from(["batch", "instance"]))
    elif op == "tconv":
        node.update(factor=draw(st.integers(1, 3)), pad=draw(st.integers(0, 1)),
                    init=draw(st.sampled_from(["bilinear", "kaiming"])))
        if node["init"] != "bilinear":
            node["out"] = draw(st.integers(1, 5))
    elif op == "upsample":
        if draw(st.booleans()):
            node["factor"] = draw(st.integers(1, 2))
        else:
            node["to"] = draw(pick)
        node["mode"] = draw(st.sampled_from(["bilinear", "nearest"]))
    elif op == "scale":
        node["value"] = draw(st.floats(-2, 2))
    elif op in ("add", "concat", "mul"):
        node["in"] = draw(st.lists(pick, min_size=2, max_size=3, unique=True))
        if draw(st.booleans()):
            node["align"] = draw(st.sampled_from(node["in"]))
        node["align_by"] = draw(st.sampled_from(["coords", "size"]))
    elif op == "crop":
        node["to"] = draw(pick)
    return node


def random_spec(draw) -> dict:
    spec = {"name": "random", "num_classes": draw(st.integers(1, 4)),
            "input": {"channels": draw(st.integers(1, 3))}, "nodes": {}, "output": ""}
    for i in range(draw(st.integers(1, 9))):
        node_id = f"n{i}"
        candidate = copy.deepcopy(spec)
        candidate["nodes"][node_id] = propose(draw, ["input", *spec["nodes"]])
        candidate["output"] = node_id
        try:
            analyze(load_spec(_prune(candidate)))
        except SpecError:
            continue  # not a valid addition: try another
        spec = candidate
    assume(spec["nodes"])
    return _prune(spec)


def _prune(spec: dict) -> dict:
    """Drop nodes the output does not depend on (they would be 'unused' errors)."""
    keep, todo = set(), [spec["output"]]
    while todo:
        node = todo.pop()
        if node in keep or node == "input":
            continue
        keep.add(node)
        body = spec["nodes"][node]
        todo += [body["in"]] if isinstance(body["in"], str) else list(body["in"])
        todo += [body[f] for f in ("to", "align", "indices_of") if isinstance(body.get(f), str)]
    return {**spec, "nodes": {k: v for k, v in spec["nodes"].items() if k in keep}}


class ShapeRecorder(fx.Interpreter):
    def run_node(self, n):
        result = super().run_node(n)
        if isinstance(result, torch.Tensor):
            self.shapes[n.name] = tuple(result.shape)
        return result


def real_shapes(model, x):
    recorder = ShapeRecorder(model)
    recorder.shapes = {}
    recorder.run(x)
    return recorder.shapes


@SETTINGS
@given(st.data())
def test_static_shapes_equal_real_shapes(data):
    spec = load_spec(random_spec(data.draw))
    size = (data.draw(st.integers(1, 40)), data.draw(st.integers(1, 40)))
    try:
        analysis = analyze(spec, size)
    except SpecError as error:
        assert error.node in spec.nodes and error.path.startswith(f"$.nodes.{error.node}")
        return
    model = compile_spec(analysis).eval()
    with torch.no_grad():
        try:
            shapes = real_shapes(model, torch.randn(2, spec.input.channels, *size))
        except ValueError as error:  # instance norm of a 1×1 map (e.g. after a global pool): torch refuses
            assume("spatial element" not in str(error))  # a size the net cannot run on, not a shape error
            raise
    for node, info in analysis.nodes.items():
        assert shapes[model.fx_name_of[node]] == (2, info.channels, *info.size), node
    assert sum(p.numel() for p in model.parameters()) == analysis.params


JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 40), st.floats(-2, 2),
                        st.sampled_from(["", "same", "input", "n0", "n1", "conv", "auto", "x"]),
                        st.lists(st.integers(-1, 8), max_size=3))


def paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from paths(item, (*prefix, i))


def mutate(data, spec: dict) -> dict:
    spec = copy.deepcopy(spec)
    path = data.draw(st.sampled_from([p for p in paths(spec) if p]))
    parent = spec
    for key in path[:-1]:
        parent = parent[key]
    action = data.draw(st.sampled_from(["replace", "delete", "add"]))
    if action == "delete":
        del parent[path[-1]]
    elif action == "add" and isinstance(parent, dict):
        parent[data.draw(st.sampled_from(["kernel", "junk", "to", "align", "out", "factor"]))] = \
            data.draw(JSON_VALUES)
    else:
        parent[path[-1]] = data.draw(JSON_VALUES)
    return spec


@SETTINGS
@given(st.data())
def test_mutations_give_a_model_or_a_spec_error(data):
    base = random_spec(data.draw) if data.draw(st.booleans()) else tiny_spec()
    mutated = mutate(data, base)
    try:
        spec = load_spec(json.loads(json.dumps(mutated)))
        analysis = analyze(spec, (24, 24))
        assume(max(max(i.size) for i in analysis.nodes.values()) < 4096)
        assume(max(i.channels for i in analysis.nodes.values()) < 4096)
        model = compile_spec(analysis).eval()
        with torch.no_grad():
            out = model(torch.randn(1, spec.input.channels, 24, 24))
        assert out.shape[1:] == (analysis.output.channels, *analysis.output.size)
    except SpecError as error:
        assert error.path and error.path.startswith("$")
        if error.node is not None:
            assert f"'{error.node}'" in str(error)
            assert error.path.startswith(f"$.nodes.{error.node}") or error.path in ("$.nodes",)
