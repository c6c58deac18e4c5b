"""Bad-input fuzzing of the CLI: mutate a valid spec, run a command on it, classify the outcome.
Beside specs: mutated train/data settings through `validate`, mutated flags and `--set` strings
through argument parsing and the override loader, mutated experiment files through their loader;
corrupt data folders and run folders through the commands that read them (tests/fuzzing_files.py).

Input: a seed spec (JSON text) and a random source; output: an `Outcome` saying whether the CLI
kept its promise (exit 0, or one `fcngraph: error:` line with a documented status) or broke it
(a traceback, an undocumented status, several lines). Used by tests/test_fuzz.py (a few hundred
cases) and scripts/fuzz_cli.py (the long run whose counts the README quotes).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import random
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

from fcngraph.errors import EXIT_ENVIRONMENT, EXIT_INPUT

HOSTILE_VALUES = [
    None, True, False, 0, -1, 1, 2, 3, 10**12, -(10**12), 2**63, 1.5, -0.0, float("1e308"), "",
    "3", "yes", "relu", "input", "nope", "<b>x</b>", '"];x[URL="javascript:1"]', "a\nb", "ü∑", "../x",
    "def", "forward", "__init__", "_modules", "self", "None", [], [1], [1, 2, 3], ["input"], {}, {"op": "conv"},
]
HOSTILE_IDS = ["def", "None", "forward", "__init__", "training", "_modules", "self", "class", "input",
               "a b", "a.b", "1x", "ü", "", "x" * 300, "<i>", "register_buffer", "cuda", "to"]
COMMANDS = (["validate"], ["show"], ["code"], ["diagram"])
SETTING_VALUES = [*HOSTILE_VALUES, "tpu:7", "cuda:x", "cuda:99", "mps", 2**64, -(2**40), 1e-30, [1.0, 2.0],
                  [-1.0] * 21, [0.5, 2.0], 16, 17, 572, 100000]
FLAG_VALUES = ["0", "-1", "", " ", "x", "1e3", "3.5", "99999999999999999999", "/", ".", "cuda:99", "tpu",
               "0x0", "12x", "auto", "a=b", "train.lr=", "=1", "train.epochs=0", "train.lr=1e-4", "data.size=\"x\"",
               "train.nope=1", "train=1", "train.device=\"tpu\"", "train.seed=18446744073709551616", "{", "[1,"]
FLAG_COMMANDS = {
    "validate": ["--scan"], "show": ["--size", "--scan"], "bench": ["--size", "--batch", "--reps", "--device",
                                                                   "--threads"],
    "diagram": ["--size", "-o"], "run": ["--data", "--set", "--epochs", "--device", "--runs", "--init"],
    "compare": ["-o", "--seeds", "--baseline", "--jobs", "--threads", "--runs", "--set", "--data", "--epochs"],
    "report": ["-o", "--baseline"], "export": ["--onnx", "--size", "--opset"], "schema": ["-o"],
    "predict": ["-o", "--device", "--backend"], "init-from": ["-o", "--map"],
}
PROMISED = {0, EXIT_INPUT, EXIT_ENVIRONMENT}


@dataclass(frozen=True)
class Outcome:
    command: str
    status: int
    stderr: str
    mutation: str

    @property
    def kept_promise(self) -> bool:
        if self.status not in PROMISED or "Traceback" in self.stderr:
            return False
        if self.status == 0:
            return True
        lines = self.stderr.strip("\n").split("\n")
        return len(lines) == 1 and lines[0].startswith("fcngraph: error: ")


def _paths(value, prefix=()):
    """Every JSON path in a document, containers included."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, prefix + (index,))


def _parent(doc, path):
    for key in path[:-1]:
        doc = doc[key]
    return doc


def mutate(spec: dict, rng: random.Random) -> tuple[dict, str]:
    """One random structural or value mutation of `spec`, and a description of it."""
    doc = copy.deepcopy(spec)
    paths = [p for p in _paths(doc) if p]
    path = rng.choice(paths)
    parent, key = _parent(doc, path), path[-1]
    kind = rng.choice(["value", "value", "value", "delete", "rename_node", "rewire", "add_key"])
    where = "/".join(map(str, path))
    if kind == "delete":
        if isinstance(parent, dict):
            del parent[key]
        else:
            parent.pop(key)
        return doc, f"delete {where}"
    if kind == "rename_node" and isinstance(doc.get("nodes"), dict) and doc["nodes"]:
        old, new = rng.choice(sorted(doc["nodes"])), rng.choice(HOSTILE_IDS)
        text = json.dumps(doc).replace(json.dumps(old), json.dumps(new))
        return json.loads(text), f"rename node {old!r} → {new!r}"
    if kind == "rewire" and isinstance(doc.get("nodes"), dict) and doc["nodes"]:
        node = doc["nodes"][rng.choice(sorted(doc["nodes"]))]
        if isinstance(node, dict):
            node["in"] = rng.choice([*sorted(doc["nodes"]), "input", "missing", ["input", "input"]])
            return doc, f"rewire {where}"
    if kind == "add_key" and isinstance(parent, dict):
        parent[rng.choice(["bogus", "op", "in", "out", "to", "extends", "kernel"])] = rng.choice(HOSTILE_VALUES)
        return doc, f"add key under {where}"
    value = rng.choice(HOSTILE_VALUES)
    parent[key] = value
    return doc, f"set {where} = {value!r}"[:200]


def run_case(spec: dict, command: list[str], tmp: Path) -> tuple[int, str]:
    """Run one CLI command on `spec` written to `tmp`; return (status, stderr)."""
    from fcngraph import cli

    spec_file = tmp / "fuzz.json"
    spec_file.write_text(json.dumps(spec, allow_nan=True))
    argv = [*command, str(spec_file)]
    if command[0] == "diagram":
        argv += ["-o", str(tmp / "fuzz.dot")]
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            status = cli.main(argv)
        except SystemExit as exc:  # argparse
            status = exc.code if isinstance(exc.code, int) else EXIT_INPUT
    return status, err.getvalue()


def fuzz_one(seeds: list[dict], rng: random.Random, tmp: Path) -> Outcome:
    spec = rng.choice(seeds)
    for _ in range(rng.choice([1, 1, 2, 3])):
        spec, mutation = mutate(spec, rng)
    command = rng.choice(COMMANDS)
    status, stderr = run_case(spec, command, tmp)
    return Outcome(command[0], status, stderr, mutation)


def seed_specs(spec_dir: Path) -> list[dict]:
    """Self-contained seeds: shipped specs without `extends` (mutating a parent path is not useful)."""
    seeds = []
    for path in sorted(spec_dir.glob("*.json")):
        doc = json.loads(path.read_text())
        if isinstance(doc, dict) and "nodes" in doc and "extends" not in doc:
            doc.pop("$schema", None)
            seeds.append(doc)
    return seeds


# -- settings, flags and experiment files ---------------------------------------------------------------
def mutate_settings(spec: dict, rng: random.Random) -> tuple[dict, str]:
    """Set one train/data setting (a real key, or a bogus one) to a hostile value."""
    from fcngraph.settings import DataSettings, TrainSettings

    doc = copy.deepcopy(spec)
    block, model = rng.choice([("train", TrainSettings), ("data", DataSettings)])
    key = rng.choice([*model.model_fields, "bogus"])
    value = rng.choice(SETTING_VALUES)
    if key == "path":
        value = rng.choice([None, "", "/nonexistent", 3])  # a real folder would start loading data
    doc.setdefault(block, {})
    if not isinstance(doc[block], dict):
        doc[block] = {}
    doc[block][key] = value
    return doc, f"set {block}.{key} = {value!r}"[:200]


def fuzz_settings(seeds: list[dict], rng: random.Random, tmp: Path) -> Outcome:
    spec, mutation = mutate_settings(rng.choice(seeds), rng)
    status, stderr = run_case(spec, ["validate"], tmp)
    return Outcome("settings", status, stderr, mutation)


def fuzz_flags(rng: random.Random, tmp: Path) -> Outcome:
    """Random flags of a random subcommand through argument parsing only (nothing runs): parsed, or
    one usage-error line with exit 2. `--set` strings also go through the override loader."""
    from fcngraph import cli

    command = rng.choice(sorted(FLAG_COMMANDS))
    argv = [command, str(tmp / "fuzz.json"), str(tmp)][: 2 if command != "schema" else 1]
    argv = argv if command not in ("predict", "init-from") else [*argv, str(tmp / "fuzz.json")]
    for _ in range(rng.choice([1, 2, 3])):
        argv += [rng.choice(FLAG_COMMANDS[command]), rng.choice(FLAG_VALUES)]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            args = cli.build_parser().parse_args(argv)
            status = _overrides_status(args, tmp)
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else EXIT_INPUT
        except Exception:  # noqa: BLE001 - what the fuzzer is looking for
            traceback.print_exc()
            status = 1
    stderr = err.getvalue()
    if status == EXIT_INPUT and stderr.startswith("fcngraph") and ": error: " in stderr.split("\n")[0]:
        stderr = "fcngraph: error: " + stderr.split(": error: ", 1)[1]  # "fcngraph run: error:" is the same line
    return Outcome("flags", status, stderr, " ".join(argv[1:])[:200])


def _overrides_status(args, tmp: Path) -> int:
    """Apply the parsed overrides to a valid spec: 0, or 2 with one error line."""
    from fcngraph.cli import override_assignments
    from fcngraph.errors import FcngraphError
    from fcngraph.overrides import apply_overrides
    from fcngraph.spec import load_spec

    if not hasattr(args, "set"):
        return 0
    spec = load_spec(Path(__file__).resolve().parents[1] / "specs" / "fcn8s-mini.json")
    try:
        apply_overrides(spec, override_assignments(args))
    except FcngraphError as exc:
        print(f"fcngraph: error: {exc}", file=sys.stderr)
        return exc.exit_status
    return 0


def fuzz_experiment(rng: random.Random, tmp: Path) -> Outcome:
    """A mutated experiment file through its loader and expansion (no training)."""
    from fcngraph.errors import FcngraphError
    from fcngraph.experiment import expand, load_experiment

    root = Path(__file__).resolve().parents[1]
    doc = json.loads((root / "experiments" / "fcn-variants.json").read_text())
    doc.pop("$schema", None)
    for _ in range(rng.choice([1, 2])):
        doc, mutation = mutate(doc, rng)
    path = root / "experiments" / f".fuzz-{os.getpid()}.json"  # beside the real one: spec references resolve
    err = io.StringIO()
    try:
        path.write_text(json.dumps(doc))
        with contextlib.redirect_stderr(err):
            try:
                expand(load_experiment(path))
                status = 0
            except FcngraphError as exc:
                print(f"fcngraph: error: {exc}", file=sys.stderr)
                status = exc.exit_status
            except Exception:  # noqa: BLE001
                traceback.print_exc()
                status = 1
    finally:
        path.unlink(missing_ok=True)
    return Outcome("experiment", status, err.getvalue(), mutation)


KINDS = ("spec", "spec", "settings", "flags", "experiment", "data", "runs")


def fuzz_any(seeds: list[dict], rng: random.Random, tmp: Path, kinds: tuple[str, ...] = KINDS) -> Outcome:
    """One case of one of `kinds` (a kind listed twice is drawn twice as often): specs, settings,
    flags, experiment files, data folders or run folders (tests/fuzzing_files.py; their fixtures —
    a dataset and three trained runs — are made under `tmp` on first use)."""
    kind = rng.choice(kinds)
    if kind in ("data", "runs"):
        from tests.fuzzing_files import fixtures_in, fuzz_data, fuzz_runs

        return (fuzz_data if kind == "data" else fuzz_runs)(fixtures_in(tmp), rng, tmp)
    if kind == "settings":
        return fuzz_settings(seeds, rng, tmp)
    if kind == "flags":
        return fuzz_flags(rng, tmp)
    if kind == "experiment":
        return fuzz_experiment(rng, tmp)
    return fuzz_one(seeds, rng, tmp)
