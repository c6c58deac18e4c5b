"""compare over seeds, end to end on tiny budgets: a variant against itself is tied, a variant that
must differ is significant, and --jobs 2 gives the numbers --jobs 1 gives."""

import json

import numpy as np
import pytest

from fcngraph.compare import run_all, statistics
from fcngraph.experiment import expand, load_experiment

TINY = ["data.train_samples=16", "data.val_samples=24", "data.size=32", "train.batch_size=8",
        "train.epochs=100", "train.iterations=12", "train.warmup_iters=0", "train.eval_every=100"]


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


def test_same_spec_twice_is_tied_and_a_real_change_is_significant(sequential):
    _, comparison = sequential
    same, weighted = comparison.differences["same"], comparison.differences["weighted"]
    assert same.low <= 0 <= same.high and not same.significant
    assert weighted.significant and weighted.p < 0.01
    assert "weighted" in comparison.leaders or weighted.diff < 0
    assert weighted.sentence().startswith("weighted vs plain: ") and "2 seeds × 24 images" in weighted.sentence()
    json.dumps(comparison.to_json(), allow_nan=False)


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
