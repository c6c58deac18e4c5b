"""Two analysed specs → what changed from the first to the second.

Output: `SpecDiff` (nodes added, removed and changed with the fields that differ, edges
added and removed, parameters per node and in total), a text summary, and the second spec's
diagram layout with added/changed nodes marked and removed ones drawn as dashed ghosts. Lists
and ghosts follow the graphs (depth, then id), never the order of nodes in the files.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .diagram import COLUMN_PT, ROW_PT, STACK_PT, Box, Layout, Link, canonical_order, layout, mark
from .shapes import Analysis
from .spec import INPUT

GHOST_DROP = 0.4  # removed nodes sit this many rows below the box they followed


@dataclass(frozen=True)
class SpecDiff:
    a: Analysis
    b: Analysis
    added: list[str]
    removed: list[str]
    changed: dict[str, list[str]]  # node → fields that differ ("op" when the op itself changed)
    edges_added: list[tuple[str, str]]
    edges_removed: list[tuple[str, str]]

    @property
    def marks(self) -> dict[str, str]:
        return {**{n: "added" for n in self.added}, **{n: "changed" for n in self.changed}}


def _fields(analysis: Analysis, node: str) -> dict:
    return analysis.spec.nodes[node].model_dump(by_alias=True)


def _changed_fields(a: Analysis, b: Analysis, node: str) -> list[str]:
    old, new = _fields(a, node), _fields(b, node)
    if old["op"] != new["op"]:
        return ["op"]
    return [key for key in new if old.get(key) != new[key]]


def diff_specs(a: Analysis, b: Analysis) -> SpecDiff:
    """Nodes and edges of `b` compared with those of `a` (matched by node id)."""
    nodes_a, nodes_b = canonical_order(a.graph.graph), canonical_order(b.graph.graph)
    common = [n for n in nodes_b if n in a.spec.nodes]
    changed = {n: fields for n in common if (fields := _changed_fields(a, b, n))}
    edges_a, edges_b = set(a.graph.graph.edges), set(b.graph.graph.edges)
    return SpecDiff(a, b, [n for n in nodes_b if n != INPUT and n not in a.spec.nodes],
                    [n for n in nodes_a if n != INPUT and n not in b.spec.nodes], changed,
                    sorted(edges_b - edges_a), sorted(edges_a - edges_b))


def _value(analysis: Analysis, node: str, field: str) -> str:
    value = _fields(analysis, node).get(field)
    return str(value) if field != "op" else analysis.spec.nodes[node].label()


def _settings_lines(a: Analysis, b: Analysis) -> list[str]:
    """Differences in the train/data sections and the top-level fields, one line each."""
    lines = []
    for section in ("num_classes", "input", "output", "train", "data"):
        old, new = getattr(a.spec, section), getattr(b.spec, section)
        if hasattr(new, "model_dump"):
            old, new = old.model_dump(), new.model_dump()
            lines += [f"~ {section}.{k}: {old[k]} → {new[k]}" for k in new if old[k] != new[k]]
        elif old != new:
            lines.append(f"~ {section}: {old} → {new}")
    return lines


def describe(diff: SpecDiff) -> str:
    """Lines a person reads: + added, - removed, ~ changed (old → new), edges, parameter totals."""
    a, b = diff.a, diff.b
    lines = [f"{a.spec.name} → {b.spec.name}"]
    lines += [f"+ {n:<16} {b.nodes[n].op.label():<24} {b.nodes[n].params:>14,} params" for n in diff.added]
    lines += [f"- {n:<16} {a.nodes[n].op.label():<24} {-a.nodes[n].params:>14,} params" for n in diff.removed]
    for node, fields in diff.changed.items():
        what = "; ".join(f"{f}: {_value(a, node, f)} → {_value(b, node, f)}" for f in fields)
        delta = b.nodes[node].params - a.nodes[node].params
        lines.append(f"~ {node:<16} {what}" + (f"  ({delta:+,} params)" if delta else ""))
    if not (diff.added or diff.removed or diff.changed):
        lines.append("  no node differs")
    lines += _settings_lines(a, b)
    lines += [f"+ edge {s} → {t}" for s, t in diff.edges_added]
    lines += [f"- edge {s} → {t}" for s, t in diff.edges_removed]
    lines.append(f"params: {a.params:,} → {b.params:,} ({b.params - a.params:+,})")
    return "\n".join(lines)


def _anchor(diff: SpecDiff, node: str, lay: Layout, box_of: dict[str, str]) -> str | None:
    """The nearest predecessor of a removed node (in A's graph) that B still draws; of several at
    one distance, the one B draws furthest right (ties by id)."""
    graph, seen, frontier = diff.a.graph.graph, {node}, [node]
    while frontier:
        frontier = sorted({p for n in frontier for p in graph.predecessors(n)} - seen)
        seen.update(frontier)
        drawn = [p for p in frontier if p in box_of]
        if drawn:
            return max(drawn, key=lambda p: (lay.boxes[box_of[p]].column, p))
    return None


def _ghosts(diff: SpecDiff, lay: Layout, box_of: dict[str, str]) -> dict[str, Box]:
    """Removed nodes, each half a column right of and below its anchor; ghosts sharing an anchor stack."""
    ghosts, per_anchor = {}, {}
    for node in diff.removed:
        anchor = _anchor(diff, node, lay, box_of)
        box = lay.boxes[box_of[anchor]] if anchor else None
        k = per_anchor[anchor] = per_anchor.get(anchor, -1) + 1
        x = (box.x if box else -COLUMN_PT) + COLUMN_PT / 2
        y = (box.y if box else 0.0) + GHOST_DROP * ROW_PT + k * STACK_PT
        info = diff.a.nodes[node]
        ghosts[node] = Box(node, (node,), box.level if box else 0.0, (box.column if box else -1) + 0.5,
                           f"{node}\n{info.op.label()}\n(removed)", info.op.fill, info.op.shape,
                           mark="removed", x=x, y=y)
    return ghosts


def _box_mark(box: Box, marks: dict[str, str]) -> str:
    """A box (one node, a chain or a folded stage) is added when all its nodes are, changed when
    any of them is added or changed."""
    found = {marks.get(member, "") for member in box.members}
    return "added" if found == {"added"} else "changed" if found - {""} else ""


def diff_layout(diff: SpecDiff, compact: bool = False) -> Layout:
    """`b`'s layout with the diff marked; removed nodes and their edges drawn dashed."""
    lay = layout(diff.b, compact)
    lay = mark(lay, {box.id: m for box in lay.boxes.values() if (m := _box_mark(box, diff.marks))})
    box_of = {m: box.id for box in lay.boxes.values() for m in box.members}
    ghosts = _ghosts(diff, lay, box_of)
    ends = {**box_of, **{n: n for n in ghosts}}
    links = sorted({Link(ends[s], ends[t], "removed") for s, t in diff.edges_removed
                    if (s in ghosts or t in ghosts) and s in ends and t in ends and ends[s] != ends[t]},
                   key=lambda link: (link.source, link.target))
    return replace(lay, boxes={**lay.boxes, **ghosts}, links=lay.links + links,
                   title=f"{diff.a.spec.name} → {diff.b.spec.name}")

