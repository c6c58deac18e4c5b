"""Validation + static analysis time: the FCN-8s spec, the ResNet-34 encoder written with blocks
and defaults next to the same spec written out node by node (what expansion costs), and generated
specs of growing size (a chain of convs with skip fusions every few nodes) to show the cost grows
linearly; last, `fcngraph validate` of a 100,000-node chain of 3x3 convs (target < 10 s), with
the time per stage and the exhaustive per-side scan of valid sizes timed side by side on a slice.

    python benchmarks/validate_speed.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fcngraph.cli import main as cli_main  # noqa: E402
from fcngraph.graph import build_graph  # noqa: E402
from fcngraph.shapes import analyze, output_length, valid_sizes  # noqa: E402
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


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def chain_100k() -> None:
    import json
    import tempfile

    data = conv_chain(100_000)
    spec, load = timed(lambda: load_spec(data))
    graph, wiring = timed(lambda: build_graph(spec))
    analysis, static = timed(lambda: analyze(spec, graph=graph))
    _, sizes = timed(lambda: valid_sizes(analysis))
    _, one_side = timed(lambda: output_length(analysis, 224))  # what the old scan paid per side
    print(f"100,000-node chain: load {load:.2f} s, graph {wiring:.2f} s, analyse {static:.2f} s, valid sizes "
          f"1..1024 {sizes:.2f} s (exhaustive scan: {one_side:.2f} s per side, x{one_side * 1024 / sizes:.0f} "
          f"for 1024 sides)")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "chain.json"
        path.write_text(json.dumps(data))
        status, seconds = timed(lambda: cli_main(["validate", str(path)]))
    print(f"fcngraph validate (100,000 nodes): {seconds:.2f} s, exit {status} (target < 10 s)")


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
    chain_100k()


if __name__ == "__main__":
    main()
