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
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from .errors import SpecError
from .ops import REGISTRY, AnyOp
from .ops.base import NodeId, PosInt
from .settings import DataSettings, TrainSettings

INPUT = "input"  # id of the implicit input node
MERGED_SECTIONS = ("input", "train", "data")  # merged key by key through `extends`


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
    train: TrainSettings = Field(default_factory=TrainSettings, description="Training settings.")
    data: DataSettings = Field(default_factory=DataSettings, description="Dataset settings.")

    _file: str | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _settings_fit_the_graph(self) -> Spec:
        """Settings that must agree with the graph: one mean/std value and one class weight each."""
        channels = self.input.channels
        explicit = {"mean", "std"} & self.data.model_fields_set  # the RGB defaults adapt (data.normalise)
        if explicit and len(self.data.mean) != channels and not self.data.caffe_bgr:
            raise ValueError(f"data.mean/std have {len(self.data.mean)} values, input.channels is {channels}")
        weights = self.train.class_weights
        if isinstance(weights, list) and len(weights) != self.num_classes:
            raise ValueError(f"train.class_weights has {len(weights)} values, num_classes is {self.num_classes}")
        return self
    _origins: dict[str, str] = PrivateAttr(default_factory=dict)

    @property
    def file(self) -> str | None:
        return self._file

    def origin(self, node: str | None) -> str | None:
        """The file that defined `node` (a base spec's, for inherited nodes)."""
        return self._origins.get(node or "", self._file)

    def error(self, node: str, message: str, field: str | None = None) -> SpecError:
        path = f"$.nodes.{node}" + (f".{field}" if field else "")
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


def json_schema() -> dict[str, Any]:
    """JSON Schema of the spec format, for editors to validate and complete specs."""
    schema = Spec.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


# -- reading ----------------------------------------------------------------------------------
def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise SpecError(f"duplicate key '{key}'", node=key)
        seen[key] = value
    return seen


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
    except SpecError as exc:
        raise exc.at(file=str(path)) from None
    if not isinstance(data, dict):
        raise SpecError("a spec must be a JSON object", file=str(path), path="$")
    return data


def _resolve(path: Path, chain: tuple[Path, ...]) -> tuple[dict[str, Any], dict[str, str]]:
    """Raw spec data with `extends` applied, and the file each node came from."""
    data = read_json(path)
    nodes = data.get("nodes", {})
    if not isinstance(nodes, dict):
        raise SpecError("'nodes' must be an object keyed by node id", file=str(path), path="$.nodes")
    base_name = data.pop("extends", None)
    if base_name is None:
        return data, {node: str(path) for node in nodes}
    if not isinstance(base_name, str):
        raise SpecError("'extends' must be a path", file=str(path), path="$.extends")
    base_path = (path.parent / base_name).resolve()
    if base_path in chain + (path.resolve(),):
        loop = " -> ".join(p.name for p in chain + (path.resolve(), base_path))
        raise SpecError(f"extends loop: {loop}", file=str(path), path="$.extends")
    if not base_path.is_file():
        raise SpecError(f"extends '{base_name}': no such file", file=str(path), path="$.extends")
    base, origins = _resolve(base_path, chain + (path.resolve(),))
    merged = {**base, **{k: v for k, v in data.items() if k not in ("nodes", *MERGED_SECTIONS)}}
    for section in MERGED_SECTIONS:
        if isinstance(base.get(section), dict) and isinstance(data.get(section), dict):
            merged[section] = {**base[section], **data[section]}
        elif section in data:
            merged[section] = data[section]
    merged_nodes = dict(base.get("nodes", {}))
    for node, body in nodes.items():
        if body is None:
            if node not in merged_nodes:
                raise SpecError(f"removes node '{node}', which the base does not have",
                                file=str(path), path=f"$.nodes.{node}", node=node)
            del merged_nodes[node]
            origins.pop(node, None)
        else:
            merged_nodes[node] = body
            origins[node] = str(path)
    merged["nodes"] = merged_nodes
    return merged, origins


def load_spec(source: str | Path | dict[str, Any], *, file: str | None = None) -> Spec:
    """Load and validate a spec from a path or from already-parsed JSON data."""
    if isinstance(source, dict):
        data, origins = dict(source), {}
    else:
        file = str(source)
        data, origins = _resolve(Path(source), ())
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        raise _from_validation(exc, file, origins) from None
    spec._file = file
    spec._origins = origins
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


def _from_validation(exc: ValidationError, file: str | None, origins: dict[str, str]) -> SpecError:
    first = exc.errors()[0]
    path, node = _json_path(tuple(first["loc"]))
    message = first["msg"].replace("Value error, ", "")
    if first["loc"][-1:] == ("[key]",):
        message = f"node id '{node}' is not an identifier (letters, digits, _; not starting with a digit)"
    elif first["type"] == "missing":
        message = f"missing field '{path.rsplit('.', 1)[-1]}'"
    elif first["type"] == "extra_forbidden":
        message = f"unknown field '{path.rsplit('.', 1)[-1]}'"
    others = len({_json_path(tuple(e["loc"]))[0] for e in exc.errors()}) - 1
    if others > 0:
        message += f" (and {others} more problem{'s' * (others > 1)})"
    return SpecError(message, file=origins.get(node or "", file), path=path, node=node)


__all__ = ["INPUT", "Spec", "load_spec", "json_schema", "read_json"]
