"""The authored spec language: extends (by shipped name or path), node patches (JSON Merge Patch),
per-op defaults, blocks, strict types and reserved node ids."""

import copy
import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from fcngraph.cli import main
from fcngraph.compile import compile_spec
from fcngraph.errors import SpecError
from fcngraph.expand import merge_patch
from fcngraph.overrides import apply_overrides
from fcngraph.shapes import analyze
from fcngraph.spec import load_spec

from .conftest import ROOT, SPECS, tiny_spec
from .test_properties import random_spec, real_shapes

TEST_SPECS = ROOT / "tests" / "specs"


def write(path, data):
    path.write_text(json.dumps(data))
    return path


# -- JSON Merge Patch: the examples of RFC 7396, appendix A ----------------------------------------
RFC_7396 = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize("target, patch, result", RFC_7396)
def test_merge_patch_follows_rfc_7396(target, patch, result):
    before = copy.deepcopy(target)
    assert merge_patch(target, patch) == result
    assert target == before  # the base spec's data is never modified


# -- extends and node patches ---------------------------------------------------------------------
def test_patch_merges_into_base_node_and_null_deletes_a_key(tmp_path):
    base = tiny_spec()
    base["nodes"]["p1"]["ceil"] = True
    write(tmp_path / "base.json", base)
    child = write(tmp_path / "child.json", {"extends": "base.json", "name": "child", "nodes": {
        "c1": {"out": [2, 6]},  # an array replaces
        "p1": {"ceil": None, "mode": "avg"},  # null deletes the key: back to the op's default
    }, "train": {"lr": 0.5, "epochs": None}})
    spec = load_spec(child)
    assert spec.nodes["c1"].out == [2, 6] and spec.nodes["c1"].pad == 1  # merged, not replaced
    assert spec.nodes["p1"].mode == "avg" and spec.nodes["p1"].ceil is False
    assert spec.train.lr == 0.5 and spec.train.epochs == 10
    assert spec.origin("p1") == str(child)


def test_node_with_op_replaces_and_null_removes(tmp_path):
    write(tmp_path / "base.json", tiny_spec())
    spec = load_spec(write(tmp_path / "child.json", {"extends": "base.json", "nodes": {
        "p1": {"op": "pool", "in": "c1", "mode": "avg"},
    }}))
    assert spec.nodes["p1"].mode == "avg" and spec.nodes["p1"].kernel == 2
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path / "bad.json", {"extends": "base.json", "nodes": {"p9": {"ceil": True}}}))
    assert info.value.path == "$.nodes.p9" and "base does not have" in info.value.message


def test_extends_a_shipped_spec_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    child = write(folder / "mine.json", {"extends": "fcn8s-mini", "name": "mine",
                                         "nodes": {"pool1": {"ceil": False}}})
    spec = load_spec(child)
    shipped = load_spec(SPECS / "fcn8s-mini.json")
    assert spec.nodes["pool1"].ceil is False and shipped.nodes["pool1"].ceil is True
    assert spec.nodes["upscore8"] == shipped.nodes["upscore8"]
    with pytest.raises(SpecError, match="no such file or shipped spec"):
        load_spec(write(folder / "typo.json", {"extends": "fcn8s-mnii"}))


def test_wheel_ships_specs_as_package_data(tmp_path):
    """Built like a user's install: the wheel holds fcngraph/specs/*.json, and `extends` by name finds
    them there (run in a fresh interpreter, outside the repository, importing the unpacked wheel)."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("fcngraph", "specs"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(source)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("*.whl"))
    installed = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(installed)
    assert (installed / "fcngraph" / "specs" / "fcn8s-vgg16.json").is_file()
    assert (installed / "fcngraph" / "specs" / "encoders" / "resnet34.json").is_file()
    write(tmp_path / "child.json", {"extends": "fcn8s-vgg16", "name": "child"})
    write(tmp_path / "unet.json", {"extends": "resnet34-unet", "name": "unet"})  # its base is encoders/
    script = ("import fcngraph.expand as e, fcngraph.spec as s; "
              "print(e.locate('fcn8s-vgg16', None)); print(len(s.load_spec('child.json').nodes)); "
              "print(len(s.load_spec('unet.json').nodes))")
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(installed)}).stdout.split()
    assert out[0] == str(installed / "fcngraph" / "specs" / "fcn8s-vgg16.json")
    assert out[1] == str(len(load_spec(SPECS / "fcn8s-vgg16.json").nodes))
    assert out[2] == str(len(load_spec(SPECS / "resnet34-unet.json").nodes))


def test_long_extends_chain_and_named_loop(tmp_path):
    write(tmp_path / "s0.json", tiny_spec())
    for i in range(1, 1500):
        write(tmp_path / f"s{i}.json", {"extends": f"s{i - 1}.json", "description": f"level {i}"})
    spec = load_spec(tmp_path / "s1499.json")
    assert spec.description == "level 1499" and set(spec.nodes) == set(tiny_spec()["nodes"])
    write(tmp_path / "s0.json", {**tiny_spec(), "extends": "s2.json"})
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path / "s3.json")
    assert info.value.message == "extends loop: s2.json -> s1.json -> s0.json -> s2.json"
    assert info.value.file.endswith("s0.json") and info.value.path == "$.extends"


# -- defaults ---------------------------------------------------------------------------------------
def test_defaults_apply_per_op_inherit_and_yield_to_nodes(tmp_path):
    base = tiny_spec()
    base["defaults"] = {"conv": {"norm": "batch", "act": "gelu"}, "pool": {"ceil": True}}
    base["nodes"]["c2"]["act"] = "tanh"
    write(tmp_path / "base.json", base)
    spec = load_spec(tmp_path / "base.json")
    assert (spec.nodes["c1"].norm, spec.nodes["c1"].act) == ("batch", "gelu")
    assert (spec.nodes["c2"].norm, spec.nodes["c2"].act) == ("batch", "tanh")
    assert spec.nodes["p1"].ceil is True
    child = load_spec(write(tmp_path / "child.json", {"extends": "base.json",
                                                      "defaults": {"conv": {"act": None, "bias": False}}}))
    assert (child.nodes["c1"].norm, child.nodes["c1"].act, child.nodes["c1"].bias) == ("batch", "relu", False)
    assert child.nodes["c2"].act == "tanh"


@pytest.mark.parametrize("defaults, path, words", [
    ({"convv": {"norm": "batch"}}, "$.defaults.convv", "unknown op 'convv'"),
    ({"conv": {"nrom": "batch"}}, "$.defaults.conv.nrom", "no field 'nrom'"),
])
def test_bad_defaults_name_their_path(defaults, path, words):
    with pytest.raises(SpecError) as info:
        load_spec({**tiny_spec(), "defaults": defaults})
    assert info.value.path == path and words in info.value.message


# -- blocks -----------------------------------------------------------------------------------------
def hand_expanded_resnet(blocks: list[int]) -> dict:
    """The ResNet encoder written out node by node, as one would without blocks."""
    conv = {"op": "conv", "bias": False, "norm": "batch", "act": "relu", "kernel": 3, "pad": 1}
    nodes = {"conv1": {**conv, "in": "input", "out": 64, "kernel": 7, "stride": 2, "pad": 3},
             "maxpool": {"op": "pool", "in": "conv1", "kernel": 3, "stride": 2, "pad": 1}}
    last = "maxpool"
    for stage, (count, width) in enumerate(zip(blocks, (64, 128, 256, 512)), start=1):
        for i in range(count):
            p = f"layer{stage}.{i}"
            stride = 2 if stage > 1 and i == 0 else 1
            nodes[f"{p}.conv1"] = {**conv, "in": last, "out": width, "stride": stride}
            nodes[f"{p}.conv2"] = {**conv, "in": f"{p}.conv1", "out": width, "act": "none"}
            shortcut = last
            if stride == 2:
                nodes[f"{p}.downsample"] = {**conv, "in": last, "out": width, "kernel": 1, "stride": 2,
                                            "pad": 0, "act": "none"}
                shortcut = f"{p}.downsample"
            nodes[f"{p}.add"] = {"op": "add", "in": [f"{p}.conv2", shortcut], "act": "relu"}
            last = f"{p}.add"
    return {"name": "x", "num_classes": 1000, "nodes": nodes, "output": last}


@pytest.mark.parametrize("name, blocks", [("resnet34", [3, 4, 6, 3]), ("resnet18", [2, 2, 2, 2])])
def test_block_expansion_equals_hand_expanded_spec(name, blocks):
    spec = load_spec(TEST_SPECS / f"{name}-encoder.json")
    hand = load_spec(hand_expanded_resnet(blocks))
    assert {**spec.canonical(), "name": "x", "description": ""} == hand.canonical()
    assert list(spec.nodes) == list(hand.nodes)  # expansion keeps the order the blocks are written in


def test_resnet_parameter_counts_match_torchvision():
    # variants-and-data-facts.md: torchvision ResNet without `fc`: 34 → 21,284,672, 18 → 11,176,512
    assert analyze(load_spec(TEST_SPECS / "resnet34-encoder.json")).params == 21_284_672
    assert analyze(load_spec(TEST_SPECS / "resnet18-encoder.json")).params == 11_176_512
    assert len((TEST_SPECS / "resnet34-encoder.json").read_text().splitlines()) < 60


class BasicBlock(nn.Module):
    """An independent BasicBlock in torchvision's layout (conv1/bn1/conv2/bn2/downsample), written from
    He et al.'s layer description, ReLU after the residual add."""

    def __init__(self, cin: int, width: int, stride: int, relu_after_add: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = nn.Sequential(nn.Conv2d(cin, width, 1, stride, bias=False), nn.BatchNorm2d(width)) \
            if stride != 1 or cin != width else None
        self.relu_after_add = relu_after_add

    def forward(self, x):
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))  # N×width×H/s×W/s
        y = y + (x if self.downsample is None else self.downsample(x))
        return torch.relu(y) if self.relu_after_add else y


def test_resnet18_spec_equals_torchvision_layout_network():
    torch.manual_seed(0)
    model = compile_spec(load_spec(TEST_SPECS / "resnet18-encoder.json")).eval()
    ref = nn.Module()
    ref.conv1, ref.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
    cin = 64
    for stage, width in enumerate((64, 128, 256, 512), start=1):
        layer = nn.Sequential(BasicBlock(cin, width, 1 if stage == 1 else 2), BasicBlock(width, width, 1))
        setattr(ref, f"layer{stage}", layer)
        cin = width
    # the spec's ids map onto torchvision's keys: conv node `X.conv1` = Sequential(conv, bn) → conv1, bn1
    rename = {".conv1.0.": ".conv1.", ".conv1.1.": ".bn1.", ".conv2.0.": ".conv2.", ".conv2.1.": ".bn2."}
    state = {}
    for key, value in model.state_dict().items():
        key = "." + key
        for old, new in rename.items():
            key = key.replace(old, new)
        state[key[1:]] = value + torch.rand_like(value) * 0.1 if value.is_floating_point() else value
    ref.load_state_dict(state, strict=True)
    model.load_state_dict(dict(zip(model.state_dict(), state.values())))
    ref.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        y = ref.layer4(ref.layer3(ref.layer2(ref.layer1(
            nn.functional.max_pool2d(torch.relu(ref.bn1(ref.conv1(x))), 3, 2, 1)))))
        torch.testing.assert_close(model(x), y)
    assert "layer2.0.downsample.0.weight" in model.state_dict()
    assert "layer2.0.downsample.1.running_var" in model.state_dict()


def block_spec(**changes) -> dict:
    spec = {
        "name": "b", "num_classes": 3,
        "blocks": {"pair": {"params": {"width": 4, "k": 3}, "output": "b", "nodes": {
            "a": {"op": "conv", "in": "$in", "out": "$width", "kernel": "$k", "pad": 1},
            "b": {"op": "conv", "in": "a", "out": "$width", "kernel": 3, "pad": 1},
        }}},
        "nodes": {
            "stage": {"block": "pair", "in": "input", "repeat": 2, "with": {"width": 8}},
            "score": {"op": "score", "in": "stage"},
        },
        "output": "score",
    }
    return merge_patch(spec, changes)


def test_block_repeat_chains_and_first_overrides():
    spec = load_spec(block_spec(nodes={"stage": {"first": {"width": 6}}}))
    assert list(spec.nodes) == ["stage.0.a", "stage.0.b", "stage.1.a", "stage.1.b", "score"]
    assert spec.nodes["stage.1.a"].inputs == ["stage.0.b"] and spec.nodes["score"].inputs == ["stage.1.b"]
    assert [spec.nodes[n].out for n in list(spec.nodes)[:4]] == [6, 6, 8, 8]


def test_nested_blocks_and_multiple_inputs():
    spec = load_spec(block_spec(blocks={
        "join": {"inputs": ["x", "skip"], "params": {"w": 4}, "output": "cat", "nodes": {
            "inner": {"block": "pair", "in": "$x", "with": {"width": "$w"}},
            "cat": {"op": "concat", "in": ["inner", "$skip"]},
        }}}, nodes={
        "j": {"block": "join", "in": ["stage", "input"], "with": {"w": 5}},
        "score": {"op": "score", "in": "j"},
    }))
    assert spec.nodes["j.inner.a"].inputs == ["stage.1.b"] and spec.nodes["j.inner.a"].out == 5
    assert spec.nodes["j.cat"].inputs == ["j.inner.b", "input"] and spec.nodes["score"].inputs == ["j.cat"]
    assert analyze(spec).nodes["j.cat"].channels == 8
    assert spec.blocks_of("j.inner.a") == [("j", "join"), ("j.inner", "pair")]
    assert spec.blocks_of("stage.1.b") == [("stage.1", "pair")] and spec.blocks_of("score") == []


@pytest.mark.parametrize("changes, path, node, words", [
    ({"nodes": {"stage": {"block": "piar"}}}, "$.nodes.stage.block", "stage", "unknown block \"piar\""),
    ({"nodes": {"stage": {"with": {"widht": 3}}}}, "$.nodes.stage.with.widht", "stage",
     "block 'pair' has no parameter 'widht'"),
    ({"blocks": {"pair": {"nodes": {"b": {"in": "aa"}}}}}, "$.blocks.pair.nodes.b.in", "stage.0.b",
     "block 'pair' (instance 'stage.0'): node 'b' refers to \"aa\""),
    ({"nodes": {"stage": {"repeat": 0}}}, "$.nodes.stage.repeat", "stage", "positive integer"),
    ({"blocks": {"pair": {"nodes": {"a": {"op": None, "out": None, "kernel": None, "pad": None,
                                           "block": "pair", "in": "$in"}}}}}, "$.blocks.pair.nodes.a.block",
     "stage.0.a.a.a.a.a.a.a.a", "nested deeper than 8"),
    ({"blocks": {"pair": {"output": "c"}}}, "$.blocks.pair.output", None, "'output' must name one of its nodes"),
    # errors found after expansion point at the block's definition and name the expanded node
    ({"blocks": {"pair": {"nodes": {"a": {"kernal": 3}}}}}, "$.blocks.pair.nodes.a.kernal", "stage.0.a",
     "unknown field 'kernal'"),
    ({"nodes": {"stage": {"with": {"k": "3"}}}}, "$.nodes.stage.with.k", "stage.0.a", "valid integer"),
    ({"nodes": {"stage": {"first": {"k": 0}}}}, "$.nodes.stage.first.k", "stage.0.a", "greater than or equal to 1"),
    ({"blocks": {"pair": {"nodes": {"a": {"groups": "$k"}}}}}, "$.blocks.pair.params.k", "stage.0.a",
     "8 channels do not divide into 3 groups"),
    ({"blocks": {"pair": {"nodes": {"b": {"stride": 2, "pad": "same"}}}}}, "$.blocks.pair.nodes.b.pad",
     "stage.0.b", "'same' needs stride 1"),
])
def test_block_errors_name_instance_and_definition(tmp_path, changes, path, node, words):
    file = write(tmp_path / "spec.json", block_spec(**changes))
    with pytest.raises(SpecError) as info:
        analyze(load_spec(file))
    assert (info.value.path, info.value.node) == (path, node)
    assert words in info.value.message and info.value.file == str(file)
    assert main(["validate", str(file)]) == 2


# -- strict types and reserved ids ----------------------------------------------------------------
@pytest.mark.parametrize("changes, path", [
    ({"num_classes": True}, "$.num_classes"),
    ({"nodes": {"c1": {"kernel": "3"}}}, "$.nodes.c1.kernel"),
    ({"nodes": {"c1": {"bias": "yes"}}}, "$.nodes.c1.bias"),
    ({"nodes": {"c1": {"pad": 1.0}}}, "$.nodes.c1.pad"),
    ({"train": {"epochs": "2"}}, "$.train.epochs"),
    ({"data": {"caffe_bgr": 1}}, "$.data.caffe_bgr"),
    ({"train": {"flip": 1}}, "$.train.flip"),
])
def test_strict_types(changes, path):
    with pytest.raises(SpecError) as info:
        load_spec(merge_patch(tiny_spec(), changes))
    assert info.value.path == path


def test_strict_types_still_take_json_numbers_and_arrays():
    spec = load_spec(merge_patch(tiny_spec(), {"train": {"lr": 1, "scale_range": [0.5, 2]}}))
    assert spec.train.lr == 1.0 and spec.train.scale_range == (0.5, 2.0)
    with pytest.raises(SpecError, match="--set num_classes: Input should be a valid integer"):
        apply_overrides(spec, ["num_classes=true"])
    assert apply_overrides(spec, ["train.epochs=3"]).train.epochs == 3


@pytest.mark.parametrize("node_id", ["def", "None", "forward", "__init__", "training", "_modules", "self",
                                     "class", "code", "graph", "cuda", "x", "conv1.forward", "layer.0"])
def test_reserved_node_ids_error_cleanly_or_compile_and_run(node_id):
    data = tiny_spec()
    nodes = data["nodes"]
    nodes[node_id] = nodes.pop("c2")
    nodes["s"]["in"] = node_id
    try:
        spec = load_spec(data)
        model = compile_spec(spec)
    except SpecError as exc:
        assert f"node id '{node_id}'" in str(exc) and "\n" not in str(exc)
        assert exc.path == f"$.nodes.{node_id}"
        return
    assert model(torch.randn(1, 3, 16, 16)).shape == (1, 3, 16, 16)


def test_a_field_that_takes_several_types_lists_them_all():
    """class_weights is a list or a method name: a wrong value says both, in a file and in --set."""
    expected = "Input should be a valid array or 'median_frequency' or 'inverse_sqrt'"
    with pytest.raises(SpecError) as info:
        load_spec(merge_patch(tiny_spec(), {"train": {"class_weights": "median"}}))
    assert info.value.path == "$.train.class_weights" and info.value.message == expected
    with pytest.raises(SpecError, match=f"--set train.class_weights: {expected}$"):
        apply_overrides(load_spec(tiny_spec()), ['train.class_weights="median"'])


def test_the_reserved_id_snapshot_is_the_installed_torchs():
    """validate checks ids against a snapshot (no torch import); it must be what this torch has."""
    from fcngraph.graph import MODULE_ATTRIBUTES, module_attribute_names

    live = module_attribute_names()
    missing, extra = sorted(live - MODULE_ATTRIBUTES), sorted(MODULE_ATTRIBUTES - live)
    assert not missing and not extra, f"snapshot lacks {missing}, has {extra} too"


def test_compile_refuses_an_id_that_only_the_installed_torch_reserves(monkeypatch):
    """A newer torch may add a module attribute the snapshot lacks: compile_spec still refuses it."""
    import fcngraph.compile

    spec = load_spec(tiny_spec())
    monkeypatch.setattr(fcngraph.compile, "module_attribute_names", lambda: frozenset({"c2"}))
    with pytest.raises(SpecError, match="node id 'c2': 'c2' is an attribute of the compiled nn.Module") as info:
        compile_spec(spec)
    assert info.value.path == "$.nodes.c2"


def test_validate_imports_no_torch():
    """Checking a spec is pure Python: torch (~2 s to import) loads only to build or run a model."""
    shipped = [str(p) for p in sorted(SPECS.rglob("*.json"))  # every op; encoders are no nets of their own
               if "schema" not in p.name and p.parent.name != "encoders"]
    code = ("import sys; from fcngraph.cli import main; status = main(['validate', *sys.argv[1:]]); "
            "sys.exit(10 + status if 'torch' in sys.modules else status)")
    done = subprocess.run([sys.executable, "-c", code, *shipped], capture_output=True, text=True, timeout=300,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]


def test_dotted_id_under_another_node_is_rejected():
    data = tiny_spec()
    data["nodes"]["c1.extra"] = {"op": "conv", "in": "c1", "out": 4, "pad": 1}
    data["nodes"]["p1"]["in"] = "c1.extra"
    with pytest.raises(SpecError, match="nested under node 'c1'"):
        analyze(load_spec(data))


def test_show_resolved_prints_the_expanded_spec(capsys):
    assert main(["show", str(TEST_SPECS / "resnet18-encoder.json"), "--resolved"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == load_spec(TEST_SPECS / "resnet18-encoder.json").canonical()
    assert printed["nodes"]["layer3.0.downsample"]["norm"] == "batch" and "blocks" not in printed


# -- property: a block is a renaming ----------------------------------------------------------------
def as_block(spec: dict, draw) -> tuple[dict, dict]:
    """The random spec's nodes as the body of a block instantiated once as `net`; every conv's kernel
    becomes a parameter, some bound by `with`. Returns (block spec, old id → expanded id)."""
    params, bound, body = {}, {}, {}
    for node_id, node in spec["nodes"].items():
        node = {k: ("$in" if k in ("in", "to", "align") and v == "input" else v) for k, v in node.items()}
        if isinstance(node["in"], list):
            node["in"] = ["$in" if ref == "input" else ref for ref in node["in"]]
        if node["op"] == "conv":
            params[f"k_{node_id}"] = 1 if draw(st.booleans()) else node["kernel"]
            bound[f"k_{node_id}"] = node["kernel"]
            node["kernel"] = f"$k_{node_id}"
        body[node_id] = node
    with_ = {k: v for k, v in bound.items() if params[k] != v or draw(st.booleans())}
    blocked = {**spec, "blocks": {"g": {"params": params, "output": spec["output"], "nodes": body}},
               "nodes": {"net": {"block": "g", "in": "input", "with": with_}}, "output": "net"}
    return blocked, {node: f"net.{node}" for node in spec["nodes"]}


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_block_expansion_is_a_renaming_and_shapes_hold(data):
    plain = random_spec(data.draw)
    blocked, ids = as_block(plain, data.draw)
    spec = load_spec(blocked)
    renamed = load_spec(plain).canonical()
    expected = {}
    for node, body in renamed["nodes"].items():
        for key in {"in", "to", "align"} & set(body):
            value = body[key]
            body[key] = [ids.get(v, v) for v in value] if isinstance(value, list) else ids.get(value, value)
        expected[ids[node]] = body
    assert spec.canonical()["nodes"] == expected
    size = (data.draw(st.integers(1, 40)), data.draw(st.integers(1, 40)))
    try:
        analysis = analyze(spec, size)
    except SpecError as error:
        assert error.node in spec.nodes and error.path.startswith("$.blocks.g.nodes.")
        return
    model = compile_spec(analysis).eval()
    with torch.no_grad():
        shapes = real_shapes(model, torch.randn(2, spec.input.channels, *size))
    for node, info in analysis.nodes.items():
        assert shapes[model.fx_name_of[node]] == (2, info.channels, *info.size), node


def test_reference_fields_are_found_from_the_op_models():
    # block bodies rename local ids in exactly these fields; a new op's NodeId field is found the same way
    from fcngraph.expand import _ref_fields

    assert _ref_fields("crop") == {"in", "to"} and _ref_fields("upsample") == {"in", "to"}
    assert _ref_fields("add") == {"in", "align"} and _ref_fields("conv") == {"in"}


def test_set_takes_digits_for_a_string_field_but_not_strings_for_numbers():
    spec = load_spec(tiny_spec())
    assert apply_overrides(spec, ["name=2024", "train.seed=7"]).name == "2024"
    with pytest.raises(SpecError, match="--set train.seed: Input should be a valid integer"):
        apply_overrides(spec, ["train.seed=seven"])


def test_absurdly_nested_json_is_one_line(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text('{"name": "d", "nodes": {}, "description": ' + "[" * 100_000 + "]" * 100_000 + "}")
    nested: dict = {}
    for _ in range(5000):
        nested = {"a": nested}
    for source in (deep, {**tiny_spec(), "train": nested}):
        with pytest.raises(SpecError, match="nested too deeply"):
            load_spec(source)
