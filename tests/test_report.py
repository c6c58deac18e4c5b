"""Comparison reports: compare reuses finished runs and rewrites identical tables; reports
mark incomplete, failed, missing and other-class runs instead of crashing; the HTML is one
self-contained, well-formed, escaped file that headless chromium renders offline, every image
decoded."""

import html
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser

import pandas as pd
import pytest
from PIL import Image

from fcngraph.cli import main
from fcngraph.errors import EXIT_INPUT

from .conftest import ROOT, SPECS, make_folder, tiny_spec

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
    capsys.readouterr()
    assert main(["report", *map(str, runs), "-o", str(tmp_path / "report")]) == EXIT_INPUT  # a failed run is there
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("fcngraph: error: 1 of 5 run(s) failed (") and "marks it" in err
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
    assert "qualitative grid leaves out" in out


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
FETCHING = {"src", "href", "xlink:href", "srcset", "poster", "data", "action", "background", "formaction"}


class Resources(HTMLParser):
    """Every URL an HTML page would fetch or link to (attributes and CSS url()), its tags, and
    where its start and end tags do not pair up."""

    def __init__(self):
        super().__init__()
        self.urls, self.tags, self.open, self.unpaired = [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.urls += [value for name, value in attrs if name in FETCHING and value]
        self.urls += [u for name, value in attrs if name == "style" and value for u in css_urls(value)]
        if tag not in VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag, attrs):  # <path .../> in inline SVG: opens and closes
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.open.pop()

    def handle_endtag(self, tag):
        if self.open and self.open[-1] == tag:
            self.open.pop()
        else:
            self.unpaired.append((tag, list(self.open[-3:])))

    def handle_data(self, data):
        if self.open and self.open[-1] == "style":
            self.urls += css_urls(data)


def css_urls(css: str) -> list[str]:
    urls = [u.strip("'\"") for u in re.findall(r"url\(\s*([^)]*?)\s*\)", css)]
    return urls + re.findall(r"@import\s+['\"]([^'\"]+)", css)


def test_html_report_is_self_contained(compared):
    parser = Resources()
    parser.feed((compared / "first" / "report.html").read_text())
    parser.close()
    assert parser.urls and all(url.startswith(("data:", "#")) for url in parser.urls), parser.urls
    assert not {"script", "link", "iframe", "object", "embed", "base"} & set(parser.tags)
    assert parser.tags.count("svg") == 3  # training curves + two diagrams
    assert parser.unpaired == [] and parser.open == [], (parser.unpaired[:5], parser.open)


def test_resource_check_sees_what_a_page_would_fetch():
    page = ('<html><head><style>body{background:url("bg.png")}</style></head><body><svg><path d="M0"/>'
            '<image xlink:href="http://x.invalid/a.png"/></svg><img src="data:image/png;base64,AA">'
            '<div style="background: url(x.png)"></div><p><b>unclosed</p></body></html>')
    parser = Resources()
    parser.feed(page)
    assert sorted(parser.urls) == ["bg.png", "data:image/png;base64,AA", "http://x.invalid/a.png", "x.png"]
    assert parser.unpaired[0] == ("p", ["body", "p", "b"])


BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
# run inside the page once everything has loaded; what it finds goes into the DOM that --dump-dom prints
PROBE = """<script>
addEventListener("load", () => {
  const size = e => { const r = e.getBoundingClientRect(); return [Math.round(r.width), Math.round(r.height)]; };
  const found = {
    images: [...document.images].map(i => ({alt: i.alt, decoded: i.complete && i.naturalWidth > 0, size: size(i)})),
    svgs: [...document.querySelectorAll("svg")].filter(s => !s.parentElement.closest("svg")).map(size),
    tables: [...document.querySelectorAll("table")].map(
      t => [...t.rows].map(r => [...r.cells].map(c => c.textContent))),
    headings: [...document.querySelectorAll("h2")].map(h => h.textContent),
    fetched: performance.getEntriesByType("resource").map(e => e.name)};
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify(found);
  document.body.append(out);
});
</script>"""


def chromium() -> str:
    found = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    if found is None:
        pytest.fail("no chromium: the HTML report is checked in a headless browser; scripts/setup.sh installs it "
                    "(apt-get install chromium)")
    return found


def test_html_report_renders_offline_in_headless_chromium(compared, tmp_path):
    """The page alone in an empty folder, host names unresolvable: every image decodes, every SVG
    and table is laid out, nothing is fetched."""
    page = (compared / "first" / "report.html").read_text()
    alone = tmp_path / "alone" / "report.html"
    alone.parent.mkdir()
    assert page.count("</body>") == 1
    alone.write_text(page.replace("</body>", PROBE + "</body>"))
    done = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           f"--user-data-dir={tmp_path / 'profile'}", "--host-resolver-rules=MAP * ~NOTFOUND",
                           "--window-size=1400,3000", "--virtual-time-budget=10000", "--dump-dom", alone.as_uri()],
                          capture_output=True, text=True, timeout=120)
    probe = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert probe, (done.returncode, done.stderr[-2000:])
    found = json.loads(html.unescape(probe.group(1)))
    assert found["fetched"] == []
    assert [i["alt"] for i in found["images"]] == ["confusion matrices", "input, ground truth and predictions"]
    for image in found["images"]:
        assert image["decoded"] and min(image["size"]) > 100, image
    assert len(found["svgs"]) == 3 and all(min(size) > 100 for size in found["svgs"]), found["svgs"]
    assert found["headings"][:2] == ["Statistics over seeds", "Per-class IoU"]
    assert {"Training curves", "Confusion matrices", "Architectures"} <= set(found["headings"])
    results = pd.read_csv(compared / "first" / "results.csv")
    shown = found["tables"][0]
    assert shown[0][:4] == ["variant", "status", "note", "mIoU"]
    assert [row[0] for row in shown[1:]] == list(results["variant"])
    assert [row[3] for row in shown[1:]] == [f"{v:.4f}" for v in results["mIoU"]]
    assert len(found["tables"]) == 4  # results, statistics, per-class difference, per-class IoU


def test_screenshot_script_renders_a_report(compared, tmp_path):
    chromium()
    shot = tmp_path / "report.png"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "screenshot_report.py"),
                           str(compared / "first" / "report.html"), "-o", str(shot), "--size", "1400,2400"],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    image = Image.open(shot).convert("RGB")
    assert image.size == (1400, 2400)
    assert len(image.getcolors(1 << 20)) > 200  # text, tables, plots and predictions, not a blank or error page
