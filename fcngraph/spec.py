"""Spec files → a validated, frozen `Spec`.

Input: a JSON file (or dict) in the fcngraph format, possibly `extends`-ing a base spec.
Output: `Spec` (pydantic) with node origins kept, so that every error names the file,
the JSON path and the node. Graph-level checks live in graph.py, numbers in shapes.py.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, create_model, model_validator

from .errors import SpecError
from .expand import expand
from .ops import REGISTRY, AnyOp
from .ops.base import NodeId, PosInt
from .settings import DataSettings, TrainSettings

INPUT = "input"  # id of the implicit input node


class InputSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    channels: PosInt = Field(3, description="Channels of the input image.")


class Spec(BaseModel):
    """One architecture: nodes keyed by id, an output node, and optional train/data settings."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True,
                              json_schema_extra={"title": "fcngraph spec"})

    schema_: str | None = Field(None, alias="$schema", description="JSON Schema for editors.")
    name: str = Field(description="Short name, used for run directories and reports.")
    description: str = Field("", description="What this architecture is.")
    num_classes: PosInt = Field(description="Classes scored by `score` nodes.")
    input: InputSpec = Field(default_factory=InputSpec, description="The input image.")
    nodes: dict[NodeId, AnyOp] = Field(description="Nodes keyed by id; 'input' is implicit.")
    output: NodeId = Field(description="Id of the node whose tensor the model returns.")
    aux_outputs: dict[NodeId, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict, description="Auxiliary outputs (deep supervision, aux heads) and "
        "their loss weights; returned after the main output in train mode only.")
    train: TrainSettings = Field(default_factory=TrainSettings, description="Training settings.")
    data: DataSettings = Field(default_factory=DataSettings, description="Dataset settings.")

    _file: str | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _settings_fit_the_graph(self) -> Spec:
        """Settings that must agree with the graph: one mean/std value and one class weight each."""
        channels = self.input.channels
        defaults = DataSettings()  # the RGB defaults adapt to any channel count (data.normalise)
        own = (self.data.mean, self.data.std) != (defaults.mean, defaults.std)
        if own and len(self.data.mean) != channels and not self.data.caffe_bgr:
            raise ValueError(f"data.mean/std have {len(self.data.mean)} values, input.channels is {channels}")
        if self.data.caffe_bgr and channels != 3:  # BGR order and the BGR mean need three channels
            raise ValueError(f"data.caffe_bgr needs input.channels 3, not {channels}")
        weights = self.train.class_weights
        if isinstance(weights, list) and len(weights) != self.num_classes:
            raise ValueError(f"train.class_weights has {len(weights)} values, num_classes is {self.num_classes}")
        return self
    _origins: dict[str, str] = PrivateAttr(default_factory=dict)
    _paths: dict[str, str] = PrivateAttr(default_factory=dict)  # block nodes → their definition
    _instances: dict[str, str] = PrivateAttr(default_factory=dict)  # block copy id prefix → block name

    @property
    def file(self) -> str | None:
        return self._file

    def origin(self, node: str | None) -> str | None:
        """The file that defined `node` (a base spec's, for inherited nodes)."""
        return self._origins.get(node or "", self._file)

    def blocks_of(self, node: str) -> list[tuple[str, str]]:
        """The block copies a node was expanded from, outermost first: [('layer2.0', 'basic')]."""
        parts = node.split(".")
        prefixes = (".".join(parts[:i]) for i in range(1, len(parts)))
        return [(prefix, self._instances[prefix]) for prefix in prefixes if prefix in self._instances]

    def error(self, node: str, message: str, field: str | None = None) -> SpecError:
        if field and f"{node}#{field}" in self._paths:  # set through a block parameter
            return SpecError(message, file=self.origin(node), path=self._paths[f"{node}#{field}"], node=node)
        path = self._paths.get(node, f"$.nodes.{node}") + (f".{field}" if field else "")
        return SpecError(message, file=self.origin(node), path=path, node=node)

    def canonical(self) -> dict[str, Any]:
        """The resolved spec as plain JSON data (extends applied, defaults filled)."""
        return self.model_dump(mode="json", by_alias=True, exclude={"schema_"})

    def digest(self, sections: tuple[str, ...] | None = None) -> str:
        """Short content hash of the resolved spec (or some of its sections)."""
        data = self.canonical()
        if sections is not None:
            data = {k: data[k] for k in sections}
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:10]


class BlockDef(BaseModel):
    """A named, parameterised sub-graph (see README: blocks)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    description: str = Field("", description="What the block is.")
    params: dict[str, Any] = Field(default_factory=dict, description="Parameters and their defaults; "
                                   "'$name' anywhere in the body is replaced by the value.")
    inputs: list[str] = Field(["in"], description="Input names, referenced in the body as '$in', ...")
    output: str = Field(description="The body node whose tensor is the block's output.")
    nodes: dict[str, dict[str, Any]] = Field(description="The body: nodes as in 'nodes' (an 'if': '$param' "
                                             "node is dropped when false, passing its input through).")


class BlockUse(BaseModel):
    """A node that instantiates a block; expanded ids are '<id>.<i>.<body id>' (or '<id>.<body id>')."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    block: str = Field(description="Name of a block in 'blocks' (here or in a spec this extends).")
    inputs_: NodeId | list[NodeId] = Field(alias="in", description="Input node id(s), one per block input.")
    with_: dict[str, Any] = Field(default_factory=dict, alias="with", description="Parameter values.")
    repeat: PosInt | None = Field(None, description="Chain N copies, each feeding the next.")
    first: dict[str, Any] = Field(default_factory=dict, description="Parameter values for the first copy only.")


def json_schema() -> dict[str, Any]:
    """JSON Schema of the authored spec format (extends, patches, defaults, blocks), for editors."""
    patch = dict[str, Any]  # a node without 'op' merges into the base spec's node
    authored = create_model(
        "SpecFile", __base__=Spec,
        extends=(str | None, Field(None, description="A shipped spec's name or a path relative to this file.")),
        name=(str | None, Field(None, description="Short name, used for run directories and reports.")),
        num_classes=(PosInt | None, Field(None, description="Classes scored by `score` nodes.")),
        output=(NodeId | None, Field(None, description="Id of the node whose tensor the model returns.")),
        nodes=(dict[NodeId, AnyOp | BlockUse | patch | None],
               Field(description="Nodes keyed by id: an op, a block instance, a patch of the base's node "
                                 "(no 'op'; JSON Merge Patch), or null to remove it.")),
        defaults=(dict[str, dict[str, Any]], Field(default_factory=dict, description=(
            "Per-op field defaults, e.g. {\"conv\": {\"norm\": \"batch\"}}; a node's own value wins."))),
        blocks=(dict[str, BlockDef], Field(default_factory=dict, description="Named sub-graphs.")),
    )
    schema = authored.model_json_schema(by_alias=True)
    (node,) = schema["properties"]["nodes"]["patternProperties"].values()
    for choice in node["anyOf"]:  # a patch is an object without 'op' and 'block' (those are checked as such)
        if choice.get("type") == "object":
            choice["not"] = {"anyOf": [{"required": ["op"]}, {"required": ["block"]}]}
            choice["description"] = "A JSON Merge Patch of the base spec's node of this id."
    schema["title"] = "fcngraph spec"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


# -- reading ----------------------------------------------------------------------------------
def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)  # one C call; the key-by-key loop below runs only when a key repeats
    if len(result) == len(pairs):
        return result
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise SpecError(f"duplicate key '{key}'", node=key)
        seen.add(key)
    return result


def read_json(path: Path) -> dict[str, Any]:
    """Parse a JSON object, with errors that give the file, line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read spec: {exc.strerror or exc}", file=str(path)) from None
    try:
        data = json.loads(text, object_pairs_hook=_reject_duplicates)
    except json.JSONDecodeError as exc:
        raise SpecError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
                        file=str(path)) from None
    except RecursionError:
        raise SpecError("JSON nested too deeply", file=str(path)) from None
    except SpecError as exc:
        raise exc.at(file=str(path)) from None
    if not isinstance(data, dict):
        raise SpecError("a spec must be a JSON object", file=str(path), path="$")
    return data


def load_spec(source: str | Path | dict[str, Any], *, file: str | None = None) -> Spec:
    """Load and validate a spec from a path or from already-parsed JSON data (authored format:
    extends, node patches, blocks and defaults are applied first; see expand.py)."""
    if not isinstance(source, dict):
        file = str(source)
    try:
        data = dict(source) if isinstance(source, dict) else read_json(Path(source))
        expanded = expand(data, Path(file) if file else None, read_json)
        spec = validate_data(expanded.data, file, expanded.origins, expanded.paths)
        spec._instances = expanded.instances
        return spec
    except RecursionError:  # JSON nested thousands deep: no spec needs that
        raise SpecError("JSON nested too deeply", file=file) from None


def validate_data(data: dict[str, Any], file: str | None, origins: dict[str, str],
                  paths: dict[str, str]) -> Spec:
    """Plain spec data → Spec, strictly typed as JSON is ("3" is not an integer, true not a number)."""
    try:
        spec = Spec.model_validate_json(json.dumps(data), strict=True)
    except ValidationError as exc:
        raise _from_validation(exc, file, origins, paths) from None
    spec._file = file
    spec._origins = origins
    spec._paths = paths
    return spec


# -- pydantic errors → one line ------------------------------------------------------------------
_TYPE_TAG = re.compile(r"^(int|str|float|bool|none|list\[.*\]|dict\[.*\]|literal\[.*\]|"
                       r"function-.*|constrained-.*|tagged-union\[.*\]|[a-z-]+\[.*\])$", re.I)


def _json_path(loc: tuple[Any, ...]) -> tuple[str, str | None]:
    """pydantic loc → ('$.nodes.conv1.kernel', 'conv1'), dropping union/type tags."""
    parts: list[Any] = []
    node = None
    for i, part in enumerate(loc):
        if isinstance(part, str) and loc[:1] == ("nodes",) and i == 2 and part in REGISTRY:
            continue  # the discriminator tag pydantic inserts after the node id
        if isinstance(part, str) and i > 0 and (_TYPE_TAG.match(part) or part == "[key]"):
            continue
        parts.append(part)
    if parts[:1] == ["nodes"] and len(parts) > 1:
        node = str(parts[1])
    text = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)
    return text.replace(".in_", ".in").replace(".schema_", ".$schema"), node


def untagged(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """A pydantic loc without the type tags it adds for each branch of a union."""
    return tuple(p for p in loc if not (isinstance(p, str) and _TYPE_TAG.match(p)))


def first_message(errors: list[dict[str, Any]]) -> str:
    """The first error's message; when it is one branch of a union (`list[float] | 'median_frequency'
    | ...`), every branch's, so the message lists what the field takes instead of one option."""
    first = errors[0]
    field = untagged(first["loc"])
    if field == tuple(first["loc"]):
        return first["msg"]
    branches = [e["msg"] for e in errors if untagged(e["loc"]) == field]
    options = [m.removeprefix("Input should be ") for m in dict.fromkeys(branches)]
    return "Input should be " + " or ".join(options)


def _from_validation(exc: ValidationError, file: str | None, origins: dict[str, str],
                     paths: dict[str, str] | None = None) -> SpecError:
    first = exc.errors()[0]
    path, node = _json_path(tuple(first["loc"]))
    if node is not None and paths and node in paths:  # a block's node: point at its definition
        rest = path[len(f"$.nodes.{node}"):]
        field = rest[1:].split(".")[0].split("[")[0]
        set_by = paths.get(f"{node}#{field}")  # or at the parameter value that set the field
        path = set_by + rest[1 + len(field):] if set_by else paths[node] + rest
    message = first_message(exc.errors()).replace("Value error, ", "")
    if first["loc"][-1:] == ("[key]",):
        message = (f"node id '{node}' is not an identifier (letters, digits, _; not starting with a digit; "
                   f"dots separate the parts of block ids)")
    elif first["type"] == "missing":
        message = f"missing field '{path.rsplit('.', 1)[-1]}'"
    elif first["type"] == "extra_forbidden":
        message = f"unknown field '{path.rsplit('.', 1)[-1]}'"
    others = len({_json_path(tuple(e["loc"]))[0] for e in exc.errors()}) - 1
    if others > 0:
        message += f" (and {others} more problem{'s' * (others > 1)})"
    return SpecError(message, file=origins.get(node or "", file), path=path, node=node)


__all__ = ["INPUT", "Spec", "load_spec", "json_schema", "read_json"]
