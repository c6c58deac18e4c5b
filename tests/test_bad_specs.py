"""Every file in tests/bad_specs is one kind of error; each must name the exact node and field,
and the CLI must exit 2 with one line and no traceback."""

import pytest

from fcngraph.cli import main
from fcngraph.errors import SpecError
from fcngraph.shapes import analyze
from fcngraph.spec import load_spec

from .conftest import ROOT

BAD = ROOT / "tests" / "bad_specs"

# file → (node named, JSON path, words in the message)
EXPECTED = {
    "schema_type": ("conv1", "$.nodes.conv1.kernel", "valid integer"),
    "unknown_field": ("conv2", "$.nodes.conv2.kernal", "unknown field 'kernal'"),
    "unknown_op": ("pool1", "$.nodes.pool1", "'maxpool'"),
    "missing_field": ("up", "$.nodes.up.factor", "missing field 'factor'"),
    "missing_num_classes": (None, "$.num_classes", "missing field"),
    "dangling_ref": ("conv2", "$.nodes.conv2.in", "unknown node 'pool9'; did you mean 'pool1'"),
    "unknown_output": (None, "$.output", "unknown node 'scores'"),
    "cycle": ("conv2", "$.nodes.conv2.in", "cycle: conv2 -> score_fr -> conv2"),
    "unused_node": ("extra", "$.nodes.extra", "never used"),
    "arity": ("up", "$.nodes.up.in", "at least 2 input"),
    "channel_mismatch": ("fuse", "$.nodes.fuse.in", "channel mismatch"),
    "stride_mismatch": ("fuse", "$.nodes.fuse.in", "stride 1 vs 2"),
    "bilinear_channels": ("up", "$.nodes.up.init", "out == in"),
    "groups": ("conv2", "$.nodes.conv2.groups", "do not divide into 3 groups"),
    "list_length": ("conv1", "$.nodes.conv1.kernel", "3 entries for 2 layers"),
    "negative_crop": ("score", "$.nodes.score.to", "crop offset -1 is negative"),
    "gridless_fuse": ("fuse", "$.nodes.fuse.in", "'ppm_conv' comes after an adaptive pool"),
    "half_pixel": ("cat", "$.nodes.cat.in", "half a pixel apart"),
    "unpool_not_pool": ("up", "$.nodes.up.indices_of", "not a max `pool` with `indices: true`"),
    "mul_channels": ("gate", "$.nodes.gate.in", "each must be 1 or 4"),
    "aux_channels": ("aux", "$.aux_outputs.aux", "5 channels, not num_classes = 3"),
    "aux_unknown": ("nope", "$.aux_outputs.nope", "unknown node 'nope'"),
    "pool_indices_avg": ("pool1", "$.nodes.pool1", "'indices' needs mode 'max'"),
    "reserved_id": ("input", "$.nodes.input", "implicit input node"),
    "bad_id": ("conv-2", "$.nodes.conv-2", "not an identifier"),
    "pool_pad": ("pool1", "$.nodes.pool1", "more than half of kernel"),
    "dropout_p": ("conv2", "$.nodes.conv2.p", "less than 1"),
    "align_not_input": ("fuse", "$.nodes.fuse", "align 'pool1' is not one of the inputs"),
    "upsample_both": ("up", "$.nodes.up", "exactly one of 'factor' and 'to'"),
    "self_reference": ("score", "$.nodes.score.to", "refers to the node itself"),
    "same_pad_stride": ("conv1", "$.nodes.conv1.pad", "'same' needs stride 1"),
    "bad_json": (None, None, "invalid JSON at line 3 column 2"),
    "duplicate_key": ("a", None, "duplicate key 'a'"),
    "extends_loop": (None, "$.extends", "extends loop"),
    "extends_loop_base": (None, "$.extends", "extends loop"),
    "extends_missing": (None, "$.extends", "no such file"),
    "removes_unknown": ("upscore4", "$.nodes.upscore4", "base does not have"),
    "not_an_object": (None, "$", "must be a JSON object"),
    "block_typo": ("enc.0.b", "$.blocks.double.nodes.b.in", "block 'double' (instance 'enc.0'): node 'b' refers to"),
    "block_param": ("enc.0.a", "$.nodes.enc.with.width", "valid integer"),
    "keyword_id": ("def", "$.nodes.def", "'def' is a Python keyword"),
    "strict_bool": ("c1", "$.nodes.c1.bias", "valid boolean"),
    "patch_unknown": ("pool9", "$.nodes.pool9", "patches node 'pool9' (no 'op'), which the base does not have"),
    "huge_pad": ("c1", "$.nodes.c1.pad", "less than or equal to 2147483647"),
    "class_weights_word": (None, "$.train.class_weights", "a valid array or 'median_frequency' or 'inverse_sqrt'"),
}


def test_every_bad_spec_has_an_expectation():
    assert {p.stem for p in BAD.glob("*.json")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_error_names_node_and_path(name):
    node, path, words = EXPECTED[name]
    with pytest.raises(SpecError) as info:
        analyze(load_spec(BAD / f"{name}.json"))
    error = info.value
    assert error.node == node
    assert error.path == path
    assert words in error.message
    assert error.file and error.file.endswith(".json")
    assert "\n" not in str(error)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_cli_exits_2_with_one_line(name, capsys):
    assert main(["validate", str(BAD / f"{name}.json")]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fcngraph: error: ")
    assert "Traceback" not in err and EXPECTED[name][2] in err
