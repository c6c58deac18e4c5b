"""Comparison reports: compare reuses finished runs and rewrites identical tables; reports
mark incomplete, failed, missing and other-class runs instead of crashing; the HTML is one
self-contained, escaped file."""

import json
import shutil
from html.parser import HTMLParser

import pandas as pd
import pytest

from fcngraph.cli import main

from .conftest import SPECS, make_folder, tiny_spec

QUICK = ["--set", "data.size=32", "--set", "data.train_samples=24", "--set", "data.val_samples=8",
         "--set", "train.batch_size=8", "--epochs", "2", "--quiet"]
VARIANTS = [str(SPECS / "fcn32s-mini.json"), str(SPECS / "fcn8s-mini.json")]
TABLES = ("results.csv", "per_class.csv", "report.md", "report.html")


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """Two mini variants trained briefly, and the report of that comparison."""
    root = tmp_path_factory.mktemp("compare")
    assert main(["compare", *VARIANTS, *QUICK, "--runs", str(root / "runs"), "-o", str(root / "first")]) == 0
    return root


def test_compare_twice_trains_nothing_and_writes_identical_tables(compared, capsys):
    capsys.readouterr()
    assert main(["compare", *VARIANTS, *QUICK, "--runs", str(compared / "runs"), "-o", str(compared / "again")]) == 0
    out = capsys.readouterr().out
    assert out.count("already finished") == 2 and "epoch 1/" not in out
    for name in TABLES:
        assert (compared / "first" / name).read_bytes() == (compared / "again" / name).read_bytes(), name
    results = pd.read_csv(compared / "first" / "results.csv")
    assert set(results["variant"]) == {"fcn32s-mini", "fcn8s-mini"}
    assert list(results["mIoU"]) == sorted(results["mIoU"], reverse=True)
    assert (results["params (M)"] > 2).all() and (results["latency (ms)"] > 0).all()
    assert (results["epochs"] == 2).all() and (results["eval size"] == "32x32").all()
    for name in ("curves.png", "curves.svg", "qualitative.png", "diagram-fcn8s-mini.svg", "diagram-fcn8s-mini.dot"):
        assert (compared / "first" / name).stat().st_size > 0, name


def test_markdown_bolds_a_significant_leader_only_and_the_lowest_cost(compared):
    text = (compared / "first" / "report.md").read_text()
    results = pd.read_csv(compared / "first" / "results.csv")
    leaders = json.loads((compared / "first" / "stats.json").read_text())["leaders"]
    for variant, miou in zip(results["variant"], results["mIoU"]):
        assert (f"**{miou:.4f}**" in text) == (leaders == [variant])
    assert f"**{results['params (M)'].min():.2f}**" in text
    per_class = pd.read_csv(compared / "first" / "per_class.csv", index_col=0)
    assert list(per_class.index) == ["background", "box", "disc", "triangle", "line", "ring"]


def _broken_runs(compared, tmp_path):
    """Beside one complete run: an unfinished copy, a NaN-failed run, a run on a 3-class
    folder whose class names need escaping, and a directory that does not exist."""
    complete = next((compared / "runs").glob("fcn8s-mini-*"))
    unfinished = tmp_path / "unfinished"
    shutil.copytree(complete, unfinished)
    (unfinished / "summary.json").unlink()
    rows = (unfinished / "metrics.jsonl").read_text().splitlines()
    (unfinished / "metrics.jsonl").write_text(rows[0] + "\n" + rows[1][:20])  # torn last line
    assert main(["run", str(SPECS / "fcn32s-mini.json"), *QUICK, "--runs", str(tmp_path / "nan"),
                 "--set", "train.lr=1e30", "--set", "train.optimizer=sgd", "--set", "train.warmup_iters=0"]) == 2
    folder = make_folder(tmp_path / "data", n=6, size=(16, 16), names=["road", "<script>alert(1)</script>", "a&b"])
    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps({**tiny_spec(), "name": "tiny <i>3</i>", "train": {"epochs": 1, "batch_size": 2}}))
    assert main(["run", str(spec), "--data", str(folder), "--runs", str(tmp_path / "other"), "--quiet"]) == 0
    return [complete, unfinished, next((tmp_path / "nan").iterdir()), next((tmp_path / "other").iterdir()),
            tmp_path / "missing"]


def test_report_marks_unfinished_failed_missing_and_other_class_runs(compared, tmp_path, capsys):
    runs = _broken_runs(compared, tmp_path)
    assert main(["report", *map(str, runs), "-o", str(tmp_path / "report")]) == 1  # a failed run is there
    results = pd.read_csv(tmp_path / "report" / "results.csv").set_index("variant")
    assert results.loc["fcn8s-mini (unfinished)", "status"] == "incomplete"
    statuses = sorted(results["status"])
    assert statuses == ["complete", "complete", "failed", "incomplete", "missing"]
    failed = results[results["status"] == "failed"].iloc[0]
    assert "loss became nan" in failed["note"].lower()
    assert "3 classes, unlike the first variant's 6" in results.loc["tiny <i>3</i>", "note"]
    assert results[results["status"] == "incomplete"].iloc[0]["note"] == "stopped after epoch 1"
    per_class = pd.read_csv(tmp_path / "report" / "per_class.csv", index_col=0)
    assert per_class.loc["a&b", "tiny <i>3</i>"] >= 0 and pd.isna(per_class.loc["a&b", "fcn8s-mini"])
    page = (tmp_path / "report" / "report.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page
    assert "tiny &lt;i&gt;3&lt;/i&gt;" in page and "<i>3</i>" not in page
    assert "qualitative grid leaves out" in capsys.readouterr().out


class Resources(HTMLParser):
    """Collects every URL an HTML page would fetch or link to."""

    def __init__(self):
        super().__init__()
        self.urls, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.urls += [value for name, value in attrs if name in ("src", "href", "xlink:href") and value]


def test_html_report_is_self_contained(compared):
    parser = Resources()
    parser.feed((compared / "first" / "report.html").read_text())
    assert parser.urls and all(url.startswith(("data:", "#")) for url in parser.urls), parser.urls
    assert "script" not in parser.tags and "link" not in parser.tags
    assert parser.tags.count("svg") == 3  # training curves + two diagrams
