"""Diagrams and diffs: asserted on the layout and the graphviz source (positions, edge
styles), not on pixels; the same drawing whatever the node order in the file; folding and
width of big nets (stand-ins from diagram_nets.py); hostile names stay text in DOT and SVG;
rendering through graphviz; a clear message without it."""

import dataclasses
import html
import re
import shutil
import subprocess

import pytest

from fcngraph.cli import main
from fcngraph.diagram import EDGE_STYLE, STACK, Box, DiagramError, Layout, Link, dot_id, layout, render, to_dot
from fcngraph.diff import describe, diff_layout, diff_specs
from fcngraph.ops import REGISTRY, Coord
from fcngraph.shapes import analyze
from fcngraph.spec import load_spec

from .conftest import SPECS, tiny_spec
from .diagram_nets import STAND_INS, as_spec, fpn, resnet34_unet, shuffled


def analysed(name, size=None):
    return analyze(load_spec(SPECS / f"{name}.json"), size)


def positions(source: str, ids) -> dict[str, tuple[float, float]]:
    """Node id → pinned (x, y) read back from the DOT text (where nodes are named by digest)."""
    found = {}
    for name, x, y in re.findall(r'^\s*(\w+) \[.*?pos="(-?[\d.]+),(-?[\d.]+)!"', source, re.M):
        found[name] = (float(x), float(y))
    return {node: found[dot_id(node)] for node in ids}


def edge_attrs(source: str, a: str, b: str) -> str:
    match = re.search(rf"^\s*{dot_id(a)} -> {dot_id(b)}( \[.*\])?$", source, re.M)
    assert match, f"no edge {a} -> {b}"
    return match.group(1) or ""


def file_spec(name: str) -> dict:
    """A shipped spec as plain data, `extends` resolved."""
    return load_spec(SPECS / f"{name}.json").canonical()


def test_fcn8s_is_a_v_with_skips_running_across_at_their_own_levels():
    analysis = analysed("fcn8s-vgg16", (224, 224))
    source = to_dot(layout(analysis)).source
    pos = positions(source, analysis.nodes)
    # rows: one per 2x stride, deeper = lower; columns: longest path, pulled towards consumers
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
    assert diff.added == ["score_pool4", "upscore2", "fuse_pool4", "upscore16"]  # by depth, then id
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


# -- the same drawing whatever the node order ----------------------------------------------------
@pytest.mark.parametrize("compact", [False, True])
@pytest.mark.parametrize("name", ["fcn8s-vgg16", "unet-original", *STAND_INS])
def test_shuffled_node_order_draws_the_same_dot(name, compact):
    data = STAND_INS[name]() if name in STAND_INS else file_spec(name)
    drawn = {to_dot(layout(analyze(as_spec(shuffled(data, seed)), (64, 64) if name in STAND_INS else None),
                           compact)).source for seed in range(4)}
    assert len(drawn) == 1
    assert shuffled(data, 0)["nodes"] != data["nodes"] or list(shuffled(data, 0)["nodes"]) != list(data["nodes"])


def test_shuffled_diff_is_the_same_text_and_drawing():
    for a, b in (("fcn32s-vgg16", "fcn16s-vgg16"), ("fcn16s-vgg16", "fcn8s-vgg16")):  # removes, adds
        results = set()
        for seed in range(3):
            diff = diff_specs(analyze(load_spec(shuffled(file_spec(a), seed))),
                              analyze(load_spec(shuffled(file_spec(b), seed + 7))))
            results.add((describe(diff), to_dot(diff_layout(diff)).source, to_dot(diff_layout(diff, True)).source))
        assert len(results) == 1


# -- big nets: folding, stacking, width ------------------------------------------------------------
def test_compact_folds_each_resnet_stage_into_one_box_and_keeps_the_u():
    lay = layout(analyze(as_spec(resnet34_unet()), (64, 64)), compact=True)
    stages = {box.label.split("\n")[0]: box for box in lay.boxes.values() if box.label.startswith("layer")}
    assert list(stages) == ["layer1 ×3", "layer2 ×4", "layer3 ×6", "layer4 ×3"]
    assert [len(box.members) for box in stages.values()] == [9, 13, 19, 10]  # 3 per block + a 1x1 shortcut
    assert [box.level for box in stages.values()] == [2, 3, 4, 5]  # the encoder descends ...
    decoders = [box for box in lay.boxes.values() if box.id.startswith("dec") and box.level > 0]
    assert [box.level for box in decoders] == [4, 3, 2, 1]  # ... the decoder climbs back
    assert all(d.column > stages["layer4 ×3"].column for d in decoders)
    skips = {(link.source, link.target) for link in lay.links if link.kind == "skip"}
    for stage, decoder in zip(list(stages.values())[:3], reversed(decoders[:3])):
        assert (stage.id, decoder.id) in skips and stage.level == decoder.level
    assert len(lay.boxes) <= 15


def test_fpn_of_80_nodes_fits_3000_points_compact_and_no_cell_holds_more_than_the_stack():
    analysis = analyze(as_spec(fpn()), (64, 64))
    assert 70 <= len(analysis.nodes) <= 90
    full, compact = layout(analysis), layout(analysis, compact=True)
    assert compact.width <= 3000  # bound: a landscape page at 1 pt = 1 px
    assert full.width <= 120 * 70  # expanded: one column per step of the longest path (was one per node)
    for lay in (full, compact):
        spots = [(box.x, box.y) for box in lay.boxes.values()]
        assert len(set(spots)) == len(spots)  # stacked, never drawn on top of each other


def test_a_wide_fan_out_stacks_three_high_and_spills_into_extra_columns():
    nodes = {f"b{i}": {"op": "conv", "in": "input", "out": 4, "pad": 1} for i in range(10)}
    nodes["cat"] = {"op": "concat", "in": sorted(nodes)}
    lay = layout(analyze(load_spec({"name": "fan", "num_classes": 2, "nodes": nodes, "output": "cat"})))
    branches = [lay.boxes[f"b{i}"] for i in range(10)]
    assert {box.column for box in branches} == {1}
    per_x = {x: sum(box.x == x for box in branches) for x in {box.x for box in branches}}
    assert sorted(per_x.values()) == [1, 3, 3, 3] and max(per_x.values()) <= STACK
    assert lay.boxes["cat"].x > max(per_x)  # the spilled sub-columns widen the whole column


def test_a_node_without_a_pixel_grid_takes_its_inputs_row():
    analysis = analysed("fcn8s-vgg16")
    gridless = dataclasses.replace(analysis.nodes["pool5"], coord=Coord(None, None, None))
    analysis = dataclasses.replace(analysis, nodes={**analysis.nodes, "pool5": gridless})
    lay = layout(analysis)
    assert lay.boxes["pool5"].level == lay.boxes["conv5"].level == 4
    assert to_dot(layout(analysis, compact=True)).source.count("->") > 10


# -- escaping: user text stays text ----------------------------------------------------------------
HOSTILE = ['<b>bold</b>', '"]; evil [URL="javascript:alert(1)"]; x [label="',
           'two\nlines\r\tand a tab', '\\N\\G\\l back\\', 'ünïcødé ✓ 名前', '<<table><tr><td>x</td></tr></table>>']


def _strip_strings(source: str) -> str:
    """The DOT text with every quoted string removed: what graphviz parses as structure."""
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', source)


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_names_and_ids_never_leave_their_quoted_string(text):
    data = tiny_spec()
    data["name"] = text
    source = to_dot(layout(analyze(load_spec(data)))).source
    hostile = Layout(text, {text: Box(text, (text,), 0.0, 0, f"{text}\n{text}", "#ffffff", "box"),
                            "b": Box("b", ("b",), 1.0, 1, "b", "#ffffff", "box", x=120.0)},
                     [Link(text, "b", "skip", text)], {0.0: 0.0})
    for dot in (source, to_dot(hostile).source):
        skeleton = _strip_strings(dot)
        assert "URL" not in skeleton and "evil" not in skeleton and "<" not in skeleton
    statements = _strip_strings(to_dot(hostile).source).splitlines()[1:-1]
    # graph/node/edge defaults, one row label, two boxes, one link: nothing added
    assert len(statements) == 3 + 1 + 2 + 1 and sum("->" in line for line in statements) == 1
    assert "\\N" not in source.replace("\\\\", "")  # backslashes doubled: no \N, \G escapes


@pytest.mark.skipif(shutil.which("neato") is None, reason="graphviz not installed (the DOT test above still runs)")
@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_names_draw_as_text_in_the_svg(text):
    data = tiny_spec()
    data["name"] = text
    lay = layout(analyze(load_spec(data)))
    svg = subprocess.run(["neato", "-n2", "-Tsvg"], input=to_dot(lay).source.encode(), capture_output=True,
                         check=True).stdout.decode()
    assert svg.count('class="node"') == len(lay.boxes) + len(lay.rows)  # no injected node
    assert "<a " not in svg and "href" not in svg and "<b>" not in svg and "<table" not in svg
    visible = " ".join(html.unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)</text>", svg))
    shown = "".join(ch if ch.isprintable() else " " for ch in text)
    assert " ".join(shown.split()) in " ".join(visible.split())  # the name is drawn, as plain text


def test_an_unwritable_output_is_one_line(tmp_path, capsys):
    (tmp_path / "u.dot").mkdir()  # a folder where the .dot file should go
    assert main(["diagram", str(SPECS / "unet-mini.json"), "-o", str(tmp_path / "u.svg")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "u.dot: cannot write" in err


def test_a_folded_stage_names_the_block_its_nodes_were_defined_in():
    spec = as_spec(resnet34_unet())
    paths = {node: f"$.blocks.basic.nodes.{node.rsplit('.', 1)[1]}" for node in spec.nodes if node.startswith("layer")}
    paths["layer3.0.down"] = "$.blocks.shortcut.nodes.down"  # a minority does not rename the stage
    object.__setattr__(spec, "_paths", paths)  # what block expansion records for each node
    labels = [box.label.split("\n")[0] for box in layout(analyze(spec), compact=True).boxes.values()]
    assert "layer3 ×6 basic" in labels and "layer1 ×3 basic" in labels and "dec1" in labels


def test_compact_diff_marks_a_folded_stage_that_changed_inside():
    a, b = resnet34_unet(), resnet34_unet()
    b["nodes"]["layer3.2.conv1"] = {**b["nodes"]["layer3.2.conv1"], "dilation": 2, "pad": 2}
    b["nodes"]["dec1.conv"] = {**b["nodes"]["dec1.conv"], "out": [128, 256]}
    diff = diff_specs(analyze(as_spec(a)), analyze(as_spec(b)))
    assert list(diff.changed) == ["layer3.2.conv1", "dec1.conv"]
    marks = {box.label.split("\n")[0]: box.mark for box in diff_layout(diff, compact=True).boxes.values()}
    assert marks["layer3 ×6"] == marks["dec1"] == "changed" and marks["layer2 ×4"] == ""


SHIPPED = sorted(p for p in SPECS.glob("*.json") if not p.name.endswith("schema.json"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_spec_compact_fits_a_landscape_page(path):
    assert layout(analyze(load_spec(path)), compact=True).width <= 3000  # points = px in the SVG
