"""Analyses and run records → pandas tables, figures and a report folder.

`node_table` is the per-node table of `fcngraph show`. `write_report` turns `RunRecord`s
into DIR/report.md, DIR/report.html (one self-contained file: SVGs inline, images embedded,
names escaped), results.csv, per_class.csv, training curves (PNG/SVG), one U diagram per
variant and a qualitative grid (input | ground truth | each variant), like FCN Fig. 4.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd

from .compare import RunRecord, data_key, distinct_names, eval_size, gflops, latency_ms, load_splits, predictions
from .data import Splits
from .diagram import layout, svg_text, to_dot
from .errors import FcngraphError
from .io import atomic_write, atomic_write_text, safe_stem
from .shapes import Analysis, analyze

QUALITATIVE_IMAGES = 4
SCORE_COLUMNS = ["mIoU", "pixel acc", "mean acc", "f.w. IoU"]  # higher is better
COST_COLUMNS = ["params (M)", "GFLOPs", "latency (ms)"]  # lower is better
NUMBER_FORMATS = {**{c: "{:.4f}" for c in SCORE_COLUMNS}, "params (M)": "{:.2f}", "GFLOPs": "{:.4g}",
                  "latency (ms)": "{:.2f}", "train time (s)": "{:.0f}", "epochs": "{:.0f}"}


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
            # after an adaptive pool a node has no pixel grid: no stride, offset or bounded RF
            "stride": "—" if info.coord.gridless else _fraction(info.stride),
            "offset": "—" if info.coord.gridless else _fraction(info.coord.shift),
            "rf": "image" if info.coord.gridless else _fraction(info.coord.rf),
            "crop": ",".join("bcast" if off < 0 else str(off) for off in info.offsets),
            "params": f"{info.params:,}",
            "MFLOPs": f"{info.flops / 1e6:,.1f}",
        })
    return pd.DataFrame(rows)


# -- tables ---------------------------------------------------------------------------------------
@dataclass
class Report:
    results: pd.DataFrame  # one row per variant, numeric, sorted by mIoU
    per_class: pd.DataFrame  # classes x variants, IoU
    notes: list[str]


def _row(record: RunRecord, size: tuple[int, int] | None, reference: list[str]) -> dict:
    s, spec = record.scores, record.spec
    note = record.note
    if record.classes and reference and record.classes != reference:
        note = "; ".join(filter(None, [note, f"{len(record.classes)} classes, unlike the first variant's "
                                             f"{len(reference)}: scores not comparable"]))
    return {
        "variant": record.name, "status": record.status, "note": note,
        "mIoU": s.get("miou", math.nan), "pixel acc": s.get("pixel_acc", math.nan),
        "mean acc": s.get("mean_acc", math.nan), "f.w. IoU": s.get("fwiou", math.nan),
        "params (M)": analyze(spec).params / 1e6 if spec else math.nan,
        "GFLOPs": gflops(spec, size) if spec and size else math.nan,
        "latency (ms)": latency_ms(record, size) if spec and size and record.status != "missing" else math.nan,
        "train time (s)": sum(r.get("train_s", 0.0) for r in record.history) or math.nan,
        "epochs": len(record.history) or math.nan,
        "eval size": f"{size[0]}x{size[1]}" if size else "",
    }


def build_report(records: list[RunRecord], sizes: dict[str, tuple[int, int]]) -> Report:
    """Tables from records; `sizes` maps a record's data key to its validation image size."""
    reference = next((r.classes for r in records if r.classes), [])
    rows = [_row(r, sizes.get(data_key(r.spec)) if r.spec else None, reference) for r in records]
    results = pd.DataFrame(rows).sort_values("mIoU", ascending=False, na_position="last", kind="stable")
    per_class: dict[str, dict[str, float]] = {}
    for record in records:
        for name, iou in zip(record.classes, record.scores.get("iou", [])):
            per_class.setdefault(name, {})[record.name] = iou
    notes = [f"{r.name}: {r.status}" + (f" ({r.note})" if r.note else "") for r in records if r.status != "complete"]
    if len({tuple(r.classes) for r in records if r.classes}) > 1:
        notes.append("variants were evaluated on different class sets; per-class rows are blank where a "
                     "variant has no such class")
    table = pd.DataFrame(per_class).T.reindex(columns=[r.name for r in records if r.classes])
    return Report(results.reset_index(drop=True), table.rename_axis("class"), notes)


def _display(results: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Display strings, and where to bold: the best value of each score and cost column among
    complete runs (highest score, lowest cost)."""
    complete = results["status"] == "complete"
    shown, bold = results.astype(object).copy(), pd.DataFrame(False, results.index, results.columns)
    for column, fmt in NUMBER_FORMATS.items():
        values = results[column]
        best = values[complete].max() if column in SCORE_COLUMNS else values[complete].min()
        shown[column] = ["—" if pd.isna(v) else fmt.format(v) for v in values]
        if column in SCORE_COLUMNS + COST_COLUMNS:
            bold[column] = complete & (values == best)
    return shown.fillna(""), bold


def markdown_tables(report: Report) -> tuple[str, str]:
    shown, bold = _display(report.results)
    results = shown.mask(bold, "**" + shown.astype(str) + "**")
    per_class = report.per_class.map(lambda v: "—" if pd.isna(v) else f"{v:.4f}")
    return results.to_markdown(index=False), per_class.to_markdown()


def _html_table(shown: pd.DataFrame, bold: pd.DataFrame | None = None, index: bool = False) -> str:
    """Every cell, header and index label escaped here; bold cells wrapped after escaping."""
    escaped = shown.map(lambda v: html.escape(str(v)))
    if bold is not None:
        escaped = escaped.mask(bold, "<b>" + escaped + "</b>")
    escaped.index = [html.escape(str(i)) for i in shown.index]
    escaped.columns = [html.escape(str(c)) for c in shown.columns]
    return escaped.to_html(index=index, escape=False, border=0, classes="table")


# -- figures --------------------------------------------------------------------------------------
def _figure_bytes(figure, fmt: str) -> bytes:
    buffer = io.BytesIO()
    metadata = {"Date": None} if fmt == "svg" else {"Software": None} if fmt == "png" else {}
    figure.savefig(buffer, format=fmt, metadata=metadata, bbox_inches="tight", dpi=110)
    return buffer.getvalue()


def curves_figure(records: list[RunRecord]):
    """Training loss and validation mIoU per epoch, every variant on the same two axes."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "fcngraph"  # stable ids, so reruns write identical SVG
    import matplotlib.pyplot as plt

    figure, (loss_ax, miou_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
    for record in records:
        rows = record.history
        loss_ax.plot([r["epoch"] for r in rows], [r["loss"] for r in rows], label=record.name)
        evaluated = [r for r in rows if "miou" in r]
        miou_ax.plot([r["epoch"] for r in evaluated], [r["miou"] for r in evaluated], label=record.name)
    loss_ax.set(xlabel="epoch", ylabel="training loss", yscale="log", title="loss")
    miou_ax.set(xlabel="epoch", ylabel="val mIoU", title="validation mIoU")
    miou_ax.legend(fontsize=8)
    for ax in (loss_ax, miou_ax):
        ax.grid(alpha=0.3)
    return figure


def _colour(labels, palette) -> np.ndarray:
    table = np.zeros((256, 3), dtype=np.uint8)
    table[:len(palette)] = palette
    table[255] = (255, 255, 255)  # ignore
    return table[labels.cpu().numpy().astype(np.uint8)]


def qualitative_figure(records: list[RunRecord], splits_by_key: dict[str, Splits]):
    """Input | ground truth | each variant's prediction on fixed validation images, or None
    when no variant has a checkpoint and loadable data. Only variants that share the first
    one's data take part."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    usable = [r for r in records if r.spec is not None and data_key(r.spec) in splits_by_key
              and r.checkpoint() is not None]
    if not usable:
        return None, []
    key = data_key(usable[0].spec)
    shown = [r for r in usable if data_key(r.spec) == key]
    splits = splits_by_key[key]
    count = min(QUALITATIVE_IMAGES, len(splits.val))
    indices = [round(i * (len(splits.val) - 1) / max(1, count - 1)) for i in range(count)]
    predicted = {r.name: predictions(r, splits, indices) for r in shown}
    columns = ["input", "ground truth", *predicted]
    figure, axes = plt.subplots(count, len(columns), figsize=(1.9 * len(columns), 1.9 * count), squeeze=False)
    for row, index in enumerate(indices):
        image, mask = splits.val.base[index]  # raw [3, H, W] in 0..1, [H, W]
        panels = [image.permute(1, 2, 0).numpy(), _colour(mask, splits.palette)]
        panels += [_colour(labels[row], splits.palette) for labels in predicted.values()]
        for col, panel in enumerate(panels):
            axes[row][col].imshow(panel, interpolation="nearest")
            axes[row][col].set_xticks([])
            axes[row][col].set_yticks([])
            if row == 0:
                axes[row][col].set_title(columns[col], fontsize=8)
    left_out = [r.name for r in records if r not in shown]
    return figure, left_out


# -- the report folder -------------------------------------------------------------------------------
def _inline_svg(data: bytes) -> str:
    text = data.decode()
    return text[text.index("<svg"):]


def _splits(records: list[RunRecord]) -> dict[str, Splits]:
    """Each data key's datasets, loaded once (a folder dataset checks every file as it loads)."""
    found: dict[str, Splits] = {}
    for record in records:
        if record.spec is not None and data_key(record.spec) not in found:
            with contextlib.suppress(FcngraphError):  # data gone: size-dependent columns stay blank
                found[data_key(record.spec)] = load_splits(record.spec)
    return found


def write_report(records: list[RunRecord], out_dir: Path, title: str = "fcngraph comparison") -> Report:
    """Write every table and figure of the comparison into `out_dir`; return the tables."""
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    records = distinct_names(records)
    splits = _splits(records)
    sizes = {key: eval_size(s) for key, s in splits.items()}
    report = build_report(records, sizes)
    atomic_write_text(out_dir / "results.csv", report.results.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(out_dir / "per_class.csv", report.per_class.to_csv(float_format="%.6g"))

    figures: dict[str, bytes] = {}
    curves = curves_figure(records)
    for fmt in ("png", "svg"):
        figures[f"curves.{fmt}"] = _figure_bytes(curves, fmt)
    plt.close(curves)
    grid, left_out = qualitative_figure(records, splits)
    if grid is not None:
        figures["qualitative.png"] = _figure_bytes(grid, "png")
        plt.close(grid)
    if left_out:
        report.notes.append("qualitative grid leaves out (other data or no checkpoint): " + ", ".join(left_out))
    for name, data in figures.items():
        atomic_write(out_dir / name, lambda handle, data=data: handle.write(data))

    diagrams = {}
    for record in records:
        if record.spec is not None:
            size = sizes.get(data_key(record.spec))
            dot = to_dot(layout(analyze(record.spec, size), compact=True))
            atomic_write_text(out_dir / f"diagram-{safe_stem(record.name)}.dot", dot.source)
            diagrams[record.name] = svg_text(dot)
            if diagrams[record.name] is not None:
                atomic_write_text(out_dir / f"diagram-{safe_stem(record.name)}.svg", diagrams[record.name])
    atomic_write_text(out_dir / "report.md", _markdown(report, title, figures, diagrams))
    atomic_write_text(out_dir / "report.html", _html(report, title, figures, diagrams))
    return report


def _markdown(report: Report, title: str, figures: dict[str, bytes], diagrams: dict[str, str | None]) -> str:
    results, per_class = markdown_tables(report)
    parts = [f"# {title}", "", "Sorted by validation mIoU; the best value of each column (complete runs) in bold. "
             "Latency: batch 1 forward at the eval size on the machine that wrote the report.", "", results, ""]
    parts += [f"- {note}" for note in report.notes] + ([""] if report.notes else [])
    parts += ["## Per-class IoU", "", per_class, "", "## Training curves", "", "![curves](curves.png)", ""]
    if "qualitative.png" in figures:
        parts += ["## Predictions on validation images", "", "![qualitative](qualitative.png)", ""]
    parts += ["## Architectures", ""]
    for name, svg in diagrams.items():
        stem = safe_stem(name)
        parts += [f"![{name}](diagram-{stem}.svg)" if svg else f"`diagram-{stem}.dot` (install graphviz to draw)", ""]
    return "\n".join(parts)


HTML_STYLE = """body{font-family:Helvetica,Arial,sans-serif;margin:2em;color:#222}
table.table{border-collapse:collapse;margin:1em 0;font-size:13px}
table.table td,table.table th{border-bottom:1px solid #ddd;padding:4px 10px;text-align:right}
table.table td:first-child,table.table th:first-child{text-align:left}
.figure svg{max-width:100%;height:auto}.diagram{border:1px solid #eee;margin:1em 0}
.diagram svg{width:100%;height:auto}
img{max-width:100%}"""


def _html(report: Report, title: str, figures: dict[str, bytes], diagrams: dict[str, str | None]) -> str:
    results = _html_table(*_display(report.results))
    per_class = _html_table(report.per_class.map(lambda v: "—" if pd.isna(v) else f"{v:.4f}"), index=True)
    esc = html.escape
    body = [f"<h1>{esc(title)}</h1>", "<p>Sorted by validation mIoU; the best value of each column "
            "(complete runs) in bold.</p>", results]
    body += ["<ul>" + "".join(f"<li>{esc(n)}</li>" for n in report.notes) + "</ul>"] if report.notes else []
    body += ["<h2>Per-class IoU</h2>", per_class, "<h2>Training curves</h2>",
             f'<div class="figure">{_inline_svg(figures["curves.svg"])}</div>']
    if "qualitative.png" in figures:
        encoded = base64.b64encode(figures["qualitative.png"]).decode()
        body += ["<h2>Predictions on validation images</h2>",
                 f'<img alt="input, ground truth and predictions" src="data:image/png;base64,{encoded}">']
    body.append("<h2>Architectures</h2>")
    for name, svg in diagrams.items():
        body.append(f"<h3>{esc(name)}</h3>")
        body.append(f'<div class="diagram">{svg}</div>' if svg else
                    f"<p>diagram-{safe_stem(name)}.dot written; install graphviz to draw it.</p>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f"<style>{HTML_STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")

