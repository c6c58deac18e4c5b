"""Analyses and run records → pandas tables, figures and a report folder.

`node_table` is the per-node table of `fcngraph show`. `write_report` turns `RunRecord`s
into DIR/report.md, DIR/report.html (one self-contained file: SVGs inline, images embedded,
names escaped; Markdown by `md_text`), results.csv, per_class.csv (formula-safe cells), training
curves (PNG/SVG), one U diagram per variant and a qualitative grid (input | ground truth | each
variant), like FCN Fig. 4.
Given a `stats.Comparison` (several seeds) it adds stats.json and a statistics section: mean ± std,
intervals, paired differences against the baseline, per-class differences and one sentence each.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import json
import math
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd

from .compare import RunRecord, data_key, distinct_names, eval_size, gflops, latency_ms, load_splits, predictions
from .data import Splits
from .diagram import layout, svg_text, to_dot
from .errors import FcngraphError
from .io import atomic_write, atomic_write_text, parse_json, safe_stem
from .shapes import Analysis, analyze

QUALITATIVE_IMAGES = 4
SCORE_COLUMNS = ["mIoU", "pixel acc", "mean acc", "f.w. IoU"]  # higher is better
COST_COLUMNS = ["params (M)", "GFLOPs", "latency (ms)"]  # lower is better
NUMBER_FORMATS = {**{c: "{:.4f}" for c in SCORE_COLUMNS}, "params (M)": "{:.2f}", "GFLOPs": "{:.4g}",
                  "latency (ms)": "{:.2f}", "train time (s)": "{:.0f}", "epochs": "{:.0f}"}


MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|#!~])")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet runs as a formula


def md_text(value: object) -> str:
    """User text (variant, class names, notes) as literal Markdown: one line, no emphasis, links,
    images, code, table cells or raw HTML."""
    text = " ".join(str(value).split()).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return MARKDOWN_SPECIAL.sub(r"\\\1", text)


def csv_cell(value: object) -> object:
    """A text cell a spreadsheet would evaluate (=cmd|..., +1+1, @SUM) gets a leading '."""
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_START) else value


def csv_text(frame: pd.DataFrame, index: bool) -> str:
    """The CSV of a table with every text cell, header and index label formula-safe."""
    safe = frame.map(csv_cell)
    safe.columns = [csv_cell(c) for c in frame.columns]
    safe.index = pd.Index([csv_cell(i) for i in frame.index], name=frame.index.name)
    return safe.to_csv(index=index, float_format="%.6g")


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


def eval_columns(run_dir: Path) -> dict[str, float]:
    """'mIoU (test)', 'mIoU (test-tta)', ... from the run's eval-<split>[-tta].json files."""
    columns = {}
    for path in sorted(run_dir.glob("eval-*.json")) if run_dir.is_dir() else []:
        if not path.is_file():  # a folder or a FIFO (reading it would wait forever)
            continue
        try:
            columns[f"mIoU ({path.stem[len('eval-'):]})"] = float(parse_json(path.read_text(encoding="utf-8"))["miou"])
        except (OSError, ValueError, KeyError, TypeError):  # a broken file is left out, not fatal
            continue
    return columns


def _row(record: RunRecord, size: tuple[int, int] | None, reference: list[str]) -> dict:
    s, spec = record.scores, record.spec
    note = record.note
    if record.classes and reference and record.classes != reference:
        note = "; ".join(filter(None, [note, f"{len(record.classes)} classes, unlike the first variant's "
                                             f"{len(reference)}: scores not comparable"]))
    return {
        "variant": record.name, "status": record.status, "note": note,
        "mIoU": s.get("miou", math.nan), "best mIoU": s.get("best_miou", math.nan),
        "best epoch": s.get("best_epoch", math.nan), **eval_columns(record.path),
        "pixel acc": s.get("pixel_acc", math.nan),
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


def _display(results: pd.DataFrame, comparison=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Display strings, and where to bold: the lowest cost among complete runs; for scores, the
    best value — but with statistics (`comparison`), mIoU only for a significant leader and the
    other scores, which have no test, never."""
    complete = results["status"] == "complete"
    shown, bold = results.astype(object).copy(), pd.DataFrame(False, results.index, results.columns)
    formats = {**NUMBER_FORMATS, **{c: "{:.4f}" for c in results.columns if "mIoU" in c},
               "best epoch": "{:.0f}"}
    for column, fmt in formats.items():
        if column not in results:
            continue
        values = results[column]
        shown[column] = ["—" if pd.isna(v) else fmt.format(v) for v in values]
        if column in COST_COLUMNS:
            bold[column] = complete & (values == values[complete].min())
        elif column in SCORE_COLUMNS and comparison is None:
            bold[column] = complete & (values == values[complete].max())
    if comparison is not None and comparison.bold:
        bold["mIoU"] = complete & (results["variant"] == comparison.bold)
    return shown.fillna(""), bold


def _md_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Every cell, header and index label of a table through `md_text`."""
    safe = frame.map(md_text)
    safe.columns = [md_text(c) for c in frame.columns]
    safe.index = pd.Index([md_text(i) for i in frame.index], name=md_text(frame.index.name or ""))
    return safe


def markdown_tables(report: Report, comparison=None) -> tuple[str, str]:
    shown, bold = _display(report.results, comparison)
    shown = _md_frame(shown)
    bold.columns, bold.index = shown.columns, shown.index  # the mask must line up with the escaped labels
    results = shown.mask(bold, "**" + shown.astype(str) + "**")
    per_class = _md_frame(report.per_class.map(lambda v: "—" if pd.isna(v) else f"{v:.4f}"))
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


def _epoch_series(rows: list[dict], key: str) -> dict[int, float]:
    return {r["epoch"]: r[key] for r in rows if key in r}


def curves_figure(records: list[RunRecord], seeds: dict[str, list[RunRecord]] | None = None):
    """Training loss and validation mIoU per epoch, every variant on the same two axes; with
    several seeds of a variant, the mean over seeds and a band from the lowest to the highest."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "fcngraph"  # stable ids, so reruns write identical SVG
    import matplotlib.pyplot as plt

    figure, (loss_ax, miou_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
    positive_loss = False  # a log axis needs one finite loss > 0 (a run may have logged NaN/inf or 0)
    for record in records:
        runs = (seeds or {}).get(record.name) or [record]
        for ax, key in ((loss_ax, "loss"), (miou_ax, "miou")):
            series = [_epoch_series(r.history, key) for r in runs]
            epochs = sorted(set.intersection(*(set(x) for x in series))) if series else []
            values = np.array([[x[e] for e in epochs] for x in series], dtype=np.float64)  # [seeds, epochs]
            if not epochs:
                continue
            values[~np.isfinite(values)] = np.nan  # a diverged epoch is a gap in the curve
            mean = values.mean(0)  # [epochs]; NaN where a seed diverged
            positive_loss |= key == "loss" and bool((mean > 0).any())
            label = record.name + (f" ({len(runs)} seeds)" if len(runs) > 1 else "")
            line, = ax.plot(epochs, mean, label=label)
            if len(runs) > 1:
                ax.fill_between(epochs, values.min(0), values.max(0), color=line.get_color(), alpha=0.2, linewidth=0)
    loss_ax.set(xlabel="epoch", ylabel="training loss", yscale="log" if positive_loss else "linear", title="loss")
    miou_ax.set(xlabel="epoch", ylabel="val mIoU", title="validation mIoU (band: min–max over seeds)")
    if miou_ax.get_legend_handles_labels()[0]:  # no run has a history: no legend (matplotlib warns on stderr)
        miou_ax.legend(fontsize=8)
    for ax in (loss_ax, miou_ax):
        ax.grid(alpha=0.3)
    return figure


def normalised_confusion(runs: list[RunRecord]) -> np.ndarray | None:
    """Final confusion matrices summed over seeds, each row divided by its ground-truth pixels."""
    matrices = [np.asarray(r.scores["confusion"], dtype=np.float64) for r in runs if r.scores.get("confusion")]
    if not matrices:
        return None
    total = np.sum(matrices, 0)
    return total / np.maximum(total.sum(1, keepdims=True), 1)


def confusion_figure(records: list[RunRecord], baseline: str, seeds: dict[str, list[RunRecord]] | None = None):
    """Row 1: each variant's normalised confusion matrix; row 2: its difference from the baseline's
    (red: more pixels there than the baseline). None when no run has a confusion matrix."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mats = {r.name: normalised_confusion((seeds or {}).get(r.name) or [r]) for r in records}
    mats = {name: m for name, m in mats.items() if m is not None}
    if not mats or baseline not in mats:
        return None
    classes = next(r.classes for r in records if r.name in mats) or [str(i) for i in range(len(mats[baseline]))]
    n = len(mats)
    # constrained layout: the second row's titles clear the first row's rotated class names
    figure, axes = plt.subplots(2, n, figsize=(3.2 * n, 6.8), squeeze=False, layout="constrained")
    diff = None
    for col, (name, m) in enumerate(mats.items()):
        labels = classes if len(classes) == len(m) else [str(i) for i in range(len(m))]
        image = axes[0, col].imshow(m, cmap="viridis", vmin=0, vmax=1)
        axes[0, col].set_title(name, fontsize=9)
        if name == baseline or m.shape != mats[baseline].shape:
            axes[1, col].axis("off")
            axes[1, col].text(0.5, 0.5, "baseline" if name == baseline else "other classes", ha="center",
                              transform=axes[1, col].transAxes)
        else:
            diff = axes[1, col].imshow(m - mats[baseline], cmap="RdBu_r", vmin=-1, vmax=1)
            axes[1, col].set_title(f"{name} − {baseline}", fontsize=9)
        for row in (0, 1):
            ax = axes[row, col]
            ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
            ax.set_yticks(range(len(labels)), labels if col == 0 else [""] * len(labels), fontsize=6)
        axes[0, col].set_xlabel("predicted", fontsize=7)
    axes[0, 0].set_ylabel("ground truth", fontsize=7)
    figure.colorbar(image, ax=axes[0, :].tolist(), fraction=0.02, label="share of the class's pixels")
    if diff is not None:
        figure.colorbar(diff, ax=axes[1, :].tolist(), fraction=0.02, label="difference")
    return figure


def _colour(labels, palette) -> np.ndarray:
    table = np.zeros((256, 3), dtype=np.uint8)
    table[:len(palette)] = palette
    table[255] = (255, 255, 255)  # ignore
    return table[labels.cpu().numpy().astype(np.uint8)]


def image_mious(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Per-image counts (tp, gt, pred [N, C]) → each image's own mIoU over the classes it shows, [N]."""
    from .stats import iou_from_pooled, miou_from_iou

    return miou_from_iou(iou_from_pooled(np.stack([arrays["tp"], arrays["gt"], arrays["pred"]], 1)))


def pick_images(per_image: dict[str, dict[str, np.ndarray]], baseline: str, classes: list[str],
                rare: int = 2) -> list[tuple[int, str]]:
    """Validation images worth looking at, by rule, each with the reason: the largest disagreement
    between variants, the baseline's worst image, and the image with most pixels of each of the
    `rare` rarest classes. per_image: variant → its first seed's per-image counts (same image order)."""
    scores = np.stack([image_mious(a) for a in per_image.values()])  # [V, N]
    picks: list[tuple[int, str]] = []

    def add(index: int, reason: str) -> None:
        if all(index != i for i, _ in picks):
            picks.append((int(index), reason))

    spread = scores.max(0) - scores.min(0)
    if spread.max() > 0:  # identical variants disagree nowhere: no row for it
        add(int(np.argmax(spread)), "largest disagreement")
    add(int(np.argmin(image_mious(per_image[baseline]))), f"{baseline}'s worst")
    gt = per_image[baseline]["gt"]  # [N, C]
    totals = gt.sum(0).astype(np.float64)
    for c in [c for c in np.argsort(totals, kind="stable") if totals[c] > 0][:rare]:
        name = classes[c] if c < len(classes) else str(c)
        add(int(np.argmax(gt[:, c])), f"rare class: {name}")
    return picks


def qualitative_figure(records: list[RunRecord], splits_by_key: dict[str, Splits],
                       picks: list[tuple[int, str]] | None = None):
    """Input | ground truth | each variant's prediction on validation images (`picks`: index and
    reason, chosen by `pick_images`; else evenly spaced), with a colour legend; None when no variant
    has a checkpoint and loadable data. Only variants that share the first one's data take part."""
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
    if picks:
        indices, reasons = [i for i, _ in picks], [reason for _, reason in picks]
    else:
        count = min(QUALITATIVE_IMAGES, len(splits.val))
        indices = [round(i * (len(splits.val) - 1) / max(1, count - 1)) for i in range(count)]
        reasons = [f"image {i}" for i in indices]
    count = len(indices)
    predicted = {r.name: predictions(r, splits, indices) for r in shown}
    columns = ["input", "ground truth", *predicted]
    height, width = splits.val.base[indices[0]][1].shape
    rows_of_legend = math.ceil(len(splits.classes) / 6)
    # cells shaped like the images, the legend in its own strip below: no empty band between them
    figure, axes = plt.subplots(count, len(columns), squeeze=False, layout="constrained",
                                figsize=(1.9 * len(columns), 1.9 * count * height / width + 0.3 * rows_of_legend))
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
        axes[row][0].set_ylabel(reasons[row], fontsize=7)
    from matplotlib.patches import Patch

    handles = [Patch(color=np.array(colour) / 255, label=name) for name, colour in zip(splits.classes, splits.palette)]
    figure.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), fontsize=7, frameon=False)
    left_out = [r.name for r in records if r not in shown]
    return figure, left_out


def _picks(records: list[RunRecord], comparison) -> list[tuple[int, str]] | None:
    """Rule-chosen images when statistics were computed (their per-image counts are cached)."""
    if comparison is None:
        return None
    from .evaluate import load_per_image

    per_image = {r.name: load_per_image(r.path, r.spec.data.val_split, r.spec.num_classes) for r in records
                 if r.name in comparison.summaries and r.spec is not None
                 and (r.path / f"per-image-{r.spec.data.val_split}.npz").is_file()}
    if comparison.baseline not in per_image:
        return None
    return pick_images(per_image, comparison.baseline, list(comparison.classes))


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


# -- statistics over seeds ----------------------------------------------------------------------
def _ci(low: float, high: float) -> str:
    return f"[{low:.4f}, {high:.4f}]"


def statistics_tables(comparison) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(table, bold mask, per-class differences) of a `stats.Comparison`. The best mean is bold only
    when it is significantly ahead of every other variant; otherwise no cell is bold."""
    rows, bold = [], []
    for name, s in sorted(comparison.summaries.items(), key=lambda item: -item[1].mean):
        d = comparison.differences.get(name)
        rows.append({"variant": name, "mIoU mean ± std": f"{s.mean:.4f} ± {s.std:.4f}" if len(s.per_seed) > 1
                     else f"{s.mean:.4f} (one seed)", "95 % CI": _ci(s.low, s.high),
                     f"Δ vs {comparison.baseline}": "baseline" if d is None else f"{d.diff:+.4f}",
                     "Δ 95 % CI": "" if d is None else _ci(d.low, d.high),
                     "p": "" if d is None else ("< 0.001" if d.p < 0.001 else f"{d.p:.3f}"),
                     "seeds": len(s.per_seed)})
        bold.append({k: (k == "mIoU mean ± std" and comparison.bold == name) for k in rows[-1]})
    n = len(next(iter(comparison.differences.values())).per_class) if comparison.differences else 0
    classes = list(comparison.classes) if len(comparison.classes) == n else [str(i) for i in range(n)]
    per_class = pd.DataFrame(
        {name: ["—" if np.isnan(v) else f"{v:+.3f} [{lo:.3f}, {hi:.3f}]" for v, lo, hi in d.per_class]
         for name, d in comparison.differences.items()}, index=classes) if n else None
    return pd.DataFrame(rows), pd.DataFrame(bold), per_class


def statistics_csv(comparison) -> pd.DataFrame:
    """One row per variant, plain numbers (the tracker export of docs/statistics.md)."""
    rows = []
    for name, s in comparison.summaries.items():
        d = comparison.differences.get(name)
        rows.append({"variant": name, "miou_mean": s.mean, "miou_std": s.std, "miou_ci_low": s.low,
                     "miou_ci_high": s.high, "seeds": len(s.per_seed), "images": s.n_images,
                     "baseline": comparison.baseline, "diff": d.diff if d else 0.0,
                     "diff_ci_low": d.low if d else math.nan, "diff_ci_high": d.high if d else math.nan,
                     "p": d.p if d else math.nan, "significant": bool(d and d.significant),
                     "leader": name in comparison.leaders, "tied": len(comparison.leaders) > 1})
    return pd.DataFrame(rows)


def table_caption(comparison) -> str:
    """Which split and checkpoint every number comes from, and what bold means."""
    bold = ("Bold: mIoU only for a variant significantly ahead of every other (see Statistics), and the "
            "lowest cost." if comparison is not None else "Bold: the best value of each column (complete runs).")
    return ("Sorted by validation mIoU. mIoU, pixel acc, mean acc, f.w. IoU: the validation split, last epoch "
            "(last.pt); best mIoU, best epoch: the epoch best.pt holds; mIoU (split): `fcngraph eval` on that "
            f"split. {bold} Latency: batch 1 forward at the eval size on the default inference backend, on the "
            "machine that wrote the report.")


def leader_line(comparison) -> str:
    if len(comparison.summaries) == 1:  # seeds of one variant: nothing to be ahead of
        return f"One variant ({comparison.leaders[0]}): nothing to compare it with."
    if len(comparison.leaders) == 1:
        return f"Best: {comparison.leaders[0]} (significantly ahead of every other variant; shown in bold)."
    return (f"Tied for best: {', '.join(comparison.leaders)} — their differences are not significant, "
            "so nothing is bold.")


def statistics_method(comparison) -> str:
    return (f"95 % intervals: percentile bootstrap, B = {comparison.resamples}, seed {comparison.seed}, resampling "
            "seeds then validation images (the same resamples for every variant, so differences stay paired); "
            "p: paired permutation test swapping whole images between the two variants. A difference is "
            "significant when p < 0.05 and its interval excludes 0.")


def _statistics_markdown(comparison) -> list[str]:
    table, bold, per_class = statistics_tables(comparison)
    table = _md_frame(table.astype(str))
    bold.columns, bold.index = table.columns, table.index
    table = table.mask(bold, "**" + table + "**")
    parts = ["## Statistics over seeds", "", statistics_method(comparison), "", table.to_markdown(index=False), "",
             md_text(leader_line(comparison)), ""]
    parts += [f"- {md_text(d.sentence())}" for d in comparison.differences.values()] + [""]
    if per_class is not None and not per_class.empty:
        parts += [f"### Per-class IoU difference vs {md_text(comparison.baseline)} (95 % CI)", "",
                  _md_frame(per_class).to_markdown(), ""]
    return parts


def _statistics_html(comparison) -> list[str]:
    esc = html.escape
    table, bold, per_class = statistics_tables(comparison)
    body = ["<h2>Statistics over seeds</h2>", f"<p>{esc(statistics_method(comparison))}</p>",
            _html_table(table.astype(str), bold), f"<p>{esc(leader_line(comparison))}</p>",
            "<ul>" + "".join(f"<li>{esc(d.sentence())}</li>" for d in comparison.differences.values()) + "</ul>"]
    if per_class is not None and not per_class.empty:
        body += [f"<h3>Per-class IoU difference vs {esc(comparison.baseline)} (95 % CI)</h3>",
                 _html_table(per_class, index=True)]
    return body


def write_report(records: list[RunRecord], out_dir: Path, title: str = "fcngraph comparison",
                 comparison=None, seeds: dict[str, list[RunRecord]] | None = None) -> Report:
    """Write every table and figure of the comparison into `out_dir`; return the tables. `comparison`
    (a `stats.Comparison`, from runs over seeds) adds stats.json and the statistics section."""
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    records = distinct_names(records)
    splits = _splits(records)
    sizes = {key: eval_size(s) for key, s in splits.items()}
    report = build_report(records, sizes)
    atomic_write_text(out_dir / "results.csv", csv_text(report.results, index=False))
    atomic_write_text(out_dir / "per_class.csv", csv_text(report.per_class, index=True))

    figures: dict[str, bytes] = {}
    curves = curves_figure(records, seeds)
    for fmt in ("png", "svg"):
        figures[f"curves.{fmt}"] = _figure_bytes(curves, fmt)
    plt.close(curves)
    baseline = comparison.baseline if comparison is not None else (records[0].name if records else "")
    confusion = confusion_figure(records, baseline, seeds) if records else None
    if confusion is not None:
        figures["confusion.png"] = _figure_bytes(confusion, "png")
        plt.close(confusion)
    grid, left_out = qualitative_figure(records, splits, _picks(records, comparison))
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
    if comparison is not None:
        atomic_write_text(out_dir / "stats.csv", csv_text(statistics_csv(comparison), index=False))
        atomic_write_text(out_dir / "stats.json", json.dumps(comparison.to_json(), indent=2, allow_nan=False) + "\n")
    atomic_write_text(out_dir / "report.md", _markdown(report, title, figures, diagrams, comparison))
    atomic_write_text(out_dir / "report.html", _html(report, title, figures, diagrams, comparison))
    return report


def _markdown(report: Report, title: str, figures: dict[str, bytes], diagrams: dict[str, str | None],
              comparison=None) -> str:
    results, per_class = markdown_tables(report, comparison)
    parts = [f"# {md_text(title)}", "", table_caption(comparison), "", results, ""]
    parts += [f"- {md_text(note)}" for note in report.notes] + ([""] if report.notes else [])
    parts += _statistics_markdown(comparison) if comparison is not None else []
    parts += ["## Per-class IoU", "", per_class, "", "## Training curves", "", "![curves](curves.png)", ""]
    if "confusion.png" in figures:
        parts += ["## Confusion matrices", "", "Rows: ground truth, normalised; second row: difference from the "
                  "baseline.", "", "![confusion](confusion.png)", ""]
    if "qualitative.png" in figures:
        parts += ["## Predictions on validation images", "", "![qualitative](qualitative.png)", ""]
    parts += ["## Architectures", ""]
    for name, svg in diagrams.items():
        stem = safe_stem(name)
        parts += [f"![{md_text(name)}](diagram-{stem}.svg)" if svg else
                  f"`diagram-{stem}.dot` (install graphviz to draw)", ""]
    return "\n".join(parts)


HTML_STYLE = """body{font-family:Helvetica,Arial,sans-serif;margin:2em;color:#222}
table.table{border-collapse:collapse;margin:1em 0;font-size:13px}
table.table td,table.table th{border-bottom:1px solid #ddd;padding:4px 10px;text-align:right}
table.table td:first-child,table.table th:first-child{text-align:left}
.figure svg{max-width:100%;height:auto}.diagram{border:1px solid #eee;margin:1em 0}
.diagram svg{width:100%;height:auto}
img{max-width:100%}"""


def _html(report: Report, title: str, figures: dict[str, bytes], diagrams: dict[str, str | None],
          comparison=None) -> str:
    results = _html_table(*_display(report.results, comparison))
    per_class = _html_table(report.per_class.map(lambda v: "—" if pd.isna(v) else f"{v:.4f}"), index=True)
    esc = html.escape
    body = [f"<h1>{esc(title)}</h1>", f"<p>{esc(table_caption(comparison))}</p>", results]
    body += ["<ul>" + "".join(f"<li>{esc(n)}</li>" for n in report.notes) + "</ul>"] if report.notes else []
    body += _statistics_html(comparison) if comparison is not None else []
    body += ["<h2>Per-class IoU</h2>", per_class, "<h2>Training curves</h2>",
             f'<div class="figure">{_inline_svg(figures["curves.svg"])}</div>']
    if "confusion.png" in figures:
        encoded = base64.b64encode(figures["confusion.png"]).decode()
        body += ["<h2>Confusion matrices</h2>", "<p>Rows: ground truth, normalised; second row: difference "
                 "from the baseline.</p>", f'<img alt="confusion matrices" src="data:image/png;base64,{encoded}">']
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

