"""Diagrams and diffs: asserted on the layout and the graphviz source (positions, edge
styles), not on pixels; rendering through graphviz; a clear message without it."""

import re

import pytest

from fcngraph.cli import main
from fcngraph.diagram import EDGE_STYLE, DiagramError, layout, render, to_dot
from fcngraph.diff import describe, diff_layout, diff_specs
from fcngraph.ops import REGISTRY
from fcngraph.shapes import analyze
from fcngraph.spec import load_spec

from .conftest import SPECS, tiny_spec


def analysed(name, size=None):
    return analyze(load_spec(SPECS / f"{name}.json"), size)


def positions(source: str) -> dict[str, tuple[float, float]]:
    """Node id → pinned (x, y) read back from the DOT text."""
    found = {}
    for node, x, y in re.findall(r'^\s*"?(\w+)"? \[[^\]]*?pos="(-?[\d.]+),(-?[\d.]+)!"', source, re.M):
        found[node] = (float(x), float(y))
    return found


def edge_attrs(source: str, a: str, b: str) -> str:
    match = re.search(rf"^\s*{a} -> {b}( \[.*\])?$", source, re.M)
    assert match, f"no edge {a} -> {b}"
    return match.group(1) or ""


def test_fcn8s_is_a_v_with_skips_running_across_at_their_own_levels():
    source = to_dot(layout(analysed("fcn8s-vgg16", (224, 224)))).source
    pos = positions(source)
    # rows: one per 2x stride, deeper = lower; columns: execution order
    assert pos["input"][1] == pos["conv1"][1] == pos["score"][1]
    assert pos["pool5"][1] < pos["pool4"][1] < pos["pool3"][1] < pos["conv1"][1]
    assert pos["pool4"][1] == pos["score_pool4"][1] == pos["fuse_pool4"][1]
    assert pos["pool3"][1] == pos["score_pool3"][1] == pos["fuse_pool3"][1]
    assert pos["pool5"][0] < pos["upscore2"][0] < pos["upscore_pool4"][0] < pos["upscore8"][0]
    assert pos["pool4"][0] < pos["conv5"][0] < pos["score_pool4"][0]
    skip_colour = EDGE_STYLE["skip"]["color"]
    for source_node, skip in (("pool4", "score_pool4"), ("pool3", "score_pool3")):
        assert skip_colour in edge_attrs(source, source_node, skip)
    assert skip_colour not in edge_attrs(source, "pool4", "conv5")
    assert "dotted" in edge_attrs(source, "input", "score")  # crop's size reference
    assert "crop 5" in edge_attrs(source, "score_pool4", "fuse_pool4")


def test_unet_shows_four_crop_and_concat_skips():
    lay = layout(analysed("unet-original", (572, 572)))
    skips = sorted((link.source, link.target, link.label) for link in lay.links if link.kind == "skip")
    assert skips == [("drop4", "cat4", "crop 4"), ("enc1", "cat1", "crop 88"),
                     ("enc2", "cat2", "crop 40"), ("enc3", "cat3", "crop 16")]
    for source, target, _ in skips:
        assert lay.boxes[source].level == lay.boxes[target].level
        assert lay.boxes[source].column < lay.boxes[target].column
    assert "64×568×568" in lay.boxes["enc1"].label


def test_compact_mode_collapses_same_scale_chains_but_keeps_skips():
    full, compact = layout(analysed("fcn8s-vgg16")), layout(analysed("fcn8s-vgg16"), compact=True)
    assert len(compact.boxes) < len(full.boxes)
    assert compact.boxes["fc6"].members == ("fc6", "drop6", "fc7", "drop7", "score_fr")
    assert "5 layers" in compact.boxes["fc6"].label
    assert {(link.source, link.target) for link in compact.links if link.kind == "skip"} == {
        ("pool4", "score_pool4"), ("pool3", "score_pool3")}
    assert ("fc6", "upscore2") in {(link.source, link.target) for link in compact.links}


@pytest.mark.parametrize("op", sorted(REGISTRY))
def test_every_op_has_a_diagram_style(op):
    cls = REGISTRY[op]
    assert re.fullmatch(r"#[0-9a-f]{6}", cls.fill) and cls.shape and cls.kind


def test_fill_comes_from_the_op():
    lay = layout(analysed("fcn8s-vgg16"))
    for node in ("conv1", "pool1", "score_fr", "upscore2", "fuse_pool4", "score"):
        assert lay.boxes[node].fill == type(load_spec(SPECS / "fcn8s-vgg16.json").nodes[node]).fill


def test_render_writes_dot_and_the_picture(tmp_path):
    dot = to_dot(layout(analyze(load_spec(tiny_spec()), (16, 16))))
    for fmt, magic in (("svg", b"<?xml"), ("png", b"\x89PNG"), ("pdf", b"%PDF")):
        out = render(dot, tmp_path / f"tiny.{fmt}")
        assert out.read_bytes().startswith(magic)
        assert (tmp_path / "tiny.dot").read_text() == dot.source


def test_missing_graphviz_keeps_the_dot_and_says_how_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("fcngraph.diagram.shutil.which", lambda name: None)
    with pytest.raises(DiagramError, match="apt-get install graphviz"):
        render(to_dot(layout(analyze(load_spec(tiny_spec())))), tmp_path / "t.svg")
    assert (tmp_path / "t.dot").is_file() and not (tmp_path / "t.svg").exists()
    assert main(["diagram", str(SPECS / "unet-mini.json"), "-o", str(tmp_path / "u.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "neato -n2 -Tpng" in err and (tmp_path / "u.dot").is_file()


def test_cli_diagram_and_bad_format(tmp_path, capsys):
    assert main(["diagram", str(SPECS / "unet-original.json"), "--size", "572", "-o", str(tmp_path / "u.svg")]) == 0
    assert (tmp_path / "u.svg").read_text().count("class=\"node\"") >= 24
    assert main(["diagram", str(SPECS / "unet-original.json"), "-o", str(tmp_path / "u.jpg")]) == 2
    assert "unknown diagram format '.jpg'" in capsys.readouterr().err


def test_diff_fcn16s_against_fcn32s_is_exactly_the_pool4_skip(tmp_path, capsys):
    diff = diff_specs(analysed("fcn32s-vgg16"), analysed("fcn16s-vgg16"))
    assert diff.added == ["upscore2", "score_pool4", "fuse_pool4", "upscore16"]
    assert diff.removed == ["upscore"] and diff.changed == {"score": ["in"]}
    assert ("pool4", "score_pool4") in diff.edges_added and ("score_fr", "upscore") in diff.edges_removed
    text = describe(diff)
    assert "+ score_pool4" in text and "- upscore " in text and "in: upscore → upscore16" in text
    assert "params: 136,152,917 → 134,815,994" in text
    lay = diff_layout(diff)
    assert lay.boxes["score_pool4"].mark == "added" and lay.boxes["score"].mark == "changed"
    assert lay.boxes["upscore"].mark == "removed" and lay.boxes["conv5"].mark == ""
    assert any(link.kind == "removed" and link.source == "score_fr" for link in lay.links)
    assert main(["diff", str(SPECS / "fcn32s-vgg16.json"), str(SPECS / "fcn16s-vgg16.json"),
                 "-o", str(tmp_path / "d.svg")]) == 0
    assert "+ upscore2" in capsys.readouterr().out and (tmp_path / "d.svg").is_file()


def test_diff_of_a_spec_with_itself_is_empty():
    a = analysed("unet-mini")
    diff = diff_specs(a, a)
    assert not (diff.added or diff.removed or diff.changed or diff.edges_added or diff.edges_removed)
    assert "no node differs" in describe(diff)
