"""Spec → checked networkx graph and execution order.

Input: a validated `Spec`. Output: `SpecGraph` (a networkx DiGraph whose edges are data
inputs or size references, plus a topological order that follows file order where it can).
Checks: reserved ids (keywords, nn.Module attributes), dangling ids, arity, cycles (named),
unreachable and unused nodes.
"""

from __future__ import annotations

import difflib
import keyword
from dataclasses import dataclass
from functools import cache

import networkx as nx

from .errors import SpecError
from .spec import INPUT, Spec


@dataclass(frozen=True)
class SpecGraph:
    spec: Spec
    graph: nx.DiGraph
    order: list[str]  # execution order of the spec's nodes; 'input' excluded


@cache
def reserved_names() -> frozenset[str]:
    """Names a node id (or a dotted part of one) cannot take: Python keywords and the attributes of
    the compiled module, whose submodules are named by node id (`forward`, `training`, `_modules`)."""
    import torch.fx as fx
    from torch import nn

    from .compile import SpecModule

    graph = fx.Graph()
    graph.output(graph.placeholder("x"))
    instance = SpecModule(nn.Module(), graph)  # instance attributes too: training, _modules, meta
    return frozenset({*keyword.kwlist, *keyword.softkwlist, "self", *dir(instance),
                      *SpecModule.__jit_ignored_attributes__})


def _check_id(spec: Spec, node: str, ids: set[str]) -> None:
    if node == INPUT:
        raise spec.error(node, "'input' is the implicit input node; choose another id")
    for part in node.split("."):
        if part in reserved_names():
            what = "a Python keyword" if keyword.iskeyword(part) or part == "self" else \
                "an attribute of the compiled nn.Module"
            raise spec.error(node, f"node id '{node}': '{part}' is {what}; choose another id")
    parent = node.rpartition(".")[0]
    while parent:  # `a.b` becomes a submodule of `a`, which must not be a node itself
        if parent in ids:
            raise spec.error(node, f"node id '{node}' is nested under node '{parent}'; ids that share a "
                                   f"dotted prefix must not be nodes themselves")
        parent = parent.rpartition(".")[0]


def _unknown(spec: Spec, node: str, field: str, ref: str) -> SpecError:
    close = difflib.get_close_matches(ref, [INPUT, *spec.nodes], n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return spec.error(node, f"refers to unknown node '{ref}'{hint}", field)


def _add_edges(spec: Spec, graph: nx.DiGraph) -> None:
    ids = set(spec.nodes)
    for node, op in spec.nodes.items():
        _check_id(spec, node, ids)
        low, high = op.arity
        count = len(op.inputs)
        if count < low or (high is not None and count > high):
            wanted = f"{low}" if low == high else f"at least {low}"
            raise spec.error(node, f"'{op.name}' takes {wanted} input(s), got {count}", "in")
        if len(set(op.inputs)) != count:
            raise spec.error(node, "lists the same input twice", "in")
        edges = [("in", ref, "data") for ref in op.inputs]
        edges += [(field, ref, "ref") for field, ref in op.refs().items()]
        for field, ref, kind in edges:
            if ref != INPUT and ref not in spec.nodes:
                raise _unknown(spec, node, field, ref)
            if ref == node:
                raise spec.error(node, f"'{field}' refers to the node itself", field)
            graph.add_edge(ref, node, kind=kind, field=field)


def build_graph(spec: Spec) -> SpecGraph:
    """Check the spec's wiring and return its graph and execution order."""
    graph = nx.DiGraph()
    graph.add_node(INPUT)
    graph.add_nodes_from(spec.nodes)
    _add_edges(spec, graph)
    if spec.output not in spec.nodes:
        close = difflib.get_close_matches(spec.output, list(spec.nodes), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise SpecError(f"output refers to unknown node '{spec.output}'{hint}", file=spec.file,
                        path="$.output")
    position = {node: i for i, node in enumerate(spec.nodes)}
    position[INPUT] = -1
    try:  # the sort fails on a cycle; only then look for it (find_cycle costs as much again)
        order = list(nx.lexicographical_topological_sort(graph, key=position.__getitem__))
    except nx.NetworkXUnfeasible:
        cycle = nx.find_cycle(graph)
        names = [edge[0] for edge in cycle] + [cycle[0][0]]
        first = min(names[:-1], key=position.__getitem__)
        raise spec.error(first, f"cycle: {' -> '.join(names)}", "in") from None
    used = nx.ancestors(graph, spec.output) | {spec.output}
    for aux in spec.aux_outputs:
        if aux not in spec.nodes:
            raise SpecError(f"aux_outputs refers to unknown node '{aux}'", file=spec.file,
                            path=f"$.aux_outputs.{aux}", node=aux)
        used |= nx.ancestors(graph, aux) | {aux}
    for node in spec.nodes:
        if node not in used:
            raise spec.error(node, f"is never used: output '{spec.output}' does not depend on it")
    return SpecGraph(spec, graph, [node for node in order if node != INPUT])
