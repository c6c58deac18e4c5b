"""Analysis → U-shaped architecture diagram (graphviz).

Input: an `Analysis`. Output: a `Layout` (a box per node, or per chain / folded stage in compact
mode, at row = log2 of its stride and column = longest path from the input, both read from the
graph, so node order in the file changes nothing), its DOT source with every label quoted and
node names digested, and `render` → .dot plus svg/png/pdf drawn by graphviz's `neato -n2`.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import subprocess
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import graphviz
import networkx as nx

from .errors import FcngraphError
from .io import atomic_write, atomic_write_text
from .shapes import Analysis
from .spec import INPUT

COLUMN_PT = 120  # horizontal distance between consecutive columns (points; 1 pt = 1 px in SVG)
ROW_PT = 96  # vertical distance between scale levels, one level per 2x stride
STACK = 3  # boxes stacked in one cell (column, level) before the cell spills into another column
STACK_PT = 56  # vertical distance between boxes stacked in one cell
FOLD_MIN = 3  # compact mode folds a dotted-id stage (`layer3.*`) with at least this many nodes
FOLDED = ".*@"  # box id of a folded stage: stage + FOLDED + level (no node id contains '*')
ROUTED_LIMIT = 400  # above this many boxes, edges are straight lines (spline routing is quadratic)
COLLAPSIBLE = {"conv", "norm", "other", "score", "act"}  # kinds compact mode merges into one stage box
FORMATS = ("svg", "png", "pdf")
INSTALL_HINT = ("install graphviz (Debian/Ubuntu: sudo apt-get install graphviz; macOS: brew install graphviz; "
                "conda: conda install -c conda-forge graphviz)")
EDGE_STYLE = {  # how each kind of link is drawn
    "data": {"color": "#404040"},
    "skip": {"color": "#2171b5", "penwidth": "2.5", "style": "bold", "tailport": "s", "headport": "s"},
    "ref": {"color": "#969696", "style": "dotted", "arrowhead": "odot"},
    "removed": {"color": "#bdbdbd", "style": "dashed"},
}
LINK_RANK = {"data": 0, "skip": 1, "ref": 2, "removed": 3}  # which of several edges a link between two boxes shows
MARK_STYLE = {  # diff marks on boxes
    "added": {"color": "#238b45", "penwidth": "3"},
    "changed": {"color": "#e6550d", "penwidth": "3"},
    "removed": {"color": "#969696", "style": "dashed,rounded", "fillcolor": "#ffffff", "fontcolor": "#969696"},
}


class DiagramError(FcngraphError):
    """The diagram could not be drawn (graphviz missing or failing)."""


@dataclass(frozen=True)
class Box:
    """One drawn node: a spec node, or in compact mode a same-scale chain or a folded stage."""

    id: str
    members: tuple[str, ...]
    level: float  # log2 of the stride: 0 for full resolution, 5 for 1/32
    column: float  # longest path (in boxes) from the input, pulled right towards its consumers
    label: str
    fill: str
    shape: str
    mark: str = ""  # diff mark: added, changed or removed
    x: float = 0.0  # pinned position in points (y grows downwards, deeper = lower)
    y: float = 0.0


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
    rows: dict[float, float] = field(default_factory=dict)  # level → y of its row

    @property
    def width(self) -> float:
        """Drawing width in points: the stride labels' column, every box column, one box wide."""
        xs = [box.x for box in self.boxes.values()] or [0.0]
        return max(xs) - min(0.0, min(xs)) + 2 * COLUMN_PT


# -- graph order ----------------------------------------------------------------------------------
def depths(graph: nx.DiGraph) -> dict[str, int]:
    """Longest path (in edges) from a node without inputs: a property of the graph alone."""
    depth: dict[str, int] = {}
    for node in nx.topological_sort(graph):
        depth[node] = max((depth[p] + 1 for p in graph.predecessors(node)), default=0)
    return depth


def canonical_order(graph: nx.DiGraph) -> list[str]:
    """A topological order that depends only on the graph: by depth, ties by id."""
    depth = depths(graph)
    return sorted(graph.nodes, key=lambda node: (depth[node], node))


def level_of(stride: Fraction | None) -> float | None:
    """Row of a stride: log2 of it; None for a node without a pixel grid (adaptive pooling)."""
    try:
        return round(math.log2(stride), 3) if stride and stride > 0 else None
    except (TypeError, ValueError, OverflowError):
        return None


def _node_level(analysis: Analysis, node: str) -> float | None:
    return level_of(getattr(analysis.nodes[node], "stride", None))


# -- grouping: which nodes share a box ------------------------------------------------------------
def stage_of(node: str) -> tuple[str, str] | None:
    """'layer3.4.conv1' → ('layer3', 'layer3.4'): the stage and the block instance a dotted id
    belongs to; None for an id without a dotted prefix."""
    parts = node.split(".")
    if len(parts) < 2:
        return None
    if len(parts) > 2 and parts[1].isdigit():
        return parts[0], f"{parts[0]}.{parts[1]}"
    return parts[0], parts[0]


def _folds(analysis: Analysis) -> dict[str, str]:
    """Compact mode: dotted node → box of its stage at its scale (`layer3.*@3`), for stages of
    at least FOLD_MIN nodes. Split by scale so a stage spread over strides still draws a U."""
    by_stage: dict[tuple[str, float | None], list[str]] = defaultdict(list)
    for node in analysis.nodes:
        stage = stage_of(node)
        if stage is not None:
            by_stage[stage[0], _node_level(analysis, node)].append(node)
    return {node: f"{stage}{FOLDED}{level}" for (stage, level), nodes in by_stage.items()
            if len(nodes) >= FOLD_MIN for node in nodes}


def _chains(analysis: Analysis, order: list[str], taken: dict[str, str]) -> dict[str, str]:
    """Compact mode: node → id of the box it joins (first node of a same-scale chain)."""
    graph, nodes = analysis.graph.graph, analysis.nodes
    group: dict[str, str] = {}
    for node in order:
        group[node] = taken.get(node, node)
        op = nodes[node].op
        if node in taken or op is None or op.kind not in COLLAPSIBLE or len(op.inputs) != 1 or op.refs():
            continue
        (source,) = op.inputs
        before = nodes[source].op
        if (source not in taken and before is not None and before.kind in COLLAPSIBLE
                and graph.out_degree(source) == 1 and nodes[source].stride == nodes[node].stride):
            group[node] = group[source]
    return group


# -- boxes ----------------------------------------------------------------------------------------
def _size_text(analysis: Analysis, node: str) -> str:
    info = analysis.nodes[node]
    return f"{info.channels}×{info.size[0]}×{info.size[1]}" if info.size else f"{info.channels} ch"


def _block_name(analysis: Analysis, members: list[str]) -> str:
    """The block a folded stage was expanded from: the name most of its nodes' definitions sit
    under (`$.blocks.<name>.…`, where block expansion records each node's JSON path); '' if none."""
    paths = getattr(analysis.spec, "_paths", None) or {}
    names = Counter(path.split(".")[2] for m in members
                    if isinstance(path := paths.get(m), str) and path.startswith("$.blocks.") and path.count(".") >= 2)
    return min(names, key=lambda name: (-names[name], name)) if names else ""


def _box(analysis: Analysis, box_id: str, members: list[str]) -> Box:
    first, last = members[0], members[-1]
    op = analysis.nodes[last].op
    if op is None:
        return Box(INPUT, (INPUT,), 0.0, 0, f"input\n{_size_text(analysis, INPUT)}", "#ffffff", "box")
    if FOLDED in box_id:
        stage = box_id.split(FOLDED)[0]
        count = len({stage_of(m)[1] for m in members})
        times = f" ×{count}" if count > 1 else ""
        text = f"{stage}{times} {_block_name(analysis, members)}".rstrip() + f"\n{len(members)} nodes"
        fill = analysis.nodes[first].op.fill  # a stage looks like what it starts with, drawn as a stack
        return Box(box_id, tuple(members), 0.0, 0, f"{text}\n{_size_text(analysis, last)}", fill, "box3d")
    text = f"{first}\n{op.label()}" if len(members) == 1 else f"{first} … {last}\n{len(members)} layers"
    return Box(box_id, tuple(members), 0.0, 0, f"{text}\n{_size_text(analysis, last)}", op.fill, op.shape)


def _box_graph(analysis: Analysis, group: dict[str, str]) -> nx.DiGraph:
    boxes = nx.DiGraph()
    boxes.add_nodes_from(set(group.values()))
    boxes.add_edges_from((group[a], group[b]) for a, b in analysis.graph.graph.edges if group[a] != group[b])
    return boxes


def _columns(boxes: nx.DiGraph) -> dict[str, int]:
    """Longest path from the input, then each box pulled right to just before its first
    consumer, so a skip's score layer sits by the fusion it feeds. Folding can close a cycle
    between boxes; its boxes share a column (the condensation is acyclic)."""
    dag = nx.condensation(boxes)
    column = depths(dag)
    for part in reversed(list(nx.topological_sort(dag))):
        after = [column[s] for s in dag.successors(part)]
        if after:
            column[part] = max(column[part], min(after) - 1)
    return {box: column[part] for box, part in dag.graph["mapping"].items()}


def _levels(analysis: Analysis, members: dict[str, list[str]], boxes: nx.DiGraph) -> dict[str, float]:
    """Row of each box: its last node's stride; a grid-less box takes its deepest input's row."""
    level: dict[str, float] = {}
    for box in canonical_order(_acyclic(boxes)):
        own = _node_level(analysis, members[box][-1])
        inherited = [level[p] for p in boxes.predecessors(box) if p in level]
        level[box] = own if own is not None else max(inherited, default=0.0)
    return level


def _acyclic(boxes: nx.DiGraph) -> nx.DiGraph:
    """The box graph without the edges that close cycles (only folding makes any)."""
    if nx.is_directed_acyclic_graph(boxes):
        return boxes
    mapping = nx.condensation(boxes).graph["mapping"]
    keep = nx.DiGraph()
    keep.add_nodes_from(boxes)
    keep.add_edges_from((a, b) for a, b in boxes.edges if mapping[a] != mapping[b])
    return keep


def _place(columns: dict[str, int], levels: dict[str, float]) -> tuple[dict[str, tuple[float, float]],
                                                                         dict[float, float]]:
    """Pinned (x, y) per box and y per row. Boxes sharing a cell (column, level) stack STACK
    high, sorted by id, and spill into extra sub-columns; a wide cell widens its whole column
    and a tall one its whole row, so columns and rows stay straight."""
    cells: dict[tuple[int, float], list[str]] = defaultdict(list)
    for box in sorted(columns):
        cells[columns[box], levels[box]].append(box)
    width: dict[int, int] = defaultdict(lambda: 1)
    height: dict[float, int] = defaultdict(lambda: 1)
    for (column, level), inside in cells.items():
        width[column] = max(width[column], math.ceil(len(inside) / STACK))
        height[level] = max(height[level], min(len(inside), STACK))
    x_of, x = {}, 0.0
    for column in range(max(width, default=0) + 1):
        x_of[column], x = x, x + width[column] * COLUMN_PT
    y_of, extra, top = {}, 0.0, min(height, default=0.0)
    for level in sorted(height):
        y_of[level] = (level - top) * ROW_PT + extra
        extra += (height[level] - 1) * STACK_PT
    where = {box: (x_of[column] + (k // STACK) * COLUMN_PT, y_of[level] + (k % STACK) * STACK_PT)
             for (column, level), inside in cells.items() for k, box in enumerate(inside)}
    return where, y_of


def _heights(graph: nx.DiGraph) -> dict[str, int]:
    """Longest data path from each node to the end."""
    height: dict[str, int] = {}
    for node in reversed(list(nx.topological_sort(graph))):
        height[node] = max((height[s] + 1 for s in graph.successors(node)
                            if graph.edges[node, s]["kind"] == "data"), default=0)
    return height


def _main_consumers(analysis: Analysis) -> dict[str, str]:
    """Node → the data consumer that continues its longest path (ties: smallest id). Edges to it
    form the main path; edges to the node's other consumers leave it: skip connections."""
    graph = analysis.graph.graph
    height = _heights(graph)
    main = {}
    for node in graph.nodes:
        consumers = [s for s in graph.successors(node) if graph.edges[node, s]["kind"] == "data"]
        if consumers:
            main[node] = min(consumers, key=lambda s: (-height[s], s))
    return main


def _edge_label(analysis: Analysis, source: str, target: str, field: str) -> str:
    info = analysis.nodes[target]
    if field == "in" and info.offsets:
        offset = info.offsets[info.op.inputs.index(source)]
        return f"crop {offset}" if offset else ""
    return field if field != "in" else ""


def _links(analysis: Analysis, group: dict[str, str]) -> list[Link]:
    main, links = _main_consumers(analysis), {}
    for source, target, data in analysis.graph.graph.edges(data=True):
        a, b = group[source], group[target]
        if a == b:
            continue
        kind = "ref" if data["kind"] == "ref" else "data" if main.get(source) == target else "skip"
        link = Link(a, b, kind, _edge_label(analysis, source, target, data["field"]))
        rank = (LINK_RANK[link.kind], link.label)
        if (a, b) not in links or rank < (LINK_RANK[links[a, b].kind], links[a, b].label):
            links[a, b] = link  # one link per pair of boxes, chosen by content, not by file order
    return list(links.values())


def layout(analysis: Analysis, compact: bool = False) -> Layout:
    """Place every node (or chain / folded stage, in compact mode) at (column, level)."""
    order = canonical_order(analysis.graph.graph)
    group = _chains(analysis, order, _folds(analysis)) if compact else {n: n for n in order}
    members: dict[str, list[str]] = defaultdict(list)
    for node in order:
        members[group[node]].append(node)
    graph = _box_graph(analysis, group)
    columns, levels = _columns(graph), _levels(analysis, members, graph)
    where, rows = _place(columns, levels)
    boxes = {box_id: replace(_box(analysis, box_id, members[box_id]), level=levels[box_id],
                             column=columns[box_id], x=where[box_id][0], y=where[box_id][1])
             for box_id in sorted(members, key=lambda b: (columns[b], levels[b], b))}
    size = analysis.size
    title = analysis.spec.name + (f" @ {size[0]}×{size[1]}" if size else "")
    links = sorted(_links(analysis, group), key=lambda link: (boxes[link.target].column, link.target, link.source))
    return Layout(title, boxes, links, rows)


def mark(lay: Layout, marks: dict[str, str]) -> Layout:
    """The layout with diff marks on the boxes named in `marks`."""
    return replace(lay, boxes={k: replace(b, mark=marks.get(k, b.mark)) for k, b in lay.boxes.items()})


# -- DOT source -----------------------------------------------------------------------------------
def dot_id(box_id: str) -> str:
    """DOT node name of a box: a digest, so no user text is ever a DOT identifier."""
    return "n" + hashlib.blake2b(box_id.encode(), digest_size=8).hexdigest()


def dot_string(text: str) -> str:
    """A quoted DOT string showing `text` as plain text: never an HTML-like label (always in
    quotes), no escape sequences (backslashes doubled), no line breaks (control characters
    become spaces), quotes escaped so nothing can end the string early."""
    clean = "".join(ch if ch.isprintable() else " " for ch in text)
    return '"' + clean.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dot_label(text: str) -> str:
    """A quoted multi-line label: each line escaped as `dot_string`, joined by DOT's `\\n`."""
    return "\\n".join(dot_string(line)[1:-1] for line in text.split("\n")).join('""')


def _attrs(values: dict[str, str]) -> str:
    text = ", ".join(f"{key}={value if key == 'label' else dot_string(value)}" for key, value in values.items())
    return f" [{text}]" if text else ""


def _stride_text(level: float) -> str:
    stride = Fraction(2 ** level).limit_denominator(64)
    return f"stride {stride}"


def _statements(lay: Layout) -> Iterable[str]:
    routed = len(lay.boxes) <= ROUTED_LIMIT
    yield "graph" + _attrs({"label": dot_string(lay.title), "labelloc": "t", "fontname": "Helvetica",
                            "fontsize": "16", "splines": "true" if routed else "line",
                            "outputorder": "edgesfirst", "pad": "0.3"})
    yield "node" + _attrs({"fontname": "Helvetica", "fontsize": "10", "style": "filled,rounded",
                           "margin": "0.08,0.04"})
    yield "edge" + _attrs({"fontname": "Helvetica", "fontsize": "9", "arrowsize": "0.7"})
    for i, (level, y) in enumerate(sorted(lay.rows.items())):
        yield f"level{i}" + _attrs({"label": dot_string(_stride_text(level)), "shape": "plaintext",
                                    "style": "", "fontcolor": "#737373", "pos": f"{-COLUMN_PT:.0f},{0 - y:.0f}!"})
    for box in lay.boxes.values():
        style = {"label": dot_label(box.label), "fillcolor": box.fill, "shape": box.shape,
                 "pos": f"{box.x:.0f},{0 - box.y:.0f}!"}
        if box.shape not in ("box", "box3d"):
            style["style"] = "filled"
        style.update(MARK_STYLE.get(box.mark, {}))
        yield dot_id(box.id) + _attrs(style)
    for link in lay.links:
        style = ({"label": dot_label(link.label)} if link.label else {}) | EDGE_STYLE[link.kind]
        yield f"{dot_id(link.source)} -> {dot_id(link.target)}" + _attrs(style)


def to_dot(lay: Layout) -> graphviz.Source:
    """DOT source with pinned positions (`pos`), fills by op kind and styled skip edges. Written
    here rather than through graphviz.Digraph, whose quoting passes `<...>` on as HTML."""
    body = "".join(f"\t{statement}\n" for statement in _statements(lay))
    return graphviz.Source(f"digraph fcngraph {{\n{body}}}\n", engine="neato")


# -- rendering ------------------------------------------------------------------------------------
def output_format(path: Path) -> str:
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in FORMATS and fmt != "dot":
        raise DiagramError(f"{path}: unknown diagram format '.{fmt}'; use .svg, .png, .pdf or .dot")
    return fmt


def render(dot: graphviz.Source, output: Path) -> Path:
    """Write <output>.dot always, then draw `output` (svg/png/pdf by suffix) with graphviz."""
    fmt = output_format(output)
    dot_path = output.with_suffix(".dot")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(dot_path, dot.source)
    except OSError as exc:
        raise DiagramError(f"{dot_path}: cannot write: {exc.strerror or exc}") from None
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
    try:
        atomic_write(output, lambda handle: handle.write(done.stdout))
    except OSError as exc:
        raise DiagramError(f"{output}: cannot write: {exc.strerror or exc}") from None
    return output


def svg_text(dot: graphviz.Source) -> str | None:
    """The drawing as inline SVG text, or None when graphviz is not installed."""
    neato = shutil.which("neato")
    if neato is None:
        return None
    done = subprocess.run([neato, "-n2", "-Tsvg"], input=dot.source.encode(), capture_output=True, timeout=600)
    if done.returncode != 0:
        return None
    text = done.stdout.decode()
    return text[text.index("<svg"):]  # drop the XML prolog and doctype so it can sit inside HTML
