"""Authored spec files → plain spec data: `extends`, node patches, `blocks` and `defaults` applied.

Input: a spec file (or parsed JSON) as a user writes it. Output: `Expanded`, the data the `Spec`
model validates (nodes only, no blocks/defaults/extends), plus for every node the file and JSON path
that defined it, so that errors about an expanded node point at its definition.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

from .errors import SpecError
from .ops import REGISTRY
from .ops.base import NodeId

MAX_BLOCK_DEPTH = 8  # nested block instances; deeper is a mistake (or a block using itself)
USE_FIELDS = {"block", "in", "with", "repeat", "first"}
BLOCK_FIELDS = {"params", "inputs", "output", "nodes", "description"}


@dataclass
class Expanded:
    data: dict[str, Any]
    origins: dict[str, str] = field(default_factory=dict)  # node → file that defined it
    # node → JSON path where it is not $.nodes.<id> (block nodes), and "node#field" → the path that
    # set a field through a block parameter (`$.nodes.layer2.with.width`)
    paths: dict[str, str] = field(default_factory=dict)
    instances: dict[str, str] = field(default_factory=dict)  # id prefix of each block copy → block name


# -- JSON Merge Patch (RFC 7396) ------------------------------------------------------------------
def merge_patch(target: Any, patch: Any) -> Any:
    """Objects merge key by key, `null` deletes a key, anything else (arrays too) replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# -- extends ----------------------------------------------------------------------------------------
def shipped_specs_dir() -> Path:
    """The shipped specs: package data `fcngraph.specs` when installed, else the checkout's specs/."""
    try:  # a namespace package (no __init__.py among the JSON files): take its folder
        found = importlib.util.find_spec("fcngraph.specs")
    except ModuleNotFoundError:
        found = None
    for folder in (found.submodule_search_locations or []) if found else []:
        if Path(folder).is_dir():
            return Path(folder)
    return Path(__file__).resolve().parent.parent / "specs"


def shipped_spec_files() -> list[Path]:
    """Every shipped spec (sub-folders included), without the JSON Schemas that live beside them."""
    root = shipped_specs_dir()
    return sorted(p for p in root.rglob("*.json") if not p.name.endswith("schema.json"))


def locate(name: str, referrer: Path | None) -> Path | None:
    """A path relative to the referring file (or cwd), else a shipped spec by name."""
    base = referrer.parent if referrer is not None else Path.cwd()
    candidates = [base / name]
    if not Path(name).is_absolute() and not name.startswith((".", "/", "\\")):
        stem = name[:-5] if name.endswith(".json") else name  # "fcn8s-vgg16", "encoders/resnet34"
        candidates.append(shipped_specs_dir() / f"{stem}.json")
    return next((path.resolve() for path in candidates if path.is_file()), None)


def _chain(data: dict[str, Any], file: Path | None, read) -> list[tuple[str | None, dict[str, Any]]]:
    """The spec and its bases, child first; iterative, so any depth works; loops are named."""
    chain: list[tuple[str | None, dict[str, Any]]] = [(str(file) if file else None, data)]
    seen = [file.resolve()] if file else []
    while (name := data.get("extends")) is not None:
        where = chain[-1][0]
        if not isinstance(name, str):
            raise SpecError("'extends' must be a shipped spec name or a path", file=where, path="$.extends")
        path = locate(name, Path(where) if where else None)
        if path is None:
            raise SpecError(f"extends '{name}': no such file or shipped spec", file=where, path="$.extends")
        if path in seen:
            loop = " -> ".join(p.name for p in [*seen[seen.index(path):], path])
            raise SpecError(f"extends loop: {loop}", file=where, path="$.extends")
        seen.append(path)
        data = read(path)
        chain.append((str(path), data))
    return chain


def _patch_nodes(nodes: dict[str, Any], patch: Any, file: str | None, origins: dict[str, str]) -> None:
    """A node with `op` (or `block`) replaces, one without merges into the base's, null removes."""
    if not isinstance(patch, dict):
        raise SpecError("'nodes' must be an object keyed by node id", file=file, path="$.nodes")
    for node, body in patch.items():
        if body is None:
            if node not in nodes:
                raise SpecError(f"removes node '{node}', which the base does not have", file=file,
                                path=f"$.nodes.{node}", node=node)
            del nodes[node]
        elif isinstance(body, dict) and "op" not in body and "block" not in body:
            if node not in nodes:
                raise SpecError(f"patches node '{node}' (no 'op'), which the base does not have", file=file,
                                path=f"$.nodes.{node}", node=node)
            nodes[node] = merge_patch(nodes[node], body)
        else:
            nodes[node] = body
        if body is not None and file is not None:
            origins[node] = file


def resolve_extends(data: dict[str, Any], file: Path | None, read) -> tuple[dict[str, Any], dict[str, str],
                                                                              dict[str, str]]:
    """Fold the extends chain root first: (data, node origins, block origins)."""
    chain = _chain(data, file, read)
    merged: dict[str, Any] = {"nodes": {}}
    origins: dict[str, str] = {}
    block_origins: dict[str, str] = {}
    for where, layer in reversed(chain):
        for key, value in layer.items():
            if key == "extends":
                continue
            if key == "nodes":
                _patch_nodes(merged["nodes"], value, where, origins)
            elif key in ("input", "train", "data", "defaults", "blocks") and isinstance(value, dict):
                merged[key] = merge_patch(merged.get(key), value)
                if key == "blocks" and where:
                    block_origins.update({name: where for name in value})
            else:
                merged[key] = value
    return merged, origins, block_origins


# -- blocks -----------------------------------------------------------------------------------------
def substitute(value: Any, params: dict[str, Any]) -> Any:
    """A copy of `value` with every "$param" string replaced by the parameter's value (any JSON type)."""
    if isinstance(value, dict):
        return {k: substitute(v, params) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, params) for v in value]
    if isinstance(value, str) and value.startswith("$") and value[1:] in params:
        return params[value[1:]]
    return value


def _mentions_node_id(annotation: Any) -> bool:
    return annotation == NodeId or any(_mentions_node_id(arg) for arg in get_args(annotation))


def _ref_fields(op: Any) -> frozenset[str]:
    """JSON names of the fields of `op` that hold node ids (`in`, `to`, `align`, ...)."""
    return _ref_fields_of(op if isinstance(op, str) else None)


@functools.cache  # one answer per op name; asked once per node of specs with 100,000 nodes
def _ref_fields_of(op: str | None) -> frozenset[str]:
    cls = REGISTRY.get(op) if op is not None else None
    if cls is None:
        return frozenset({"in"})
    node_id = NodeId.__metadata__[0]  # pydantic moves a bare NodeId's constraint into the field's metadata
    return frozenset({f.alias or name for name, f in cls.model_fields.items()
                      if _mentions_node_id(f.annotation) or node_id in f.metadata} | {"in"})


class _Expander:
    """Expands block instances into dotted node ids (`layer2.0.conv1`) and rewires references."""

    def __init__(self, blocks: dict[str, Any], block_origins: dict[str, str], file: str | None) -> None:
        self.blocks, self.block_origins, self.file = blocks, block_origins, file
        self.nodes: dict[str, Any] = {}
        self.paths: dict[str, str] = {}
        self.origins: dict[str, str] = {}
        self.outputs: dict[str, str] = {}  # instance id → the node holding its output
        self.instances: dict[str, str] = {}  # `layer2.0` → 'basic' (for diagrams that fold blocks)

    def error(self, message: str, path: str, node: str | None = None, block: str | None = None) -> SpecError:
        file = self.block_origins.get(block, self.file) if block else self.file
        return SpecError(message, file=file, path=path, node=node)

    def instantiate(self, inst: str, use: dict[str, Any], path: str, depth: int, file: str | None) -> None:
        name = use.get("block")
        if "op" in use:
            raise SpecError("a node has either 'op' or 'block', not both", file=file, path=path, node=inst)
        unknown = set(use) - USE_FIELDS
        if unknown:
            raise SpecError(f"unknown field '{sorted(unknown)[0]}' in block instance", file=file,
                            path=f"{path}.{sorted(unknown)[0]}", node=inst)
        if not isinstance(name, str) or name not in self.blocks:
            known = ", ".join(sorted(self.blocks)) or "none defined"
            raise SpecError(f"unknown block {json.dumps(name)} (blocks: {known})", file=file,
                            path=f"{path}.block", node=inst)
        if depth > MAX_BLOCK_DEPTH:
            raise SpecError(f"blocks nested deeper than {MAX_BLOCK_DEPTH} (does block '{name}' use itself?)",
                            file=file, path=f"{path}.block", node=inst)
        definition = self.blocks[name]
        dpath = f"$.blocks.{name}"
        if not isinstance(definition, dict) or set(definition) - BLOCK_FIELDS:
            extra = sorted(set(definition) - BLOCK_FIELDS) if isinstance(definition, dict) else []
            raise self.error(f"block '{name}' must be an object with {sorted(BLOCK_FIELDS)}"
                             + (f"; unknown field '{extra[0]}'" if extra else ""), dpath, block=name)
        params = dict(definition.get("params") or {})
        bound = use.get("with") or {}
        first = use.get("first") or {}
        for key, values in (("with", bound), ("first", first)):
            if not isinstance(values, dict):
                raise SpecError(f"'{key}' must be an object of parameter values", file=file,
                                path=f"{path}.{key}", node=inst)
            for param in values:
                if param not in params:
                    raise SpecError(f"block '{name}' has no parameter '{param}' (it has: "
                                    f"{', '.join(sorted(params)) or 'none'})", file=file,
                                    path=f"{path}.{key}.{param}", node=inst)
        params.update(bound)
        sources = {p: f"{dpath}.params.{p}" for p in params} | {p: f"{path}.with.{p}" for p in bound}
        inputs = definition.get("inputs", ["in"])
        refs = use.get("in")
        refs = [refs] if isinstance(refs, str) else refs
        if not isinstance(refs, list) or len(refs) != len(inputs):
            raise SpecError(f"block '{name}' takes inputs {inputs}; 'in' gives {json.dumps(refs)}",
                            file=file, path=f"{path}.in", node=inst)
        repeat = use.get("repeat")
        if repeat is not None and (type(repeat) is not int or repeat < 1):
            raise SpecError("'repeat' must be a positive integer", file=file, path=f"{path}.repeat", node=inst)
        if repeat is not None and repeat > 1 and len(inputs) != 1:
            raise SpecError(f"block '{name}' has {len(inputs)} inputs; only one-input blocks repeat",
                            file=file, path=f"{path}.repeat", node=inst)
        out = ""
        for i in range(repeat or 1):
            prefix = f"{inst}.{i}" if repeat is not None else inst
            firsts = first if i == 0 else {}
            self.instances[prefix] = name
            out = self.body(prefix, name, {**params, **firsts}, dict(zip(inputs, refs)), depth,
                            sources | {p: f"{path}.first.{p}" for p in firsts})
            refs = [out]
        self.outputs[inst] = out

    def body(self, prefix: str, name: str, params: dict[str, Any], inputs: dict[str, str], depth: int,
             sources: dict[str, str]) -> str:
        """Add one repetition's nodes; returns the id of its output node."""
        definition = self.blocks[name]
        body = definition.get("nodes")
        dpath = f"$.blocks.{name}"
        if not isinstance(body, dict) or not body:
            raise self.error(f"block '{name}' needs a non-empty 'nodes' object", f"{dpath}.nodes", block=name)
        clash = set(params) & set(inputs)
        if clash:
            raise self.error(f"block '{name}': '{sorted(clash)[0]}' is both a parameter and an input",
                             dpath, block=name)
        alias: dict[str, str] = {}  # local id of a node dropped by `if` → what stands in for it

        def ref(value: Any, local: str, key: str, index: int | None = None) -> str:
            if isinstance(value, str) and value.startswith("$") and value[1:] in inputs:
                return inputs[value[1:]]
            if isinstance(value, str) and value in alias:
                return alias[value]
            if isinstance(value, str) and value in body:
                return f"{prefix}.{value}"
            where = f"{dpath}.nodes.{local}.{key}" + (f"[{index}]" if index is not None else "")
            raise self.error(f"block '{name}' (instance '{prefix}'): node '{local}' refers to "
                             f"{json.dumps(value)}, which is neither a node of the block nor one of its "
                             f"inputs {['$' + i for i in inputs]}", where, f"{prefix}.{local}", name)

        for local, node in body.items():
            where = f"{dpath}.nodes.{local}"
            if not isinstance(node, dict):
                raise self.error(f"block '{name}': node '{local}' must be an object", where, block=name)
            for key, value in node.items():  # a field set by a parameter: errors point where it was set
                if isinstance(value, str) and value[1:] in params and value.startswith("$"):
                    self.paths[f"{prefix}.{local}#{key}"] = sources[value[1:]]
            node = substitute(node, params)
            for key in _ref_fields(node.get("op")) & node.keys():
                value = node[key]
                if isinstance(value, list):
                    node[key] = [ref(v, local, key, j) for j, v in enumerate(value)]
                else:
                    node[key] = ref(value, local, key)
            condition = node.pop("if", True)
            if type(condition) is not bool:
                raise self.error(f"block '{name}' (instance '{prefix}'): 'if' must be true or false, got "
                                 f"{json.dumps(condition)}", f"{where}.if", f"{prefix}.{local}", name)
            if not condition:  # a dropped node passes its input through (e.g. an identity shortcut)
                if not isinstance(node.get("in"), str):
                    raise self.error(f"block '{name}': node '{local}' with 'if' needs one input",
                                     f"{where}.in", block=name)
                alias[local] = node["in"]
                continue
            node_id = f"{prefix}.{local}"
            if "block" in node:
                self.instantiate(node_id, node, where, depth + 1, self.block_origins.get(name, self.file))
            else:
                self.add(node_id, node, where, self.block_origins.get(name, self.file))
        output = definition.get("output")
        if output in alias:
            return alias[output]
        if not isinstance(output, str) or output not in body:
            raise self.error(f"block '{name}': 'output' must name one of its nodes, got {json.dumps(output)}",
                             f"{dpath}.output", block=name)
        return f"{prefix}.{output}"

    def add(self, node_id: str, node: Any, path: str, file: str | None) -> None:
        if node_id in self.nodes:
            raise SpecError(f"expanded node id '{node_id}' is defined twice", file=file, path=path, node=node_id)
        self.nodes[node_id] = node
        self.paths[node_id] = path
        if file is not None:
            self.origins[node_id] = file

    def output_of(self, ref: str) -> str:
        while ref in self.outputs:  # an instance (possibly of nested instances) → its last node
            ref = self.outputs[ref]
        return ref

    def rewire(self) -> None:
        for node in self.nodes.values():
            if not isinstance(node, dict):
                continue
            for key in _ref_fields(node.get("op")) & node.keys():
                value = node[key]
                node[key] = [self.output_of(v) if isinstance(v, str) else v for v in value] \
                    if isinstance(value, list) else self.output_of(value) if isinstance(value, str) else value


def expand_blocks(data: dict[str, Any], origins: dict[str, str], block_origins: dict[str, str],
                  file: str | None) -> Expanded:
    blocks = data.pop("blocks", None) or {}
    if not isinstance(blocks, dict):
        raise SpecError("'blocks' must be an object keyed by block name", file=file, path="$.blocks")
    nodes = data.get("nodes")
    if not isinstance(nodes, dict):
        raise SpecError("'nodes' must be an object keyed by node id", file=file, path="$.nodes")
    expander = _Expander(blocks, block_origins, file)
    for node_id, node in nodes.items():
        if isinstance(node, dict) and "block" in node:
            expander.instantiate(node_id, node, f"$.nodes.{node_id}", 1, origins.get(node_id, file))
        else:
            expander.nodes[node_id] = node
            if node_id in origins:
                expander.origins[node_id] = origins[node_id]
    if expander.outputs:  # references to block instances lead to their output nodes; none without blocks
        expander.rewire()
    if isinstance(data.get("output"), str):
        data["output"] = expander.output_of(data["output"])
    data["nodes"] = expander.nodes
    return Expanded(data, expander.origins, expander.paths, expander.instances)


# -- defaults ----------------------------------------------------------------------------------------
def apply_defaults(expanded: Expanded, file: str | None) -> None:
    """Fill each node's unset fields from `defaults[op]`; a node's own value (or null) wins."""
    defaults = expanded.data.pop("defaults", None) or {}
    if not isinstance(defaults, dict):
        raise SpecError("'defaults' must be an object keyed by op", file=file, path="$.defaults")
    for op, values in defaults.items():
        if op not in REGISTRY:
            raise SpecError(f"defaults for unknown op '{op}' (ops: {', '.join(REGISTRY)})", file=file,
                            path=f"$.defaults.{op}")
        if not isinstance(values, dict):
            raise SpecError(f"defaults for '{op}' must be an object of field values", file=file,
                            path=f"$.defaults.{op}")
        fields = {f.alias or name for name, f in REGISTRY[op].model_fields.items()} - {"op", "in"}
        for key in values:
            if key not in fields:
                raise SpecError(f"op '{op}' has no field '{key}' to default", file=file,
                                path=f"$.defaults.{op}.{key}")
    nodes = expanded.data["nodes"]
    for node_id, node in nodes.items():
        if isinstance(node, dict) and isinstance(node.get("op"), str) and node["op"] in defaults:
            nodes[node_id] = merge_patch(defaults[node["op"]], node)


def expand(data: dict[str, Any], file: Path | None, read) -> Expanded:
    """The whole authored → plain pipeline: extends and patches, blocks, then defaults."""
    merged, origins, block_origins = resolve_extends(data, file, read)
    where = str(file) if file else None
    expanded = expand_blocks(merged, origins, block_origins, where)
    apply_defaults(expanded, where)
    return expanded
