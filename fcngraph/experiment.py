"""Experiment files (JSON) → the list of runs a comparison needs.

Input: a file naming variants (a spec path or shipped spec name, `--set`-style overrides, a
display name), the seeds, the data, the budget and the baseline. Output: `Experiment` (pydantic,
strict, frozen) and, through `expand`, one validated `Spec` per variant × seed. Errors are one
line naming the file and the JSON path (`$.variants[1].spec`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from .errors import SpecError
from .overrides import apply_overrides, resolve_data_path
from .spec import Spec, _json_path, load_spec, read_json

SHIPPED_SPECS = Path(__file__).resolve().parents[1] / "specs"


class Variant(BaseModel):
    """One column of the comparison: a spec, its overrides and the name the report shows."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    spec: str = Field(description="Spec file (relative to the experiment file) or a shipped spec name "
                                  "such as 'fcn8s-mini'.")
    name: str | None = Field(None, min_length=1, description="Display name; default: the spec's name.")
    set: list[str] = Field(default_factory=list, description="Overrides as for --set, e.g. 'train.lr=1e-3'.")
    init: str | None = Field(None, min_length=1, description="Display name of another variant whose trained "
                             "run of the same seed this one starts from (train.init; the paper's staged "
                             "recipe FCN-32s → 16s → 8s). Runs train in stages: parents first.")


class Budget(BaseModel):
    """How long each run trains; unset fields keep the spec's own settings."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    epochs: int | None = Field(None, ge=1, description="train.epochs of every run.")
    iterations: int | None = Field(None, ge=1, description="train.iterations of every run (stops earlier).")


class Experiment(BaseModel):
    """Variants × seeds, trained on the same data with the same budget, compared against a baseline."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True,
                              json_schema_extra={"title": "fcngraph experiment"})

    schema_: str | None = Field(None, alias="$schema", description="JSON Schema for editors.")
    name: str = Field("experiment", min_length=1, description="Name of the experiment.")
    variants: list[Variant] = Field(min_length=1, description="The variants compared.")
    seeds: list[int] = Field([0], min_length=1, description="train.seed values; every variant runs each.")
    data: str | None = Field(None, description="Dataset folder (relative to the experiment file); "
                                               "none: each spec's own data settings.")
    budget: Budget = Field(default_factory=Budget, description="Training length of every run.")
    set: list[str] = Field(default_factory=list, description="Overrides applied to every variant first.")
    baseline: str | None = Field(None, description="Display name of the baseline; default: the first variant.")

    @model_validator(mode="after")
    def _names_and_baseline(self) -> Experiment:
        names = self.display_names()
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(f"variants[{i}]: display name '{name}' is used twice; give one a 'name'")
        if self.baseline is not None and self.baseline not in names:
            raise ValueError(f"baseline '{self.baseline}' is not a variant name ({', '.join(names)})")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds repeat a value")
        for i, variant in enumerate(self.variants):
            if variant.init is not None and variant.init not in names:
                raise ValueError(f"variants[{i}].init: '{variant.init}' is not a variant name ({', '.join(names)})")
        self.stages()  # a loop of inits is an error
        return self

    def stages(self) -> dict[str, int]:
        """display name → training stage: 0 for variants trained from their own initialisation,
        else one more than the stage of the variant named by `init`."""
        parents = self.parents()
        stages: dict[str, int] = {}
        for name in parents:
            chain = [name]
            while parents[chain[-1]] is not None and chain[-1] not in stages:
                chain.append(parents[chain[-1]])  # type: ignore[arg-type]
                if chain[-1] in chain[:-1]:
                    raise ValueError(f"variants' init form a loop: {' → '.join(chain)}")
            top = stages.get(chain[-1], 0)
            for depth, link in enumerate(reversed(chain)):
                stages.setdefault(link, top + depth)
        return stages

    def parents(self) -> dict[str, str | None]:
        """display name → the display name its `init` names, or None."""
        return {name: v.init for v, name in zip(self.variants, self.display_names())}

    def display_names(self) -> list[str]:
        return [v.name or Path(v.spec).stem for v in self.variants]

    @property
    def baseline_name(self) -> str:
        return self.baseline or self.display_names()[0]

    _file: str | None = PrivateAttr(None)


def experiment_schema() -> dict[str, Any]:
    schema = Experiment.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def load_experiment(path: str | Path) -> Experiment:
    path = Path(path)
    data = read_json(path)
    try:
        experiment = Experiment.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where, _ = _json_path(tuple(first["loc"]))
        message = first["msg"].replace("Value error, ", "")
        if first["type"] == "extra_forbidden":
            message = f"unknown field '{where.rsplit('.', 1)[-1]}'"
        elif first["type"] == "missing":
            message = f"missing field '{where.rsplit('.', 1)[-1]}'"
        raise SpecError(message, file=str(path), path=where) from None
    experiment._file = str(path)
    return experiment


def spec_path(reference: str, base: Path) -> Path:
    """A variant's `spec`: a file relative to the experiment, else a shipped spec name."""
    candidate = base / reference
    if candidate.is_file():
        return candidate
    shipped = SHIPPED_SPECS / (reference if reference.endswith(".json") else f"{reference}.json")
    if shipped.is_file():
        return shipped
    return candidate


def expand(experiment: Experiment, extra: list[str] = (), runs_root: Path = Path("runs")
           ) -> dict[str, dict[int, Spec]]:
    """display name → seed → the spec to train: global `set`, data, budget, the variant's `set`,
    then `extra` (command-line --set), name and seed. The name goes into the spec, so two variants
    built from one spec get their own run directories. A variant with `init` starts from the run
    directory (under `runs_root`) its parent's spec of the same seed trains into."""
    from .train import run_dir_for

    file = experiment._file
    base = Path(file).parent if file else Path.cwd()
    common = list(experiment.set)
    if experiment.data:
        common.append(f"data.path={json.dumps(str((base / experiment.data).resolve()))}")
    for key in ("epochs", "iterations"):
        value = getattr(experiment.budget, key)
        if value is not None:
            common.append(f"train.{key}={value}")
    runs: dict[str, dict[int, Spec]] = {}
    for i, (variant, name) in enumerate(zip(experiment.variants, experiment.display_names())):
        path = spec_path(variant.spec, base)
        if not path.is_file():
            raise SpecError(f"no spec file or shipped spec '{variant.spec}'", file=file, path=f"$.variants[{i}].spec")
        spec = resolve_data_path(load_spec(path))
        for assignments, where in ((common, "$.set"), (variant.set, f"$.variants[{i}].set"), (extra, None)):
            try:
                spec = apply_overrides(spec, assignments)
            except SpecError as exc:  # a command-line --set names itself; the file's name their place
                raise SpecError(exc.message, file=file if where else None, path=where) from None
        spec = apply_overrides(spec, [f"name={json.dumps(name)}"])
        runs[name] = {seed: apply_overrides(spec, [f"train.seed={seed}"]) for seed in experiment.seeds}
    stages = experiment.stages()
    parents = experiment.parents()
    for name in sorted(runs, key=stages.__getitem__):  # a parent's specs are final before its children's
        parent = parents[name]
        if parent is not None:
            runs[name] = {seed: apply_overrides(spec, [
                f"train.init={json.dumps(str(run_dir_for(runs[parent][seed], runs_root).resolve()))}"])
                for seed, spec in runs[name].items()}
    return dict(runs)


def from_specs(specs: list[Spec], seeds: int, baseline: str | None) -> tuple[Experiment, dict[str, dict[int, Spec]]]:
    """The plain `compare SPEC... --seeds N --baseline NAME` form as an experiment (seeds 0..N-1)."""
    names = [s.name for s in specs]
    if baseline is not None and baseline not in names:
        raise SpecError(f"--baseline '{baseline}' is not one of the variants: {', '.join(names)}")
    if len(set(names)) != len(names):
        raise SpecError(f"two specs share a name ({', '.join(names)}); the plain form needs distinct names, "
                        "an experiment file can rename them")
    experiment = Experiment(variants=[Variant(spec=s.file or s.name, name=s.name) for s in specs],
                            seeds=list(range(seeds)), baseline=baseline)
    runs = {s.name: {seed: apply_overrides(s, [f"train.seed={seed}"]) for seed in experiment.seeds} for s in specs}
    return experiment, runs
