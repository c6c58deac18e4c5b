"""Analysis → U-shaped architecture diagram (graphviz).

Input: an `Analysis`. Output: a `Layout` (a box per node, pinned at row = log2 of its stride
and column = execution order, so the encoder descends on the left, the decoder climbs on the
right and skips run across), its DOT source, and `render` → .dot plus svg/png/pdf drawn by
graphviz's `neato -n2` (which keeps the pinned positions).
"""

from __future__ import annotations

import math
import shutil
import subprocess
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import graphviz

from .errors import FcngraphError
from .io import atomic_write, atomic_write_text
from .shapes import Analysis
from .spec import INPUT

COLUMN_PT = 120  # horizontal distance between consecutive columns (points)
ROW_PT = 96  # vertical distance between scale levels, one level per 2x stride
ROUTED_LIMIT = 400  # above this many boxes, edges are straight lines (spline routing is quadratic)
COLLAPSIBLE = {"conv", "norm", "other", "score"}  # kinds compact mode merges into one stage box
FORMATS = ("svg", "png", "pdf")
INSTALL_HINT = ("install graphviz (Debian/Ubuntu: sudo apt-get install graphviz; macOS: brew install graphviz; "
                "conda: conda install -c conda-forge graphviz)")
EDGE_STYLE = {  # how each kind of link is drawn
    "data": {"color": "#404040"},
    "skip": {"color": "#2171b5", "penwidth": "2.5", "style": "bold", "tailport": "s", "headport": "s"},
    "ref": {"color": "#969696", "style": "dotted", "arrowhead": "odot"},
    "removed": {"color": "#bdbdbd", "style": "dashed"},
}
MARK_STYLE = {  # diff marks on boxes
    "added": {"color": "#238b45", "penwidth": "3"},
    "changed": {"color": "#e6550d", "penwidth": "3"},
    "removed": {"color": "#969696", "style": "dashed,rounded", "fillcolor": "#ffffff", "fontcolor": "#969696"},
}


class DiagramError(FcngraphError):
    """The diagram could not be drawn (graphviz missing or failing)."""


@dataclass(frozen=True)
class Box:
    """One drawn node: a spec node, or in compact mode a chain of them at one scale."""

    id: str
    members: tuple[str, ...]
    level: float  # log2 of the stride: 0 for full resolution, 5 for 1/32
    column: float  # execution order of the box
    label: str
    fill: str
    shape: str
    mark: str = ""  # diff mark: added, changed or removed


@dataclass(frozen=True)
class Link:
    source: str
    target: str
    kind: str  # data, skip (a branch leaving the main path), ref (size/alignment only), removed
    label: str = ""


@dataclass(frozen=True)
class Layout:
    title: str
    boxes: dict[str, Box]
    links: list[Link]


# -- layout ---------------------------------------------------------------------------------------
def level_of(stride: Fraction) -> float:
    return round(math.log2(stride), 3)


def _size_text(analysis: Analysis, node: str) -> str:
    info = analysis.nodes[node]
    return f"{info.channels}×{info.size[0]}×{info.size[1]}" if info.size else f"{info.channels} ch"


def _chains(analysis: Analysis) -> dict[str, str]:
    """Compact mode: node → id of the stage box it joins (first node of a same-scale chain)."""
    graph, nodes = analysis.graph.graph, analysis.nodes
    group: dict[str, str] = {}
    for node in [INPUT, *analysis.graph.order]:
        group[node] = node
        op = nodes[node].op
        if op is None or op.kind not in COLLAPSIBLE or len(op.inputs) != 1 or op.refs():
            continue
        (source,) = op.inputs
        before = nodes[source].op
        if (before is not None and before.kind in COLLAPSIBLE and graph.out_degree(source) == 1
                and nodes[source].stride == nodes[node].stride):
            group[node] = group[source]
    return group


def _box(analysis: Analysis, members: list[str], column: int) -> Box:
    first, last = members[0], members[-1]
    op = analysis.nodes[first].op
    if op is None:
        return Box(INPUT, (INPUT,), 0.0, column, f"input\n{_size_text(analysis, INPUT)}", "#ffffff", "box")
    text = f"{first}\n{op.label()}" if len(members) == 1 else f"{first} … {last}\n{len(members)} layers"
    return Box(first, tuple(members), level_of(analysis.nodes[last].stride), column,
               f"{text}\n{_size_text(analysis, last)}", op.fill, op.shape)


def _main_consumers(analysis: Analysis) -> dict[str, str]:
    """Node → its first data consumer in execution order. Edges to it form the main path; edges
    to the node's other consumers leave that path, which is what a skip connection is."""
    first: dict[str, str] = {}
    for target in analysis.graph.order:  # execution order: the first consumer seen wins
        for source in analysis.spec.nodes[target].inputs:
            first.setdefault(source, target)
    return first


def _edge_label(analysis: Analysis, source: str, target: str, field: str) -> str:
    info = analysis.nodes[target]
    if field == "in" and info.offsets:
        offset = info.offsets[info.op.inputs.index(source)]
        return f"crop {offset}" if offset else ""
    return field if field != "in" else ""


def layout(analysis: Analysis, compact: bool = False) -> Layout:
    """Pin every node (or stage, in compact mode) at (execution order, log2 stride)."""
    group = _chains(analysis) if compact else {n: n for n in analysis.nodes}
    members: dict[str, list[str]] = {}
    for node in analysis.nodes:  # input first, then execution order
        members.setdefault(group[node], []).append(node)
    boxes = {box_id: _box(analysis, ms, column) for column, (box_id, ms) in enumerate(members.items())}
    main, links, seen = _main_consumers(analysis), [], set()
    for source, target, data in analysis.graph.graph.edges(data=True):
        a, b = group[source], group[target]
        if a == b or (a, b) in seen:
            continue
        seen.add((a, b))
        kind = "ref" if data["kind"] == "ref" else "data" if main[source] == target else "skip"
        links.append(Link(a, b, kind, _edge_label(analysis, source, target, data["field"])))
    size = analysis.size
    title = analysis.spec.name + (f" @ {size[0]}×{size[1]}" if size else "")
    return Layout(title, boxes, sorted(links, key=lambda link: (boxes[link.target].column, link.source)))


def mark(lay: Layout, marks: dict[str, str]) -> Layout:
    """The layout with diff marks on the boxes named in `marks`."""
    return replace(lay, boxes={k: replace(b, mark=marks.get(k, b.mark)) for k, b in lay.boxes.items()})


# -- DOT source -----------------------------------------------------------------------------------
def _stride_text(level: float) -> str:
    stride = Fraction(2 ** level).limit_denominator(64)
    return f"stride {stride}"


def _position(box: Box, top: float) -> str:
    return f"{box.column * COLUMN_PT:.0f},{-(box.level - top) * ROW_PT:.0f}!"


def to_dot(lay: Layout) -> graphviz.Digraph:
    """DOT source with pinned positions (`pos`), fills by op kind and styled skip edges."""
    routed = len(lay.boxes) <= ROUTED_LIMIT
    dot = graphviz.Digraph(name="fcngraph", engine="neato")
    dot.attr("graph", label=lay.title, labelloc="t", fontname="Helvetica", fontsize="16",
             splines="true" if routed else "line", outputorder="edgesfirst", pad="0.3")
    dot.attr("node", fontname="Helvetica", fontsize="10", style="filled,rounded", margin="0.08,0.04")
    dot.attr("edge", fontname="Helvetica", fontsize="9", arrowsize="0.7")
    top = min(b.level for b in lay.boxes.values())
    for level in sorted({b.level for b in lay.boxes.values() if b.mark != "removed"}):  # ghosts sit between rows
        dot.node(f"_level_{level:g}", _stride_text(level), shape="plaintext", style="",
                 fontcolor="#737373", pos=f"{-COLUMN_PT:.0f},{-(level - top) * ROW_PT:.0f}!")
    for box in lay.boxes.values():
        style = {"fillcolor": box.fill, "shape": box.shape, "pos": _position(box, top),
                 "tooltip": ", ".join(box.members)}
        if box.shape != "box":
            style["style"] = "filled"
        style.update(MARK_STYLE.get(box.mark, {}))
        dot.node(box.id, box.label, **style)
    for link in lay.links:
        dot.edge(link.source, link.target, label=link.label or None, **EDGE_STYLE[link.kind])
    return dot


# -- rendering ------------------------------------------------------------------------------------
def output_format(path: Path) -> str:
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in FORMATS and fmt != "dot":
        raise DiagramError(f"{path}: unknown diagram format '.{fmt}'; use .svg, .png, .pdf or .dot")
    return fmt


def render(dot: graphviz.Digraph, output: Path) -> Path:
    """Write <output>.dot always, then draw `output` (svg/png/pdf by suffix) with graphviz."""
    fmt = output_format(output)
    dot_path = output.with_suffix(".dot")
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(dot_path, dot.source)
    if fmt == "dot":
        return dot_path
    neato = shutil.which("neato")
    if neato is None:
        raise DiagramError(f"wrote {dot_path}, but graphviz's 'neato' program was not found, so no .{fmt} was "
                           f"drawn: {INSTALL_HINT}; then rerun, or run: neato -n2 -T{fmt} {dot_path} -o {output}")
    done = subprocess.run([neato, "-n2", f"-T{fmt}", str(dot_path)], capture_output=True, timeout=600)
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()
        raise DiagramError(f"{dot_path}: graphviz failed: {message[-1] if message else done.returncode}")
    atomic_write(output, lambda handle: handle.write(done.stdout))
    return output


def svg_text(dot: graphviz.Digraph) -> str | None:
    """The drawing as inline SVG text, or None when graphviz is not installed."""
    neato = shutil.which("neato")
    if neato is None:
        return None
    done = subprocess.run([neato, "-n2", "-Tsvg"], input=dot.source.encode(), capture_output=True, timeout=600)
    if done.returncode != 0:
        return None
    text = done.stdout.decode()
    return text[text.index("<svg"):]  # drop the XML prolog and doctype so it can sit inside HTML
