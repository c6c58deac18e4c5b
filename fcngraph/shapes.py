"""Static analysis: checked graph → per-node channels, stride, coordinate map, receptive
field, crop offsets and, for a given input size, spatial size, parameters and FLOPs.

No tensor is made. Errors name the node and field. `valid_sizes` scans input sizes and
reports which keep every node non-empty and every floor-rounded stride exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from .errors import OpError, SpecError
from .graph import SpecGraph, build_graph
from .ops import Coord, Op
from .ops.base import MAX_INT
from .spec import INPUT, Spec


@dataclass(frozen=True)
class NodeInfo:
    """What the analysis knows of one node."""

    id: str
    op: Op | None  # None for the input
    channels: int
    coord: Coord
    offsets: tuple[int, ...]  # crop offset per input (fusion/crop ops)
    params: int
    size: tuple[int, int] | None = None  # (H, W) for the analysed input size
    flops: int = 0
    residual: tuple[Fraction, ...] = ()  # sub-pixel shift per input left by `align_by: size`

    @property
    def stride(self) -> Fraction:
        return self.coord.scale


@dataclass(frozen=True)
class Analysis:
    spec: Spec
    graph: SpecGraph
    nodes: dict[str, NodeInfo]  # 'input' first, then execution order
    size: tuple[int, int] | None
    # each node's op bound to its input channels (Op.bind): its rules with what they share worked
    # out once, for the scans that follow (valid_sizes, memory) as for the analysis itself
    rules: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def output(self) -> NodeInfo:
        return self.nodes[self.spec.output]

    @property
    def params(self) -> int:
        return sum(info.params for info in self.nodes.values())

    @property
    def flops(self) -> int:
        return sum(info.flops for info in self.nodes.values())


MAX_NODE_PARAMS = 2**32  # 16 GiB of float32 in one node: beyond any machine fcngraph targets


def check_allocatable(params: int) -> None:
    """Refuse at validation what would only fail (or overflow) when the model is built."""
    if params > MAX_NODE_PARAMS:
        raise OpError(f"would hold {params:.3g} parameters ({params * 4 / 2**30:,.0f} GiB in float32); "
                      f"more than one node can allocate (limit {MAX_NODE_PARAMS:.3g})")


def _sizes(rules: Any, ins: list[NodeInfo], refs: dict[str, NodeInfo], offsets: list[int],
           axis: int) -> int:
    return rules.length([i.size[axis] for i in ins], {f: r.size[axis] for f, r in refs.items()} if refs else {},
                        offsets)


def analyze(spec: Spec, size: tuple[int, int] | None = None,
            graph: SpecGraph | None = None) -> Analysis:
    """Infer every node's numbers; with `size` (H, W) also sizes and FLOPs."""
    graph = graph or build_graph(spec)
    nodes = {INPUT: NodeInfo(INPUT, None, spec.input.channels, Coord.identity(), (), 0, size)}
    rules: dict[str, Any] = {}
    for node in graph.order:
        try:  # an op's OpError becomes a SpecError naming the node and field
            nodes[node], rules[node] = _node(spec, spec.nodes[node], node, nodes, size)
        except OpError as exc:
            raise spec.error(node, str(exc), exc.field) from None
    _check_aux(spec, nodes)
    return Analysis(spec, graph, nodes, size, rules)


def _node(spec: Spec, op: Op, node: str, nodes: dict[str, NodeInfo],
          size: tuple[int, int] | None) -> tuple[NodeInfo, Any]:
    """One node's numbers from its inputs' (already in `nodes`), and its bound rules."""
    ins = [nodes[i] for i in op.inputs]
    named = op.resolve_refs(spec.nodes)  # most nodes read no other node's size: {} at no cost then
    refs = {name: nodes[ref] for name, ref in named.items()} if named else {}
    in_ch = [i.channels for i in ins]
    rules = op.bind(in_ch)  # a conv's layers, built once for all the rules below
    out_ch = rules.channels(in_ch, spec.num_classes)
    coords = [i.coord for i in ins]
    ref_coords = {f: r.coord for f, r in refs.items()} if refs else {}
    offsets = op.offsets(coords, ref_coords)
    coord, params = rules.coord(coords, ref_coords), rules.params(in_ch, out_ch)
    check_allocatable(params)
    hw, flops = None, 0
    if size is not None:
        height = _sizes(rules, ins, refs, offsets, 0)  # a square input keeps every node square
        hw = (height, height if size[0] == size[1] else _sizes(rules, ins, refs, offsets, 1))
        if min(hw) < 1:
            raise OpError(f"output would be {hw[0]}x{hw[1]} for a {size[0]}x{size[1]} input")
        if max(hw) > MAX_INT:
            raise OpError(f"output would be {hw[0]:.3g}x{hw[1]:.3g} for a {size[0]}x{size[1]} input; "
                          f"no side can exceed {MAX_INT:,}")
        heights = rules.normalised_sides([i.size[0] for i in ins])  # [] for all but instance norms
        widths = rules.normalised_sides([i.size[1] for i in ins]) if heights else []
        if any(h * w < 2 for h, w in zip(heights, widths)):  # torch: "expected more than 1 spatial element"
            raise OpError(f"instance norm of a 1x1 map for a {size[0]}x{size[1]} input; it needs more than one pixel")
        flops = rules.flops(in_ch, out_ch, [i.size for i in ins], hw)
    info = NodeInfo(node, op, out_ch, coord, tuple(offsets), params, hw, flops,
                    tuple(op.residual(coords, ref_coords)))
    return info, rules


def _check_aux(spec: Spec, nodes: dict[str, NodeInfo]) -> None:
    """Auxiliary outputs must score the classes on the main output's grid and size."""
    main = nodes[spec.output]
    for node in spec.aux_outputs:
        info, path = nodes[node], f"$.aux_outputs.{node}"
        problem = None
        if info.channels != spec.num_classes:
            problem = f"has {info.channels} channels, not num_classes = {spec.num_classes}"
        elif info.coord.gridless or info.stride != main.stride:
            problem = (f"is at stride {info.stride}, the output '{spec.output}' at {main.stride}; "
                       f"add an `upsample` with `to: {spec.output}`")
        elif info.size is not None and info.size != main.size:
            problem = (f"is {info.size[0]}x{info.size[1]}, the output {main.size[0]}x{main.size[1]}; "
                       f"add an `upsample` with `to: {spec.output}`")
        if problem:
            raise SpecError(f"auxiliary output '{node}' {problem}", file=spec.origin(node),
                            path=path, node=node)


# -- valid input sizes --------------------------------------------------------------------------
def output_length(analysis: Analysis, n: int) -> tuple[int, bool] | None:
    """(output length, exact) for an n-pixel input side, or None if a node would be empty or a
    crop would not fit. `exact` is False when a floor-rounded stride drops input pixels."""
    lengths, exact = {INPUT: n}, True
    for node in analysis.graph.order:
        op, info, rules = analysis.spec.nodes[node], analysis.nodes[node], analysis.rules[node]
        ins = [lengths[i] for i in op.inputs]
        try:
            refs = op.resolve_refs(analysis.spec.nodes)
            out = rules.length(ins, {f: lengths[r] for f, r in refs.items()}, list(info.offsets))
        except OpError:
            return None
        if out < 1 or out > MAX_INT:  # as valid_sizes: a map side over MAX_INT does not run
            return None
        if any(side < 2 for side in rules.normalised_sides(ins)):  # a square 1x1 map: no instance norm
            return None
        exact = exact and rules.exact(ins)
        lengths[node] = out
    return lengths[analysis.spec.output], exact


def _progression(sizes: list[int], limit: int = 0) -> str:
    """The sizes as a rule; one that stops before the scan's `limit` (a map side would pass
    MAX_INT beyond) says where it stops."""
    if not sizes:
        return "none"
    first, gaps = sizes[0], {b - a for a, b in zip(sizes, sizes[1:])}
    step = gaps.pop() if len(gaps) == 1 else 1 if not gaps else 0
    until = f", ≤ {sizes[-1]}" if limit and step and sizes[-1] + step <= limit else ""
    if step == 1:
        return f"any size ≥ {first}{until}"
    if step:
        return f"sizes ≡ {first % step} (mod {step}), ≥ {first}{until}"
    return "sizes " + ", ".join(map(str, sizes[:8])) + ", …"


def _relation(delta: int) -> str:
    return "output = input" if delta == 0 else f"output = input {'+' if delta > 0 else '−'} {abs(delta)}"


@dataclass(frozen=True)
class SizeRule:
    outputs: dict[int, int]  # input side → output side, for every side the model runs on
    exact: list[int]  # sides where no floor-rounded stride drops pixels ("valid" sizes)
    limit: int = 0  # the largest side scanned (0: not known)

    def relation(self) -> str:
        deltas = {self.outputs[n] - n for n in self.exact or self.outputs}
        if len(deltas) == 1:
            return _relation(deltas.pop())
        return "output varies: " + ", ".join(f"{n}→{self.outputs[n]}" for n in self.exact[:4])

    def at_multiples(self) -> str:
        """What happens at multiples of the size step, when the valid sizes are not those
        (a ResNet encoder's are 32k + 1), since multiples are what people use."""
        gaps = {b - a for a, b in zip(self.exact, self.exact[1:])}
        if len(gaps) != 1 or not self.exact or self.exact[0] % (step := gaps.pop()) == 0 or step == 1:
            return ""
        sample = next((n for n in sorted(self.outputs) if n % step == 0 and n >= self.exact[0]), None)
        if sample is None:
            return f"; at multiples of {step} the model does not run"
        deltas = {self.outputs[n] - n for n in self.outputs if n % step == 0}
        relation = (_relation(deltas.pop()) if len(deltas) == 1
                    else f"e.g. {sample}→{self.outputs[sample]}")
        return (f"; at multiples of {step} (e.g. {sample}) it runs too, {relation}, but a "
                "floor-rounded stride skips the last (partly padded) row and column")

    def describe(self) -> str:
        return (f"valid input sizes: {_progression(self.exact, self.limit)}; {self.relation()}"
                f"{self.at_multiples()}; runs on {_progression(sorted(self.outputs), self.limit)}")


def valid_sizes(analysis: Analysis, limit: int = 1024) -> SizeRule:
    """Scan input sides 1..limit (each axis follows the same rule), all sides at once: each
    node's length rule runs on a numpy vector of sides, so the cost is one pass over the graph.
    An op whose rule is not vector-safe (it branches on a length) runs side by side instead."""
    if limit < 1:
        return SizeRule({}, [])
    sides = np.arange(1, limit + 1, dtype=np.int64)  # (limit,)
    lengths, runs, exact = {INPUT: sides}, np.ones(limit, dtype=bool), np.ones(limit, dtype=bool)
    nodes = analysis.spec.nodes
    try:  # what each node reads: its inputs, and the nodes whose sizes it takes
        reads = {node: (nodes[node].inputs, nodes[node].resolve_refs(nodes)) for node in analysis.graph.order}
    except OpError:
        return SizeRule({}, [])
    freed = _freed_after(reads, analysis.spec.output)
    for node, (inputs, refs) in reads.items():
        ins = [lengths[i] for i in inputs]
        ref_lengths = {f: lengths[r] for f, r in refs.items()} if refs else {}
        for read in freed.get(node, ()):
            del lengths[read]
        out, ok, node_exact = _vector_length(analysis.rules[node], ins, ref_lengths,
                                             list(analysis.nodes[node].offsets), limit)
        passed_on = out is ins[0] or any(out is i for i in ins) or any(out is r for r in ref_lengths.values())
        normalised = analysis.rules[node].normalised_sides(ins)  # [] for all but instance norms
        if ok is not None or normalised or (not passed_on and (out.min() < 1 or out.max() > MAX_INT)):
            fits = (out >= 1) & (out <= MAX_INT)  # a side over MAX_INT cannot run (nor grow past int64 next)
            for side in normalised:  # square sides: a 1x1 map cannot be instance-normalised
                fits &= np.asarray(side) >= 2
            runs &= fits if ok is None else ok & fits
            out = np.where(runs, out, 1)  # (limit,) keep failed sides harmless downstream
        if node_exact is not True:
            exact &= node_exact
        lengths[node] = out
    output = lengths[analysis.spec.output]
    outputs = {int(n): int(o) for n, o in zip(sides[runs], output[runs])}
    return SizeRule(outputs, [int(n) for n in sides[runs & exact]], limit)


def _freed_after(reads: dict[str, tuple[list[str], dict[str, str]]], output: str) -> dict[str, list[str]]:
    """node → the lengths no node after it reads, dropped once it has read them: kept, a 100,000-node
    spec's lengths for 1,024 sides would take 800 MB. The output's are kept to the end."""
    last: dict[str, str] = {}
    for node, (inputs, refs) in reads.items():
        for read in (*inputs, *refs.values()):
            last[read] = node
    last.pop(output, None)
    freed: dict[str, list[str]] = {}
    for read, node in last.items():
        freed.setdefault(node, []).append(read)
    return freed


def _vector_length(op: Any, ins: list[np.ndarray], refs: dict[str, np.ndarray], offsets: list[int],
                   limit: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | bool]:
    """(length, runs or None for everywhere, exact) of one node for every side (exact may be
    the scalar True); the scalar rule side by side where the
    vector call fails (a branch on a length raises on an array) or its result is not integral."""
    try:
        out, exact = op.length(ins, refs, offsets), op.exact(ins)
        if exact is not True:
            exact = np.asarray(exact)
        if out is ins[0]:  # passed on ('same' windows, fusions): checked already
            return out, None, exact
        if not isinstance(out, np.ndarray) or out.shape != (limit,):  # a constant (adaptive pool)
            out = np.full(limit, out)
        if out.dtype.kind in "iu":  # ok None: runs wherever its inputs run
            return out.astype(np.int64, copy=False), None, exact
    except Exception:  # noqa: BLE001 - any failure of the vector call means "not vector-safe"
        pass
    return _side_by_side(op, ins, refs, offsets, limit)


def _side_by_side(op: Any, ins: list[np.ndarray], refs: dict[str, np.ndarray], offsets: list[int],
                  limit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The scalar rule once per side: a thousand times the vector call's cost, so every shipped
    op's rule is vector-safe (tests/test_validate_scaling.py); kept for ops that are not."""
    out, ok, exact = np.ones(limit, dtype=np.int64), np.ones(limit, dtype=bool), np.ones(limit, dtype=bool)
    for j in range(limit):
        scalar_ins = [int(i[j]) for i in ins]
        try:
            out[j] = op.length(scalar_ins, {f: int(r[j]) for f, r in refs.items()}, offsets)
            exact[j] = bool(op.exact(scalar_ins))
        except OpError:
            ok[j] = False
    return out, ok, exact
