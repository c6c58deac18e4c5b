"""Command-line overrides (`--set train.lr=1e-4`, `--data PATH`) → a re-validated Spec."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .errors import SpecError
from .spec import Spec, first_message, untagged


def parse_value(text: str) -> Any:
    """JSON if it parses (numbers, booleans, lists), else the plain string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_overrides(spec: Spec, assignments: list[str]) -> Spec:
    """Set dotted keys (train.*, data.*, num_classes, ...) and validate the result again."""
    data = spec.canonical()
    texts: dict[tuple[str, ...], tuple[dict[str, Any], str]] = {}  # values that parsed as non-strings
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or not key:
            raise SpecError(f"--set '{assignment}': expected KEY=VALUE, e.g. train.lr=1e-4")
        target = data
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(target.get(part), dict):
                raise SpecError(f"--set '{assignment}': '{part}' is not a section")
            target = target[part]
        target[parts[-1]] = parse_value(value)
        if not isinstance(target[parts[-1]], str):
            texts[tuple(parts)] = (target, value)
    while True:
        try:  # as strict as a spec file: `--set num_classes=true` is not 1 class
            result = Spec.model_validate_json(json.dumps(data), strict=True)
            break
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = tuple(str(p) for p in first["loc"])
            if first["type"] == "string_type" and loc in texts:  # `--set name=2024`: a string field
                target, text = texts.pop(loc)
                target[loc[-1]] = text
                continue
            raise SpecError(f"--set {'.'.join(untagged(loc))}: {first_message(exc.errors())}",
                            file=spec.file) from None
    result._file, result._origins, result._paths = spec._file, spec._origins, spec._paths
    result._instances = spec._instances
    return result


def resolve_data_path(spec: Spec) -> Spec:
    """A relative data.path is relative to the spec file (as `extends` is): made absolute here,
    before overrides or runs elsewhere read it from another working directory."""
    if spec.data.path and spec.file and not Path(spec.data.path).is_absolute():
        where = (Path(spec.file).parent / spec.data.path).resolve()
        return apply_overrides(spec, [f"data.path={json.dumps(str(where))}"])
    return spec
