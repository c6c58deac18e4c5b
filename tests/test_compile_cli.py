"""Compiler features and the spec CLI commands."""

import json

import pytest
import torch

from fcngraph.cli import main
from fcngraph.compile import compile_spec
from fcngraph.errors import NodeRuntimeError
from fcngraph.spec import load_spec

from .conftest import SPECS, tiny_spec


def test_runtime_error_names_the_node():
    model = compile_spec(load_spec(SPECS / "fcn8s-mini.json"))
    with pytest.raises(NodeRuntimeError, match="node 'conv1'.*channels"):
        model(torch.randn(1, 4, 32, 32))


def test_generated_code_is_plain_pytorch_named_by_node():
    code = compile_spec(load_spec(SPECS / "fcn16s-vgg16.json")).code
    assert "score_pool4 = self.score_pool4(pool4)" in code
    assert "crop_to(score_pool4, upscore2, 5)" in code
    assert "crop_to(upscore16, x, 27)" in code


def test_torchscript_and_torch_export_agree_with_eager():
    model = compile_spec(load_spec(SPECS / "fcn8s-mini.json")).eval()
    x = torch.randn(1, 3, 40, 36)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(torch.jit.script(model)(x), expected)
        exported = torch.export.export(model, (x,))
        torch.testing.assert_close(exported.module()(x), expected)


def test_extends_errors_name_the_file_that_defined_the_node(tmp_path):
    (tmp_path / "base.json").write_text(json.dumps(tiny_spec()))
    (tmp_path / "child.json").write_text(json.dumps({
        "extends": "base.json", "name": "child",
        "nodes": {"extra": {"op": "add", "in": ["c1", "c2"]}, "out": {"op": "crop", "in": "up", "to": "extra"}}}))
    with pytest.raises(Exception) as info:
        compile_spec(load_spec(tmp_path / "child.json"))
    assert str(tmp_path / "child.json") in str(info.value) and "'extra'" in str(info.value)


def test_cli_show_prints_table_totals_and_sizes(capsys):
    assert main(["show", str(SPECS / "unet-original.json"), "--size", "572"]) == 0
    out = capsys.readouterr().out
    assert "cat1" in out and "64x388x388" in out and "31,030,658" in out
    assert "≡ 12 (mod 16)" in out and "input − 184" in out


def test_cli_code_and_schema(capsys, tmp_path):
    assert main(["code", str(SPECS / "fcn32s-mini.json")]) == 0
    assert "def forward(self, x):" in capsys.readouterr().out
    assert main(["schema", "-o", str(tmp_path / "s.json")]) == 0
    schema = json.loads((tmp_path / "s.json").read_text())
    (node_schema,) = schema["properties"]["nodes"]["patternProperties"].values()
    op, block, patch, removal = node_schema["anyOf"]  # the authored format: op, block use, patch, null
    assert op["discriminator"]["propertyName"] == "op" and block == {"$ref": "#/$defs/BlockUse"}
    assert patch["not"] == {"anyOf": [{"required": ["op"]}, {"required": ["block"]}]}
    assert removal == {"type": "null"} and {"extends", "defaults", "blocks"} <= set(schema["properties"])


def test_cli_export_onnx_is_a_valid_model(tmp_path, capsys):
    onnx = pytest.importorskip("onnx")  # a test extra; CI installs it
    target = tmp_path / "fcn8s.onnx"
    assert main(["export", str(SPECS / "fcn8s-mini.json"), "--onnx", str(target), "--size", "64"]) == 0
    model = onnx.load(str(target))
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["image"]


def test_cli_bad_size_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["show", str(SPECS / "fcn8s-mini.json"), "--size", "0x3"])
    assert info.value.code == 2


def test_cli_missing_file_is_one_line(capsys):
    assert main(["show", "no/such/spec.json"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot read spec" in err
