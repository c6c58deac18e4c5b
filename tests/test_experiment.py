"""Experiment files: loading, expansion into runs, one-line errors naming the JSON path, the shipped schema."""

import csv
import json

import pytest

from fcngraph.errors import SpecError
from fcngraph.experiment import expand, experiment_schema, from_specs, load_experiment
from fcngraph.spec import load_spec

from .conftest import ROOT, SPECS


def write(tmp_path, data):
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(data))
    return path


def test_shipped_example_expands_to_variants_times_seeds():
    experiment = load_experiment(ROOT / "experiments" / "fcn-variants.json")
    runs = expand(experiment)
    assert list(runs) == ["fcn32s-mini", "fcn16s-mini", "fcn8s-mini", "unet-mini"]
    assert all(sorted(seeds) == [0, 1, 2] for seeds in runs.values())
    assert runs["fcn8s-mini"][2].train.seed == 2 and experiment.baseline_name == "fcn32s-mini"


def test_overrides_apply_in_order_and_names_split_run_directories(tmp_path):
    (tmp_path / "data").mkdir()
    path = write(tmp_path, {
        "variants": [{"spec": "fcn8s-mini", "name": "a", "set": ["train.lr=0.01"]},
                     {"spec": str(SPECS / "fcn8s-mini.json"), "name": "b"}],
        "seeds": [3], "data": "data", "budget": {"iterations": 4}, "set": ["train.lr=0.5", "train.batch_size=2"]})
    runs = expand(load_experiment(path))
    a, b = runs["a"][3], runs["b"][3]
    assert (a.train.lr, b.train.lr) == (0.01, 0.5)
    assert a.train.iterations == 4 and a.train.batch_size == 2 and a.train.seed == 3
    assert a.data.path == str((tmp_path / "data").resolve())
    assert (a.name, b.name) == ("a", "b") and a.digest() != b.digest()


@pytest.mark.parametrize("data, path, message", [
    ({"variants": []}, "$.variants", "at least 1"),
    ({"variants": [{"spec": "fcn8s-mini", "lr": 1}]}, "$.variants[0].lr", "unknown field 'lr'"),
    ({"variants": [{"spec": "fcn8s-mini"}], "seeds": ["0"]}, "$.seeds[0]", "integer"),
    ({"variants": [{"spec": "fcn8s-mini"}], "budget": {"epochs": 0}}, "$.budget.epochs", "greater than"),
    ({"variants": [{"spec": "fcn8s-mini"}], "baseline": "x"}, "$", "baseline 'x' is not a variant"),
    ({"variants": [{"spec": "fcn8s-mini"}, {"spec": "fcn8s-mini"}]}, "$", "used twice"),
])
def test_bad_experiments_name_the_json_path(tmp_path, data, path, message):
    with pytest.raises(SpecError) as info:
        load_experiment(write(tmp_path, data))
    text = str(info.value)
    assert f"exp.json: {path}:" in text and message in text and "\n" not in text


@pytest.mark.parametrize("variant, path, message", [
    ({"spec": "no-such-spec"}, "$.variants[0].spec", "no-such-spec"),
    ({"spec": "fcn8s-mini", "set": ["train.lr=-1"]}, "$.variants[0].set", "train.lr"),
])
def test_bad_variants_name_the_json_path(tmp_path, variant, path, message):
    with pytest.raises(SpecError) as info:
        expand(load_experiment(write(tmp_path, {"variants": [variant]})))
    assert f"exp.json: {path}:" in str(info.value) and message in str(info.value)


def test_a_bad_set_is_named_where_it_was_written(tmp_path):
    """The experiment's own `set`, a variant's, or the command line's --set: each error says which."""
    variants = [{"spec": "fcn8s-mini"}]
    with pytest.raises(SpecError, match=r"exp.json: \$\.set: --set train.bogus: "):
        expand(load_experiment(write(tmp_path, {"variants": variants, "set": ["train.bogus=1"]})))
    with pytest.raises(SpecError) as info:
        expand(load_experiment(write(tmp_path, {"variants": variants})), extra=["train.bogus=1"])
    assert str(info.value).startswith("--set train.bogus: ") and info.value.path is None


def test_cli_error_is_one_line(tmp_path, capsys):
    from fcngraph.cli import main
    assert main(["compare", str(write(tmp_path, {"variants": [{"spek": "x"}]})), "-o", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "$.variants[0]" in err


def test_plain_form_and_shipped_schema():
    specs = [load_spec(SPECS / "fcn32s-mini.json"), load_spec(SPECS / "fcn8s-mini.json")]
    experiment, runs = from_specs(specs, 2, "fcn8s-mini")
    assert experiment.baseline_name == "fcn8s-mini" and sorted(runs["fcn32s-mini"]) == [0, 1]
    with pytest.raises(SpecError, match="--baseline 'x'"):
        from_specs(specs, 1, "x")
    shipped = json.loads((SPECS / "experiment.schema.json").read_text())
    assert shipped == experiment_schema(), "regenerate specs/experiment.schema.json"


def staged(tmp_path, **extra):
    return write(tmp_path, {"variants": [
        {"spec": "fcn16s-mini", "name": "16s-staged", "init": "32s"},
        {"spec": "fcn32s-mini", "name": "32s"},
        {"spec": "fcn8s-mini", "name": "8s-staged", "init": "16s-staged"}], "seeds": [0, 1], **extra})


def test_staged_variants_start_from_their_parents_run_of_the_same_seed(tmp_path):
    from fcngraph.train import run_dir_for

    experiment = load_experiment(staged(tmp_path))
    assert experiment.stages() == {"16s-staged": 1, "32s": 0, "8s-staged": 2}
    runs = expand(experiment, runs_root=tmp_path / "runs")
    assert list(runs) == ["16s-staged", "32s", "8s-staged"]  # the file's order, whatever the stages
    for seed in (0, 1):
        assert runs["32s"][seed].train.init is None
        assert runs["16s-staged"][seed].train.init == str(run_dir_for(runs["32s"][seed], tmp_path / "runs").resolve())
        assert runs["8s-staged"][seed].train.init == str(
            run_dir_for(runs["16s-staged"][seed], tmp_path / "runs").resolve())
    # the initial weights count by identity, not location: another runs folder, the same run names
    elsewhere = expand(experiment, runs_root=tmp_path / "elsewhere" / "runs")
    assert run_dir_for(elsewhere["8s-staged"][1], tmp_path).name == run_dir_for(runs["8s-staged"][1], tmp_path).name


@pytest.mark.parametrize("variants, message", [
    ([{"spec": "fcn8s-mini", "init": "nobody"}], "variants[0].init: 'nobody' is not a variant name"),
    ([{"spec": "fcn8s-mini", "name": "a", "init": "b"}, {"spec": "fcn8s-mini", "name": "b", "init": "a"}],
     "init form a loop: a → b → a"),
    ([{"spec": "fcn8s-mini", "init": "fcn8s-mini"}], "loop: fcn8s-mini → fcn8s-mini"),
])
def test_bad_inits_are_one_line_errors(tmp_path, variants, message):
    with pytest.raises(SpecError) as info:
        load_experiment(write(tmp_path, {"variants": variants}))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_staged_compare_trains_parents_first_and_initialises_from_them(tmp_path, capsys):
    from fcngraph.cli import main

    path = write(tmp_path, {"variants": [{"spec": "fcn16s-mini", "name": "16s-staged", "init": "32s"},
                                         {"spec": "fcn32s-mini", "name": "32s"}],
                            "budget": {"iterations": 2}, "set": ["train.batch_size=2", "train.threads=1"]})
    runs = ["--runs", str(tmp_path / "runs")]
    assert main(["compare", str(path), *runs, "-o", str(tmp_path / "report"), "--quiet"]) == 0
    parent = next((tmp_path / "runs").glob("32s-*"))
    child = next((tmp_path / "runs").glob("16s-staged-*"))
    log = (child / "log.txt").read_text()
    assert f"initialised from {parent.resolve()}" in log
    assert json.loads((child / "spec.json").read_text())["train"]["init"] == str(parent.resolve())
    rows = csv.DictReader((tmp_path / "report" / "results.csv").read_text().splitlines())
    notes = {row["variant"]: row["note"] for row in rows}
    assert notes == {"16s-staged": f"from {parent.name}", "32s": ""}  # the report says where a stage starts


def test_a_specs_relative_data_path_is_relative_to_the_spec_file(tmp_path):
    (tmp_path / "specs").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "specs" / "mine.json").write_text(json.dumps(
        {"extends": str(SPECS / "fcn8s-mini.json"), "name": "mine", "data": {"path": "../data"}}))
    runs = expand(load_experiment(write(tmp_path, {"variants": [{"spec": "specs/mine.json"}]})))
    assert runs["mine"][0].data.path == str((tmp_path / "data").resolve())
