"""Validation + static analysis time: the FCN-8s spec, the ResNet-34 encoder written with blocks
and defaults next to the same spec written out node by node (what expansion costs), and generated
specs of growing size (a chain of convs with skip fusions every few nodes) to show the cost grows
linearly; last, `fcngraph validate` of two 100,000-node specs, a chain of 3x3 convs and a net of
residual units with long skips (target < 10 s each): the time of each step it takes, then the
command end to end in a new process (Python start and imports, torch's among them, included).

    python benchmarks/validate_speed.py          # everything
    python benchmarks/validate_speed.py --100k   # the 100,000-node specs only
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fcngraph.cli import collector_paused  # noqa: E402
from fcngraph.graph import build_graph  # noqa: E402
from fcngraph.memory import activation_bytes  # noqa: E402
from fcngraph.settings import check_settings, training_sides  # noqa: E402
from fcngraph.shapes import analyze, valid_sizes  # noqa: E402
from fcngraph.spec import load_spec  # noqa: E402


def generated_spec(n: int) -> dict:
    """n nodes: conv, conv, add(skip) repeated; every node used."""
    nodes: dict[str, dict] = {"n0": {"op": "conv", "in": "input", "out": 8, "pad": 1}}
    for i in range(1, n):
        if i % 3 == 2:
            nodes[f"n{i}"] = {"op": "add", "in": [f"n{i - 1}", f"n{i - 2}"]}
        else:
            nodes[f"n{i}"] = {"op": "conv", "in": f"n{i - 1}", "out": 8, "pad": 1}
    return {"name": f"chain-{n}", "num_classes": 2, "nodes": nodes, "output": f"n{n - 1}"}


def conv_chain(n: int) -> dict:
    """n conv k3 p1 nodes in a row: the issue's 100,000-node stress spec."""
    nodes = {f"c{i}": {"op": "conv", "in": f"c{i - 1}" if i else "input", "out": 8, "kernel": 3, "pad": 1}
             for i in range(n)}
    nodes[f"c{n - 1}"]["out"] = 2
    return {"name": f"conv-chain-{n}", "num_classes": 2, "nodes": nodes, "output": f"c{n - 1}"}


def skip_net(n: int) -> dict:
    """n nodes of residual units with long skips: conv, conv, add (the unit's shortcut), a max pool
    3x3 stride 1, and an add of three inputs, the third from about 100 nodes back."""
    nodes: dict[str, dict] = {"s0": {"op": "conv", "in": "input", "out": 8, "pad": 1}}
    for i in range(1, n):
        prev, unit = f"s{i - 1}", i % 5
        if unit in (0, 1):
            nodes[f"s{i}"] = {"op": "conv", "in": prev, "out": 8, "pad": 1, "act": "relu" if unit else "none"}
        elif unit == 2:
            nodes[f"s{i}"] = {"op": "add", "in": [prev, f"s{max(0, i - 3)}"], "act": "relu"}
        elif unit == 3:
            nodes[f"s{i}"] = {"op": "pool", "in": prev, "kernel": 3, "stride": 1, "pad": 1}
        else:
            nodes[f"s{i}"] = {"op": "add", "in": [prev, f"s{i - 2}", f"s{max(0, i - 101)}"]}
    nodes[f"s{n - 1}"] = {"op": "conv", "in": f"s{n - 2}", "out": 2, "pad": 1}
    return {"name": f"skip-net-{n}", "num_classes": 2, "nodes": nodes, "output": f"s{n - 1}"}


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def stages(data: dict) -> str:
    """The steps `fcngraph validate` takes (cli.validate_one), timed one by one as it runs them
    (cyclic collector paused): wall-clock seconds and, in brackets, this process's CPU seconds
    (which a machine shared with other jobs inflates less)."""
    with collector_paused():
        return _stages(data)


def _stages(data: dict) -> str:
    spent: list[tuple[str, float, float]] = []

    def step(name, fn):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        spent.append((name, time.perf_counter() - wall, time.process_time() - cpu))
        return result

    spec = step("load", lambda: load_spec(data))
    graph = step("graph", lambda: build_graph(spec))
    side = training_sides(spec)["$.data.size"]
    analysis = step(f"analyse at {side}x{side}", lambda: analyze(spec, (side, side), graph=graph))
    rule = step("valid sizes 1..1024", lambda: valid_sizes(analysis))
    step("settings", lambda: check_settings(analysis, rule, 1024))
    step("memory", lambda: activation_bytes(analysis, spec.train.batch_size))
    spent.append(("sum", sum(s[1] for s in spent), sum(s[2] for s in spent)))
    return ", ".join(f"{name} {wall:.2f} s ({cpu:.2f})" for name, wall, cpu in spent)


def validate_100k() -> None:
    import json
    import os
    import resource
    import subprocess
    import tempfile

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for what, data in (("chain of 3x3 convs", conv_chain(100_000)), ("skip net", skip_net(100_000))):
        print(f"100,000-node {what}: {stages(data)}")
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "spec.json"
            path.write_text(json.dumps(data))
            cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
            command = [sys.executable, "-m", "fcngraph", "validate", str(path)]
            done, seconds = timed(lambda command=command: subprocess.run(command, env=env, capture_output=True))
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_s = after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime
        print(f"python -m fcngraph validate (100,000-node {what}), a new process (imports included): "
              f"{seconds:.2f} s ({cpu_s:.2f} s CPU), exit {done.returncode} (target < 10 s)")


def best_of(fn, reps: int = 5) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    path = ROOT / "specs" / "fcn8s-vgg16.json"
    seconds = best_of(lambda: analyze(load_spec(path), (500, 375)))
    print(f"fcn8s-vgg16: load + validate + analyse at 500x375: {seconds * 1e3:.1f} ms (target < 50 ms)")
    path = ROOT / "tests" / "specs" / "resnet34-encoder.json"
    written_out = load_spec(path).canonical()
    blocks = best_of(lambda: analyze(load_spec(path), (224, 224)), reps=9)
    plain = best_of(lambda: analyze(load_spec(written_out), (224, 224)), reps=9)
    print(f"resnet34-encoder with blocks: load + expand + validate + analyse at 224x224: {blocks * 1e3:.1f} ms "
          f"(target < 50 ms); written out: {plain * 1e3:.1f} ms; blocks/written-out x{blocks / plain:.2f}")
    previous = None
    for n in (1250, 2500, 5000):
        data = generated_spec(n)
        seconds = best_of(lambda data=data: analyze(load_spec(data), (64, 64)), reps=3)
        growth = f", x{seconds / previous:.2f} for x2 nodes" if previous else ""
        print(f"generated {n:5d} nodes: {seconds:.3f} s{growth}" + (" (target < 5 s)" if n == 5000 else ""))
        previous = seconds
    validate_100k()


if __name__ == "__main__":
    validate_100k() if "--100k" in sys.argv else main()
