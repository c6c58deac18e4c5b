"""Redraw the example diagrams in reports/diagrams: the shipped FCN-8s and U-Net, the FCN-16s vs
FCN-32s diff (with its text), and the stand-in ResNet-34 U-Net, UNet++ and FPN of
tests/diagram_nets.py, each expanded and compact. Prints each drawing's width and box count.

    python scripts/draw_stand_ins.py [-o reports/diagrams]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fcngraph.diagram import Layout, layout, render, to_dot  # noqa: E402
from fcngraph.diff import describe, diff_layout, diff_specs  # noqa: E402
from fcngraph.io import atomic_write_text  # noqa: E402
from fcngraph.shapes import analyze  # noqa: E402
from fcngraph.spec import load_spec  # noqa: E402
from tests.diagram_nets import STAND_INS, as_spec  # noqa: E402

SHIPPED = {"fcn8s-vgg16": (500, 375), "unet-original": (572, 572)}
STAND_IN_SIZE = (256, 256)


def draw(lay: Layout, out: Path) -> None:
    render(to_dot(lay), out)
    print(f"{out.name:40s} {lay.width:6.0f} pt wide, {len(lay.boxes):3d} boxes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default=str(ROOT / "reports" / "diagrams"), help="Folder to draw into.")
    args = parser.parse_args()
    out = Path(args.output)
    for name, size in SHIPPED.items():
        draw(layout(analyze(load_spec(ROOT / "specs" / f"{name}.json"), size)), out / f"{name}.svg")
    diff = diff_specs(*(analyze(load_spec(ROOT / "specs" / f"{n}.json")) for n in ("fcn32s-vgg16", "fcn16s-vgg16")))
    atomic_write_text(out / "fcn16s-vs-fcn32s.txt", describe(diff) + "\n")
    draw(diff_layout(diff), out / "fcn16s-vs-fcn32s.svg")
    for name, build in STAND_INS.items():
        analysis = analyze(as_spec(build()), STAND_IN_SIZE)
        draw(layout(analysis), out / f"standin-{name}.svg")
        draw(layout(analysis, compact=True), out / f"standin-{name}-compact.svg")


if __name__ == "__main__":
    main()
