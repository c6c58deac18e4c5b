"""Diagram time for generated specs of growing size (the chain-with-skips specs of
validate_speed.py): analysis + layout + DOT source, and graphviz drawing the SVG; then a
ResNet encoder of ~5,000 nodes with dotted block ids (tests/diagram_nets.py), expanded and
compact (its 400 blocks per stage folded into one box each).

    python benchmarks/diagram_speed.py [--sizes 1250 2500 5000]

Target: a 5,000-node spec drawn in under 10 s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from validate_speed import generated_spec  # noqa: E402

from fcngraph.diagram import layout, render, to_dot  # noqa: E402
from fcngraph.shapes import analyze  # noqa: E402
from fcngraph.spec import load_spec  # noqa: E402
from tests.diagram_nets import as_spec, resnet_encoder  # noqa: E402


def blocks_spec(per_stage: int) -> dict:
    """A ResNet encoder with `per_stage` BasicBlocks in each of its 4 stages, and a score."""
    nodes: dict = {}
    last = resnet_encoder(nodes, (per_stage,) * 4)[-1]
    nodes["score"] = {"op": "score", "in": last}
    return {"name": f"resnet-{per_stage}x4", "num_classes": 2, "nodes": nodes, "output": "score"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1250, 2500, 5000], help="Node counts.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            start = time.perf_counter()
            dot = to_dot(layout(analyze(load_spec(generated_spec(n)), (64, 64))))
            built = time.perf_counter()
            out = render(dot, Path(tmp) / f"chain-{n}.svg")
            done = time.perf_counter()
            print(f"{n:5d} nodes: analysis + layout + DOT {built - start:5.2f} s, graphviz SVG {done - built:5.2f} s, "
                  f"total {done - start:5.2f} s ({out.stat().st_size / 1e6:.1f} MB)"
                  + ("  (target < 10 s)" if n == 5000 else ""))
        spec = as_spec(blocks_spec(400))
        for compact in (False, True):
            start = time.perf_counter()
            lay = layout(analyze(spec, (64, 64)), compact)
            out = render(to_dot(lay), Path(tmp) / f"blocks-{compact}.svg")
            print(f"{len(spec.nodes):5d} nodes in blocks, {'compact ' if compact else 'expanded'}: "
                  f"{len(lay.boxes):5d} boxes, {lay.width:8.0f} pt wide, {time.perf_counter() - start:5.2f} s")


if __name__ == "__main__":
    main()
