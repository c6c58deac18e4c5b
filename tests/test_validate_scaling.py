"""`fcngraph validate` does work linear in the number of nodes (issue 8: 100,000 nodes in < 10 s).

No timings: work is counted. Python function calls made while validating specs of n and 2n nodes
(linear work doubles, quadratic work quadruples); the conv layers, once rebuilt for every rule a
node was asked for, counted per node; valid_sizes never falling back to one scalar call per side.
The shortcuts taken for speed are checked against what they replace.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import networkx as nx
import pytest
import torch

from benchmarks.validate_speed import conv_chain as chain  # the benchmark's 100,000-node specs, smaller
from benchmarks.validate_speed import skip_net
from fcngraph import cli, shapes
from fcngraph.graph import build_graph
from fcngraph.ops.base import Coord
from fcngraph.ops.conv import Conv
from fcngraph.spec import INPUT, load_spec

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p for p in [*(ROOT / "specs").rglob("*.json"), *(ROOT / "tests" / "specs").glob("*.json")]
                 if "schema" not in p.name)


def blocks(n: int) -> dict:
    """n // 3 copies of a residual block, with defaults: what expansion does, at scale."""
    unit = {"params": {"width": 8}, "output": "sum", "nodes": {
        "a": {"op": "conv", "in": "$in", "out": "$width", "pad": 1},
        "b": {"op": "conv", "in": "a", "out": "$width", "pad": 1, "act": "none"},
        "sum": {"op": "add", "in": ["b", "$in"], "act": "relu"}}}
    return {"name": "blocks", "num_classes": 2, "blocks": {"unit": unit}, "defaults": {"conv": {"kernel": 3}},
            "nodes": {"stem": {"op": "conv", "in": "input", "out": 8, "pad": 1},
                      "body": {"block": "unit", "in": "stem", "repeat": n // 3},
                      "out": {"op": "conv", "in": "body", "out": 2, "kernel": 1}},
            "output": "out"}


def _write(folder: Path, make, n: int) -> Path:
    path = folder / f"{make.__name__}-{n}.json"
    path.write_text(json.dumps(make(n)))
    return path


def _python_calls(path: Path) -> int:
    """Python function calls (and generator resumptions) made by `fcngraph validate path`."""
    calls = 0

    def count(frame, event, arg):
        nonlocal calls
        calls += event == "call"

    sys.setprofile(count)
    try:
        status = cli.main(["validate", str(path)])
    finally:
        sys.setprofile(None)
    assert status == 0
    return calls


@pytest.mark.parametrize("make", [chain, skip_net, blocks])
def test_validate_work_doubles_with_the_nodes(tmp_path, capsys, make):
    small, large = _write(tmp_path, make, 1000), _write(tmp_path, make, 2000)
    _python_calls(small)  # imports and caches (reserved names, ref fields) out of the count
    at_n, at_2n = _python_calls(small), _python_calls(large)
    # linear work a + b·n gives at_2n ≤ 2·at_n; one walk over all nodes per node adds millions
    assert at_n > 20 * 1000 and at_2n <= 2 * at_n, (at_n, at_2n)
    assert capsys.readouterr().out.count(": ok — ") == 3


def test_conv_layers_are_built_once_per_node(tmp_path, capsys, monkeypatch):
    counts = {"windows": 0, "layers": 0, "Coord.window": 0}

    def counted(name, function):
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return function(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(Conv, "windows", counted("windows", Conv.windows))
    monkeypatch.setattr(Conv, "layers", counted("layers", Conv.layers))
    monkeypatch.setattr(Coord, "window", counted("Coord.window", Coord.window))
    assert cli.main(["validate", str(_write(tmp_path, chain, 2000))]) == 0  # analysis at 64x64, sizes, memory
    assert counts == {"windows": 2000, "layers": 2000, "Coord.window": 2000}, counts
    assert ": ok — conv-chain-2000, 2000 nodes" in capsys.readouterr().out


def _no_side_by_side(op, *args):
    raise AssertionError(f"valid_sizes ran '{op.name}' one side at a time")


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_valid_sizes_scan_every_side_at_once(path, monkeypatch):
    """Every shipped op's length rule takes a vector of sides (crops, fusions, unpool and ceil
    pools included): the side-by-side fallback costs a thousand calls per node."""
    analysis = shapes.analyze(load_spec(path))
    expected = shapes.valid_sizes(analysis, 300)
    monkeypatch.setattr(shapes, "_side_by_side", _no_side_by_side)
    assert shapes.valid_sizes(analysis, 300) == expected


def test_valid_sizes_where_fusions_fit_on_some_sides_only(monkeypatch):
    """Pool then upsample: 2·floor(n/2) px, short of the input on odd sides, where the add and the
    crop do not fit; the vector scan drops those sides as the scalar one does, without it."""
    data = {"name": "odd", "num_classes": 2, "output": "out", "nodes": {
        "p": {"op": "pool", "in": "input", "kernel": 2},
        "up": {"op": "upsample", "in": "p", "factor": 2, "mode": "nearest"},
        "sum": {"op": "add", "in": ["input", "up"]},
        "cut": {"op": "crop", "in": "up", "to": "input", "offset": 0},
        "gp": {"op": "adaptive_pool", "in": "input"},
        "gated": {"op": "mul", "in": ["sum", "cut", "gp"]},
        "out": {"op": "conv", "in": "gated", "out": 2, "kernel": 1, "act": "none"}}}
    analysis = shapes.analyze(load_spec(data))
    slow = shapes.SizeRule(*_exhaustive(analysis, 40), limit=40)
    monkeypatch.setattr(shapes, "_side_by_side", _no_side_by_side)
    assert shapes.valid_sizes(analysis, 40) == slow
    assert sorted(slow.outputs) == list(range(2, 41, 2))


def _exhaustive(analysis, limit: int) -> tuple[dict[int, int], list[int]]:
    outputs, exact = {}, []
    for n in range(1, limit + 1):
        if (result := shapes.output_length(analysis, n)) is not None:
            outputs[n] = result[0]
            exact += [n] if result[1] else []
    return outputs, exact


@pytest.mark.parametrize("path", SHIPPED[::3], ids=lambda p: p.stem)
def test_execution_order_is_the_lexicographic_topological_sort(path):
    """File order is taken as is when it is a topological order; shuffled, the sort runs. Either
    way the order is networkx's lexicographic sort by file position, as before the shortcut."""
    spec = load_spec(path)
    data = spec.canonical()
    shuffled = list(data["nodes"].items())
    random.Random(0).shuffle(shuffled)
    for nodes in (data["nodes"], dict(shuffled)):
        written = load_spec({**data, "nodes": nodes})
        graph = build_graph(written)
        position = {node: i for i, node in enumerate([INPUT, *written.nodes])}
        expected = nx.lexicographical_topological_sort(graph.graph, key=position.__getitem__)
        assert graph.order == [node for node in expected if node != INPUT]


@pytest.mark.parametrize("conv", [
    {"out": [8, 16], "kernel": [3, 1], "stride": [2, 1], "pad": [1, 0]},
    {"out": 6, "kernel": 3, "pad": "same", "dilation": 2, "groups": 3, "norm": "group", "norm_groups": 3},
    {"out": [4, 4, 8], "kernel": 5, "stride": [1, 2, 2], "pad": 1, "bias": False,
     "norm": ["batch", "none", "instance"]},
])
def test_a_bound_conv_answers_as_the_module_it_builds(conv):
    """The rules of a conv bound once (what the analysis uses) against torch running its module."""
    op = Conv.model_validate({"op": "conv", "in": "x", **conv})
    bound = op.bind([6])
    assert bound.layers == op.layers(6) and bound.windows == op.windows()
    channels = bound.channels([6], 3)
    module = op.build([6], channels).eval()
    assert bound.params([6], channels) == sum(p.numel() for p in module.parameters())
    for n in (16, 33):
        with torch.no_grad():
            shape = module(torch.zeros(1, 6, n, n)).shape
        assert shape == (1, channels, bound.length([n], {}, []), bound.length([n], {}, []))
