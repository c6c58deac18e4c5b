"""Bad-input fuzzing of the CLI: mutate a valid spec, run a command on it, classify the outcome.

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
import random
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
