"""Spec → checked networkx graph and execution order.

Input: a validated `Spec`. Output: `SpecGraph` (the edges, data inputs or size references, a
topological order that follows file order where it can, and a networkx DiGraph of them built
on first use).
Checks: reserved ids (keywords, nn.Module attributes), dangling ids, arity, cycles (named),
unreachable and unused nodes.
"""

from __future__ import annotations

import difflib
import keyword
from dataclasses import dataclass, field
from functools import cache, cached_property

import networkx as nx

from .errors import SpecError
from .spec import INPUT, Spec

Edge = tuple[str, str, str, str]  # (from, to, kind 'data' or 'ref', field)


@dataclass(frozen=True)
class SpecGraph:
    spec: Spec
    order: list[str]  # execution order of the spec's nodes; 'input' excluded
    edges: list[Edge] = field(repr=False)  # in file order, as the nodes list them

    @cached_property
    def graph(self) -> nx.DiGraph:
        """The networkx graph, built when first asked for (diagrams, diffs): the checks and the
        order need none, and building it was a tenth of validating a 100,000-node spec."""
        return nx_graph(self.spec, self.edges)


def nx_graph(spec: Spec, edges: list[Edge]) -> nx.DiGraph:
    """'input', the nodes in file order, and the edges with attributes `kind` and `field`."""
    graph = nx.DiGraph()
    graph.add_node(INPUT)
    graph.add_nodes_from(spec.nodes)
    graph.add_edges_from((ref, node, {"kind": kind, "field": name}) for ref, node, kind, name in edges)
    return graph


# The compiled module's attributes (an fx.GraphModule whose submodules are named by node id:
# `forward`, `training`, `_modules`, ...), as torch 2.13 has them. A snapshot, so that checking a
# spec imports no torch (a third of `validate`'s time); tests/test_spec_language.py compares it
# with the installed torch, and compile_spec checks ids against the live names as well.
MODULE_ATTRIBUTES = frozenset({
    "T_destination", "__annotations__", "__call__", "__class__", "__copy__", "__deepcopy__", "__delattr__",
    "__dict__", "__dir__", "__doc__", "__eq__", "__format__", "__ge__", "__getattr__", "__getattribute__",
    "__getstate__", "__gt__", "__hash__", "__init__", "__init_subclass__", "__jit_ignored_attributes__",
    "__jit_unused_properties__", "__le__", "__lt__", "__module__", "__ne__", "__new__", "__reduce__",
    "__reduce_ex__", "__reduce_package__", "__repr__", "__setattr__", "__setstate__", "__sizeof__",
    "__str__", "__subclasshook__", "__weakref__", "_apply", "_backward_hooks", "_backward_pre_hooks",
    "_boxed_call", "_buffers", "_call_impl", "_code", "_compiled_call_impl", "_create_node_hooks",
    "_deepcopy_hooks", "_deepcopy_init", "_erase_node_hooks", "_forward_hooks",
    "_forward_hooks_always_called", "_forward_hooks_with_kwargs", "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs", "_get_backward_hooks", "_get_backward_pre_hooks", "_get_name",
    "_graph", "_is_full_backward_hook", "_lineno_map", "_load_from_state_dict",
    "_load_state_dict_post_hooks", "_load_state_dict_pre_hooks", "_maybe_warn_non_full_backward_hook",
    "_modules", "_named_members", "_non_persistent_buffers_set", "_parameters", "_prologue_start",
    "_recompile_submodules", "_register_create_node_hook", "_register_deepcopy_hook",
    "_register_erase_node_hook", "_register_load_state_dict_pre_hook", "_register_replace_node_hook",
    "_register_state_dict_hook", "_replace_hooks", "_replicate_for_data_parallel", "_save_to_state_dict",
    "_set_replace_hook", "_slow_forward", "_state_dict_hooks", "_state_dict_pre_hooks", "_tracer_cls",
    "_tracer_extras", "_unregister_create_node_hook", "_unregister_deepcopy_hook",
    "_unregister_erase_node_hook", "_unregister_replace_node_hook", "_version", "_wrapped_call",
    "_wrapped_call_impl", "add_module", "add_submodule", "apply", "aux_weights", "bfloat16", "buffers",
    "call_super_init", "children", "code", "compile", "cpu", "cuda", "delete_all_unused_submodules",
    "delete_submodule", "double", "dump_patches", "eval", "extra_repr", "failed_node", "float", "forward",
    "fx_name_of", "get_buffer", "get_extra_state", "get_parameter", "get_submodule", "graph", "half", "ipu",
    "load_state_dict", "meta", "modules", "mtia", "named_buffers", "named_children", "named_modules",
    "named_parameters", "parameters", "print_readable", "recompile", "register_backward_hook",
    "register_buffer", "register_forward_hook", "register_forward_pre_hook", "register_full_backward_hook",
    "register_full_backward_pre_hook", "register_load_state_dict_post_hook",
    "register_load_state_dict_pre_hook", "register_module", "register_parameter",
    "register_state_dict_post_hook", "register_state_dict_pre_hook", "requires_grad_", "set_extra_state",
    "set_submodule", "shape_env", "share_memory", "spec_node_of", "state_dict", "to", "to_empty",
    "to_folder", "train", "training", "type", "xpu", "zero_grad"
})


# What a node id (or a dotted part of one) cannot be: a Python keyword or a module attribute.
RESERVED = frozenset({*keyword.kwlist, *keyword.softkwlist, "self", *MODULE_ATTRIBUTES})


@cache
def module_attribute_names() -> frozenset[str]:
    """The compiled module's attribute names under the torch that is installed."""
    import torch.fx as fx
    from torch import nn

    from .compile import SpecModule

    graph = fx.Graph()
    graph.output(graph.placeholder("x"))
    instance = SpecModule(nn.Module(), graph)  # instance attributes too: training, _modules, meta
    return frozenset({*dir(instance), *SpecModule.__jit_ignored_attributes__})


def check_reserved(spec: Spec, node: str, names: frozenset[str]) -> None:
    """A one-line error naming the node when a dotted part of its id is one of `names`."""
    for part in node.split("."):
        if part in names:
            what = "a Python keyword" if keyword.iskeyword(part) or part == "self" else \
                "an attribute of the compiled nn.Module"
            raise spec.error(node, f"node id '{node}': '{part}' is {what}; choose another id")


def _check_id(spec: Spec, node: str, ids: set[str]) -> None:
    if node == INPUT:
        raise spec.error(node, "'input' is the implicit input node; choose another id")
    check_reserved(spec, node, RESERVED)
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


def _edges(spec: Spec) -> list[Edge]:
    """Every node's edges, checked: ids, arity, duplicate inputs, dangling and self references."""
    ids, edges = set(spec.nodes), []
    for node, op in spec.nodes.items():
        _check_id(spec, node, ids)
        low, high = op.arity
        inputs = op.inputs
        count = len(inputs)
        if count < low or (high is not None and count > high):
            wanted = f"{low}" if low == high else f"at least {low}"
            raise spec.error(node, f"'{op.name}' takes {wanted} input(s), got {count}", "in")
        if len(set(inputs)) != count:
            raise spec.error(node, "lists the same input twice", "in")
        mine = [(ref, node, "data", "in") for ref in inputs]
        mine += [(ref, node, "ref", name) for name, ref in op.refs().items()]
        for ref, _, _, name in mine:
            if ref != INPUT and ref not in ids:
                raise _unknown(spec, node, name, ref)
            if ref == node:
                raise spec.error(node, f"'{name}' refers to the node itself", name)
        edges += mine
    return edges


def _order(spec: Spec, edges: list[Edge]) -> list[str]:
    """Topological order that follows file order where it can; a cycle is an error naming it."""
    position = {node: i for i, node in enumerate(spec.nodes)}
    position[INPUT] = -1
    if all(position[ref] < position[node] for ref, node, _, _ in edges):
        return list(spec.nodes)  # file order is an order: what the sort below would return
    graph = nx_graph(spec, edges)
    try:  # the sort fails on a cycle; only then look for it (find_cycle costs as much again)
        order = list(nx.lexicographical_topological_sort(graph, key=position.__getitem__))
    except nx.NetworkXUnfeasible:
        cycle = nx.find_cycle(graph)
        names = [edge[0] for edge in cycle] + [cycle[0][0]]
        first = min(names[:-1], key=position.__getitem__)
        raise spec.error(first, f"cycle: {' -> '.join(names)}", "in") from None
    return [node for node in order if node != INPUT]


def _ancestors(edges: list[Edge], ends: list[str]) -> set[str]:
    """`ends` and every node they read, directly or not."""
    reads: dict[str, list[str]] = {}
    for ref, node, _, _ in edges:
        reads.setdefault(node, []).append(ref)
    found, todo = set(ends), list(ends)
    while todo:
        for ref in reads.get(todo.pop(), ()):
            if ref not in found:
                found.add(ref)
                todo.append(ref)
    return found


def build_graph(spec: Spec) -> SpecGraph:
    """Check the spec's wiring and return its graph and execution order."""
    edges = _edges(spec)
    if spec.output not in spec.nodes:
        close = difflib.get_close_matches(spec.output, list(spec.nodes), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise SpecError(f"output refers to unknown node '{spec.output}'{hint}", file=spec.file,
                        path="$.output")
    order = _order(spec, edges)
    for aux in spec.aux_outputs:
        if aux not in spec.nodes:
            raise SpecError(f"aux_outputs refers to unknown node '{aux}'", file=spec.file,
                            path=f"$.aux_outputs.{aux}", node=aux)
    used = _ancestors(edges, [spec.output, *spec.aux_outputs])
    for node in spec.nodes:
        if node not in used:
            raise spec.error(node, f"is never used: output '{spec.output}' does not depend on it")
    return SpecGraph(spec, order, edges)
