"""Hardening: settings checked statically by `validate`, an unavailable device refused at run time
(exit 3), flags refused by argument parsing (exit 2), and the vectorised valid-size scan equal to
the exhaustive per-side scan."""

from __future__ import annotations

import json

import pytest

from fcngraph import cli
from fcngraph.errors import EXIT_ENVIRONMENT, EXIT_INPUT, EnvironmentProblem, SpecError
from fcngraph.settings import MEMORY_BUDGET, check_device, memory_warning
from fcngraph.shapes import SizeRule, analyze, output_length, valid_sizes
from fcngraph.spec import load_spec

from .conftest import ROOT, SPECS, tiny_spec


def _write(tmp_path, data, name="s.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _validate(capsys, path) -> tuple[int, str, str]:
    status = cli.main(["validate", str(path)])
    out, err = capsys.readouterr()
    return status, out, err


# -- 1. settings checked statically ---------------------------------------------------------------
@pytest.mark.parametrize("settings, message", [
    ({"train": {"class_weights": [1.0, 2.0]}}, "train.class_weights has 2 values, num_classes is 3"),
    ({"train": {"class_weights": [1.0, -1.0, 1.0]}}, "$.train.class_weights: weights must not be negative"),
    ({"train": {"device": "tpu:7"}}, "$.train.device"),
    ({"train": {"device": "cuda:x"}}, "$.train.device"),
    ({"train": {"seed": 2**64}}, "$.train.seed"),
    ({"train": {"seed": -1}}, "$.train.seed"),
    ({"train": {"crop_size": 1}}, "$.train.crop_size: the model does not run on 1x1 inputs (the smallest"),
])
def test_validate_refuses_settings_that_would_fail_at_run_time(tmp_path, capsys, settings, message):
    status, out, err = _validate(capsys, _write(tmp_path, {**tiny_spec(), **settings}))
    assert status == EXIT_INPUT and out == ""
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_crop_size_checked_against_the_spec_size_rule(tmp_path, capsys):
    # tiny_spec pools by 2 then crops a x2 upsampling to the input: it runs on sides ≥ 2 only
    assert _validate(capsys, _write(tmp_path, {**tiny_spec(), "train": {"crop_size": 2}}))[0] == 0
    rule = valid_sizes(analyze(load_spec(tiny_spec())), 64)
    assert min(rule.outputs) == 2


def test_synthetic_image_size_checked_against_the_size_rule(tmp_path, capsys):
    data = {**json.loads((SPECS / "unet-original.json").read_text()), "data": {"size": 64}}
    status, _, err = _validate(capsys, _write(tmp_path, data))
    assert status == EXIT_INPUT and err.count("\n") == 1
    assert "$.data.size: the model does not run on 64x64 inputs (the smallest it runs on is 188" in err


def test_output_channels_must_equal_num_classes(tmp_path, capsys):
    data = tiny_spec()
    data["nodes"]["s"] = {"op": "conv", "in": "c2", "out": 5, "kernel": 1, "act": "none"}
    status, _, err = _validate(capsys, _write(tmp_path, data))
    assert status == EXIT_INPUT
    assert "output node 'out' has 5 channels, not num_classes = 3" in err and err.count("\n") == 1


def test_memory_budget_is_a_warning_with_the_estimate(tmp_path, capsys):
    data = {**tiny_spec(), "train": {"batch_size": 4096, "crop_size": 512}}
    status, out, err = _validate(capsys, _write(tmp_path, data))
    assert status == 0 and ": ok — tiny" in out
    assert "warning: a training step needs about" in err and "GiB budget" in err and "4096 images of 512x512" in err
    assert memory_warning(10, 0, 1, 8) is None
    assert "GiB" in memory_warning(MEMORY_BUDGET // 16 + 1, 0, 1, 8)


def test_every_shipped_spec_validates_without_warnings(capsys):
    shipped = sorted(p for p in SPECS.glob("*.json") if "schema" not in p.name)
    assert cli.main(["validate", *map(str, shipped)]) == 0
    out, err = capsys.readouterr()
    assert out.count(": ok — ") == len(shipped) and err == ""


@pytest.mark.parametrize("device", ["cuda:99", "mps"])
def test_an_unavailable_device_is_an_environment_error(device):
    try:
        check_device(device)
    except EnvironmentProblem as exc:
        assert exc.exit_status == EXIT_ENVIRONMENT and f"device '{device}' asked for" in str(exc)


def test_run_on_an_unavailable_device_exits_3_before_a_run_folder(tmp_path, capsys):
    runs = tmp_path / "runs"
    status = cli.main(["run", str(_write(tmp_path, tiny_spec())), "--device", "cuda:99", "--runs", str(runs)])
    err = capsys.readouterr().err
    assert status == EXIT_ENVIRONMENT and err.count("\n") == 1 and "cuda:99" in err
    assert not runs.exists()


# -- 3. valid sizes: the vectorised scan equals the exhaustive one -------------------------------------
def _exhaustive(analysis, limit: int) -> SizeRule:
    outputs, exact = {}, []
    for n in range(1, limit + 1):
        result = output_length(analysis, n)
        if result is not None:
            outputs[n] = result[0]
            exact += [n] if result[1] else []
    return SizeRule(outputs, exact, limit)


SIZE_SPECS = sorted(p for p in [*SPECS.glob("*.json"), *(ROOT / "tests" / "specs").glob("*.json")]
                    if "schema" not in p.name)


@pytest.mark.parametrize("path", SIZE_SPECS, ids=lambda p: p.stem)
def test_valid_sizes_match_the_exhaustive_scan(path):
    analysis = analyze(load_spec(path))
    fast, slow = valid_sizes(analysis, 400), _exhaustive(analysis, 400)
    assert fast == slow and fast.describe() == slow.describe()


def test_sizes_that_would_pass_int32_do_not_run_and_nothing_overflows(tmp_path, capsys):
    """Three ×1000 upsamples then three /1000 pools: sides 1 and 2 stay ≤ 2^31 - 1 in between, larger
    ones would not (and a fourth ×1000 would wrap int64 in the vectorised scan): the scan, the
    exhaustive one and the analysis at a size agree; a pad of 2^63 is refused by the schema."""
    nodes = {"c": {"op": "conv", "in": "input", "out": 2, "kernel": 1}}
    for name in ["u1", "u2", "u3"]:
        nodes[name] = {"op": "upsample", "in": list(nodes)[-1], "factor": 1000}
    for name in ["p1", "p2", "p3"]:
        nodes[name] = {"op": "pool", "in": list(nodes)[-1], "kernel": 1000, "stride": 1000}
    spec = load_spec({"name": "grow", "num_classes": 2, "nodes": nodes, "output": "p3"})
    analysis = analyze(spec)
    fast, slow = valid_sizes(analysis, 100), _exhaustive(analysis, 100)
    assert fast == slow and sorted(fast.outputs) == [1, 2]
    assert fast.describe() == "valid input sizes: any size ≥ 1, ≤ 2; output = input; runs on any size ≥ 1, ≤ 2"
    with pytest.raises(SpecError, match="no side can exceed 2,147,483,647") as info:
        analyze(spec, (64, 64))
    assert info.value.node == "u3"  # 64 → 64,000 → 64 million → 64 billion
    path = _write(tmp_path, tiny_spec(c1={"op": "conv", "in": "input", "out": [4, 4], "pad": 2**63}))
    status, _, err = _validate(capsys, path)
    assert status == 2 and "$.nodes.c1.pad: Input should be less than or equal to 2147483647" in err


@pytest.mark.parametrize("nodes", [
    {"c": {"op": "conv", "in": "input", "out": 2, "kernel": 1, "norm": "instance"}},
    {"c": {"op": "conv", "in": "input", "out": 2, "kernel": 1}, "n": {"op": "norm", "in": "c", "norm": "instance"}},
    {"c": {"op": "conv", "in": "input", "out": 2, "kernel": 1},
     "u": {"op": "tconv", "in": "c", "factor": 1, "kernel": 1, "init": "kaiming", "norm": "instance"}},
    # 3x3 valid conv to 1x1 (normalised), then a padded 1x1 conv back to 3x3: the inner map decides
    {"c": {"op": "conv", "in": "input", "out": [2, 2], "kernel": [3, 1], "pad": [0, 1], "norm": ["instance", "none"]}},
])
def test_instance_norm_of_a_single_pixel_is_a_size_that_does_not_run(nodes):
    """torch cannot instance-normalise a 1x1 map: the size rules say so, and every size they call
    runnable runs in the real model (a traceback before: 'expected more than 1 spatial element')."""
    import torch

    from fcngraph.compile import compile_spec

    spec = load_spec({"name": "inorm", "num_classes": 2, "nodes": nodes, "output": list(nodes)[-1]})
    analysis = analyze(spec)
    fast, slow = valid_sizes(analysis, 12), _exhaustive(analysis, 12)
    assert fast == slow and 1 not in fast.outputs
    model = compile_spec(spec).eval()
    for side in range(1, 13):
        runs = side in fast.outputs
        try:
            analyze(spec, (side, side))
        except SpecError as error:
            assert not runs and "instance norm of a 1x1 map" in error.message
        else:
            assert runs
            with torch.no_grad():
                model(torch.randn(1, 3, side, side))
    analyze(spec, (3, 4))  # one side short, the other not: more than one pixel where it normalises


def test_valid_sizes_match_with_ceil_pools_and_size_references():
    data = tiny_spec(p1={"op": "pool", "in": "c1", "kernel": 3, "stride": 2, "pad": 1, "ceil": True},
                     out={"op": "upsample", "in": "up", "to": "input"})
    analysis = analyze(load_spec(data))
    assert valid_sizes(analysis, 200) == _exhaustive(analysis, 200)


# -- 2. flags refused by argument parsing -------------------------------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["run", "S", "--epochs", "0"], "argument --epochs: must be at least 1, got 0"),
    (["run", "S", "--data", ""], "argument --data: must not be empty"),
    (["run", "S", "--device", "tpu:7"], "argument --device: 'tpu:7' is not auto, cpu, mps, cuda or cuda:N"),
    (["bench", "S", "--reps", "0"], "argument --reps: must be at least 1, got 0"),
    (["bench", "S", "--threads", "-1"], "argument --threads: must be at least 1, got -1"),
    (["schema", "-o", "FOLDER"], "argument -o/--output: 'FOLDER' is a folder; give a file name"),
    (["diagram", "S", "-o", "FOLDER"], "is a folder; give a file name"),
    (["compare", "S", "-o", "r", "--runs", "S"], "argument --runs: 'S' is a file; give a folder"),
    (["compare", "S", "-o", "r", "--jobs", "0"], "argument --jobs: must be at least 1"),
    (["compare", "S", "-o", "r", "--seeds", "x"], "argument --seeds: 'x' is not an integer"),
    (["report", "S", "-o", "r"], "argument runs: 'S' is a file; give a folder"),
    (["report", "FOLDER", "-o", "S"], "argument -o/--output: 'S' is a file; give a folder"),
    (["validate", "S", "--scan", "0"], "argument --scan: must be at least 1"),
    (["show", "S", "--size", "0x4"], "positive sides"),
    (["validate", ""], "argument specs: must not be empty"),
])
def test_bad_flags_are_one_line_exit_2(tmp_path, capsys, argv, message):
    spec = _write(tmp_path, tiny_spec())
    names = {"S": str(spec), "FOLDER": str(tmp_path)}
    argv = [names.get(a, a) for a in argv]
    message = message.replace("'S'", f"'{spec}'").replace("'FOLDER'", f"'{tmp_path}'")
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    out, err = capsys.readouterr()
    assert stop.value.code == EXIT_INPUT and out == ""
    assert err.count("\n") == 1 and message in err and "--help" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]  # nothing written


# -- 4. escaping at every boundary of the report ---------------------------------------------------------
HOSTILE = "=cmd|' /C calc'!A0 <script>alert(1)</script> | *b* _i_ [x](javascript:alert(1)) `c` ![i](x)\nnext"


def test_hostile_names_reach_no_report_as_markup(tmp_path):
    from pathlib import Path

    from fcngraph.compare import RunRecord
    from fcngraph.report import write_report

    classes = ["road", "@SUM(A1)", "<img src=x onerror=alert(1)>", "+1|2"]
    records = [
        RunRecord(HOSTILE, Path("nowhere"), "incomplete", note="-2+3 <b>note</b> | *x*",
                  scores={"classes": classes, "iou": [0.5, 0.25, 0.125, 0.0], "miou": 0.2}),
        RunRecord("@other", Path("nowhere"), "missing", note="=HYPERLINK(\"http://evil\")"),
    ]
    write_report(records, tmp_path)
    markdown = (tmp_path / "report.md").read_text()
    for raw in ("<script>", "<img", "<b>", "[x](javascript:", "*b*", "_i_", "`c`", "![i]", "| *x*", "+1|2"):
        assert raw not in markdown, raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in markdown and "\\*b\\* \\_i\\_" in markdown
    page = (tmp_path / "report.html").read_text()
    assert "<script>" not in page and "<img src=x" not in page and "&lt;script&gt;" in page
    for name in ("results.csv", "per_class.csv"):
        lines = (tmp_path / name).read_text().splitlines()
        cells = [cell for line in lines for cell in line.split(",")]
        assert not any(cell.lstrip('"').startswith(("=", "+", "-", "@")) for cell in cells), (name, lines)
    assert "'=cmd|" in (tmp_path / "results.csv").read_text()
    assert "'@SUM(A1)" in (tmp_path / "per_class.csv").read_text()
    assert sorted(p.name for p in tmp_path.iterdir() if "script" in p.name or "/" in p.name) == []


# -- 5. corrupt data and run folders (cases found by tests/fuzzing_files.py) ----------------------------
@pytest.mark.parametrize("text, message", [
    ("[" * 100_000 + "]" * 100_000, "JSON nested too deeply"),
    ('{"classes": "abc"}', "'classes' must be a list of names"),
    ('{"classes": {"a": 1, "b": 2, "c": 3}}', "'classes' must be a list of names"),
    ('{"classes": ["a", "b", "c"], "palette": [[1e400, 0, 0], [0, 0, 0], [1, 1, 1]]}', "integers 0..255"),
    ('{"classes": ["a", "b", "c"], "palette": [[300, 0, 0], [0, 0, 0], [1, 1, 1]]}', "integers 0..255"),
    ('{"classes": ["a", "b", "c"], "palette": "rgb"}', "one [r, g, b] per class"),
])
def test_a_garbled_classes_file_is_one_line(tmp_path, capsys, text, message):
    from .conftest import make_folder

    data = make_folder(tmp_path / "data", n=6, size=(8, 8))
    (data / "classes.json").write_text(text)
    spec = _write(tmp_path, {**tiny_spec(), "train": {"epochs": 1, "batch_size": 2, "device": "cpu"}})
    status = cli.main(["run", str(spec), "--data", str(data), "--runs", str(tmp_path / "runs"), "--quiet"])
    err = capsys.readouterr().err
    assert status == EXIT_INPUT and err.count("\n") == 1 and "Traceback" not in err
    assert f"{data / 'classes.json'}: not a classes file" in err and message in err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One finished run of the tiny spec on a 6-image folder (1 epoch of 1 step), reported once so
    its latency is cached; tests work on copies."""
    from .conftest import make_folder

    root = tmp_path_factory.mktemp("trained")
    data = make_folder(root / "data", n=6, size=(8, 8))
    spec = _write(root, {**tiny_spec(), "train": {"epochs": 1, "batch_size": 2, "device": "cpu"}})
    assert cli.main(["run", str(spec), "--data", str(data), "--runs", str(root / "runs"), "--quiet"]) == 0
    (run,) = (root / "runs").iterdir()
    assert cli.main(["report", str(run), "-o", str(root / "report")]) == 0
    return spec, data, run


@pytest.fixture(scope="module")
def two_seeds(trained, tmp_path_factory):
    """`trained` and the same spec trained with seed 1: one variant over two seeds in a report."""
    spec, data, run = trained
    root = tmp_path_factory.mktemp("seed1")
    doc = json.loads(spec.read_text())
    seed1 = _write(root, {**doc, "train": {**doc["train"], "seed": 1}})
    assert cli.main(["run", str(seed1), "--data", str(data), "--runs", str(root / "runs"), "--quiet"]) == 0
    (other,) = (root / "runs").iterdir()
    return run, other


def _copy_run(trained, tmp_path):
    import shutil

    spec, data, run = trained
    copy = tmp_path / "runs" / run.name
    shutil.copytree(run, copy)
    return spec, data, copy


def _cli(capsys, argv) -> tuple[int, str, str]:
    capsys.readouterr()
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("text, message", [
    ("[" * 50_000 + "]" * 50_000, "unreadable summary (JSON nested too deeply)"),
    (b"\xff\xfe{}", "unreadable summary ("),
    ('{"miou": 0.5}', "not a run summary ('pixel_acc' is not a number)"),
    ('{"miou": 0.5, "pixel_acc": 1, "mean_acc": 1, "fwiou": 1, "classes": 3}', "'classes' is not a list of names"),
    ('{"miou": 0.5, "pixel_acc": 1, "mean_acc": 1, "fwiou": 1, "confusion": [[1, 2], [3]]}', "not a square matrix"),
    ('{"miou": true, "pixel_acc": 1, "mean_acc": 1, "fwiou": 1}', "'miou' is not a number"),
    ('{"miou": 0.5, "pixel_acc": 1, "mean_acc": 1, "fwiou": 1, "best_epoch": 1}', "'best_epoch' without 'best_miou'"),
])
def test_a_garbled_summary_is_one_line_for_run_and_a_failed_row_in_a_report(trained, tmp_path, capsys, text, message):
    spec, data, run = _copy_run(trained, tmp_path)
    summary = run / "summary.json"
    summary.write_bytes(text if isinstance(text, bytes) else text.encode())
    status, _, err = _cli(capsys, ["run", spec, "--data", data, "--runs", run.parent, "--quiet"])
    assert status == EXIT_INPUT and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"fcngraph: error: {summary}: ") and message in err and "delete it to rerun" in err
    if "nested" in message or "classes" in message:  # a report marks the run failed, and says so in one line
        status, out, err = _cli(capsys, ["report", run, "-o", tmp_path / "report"])
        assert status == EXIT_INPUT and err.count("\n") == 1 and "Traceback" not in err
        assert err.startswith("fcngraph: error: 1 of 1 run(s) failed (tiny: ") and message in err
        assert "failed" in (tmp_path / "report" / "results.csv").read_text()


def test_garbled_history_rows_end_the_history_and_a_garbled_latency_cache_is_measured_again(trained, tmp_path,
                                                                                             capsys):
    from fcngraph.compare import read_run

    _, _, run = _copy_run(trained, tmp_path)
    (run / "summary.json").unlink()
    good = (run / "metrics.jsonl").read_bytes()
    for garbage in (b"\xff\xfe not UTF-8\n", b"3\n", b'{"epoch": "x", "miou": 1}\n', b'{"epoch": 2, "loss": "x"}\n',
                    b'{"epoch": 2, "loss": [1]}\n', b"[" * 50_000 + b"\n"):
        (run / "metrics.jsonl").write_bytes(good + garbage + good)
        record = read_run(run)
        assert record.status == "incomplete" and [r["epoch"] for r in record.history] == [1]
    (run / "latency.json").write_text("[" * 50_000)
    status, _, err = _cli(capsys, ["report", run, "-o", tmp_path / "report"])
    assert status == 0 and err == ""
    assert isinstance(json.loads((run / "latency.json").read_text()), dict)


def test_a_report_of_runs_without_history_prints_only_its_error_line(trained, tmp_path, capsys):
    _, _, run = _copy_run(trained, tmp_path)
    (run / "spec.json").write_text("{")  # unreadable: a failed row, no curves (matplotlib warned of no legend)
    status, _, err = _cli(capsys, ["report", run, "-o", tmp_path / "report"])
    assert status == EXIT_INPUT and err.count("\n") == 1 and "spec.json unreadable" in err and "Warning" not in err


# -- 6. file stems of names ------------------------------------------------------------------------------
def test_distinct_names_never_share_a_file_stem():
    from fcngraph.io import safe_stem

    names = ["a b", "a_b", "a/b", "a\\b", "Net", "net", "NET", "", "unnamed", "...", "x" * 300, "x" * 301,
             "fcn8s-mini", "a_b~" + safe_stem("a b").split("~")[1], "../a_b", "ü", "u"]
    stems = [safe_stem(n) for n in names]
    assert len({s.lower() for s in stems}) == len(names)  # distinct even on a case-insensitive disk
    assert safe_stem("fcn8s-mini") == "fcn8s-mini" and safe_stem("a_b") == "a_b"  # safe names stay as they are
    assert all(len(s) <= 109 and "/" not in s and "\\" not in s and not s.startswith(".") for s in stems)


def test_a_report_writes_one_diagram_per_variant_whose_names_differ_only_by_unsafe_characters(tmp_path):
    from pathlib import Path

    from fcngraph.compare import RunRecord
    from fcngraph.diagram import layout, to_dot
    from fcngraph.io import safe_stem
    from fcngraph.report import write_report

    wide = tiny_spec(c2={"op": "conv", "in": "p1", "out": 16, "pad": 1})
    records = [RunRecord("a b", Path("nowhere"), "incomplete", spec=load_spec({**tiny_spec(), "name": "a b"})),
               RunRecord("a_b", Path("nowhere"), "incomplete", spec=load_spec({**wide, "name": "a_b"}))]
    write_report(records, tmp_path)
    dots = sorted(tmp_path.glob("diagram-*.dot"))
    assert [p.name for p in dots] == sorted(f"diagram-{safe_stem(n)}.dot" for n in ("a b", "a_b"))
    for record in records:  # each file holds its own variant's drawing
        drawn = to_dot(layout(analyze(record.spec), compact=True)).source
        assert (tmp_path / f"diagram-{safe_stem(record.name)}.dot").read_text() == drawn
    assert dots[0].read_text() != dots[1].read_text()
    markdown = (tmp_path / "report.md").read_text()
    assert f"diagram-{safe_stem('a b')}." in markdown and "diagram-a_b." in markdown


NESTED = "[" * 50_000 + "]" * 50_000


def test_json_nested_too_deeply_in_eval_results_class_weights_and_a_sidecar(trained, tmp_path, capsys):
    spec, data, run = _copy_run(trained, tmp_path)
    (run / "eval-val.json").write_text(NESTED)  # a broken eval file is left out of the report
    status, _, err = _cli(capsys, ["report", run, "-o", tmp_path / "report"])
    assert status == 0 and err == "" and "mIoU (val)" not in (tmp_path / "report" / "results.csv").read_text()

    weighted = _write(tmp_path, {**tiny_spec(), "train": {"epochs": 1, "batch_size": 2, "device": "cpu",
                                                          "class_weights": "median_frequency"}}, "w.json")
    runs = tmp_path / "weighted"
    assert _cli(capsys, ["run", weighted, "--data", data, "--runs", runs, "--quiet"])[0] == 0
    (folder,) = runs.iterdir()
    (folder / "summary.json").unlink()
    (folder / "class_weights.json").write_text(NESTED)  # recomputed, as any unreadable cache
    status, _, err = _cli(capsys, ["run", weighted, "--data", data, "--runs", runs, "--quiet", "--resume"])
    assert status == 0 and json.loads((folder / "class_weights.json").read_text())["kind"] == "median_frequency"

    onnx = tmp_path / "m.onnx"
    assert _cli(capsys, ["export", run, "--onnx", onnx, "--size", "8"])[0] == 0
    (tmp_path / "m.onnx.json").write_text(NESTED)
    status, _, err = _cli(capsys, ["predict", onnx, data / "images" / "s0.png", "-o", tmp_path / "out"])
    assert status == EXIT_INPUT and err.count("\n") == 1
    assert f"{tmp_path / 'm.onnx.json'}: not a sidecar (JSON nested too deeply)" in err


def test_file_names_that_are_not_utf8_and_dangling_links_in_a_data_folder(tmp_path, capsys):
    import os
    import shutil

    from .conftest import make_folder

    data = make_folder(tmp_path / "data", n=6, size=(8, 8))
    shutil.rmtree(data / "splits")  # every mask is a sample: the odd names are used, not only listed
    for sub in ("images", "masks"):
        shutil.copy(data / sub / "s0.png", os.fsencode(data / sub) + b"/\xff.png")
    shutil.copy(data / "masks" / "s0.png", os.fsencode(data / "masks") + b"/\xfe.png")  # no image: skipped
    (data / "images" / "dangling.png").symlink_to(data / "images" / "nowhere.png")
    spec = _write(tmp_path, {**tiny_spec(), "train": {"epochs": 1, "batch_size": 2, "device": "cpu"}})
    status, out, err = _cli(capsys, ["run", spec, "--data", data, "--runs", tmp_path / "runs", "--skip-bad"])
    assert status == 0 and "Traceback" not in err and "skipped 2 bad sample(s)" in out and "\\udcfe" in out
    (run,) = (tmp_path / "runs").iterdir()
    assert "\\udcfe" in (run / "log.txt").read_text(encoding="utf-8")
    status, _, err = _cli(capsys, ["eval", run, "--backend", "torch"])  # eval skips nothing: one line
    assert status == EXIT_INPUT and err.count("\n") == 1 and "\\udcfe.jpg: missing image" in err
    os.unlink(os.fsencode(data / "masks") + b"/\xfe.png")
    status, out, err = _cli(capsys, ["eval", run, "--backend", "torch"])
    assert status == 0 and err == "" and "\\udcff" in (run / "eval-val-per-image.csv").read_text(encoding="utf-8")


@pytest.mark.parametrize("value", [None, "SPEC", [1], 3])
def test_a_run_spec_that_is_not_a_json_object_is_a_failed_row(trained, tmp_path, capsys, value):
    spec, _, run = _copy_run(trained, tmp_path)
    (run / "spec.json").write_text(json.dumps(str(spec) if value == "SPEC" else value))  # a string was read as a path
    status, _, err = _cli(capsys, ["report", run, "-o", tmp_path / "report"])
    assert status == EXIT_INPUT and err.count("\n") == 1 and "spec.json unreadable: not a JSON object" in err


@pytest.mark.parametrize("pid", ["99999999999999999999", "0", "-1", "-7", "2147483648", "OWN", "x", ""])
def test_a_lock_that_names_no_other_process_is_taken_over(tmp_path, pid):
    import os

    from fcngraph.train import RunLock

    (tmp_path / "lock").write_text(str(os.getpid()) if pid == "OWN" else pid)  # 0 and -1 are process groups
    with RunLock(tmp_path):  # huge: OverflowError in kill() before; 0, -1, own pid: refused forever
        assert (tmp_path / "lock").read_text() == str(os.getpid())
    assert not (tmp_path / "lock").exists()


def test_a_lock_of_a_live_process_is_still_refused(tmp_path):
    import os

    from fcngraph.train import RunLock, TrainingError

    (tmp_path / "lock").write_text(str(os.getppid()))
    with pytest.raises(TrainingError, match=f"another run \\(pid {os.getppid()}\\) is training"):
        RunLock(tmp_path).__enter__()
    assert (tmp_path / "lock").read_text() == str(os.getppid())


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """A 2-epoch run of the tiny spec stopped after its first epoch (last.pt rewound, no summary)."""
    from fcngraph.checkpoint import load_checkpoint, save_checkpoint

    from .conftest import make_folder

    root = tmp_path_factory.mktemp("stopped")
    data = make_folder(root / "data", n=6, size=(8, 8))
    spec = _write(root, {**tiny_spec(), "train": {"epochs": 2, "batch_size": 4, "device": "cpu"}})
    assert cli.main(["run", str(spec), "--data", str(data), "--runs", str(root / "runs"), "--quiet"]) == 0
    (run,) = (root / "runs").iterdir()
    state = load_checkpoint(run / "last.pt")
    state["epoch"], state["history"] = 0, state["history"][:1]
    save_checkpoint(run / "last.pt", state)
    (run / "summary.json").unlink()
    return spec, data, run


@pytest.mark.parametrize("key, value, message", [
    ("epoch", "x", "its epoch, best score or history is garbled"),
    ("epoch", -3, "its epoch, best score or history is garbled"),
    ("best", None, "its epoch, best score or history is garbled"),
    ("history", 3, "its epoch, best score or history is garbled"),
    ("history", [{}], "its epoch, best score or history is garbled"),
    ("history", [{"epoch": 1, "loss": "x", "train_s": 1, "images_per_s": 1}], "history is garbled"),
    ("optimizer", {"state": {}, "param_groups": []}, "cannot resume from it (loaded state dict has a different"),
    ("model", "WRONG SHAPE", "cannot resume from it (Error(s) in loading state_dict"),
])
def test_a_garbled_last_checkpoint_is_one_line_on_resume(stopped, tmp_path, capsys, key, value, message):
    import shutil

    import torch

    from fcngraph.checkpoint import load_checkpoint, save_checkpoint

    spec, data, run = stopped
    copy = tmp_path / "runs" / run.name
    shutil.copytree(run, copy)
    state = load_checkpoint(copy / "last.pt")
    state[key] = {**state["model"], "c1.0.weight": torch.zeros(1)} if value == "WRONG SHAPE" else value
    save_checkpoint(copy / "last.pt", state)
    status, _, err = _cli(capsys, ["run", spec, "--data", data, "--runs", tmp_path / "runs", "--quiet", "--resume"])
    assert status == EXIT_INPUT and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"fcngraph: error: {copy / 'last.pt'}: ") and message in err


def test_the_stopped_run_resumes(stopped, tmp_path, capsys):
    import shutil

    spec, data, run = stopped
    shutil.copytree(run, tmp_path / "runs" / run.name)
    status, _, err = _cli(capsys, ["run", spec, "--data", data, "--runs", tmp_path / "runs", "--quiet", "--resume"])
    assert status == 0 and err == ""
    rows = (tmp_path / "runs" / run.name / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(row)["epoch"] for row in rows] == [1, 2]


@pytest.mark.parametrize("epoch", ["x", None, -5, True, 2.5])
def test_eval_of_a_checkpoint_with_a_garbled_epoch(trained, tmp_path, capsys, epoch):
    from fcngraph.checkpoint import load_checkpoint, save_checkpoint

    _, _, run = _copy_run(trained, tmp_path)
    state = load_checkpoint(run / "best.pt")
    state["epoch"] = epoch
    save_checkpoint(run / "best.pt", state)
    status, out, err = _cli(capsys, ["eval", run, "--backend", "torch"])
    assert status == 0 and err == "" and "best.pt, epoch 0)" in out


@pytest.mark.parametrize("key, value, message", [
    ("classes", 3, "its 'classes' are not 3 class names"),
    ("classes", ["a"], "its 'classes' are not 3 class names"),
    ("palette", "x", "its 'palette' is not one [r, g, b] (0..255) per class"),
    ("palette", [[1, 2]], "its 'palette' is not one [r, g, b] (0..255) per class"),
    ("palette", [[300, 0, 0]] * 3, "its 'palette' is not one [r, g, b] (0..255) per class"),
    ("palette", "TENSOR", "its 'palette' is not one [r, g, b] (0..255) per class"),
])
@pytest.mark.parametrize("command", ["predict", "export"])
def test_garbled_class_names_or_palette_in_a_checkpoint(trained, tmp_path, capsys, key, value, message, command):
    import torch

    from fcngraph.checkpoint import load_checkpoint, save_checkpoint

    _, data, run = _copy_run(trained, tmp_path)
    state = load_checkpoint(run / "best.pt")
    state[key] = torch.zeros(3) if value == "TENSOR" else value
    save_checkpoint(run / "best.pt", state)
    argv = (["predict", run, data / "images" / "s0.png", "-o", tmp_path / "out", "--backend", "torch"]
            if command == "predict" else ["export", run, "--onnx", tmp_path / "m.onnx", "--size", "8"])
    status, _, err = _cli(capsys, argv)
    assert status == EXIT_INPUT and err.count("\n") == 1 and f"{run / 'best.pt'}: {message}" in err


@pytest.mark.parametrize("payload", [[1, 2], {"x": 1}, "WRONG SHAPE"])
def test_a_report_with_a_garbled_best_checkpoint_is_one_line(trained, tmp_path, capsys, payload):
    import torch

    from fcngraph.checkpoint import load_checkpoint, save_checkpoint

    _, _, run = _copy_run(trained, tmp_path)
    state = load_checkpoint(run / "best.pt")
    save_checkpoint(run / "best.pt", {**state, "model": {"c1.0.weight": torch.zeros(1)}} if payload == "WRONG SHAPE"
                    else payload)
    status, _, err = _cli(capsys, ["report", run, "-o", tmp_path / "report"])  # the qualitative grid loads it
    assert status == EXIT_INPUT and err.count("\n") == 1 and err.startswith(f"fcngraph: error: {run / 'best.pt'}: ")
    assert "not an fcngraph checkpoint" in err or "weights do not fit the run's spec 'tiny'" in err


@pytest.mark.parametrize("garble", ["bytes", "empty file", "columns", "rows", "negative", "tp > gt", "no images",
                                    "number stems"])
def test_garbled_per_image_counts_leave_the_statistics_out_of_a_report(two_seeds, tmp_path, capsys, garble):
    import shutil

    import numpy as np

    runs = [tmp_path / run.name for run in two_seeds]
    for run, copy in zip(two_seeds, runs):
        shutil.copytree(run, copy)
    path = runs[0] / "per-image-val.npz"
    counts = dict(np.load(path))
    if garble == "bytes":
        path.write_bytes(path.read_bytes()[:100])
    elif garble == "empty file":
        path.write_bytes(b"")
    else:
        if garble == "columns":
            counts["tp"] = np.zeros((len(counts["stems"]), 7), np.int64)
        elif garble == "rows":
            counts["gt"] = counts["gt"][:1]
        elif garble == "negative":
            counts["pred"] = -counts["pred"] - 1
        elif garble == "tp > gt":
            counts["tp"] = counts["gt"] + 1
        elif garble == "no images":
            counts = {k: v[:0] for k, v in counts.items()}
        else:
            counts["stems"] = np.arange(len(counts["stems"]))
        np.savez(path, **counts)
    status, out, err = _cli(capsys, ["report", *runs, "-o", tmp_path / "report"])
    assert status == 0 and err == ""
    assert f"note: no statistics: {path}: " in out and ("per-image counts" in out)
    assert not (tmp_path / "report" / "stats.json").exists()


def test_the_two_seeds_report_has_statistics(two_seeds, tmp_path, capsys):
    status, out, err = _cli(capsys, ["report", *two_seeds, "-o", tmp_path / "report"])
    assert status == 0 and err == "" and (tmp_path / "report" / "stats.json").is_file()
    assert "One variant (tiny): nothing to compare it with." in out and "significantly ahead" not in out
    header, row = [line for line in (tmp_path / "report" / "report.md").read_text().splitlines()
                   if line.startswith("| ")][:2]  # the results table's header and its one row
    miou = [c.strip() for c in header.split("|")].index("mIoU")
    assert not row.split("|")[miou].strip().startswith("**")  # nothing to be ahead of: not bold


@pytest.mark.parametrize("row", ['{"epoch": 1, "miou": NaN, "loss": Infinity}', '{"epoch": 1, "miou": 0.1, "loss": 0}'])
def test_a_diverged_or_zero_loss_in_every_seed_still_draws_the_curves(two_seeds, tmp_path, capsys, row):
    """A loss row of NaN/inf (a diverged epoch) or 0 leaves no positive value for the log axis of
    the averaged curve: the loss axis is linear then, not a matplotlib traceback (found by the fuzzer)."""
    import shutil

    copies = [shutil.copytree(run, tmp_path / run.parent.parent.name / run.name) for run in two_seeds]
    for run in copies:
        (run / "metrics.jsonl").write_text(row + "\n")
    status, _, err = _cli(capsys, ["report", *copies, "-o", tmp_path / "report"])
    assert status == 0 and err == "" and (tmp_path / "report" / "curves.svg").is_file()


@pytest.mark.parametrize("where", ["data/masks/s4.png", "run/spec.json", "run/eval-val.json", "stopped/last.pt"])
def test_a_fifo_where_a_file_belongs_is_no_hang(trained, stopped, tmp_path, where):
    """open() of a FIFO waits for a writer forever: every command refused such a file or hung."""
    import os
    import shutil

    from tests.fuzzing_files import HANG, call_cli

    spec, data, run = trained
    folder, name = where.split("/", 1)
    if folder == "stopped":
        spec, data, run = stopped
    copy = {"data": tmp_path / "data", "run": tmp_path / "runs" / run.name, "stopped": tmp_path / "runs" / run.name}
    shutil.copytree(data if folder == "data" else run, copy[folder])
    (copy[folder] / name).unlink(missing_ok=True)
    os.mkfifo(copy[folder] / name)
    argv = {"data": ["run", spec, "--data", copy["data"], "--runs", tmp_path / "runs", "--quiet"],
            "run": ["report", copy["run"], "-o", tmp_path / "report"],
            "stopped": ["run", spec, "--data", data, "--runs", tmp_path / "runs", "--quiet", "--resume"]}[folder]
    status, err = call_cli([str(a) for a in argv], timeout=30)
    assert status != HANG
    if name != "eval-val.json":  # a broken eval file is left out of the report
        assert status == EXIT_INPUT and err.count("\n") == 1 and "not a regular file" in err


def test_a_split_stem_too_long_for_a_file_name_is_input(tmp_path, capsys):
    from .conftest import make_folder

    data = make_folder(tmp_path / "data", n=6, size=(8, 8))
    (data / "splits" / "train.txt").write_text("x" * 300 + "\n")
    spec = _write(tmp_path, {**tiny_spec(), "train": {"epochs": 1, "batch_size": 2, "device": "cpu"}})
    status, _, err = _cli(capsys, ["run", spec, "--data", data, "--runs", tmp_path / "runs", "--quiet"])
    assert status == EXIT_INPUT and err.count("\n") == 1 and "File name too long" in err  # was 3, "the machine"
