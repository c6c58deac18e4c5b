"""compare over seeds, end to end on tiny budgets: a variant against itself is tied, a variant that
must differ is significant (fcn8s-mini beats fcn32s-mini), the reports bold a significant leader
only, a second report from the same runs is byte-identical, and --jobs 2 gives the numbers --jobs 1
gives."""

import json
from html.parser import HTMLParser

import numpy as np
import pytest

from fcngraph.cli import main
from fcngraph.compare import run_all, statistics
from fcngraph.experiment import expand, load_experiment

TINY = ["data.train_samples=16", "data.val_samples=24", "data.size=32", "train.batch_size=8",
        "train.epochs=100", "train.iterations=12", "train.warmup_iters=0", "train.eval_every=100"]


# fcn32s-mini vs fcn8s-mini as shipped, 40 steps on 32-px images. Background weighted down to 0.02
# so that neither net settles on "all background" (0.142 mIoU for both: tied); then fcn32s-mini, whose
# 1x1 score map at 32 px is one class per image, paints the whole image one shape class, and only
# fcn8s-mini's stride-8 skip can put the background back around the shapes. Offline, seed pairs
# (0,1) (2,3) (4,5) (6,7) gave diff +0.023 +0.018 +0.011 +0.016, p 0.0005-0.007, every CI above 0;
# 4 runs ≈ 35 s of one thread.
ARCHITECTURES = ["data.train_samples=64", "data.val_samples=24", "data.size=32", "train.batch_size=8",
                 "train.epochs=100", "train.iterations=40", "train.warmup_iters=0", "train.eval_every=100",
                 "train.lr=0.01", "train.class_weights=[0.02,1,1,1,1,1]"]
REPORT_FILES = ("report.html", "report.md", "results.csv", "per_class.csv", "stats.csv", "stats.json")


def experiment(tmp_path):
    path = tmp_path / "exp.json"
    path.write_text(json.dumps({
        "name": "tiny", "seeds": [0, 1], "set": TINY, "baseline": "plain",
        "variants": [{"spec": "fcn8s-mini", "name": "plain"}, {"spec": "fcn8s-mini", "name": "same"},
                     # background weighted down: the net stops predicting only background, which must show
                     {"spec": "fcn8s-mini", "name": "weighted", "set": ["train.class_weights=[0.02,1,1,1,1,1]",
                                                                        "train.lr=0.02"]}]}))
    return expand(load_experiment(path))


def run(grid_specs, runs_root, jobs):
    cells = [(name, seed, spec) for name, by_seed in grid_specs.items() for seed, spec in by_seed.items()]
    records = run_all([spec for *_, spec in cells], runs_root, jobs=jobs, threads=1, log=lambda _: None)
    grid = {}
    for (name, seed, _), record in zip(cells, records):
        assert record.status == "complete", record.note
        record.name = name
        grid.setdefault(name, {})[seed] = record
    comparison = statistics(grid, "plain", log=lambda _: None)
    for name, by_seed in grid.items():  # pooled per-image counts reproduce each run's own val mIoU
        expected = [by_seed[seed].scores["miou"] for seed in sorted(by_seed)]
        np.testing.assert_allclose(comparison.summaries[name].per_seed, expected, rtol=1e-9)
    return comparison


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("seq")
    return tmp, run(experiment(tmp), tmp / "runs", jobs=1)


@pytest.fixture(scope="module")
def architectures(tmp_path_factory):
    """`fcngraph compare` of the shipped fcn32s-mini and fcn8s-mini over seeds 0 and 1."""
    tmp = tmp_path_factory.mktemp("architectures")
    (tmp / "exp.json").write_text(json.dumps({
        "name": "fcn32s vs fcn8s", "seeds": [0, 1], "set": ARCHITECTURES, "baseline": "fcn32s-mini",
        "variants": [{"spec": "fcn32s-mini"}, {"spec": "fcn8s-mini"}]}))
    assert main(["compare", str(tmp / "exp.json"), "--runs", str(tmp / "runs"), "-o", str(tmp / "report"),
                 "--threads", "1", "--quiet"]) == 0
    return tmp


class Tables(HTMLParser):
    """Every <table> of a page: rows of (text, bold) cells."""

    def __init__(self, page: str):
        super().__init__()
        self.tables, self.cell = [], None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.cell = ["", False]
        elif tag == "b" and self.cell is not None:
            self.cell[1] = True

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append((self.cell[0].strip(), self.cell[1]))
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell[0] += data


def markdown_tables(text: str) -> list[list[list[tuple[str, bool]]]]:
    """Every pipe table of a Markdown page, the separator row left out: rows of (text, bold) cells."""
    tables, previous = [], ""
    for line in text.splitlines():
        if line.startswith("|"):
            if not previous.startswith("|"):
                tables.append([])
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set(":-") for c in cells):
                tables[-1].append([(c.strip("*"), c.startswith("**") and c.endswith("**")) for c in cells])
        previous = line
    return tables


def bold_by_variant(tables, column: str) -> dict[str, bool]:
    """variant → whether its `column` cell is bold, in the one table with both headers."""
    [table] = [t for t in tables if {"variant", column} <= {text for text, _ in t[0]}]
    header = [text for text, _ in table[0]]
    return {row[header.index("variant")][0]: row[header.index(column)][1] for row in table[1:]}


def report_bold(folder) -> dict[str, dict[str, bool]]:
    """For the mIoU of the results table and the mean of the statistics table, in report.md and
    report.html: variant → bold."""
    md, page = markdown_tables((folder / "report.md").read_text()), Tables((folder / "report.html").read_text())
    return {f"{kind} {column}": bold_by_variant(tables, column) for kind, tables in (("md", md), ("html", page.tables))
            for column in ("mIoU", "mIoU mean ± std")}


def test_same_spec_twice_is_tied_and_a_real_change_is_significant(sequential):
    _, comparison = sequential
    same, weighted = comparison.differences["same"], comparison.differences["weighted"]
    assert same.low <= 0 <= same.high and not same.significant
    assert weighted.significant and weighted.p < 0.01
    assert "weighted" in comparison.leaders or weighted.diff < 0
    assert weighted.sentence().startswith("weighted vs plain: ") and "2 seeds × 24 images" in weighted.sentence()
    json.dumps(comparison.to_json(), allow_nan=False)


def test_fcn8s_mini_is_significantly_better_than_fcn32s_mini_in_a_few_steps(architectures):
    stats = json.loads((architectures / "report" / "stats.json").read_text())
    better = stats["differences"]["fcn8s-mini"]
    assert stats["baseline"] == "fcn32s-mini" and better["vs"] == "fcn32s-mini"
    assert better["significant"] and better["p"] < 0.01 and better["diff"] > 0 and better["ci"][0] > 0, better
    assert stats["leaders"] == ["fcn8s-mini"]
    assert "fcn8s-mini vs fcn32s-mini: +" in better["sentence"] and "not significant" not in better["sentence"]
    means = {name: v["mean"] for name, v in stats["variants"].items()}
    assert means["fcn8s-mini"] > means["fcn32s-mini"]


def test_report_bolds_the_significant_leader(architectures):
    for where, bold in report_bold(architectures / "report").items():
        assert bold == {"fcn8s-mini": True, "fcn32s-mini": False}, where
    assert "Best: fcn8s-mini (significantly ahead" in (architectures / "report" / "report.md").read_text()


def test_report_of_the_same_run_folders_is_byte_identical(architectures, tmp_path):
    run_dirs = sorted(str(p) for p in (architectures / "runs").iterdir() if p.is_dir())
    assert len(run_dirs) == 4
    for out in ("first", "second"):
        assert main(["report", *run_dirs, "-o", str(tmp_path / out)]) == 0
    first = sorted(p.name for p in (tmp_path / "first").iterdir())
    assert set(REPORT_FILES) | {"curves.png", "curves.svg", "confusion.png", "qualitative.png"} <= set(first)
    assert first == sorted(p.name for p in (tmp_path / "second").iterdir())
    for name in first:
        assert (tmp_path / "first" / name).read_bytes() == (tmp_path / "second" / name).read_bytes(), name
    for name in ("results.csv", "per_class.csv", "stats.csv", "stats.json", "qualitative.png"):  # as compare wrote
        assert (tmp_path / "first" / name).read_bytes() == (architectures / "report" / name).read_bytes(), name


def test_two_jobs_give_the_numbers_of_one(sequential, tmp_path):
    _, one = sequential
    two = run(experiment(tmp_path), tmp_path / "runs", jobs=2)
    for name, summary in one.summaries.items():
        np.testing.assert_array_equal(summary.per_seed, two.summaries[name].per_seed)
    assert one.to_json() == two.to_json()


def test_ray_tasks_give_the_local_numbers(sequential, tmp_path):
    ray = pytest.importorskip("ray", reason="the Ray path needs the [ray] extra")
    grid_specs = {name: by_seed for name, by_seed in experiment(tmp_path).items() if name in ("plain", "weighted")}
    cells = [(name, seed, spec) for name, by_seed in grid_specs.items() for seed, spec in by_seed.items()]
    try:
        records = run_all([spec for *_, spec in cells], tmp_path / "runs", threads=1, log=lambda _: None,
                          ray="local")
    finally:
        ray.shutdown()
    _, local = sequential
    grid = {}
    for (name, seed, _), record in zip(cells, records):
        assert record.status == "complete", record.note
        record.name = name
        grid.setdefault(name, {})[seed] = record
    on_ray = statistics(grid, "plain", log=lambda _: None)
    for name in ("plain", "weighted"):
        assert on_ray.summaries[name].per_seed == local.summaries[name].per_seed


def test_report_of_run_directories_groups_seeds(sequential, tmp_path, capsys):
    from fcngraph.cli import main

    tmp, comparison = sequential
    run_dirs = sorted(str(p) for p in (tmp / "runs").iterdir() if p.is_dir())
    assert main(["report", *run_dirs, "-o", str(tmp_path / "r"), "--baseline", "plain"]) == 0
    written = json.loads((tmp_path / "r" / "stats.json").read_text())
    assert written == json.loads(json.dumps(comparison.to_json()))
    assert "weighted vs plain" in capsys.readouterr().out
    assert "Statistics over seeds" in (tmp_path / "r" / "report.html").read_text()
    # plain and same tie at the top (weighted is significantly behind): no mIoU is bold anywhere
    assert sorted(written["leaders"]) == ["plain", "same"]
    for where, bold in report_bold(tmp_path / "r").items():
        assert bold == {"plain": False, "same": False, "weighted": False}, where
    assert "Tied for best: " in (tmp_path / "r" / "report.md").read_text()
