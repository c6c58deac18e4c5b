"""Analysis and run results → pandas tables (per-node table of `fcngraph show`)."""

from __future__ import annotations

from fractions import Fraction

import pandas as pd

from .shapes import Analysis


def _fraction(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{float(value):g}"


def node_table(analysis: Analysis) -> pd.DataFrame:
    """One row per node in execution order: op, inputs, output shape, stride, RF, params, FLOPs."""
    rows = []
    for node, info in analysis.nodes.items():
        op = info.op
        shape = f"{info.channels}" + (f"x{info.size[0]}x{info.size[1]}" if info.size else "")
        rows.append({
            "node": node,
            "op": op.label() if op else "input",
            "inputs": ", ".join(op.inputs) if op else "",
            "out (CxHxW)": shape,
            "stride": _fraction(info.stride),
            "offset": _fraction(info.coord.shift),
            "rf": _fraction(info.coord.rf),
            "crop": ",".join(map(str, info.offsets)),
            "params": f"{info.params:,}",
            "MFLOPs": f"{info.flops / 1e6:,.1f}",
        })
    return pd.DataFrame(rows)
