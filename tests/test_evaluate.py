"""Evaluation and real-data handling: `fcngraph eval` against an independent confusion count, TTA
and tiling identities, the size contract (pad/crop), odd-size predict, grayscale input, class
weights against a numpy oracle, provenance of the run hash, and bad data/run folders → one line."""

import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from fcngraph.checkpoint import load_checkpoint, restore_model
from fcngraph.cli import main
from fcngraph.compare import per_image_counts, read_run
from fcngraph.data import class_frequencies, class_weights, make_splits
from fcngraph.evaluate import load_per_image
from fcngraph.sizing import PadToValid
from fcngraph.spec import load_spec
from fcngraph.train import run_dir_for

from .conftest import CAMVID, SPECS, make_folder

QUICK = ["--quiet", "--set", "train.batch_size=2"]
PIX = {"name": "pix", "num_classes": 3, "nodes": {"s": {"op": "score", "in": "input"}}, "output": "s"}


def train(tmp_path, spec, data, *extra):
    assert main(["run", str(spec), "--data", str(data), "--runs", str(tmp_path / "r"), "--epochs", "1",
                 *QUICK, *extra]) == 0
    return next((tmp_path / "r").iterdir())


def one_line_error(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("fcngraph: error: ") and err.count("\n") == 1, err
    return err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """unet-mini trained a step on 45×30 images (not a multiple of 16: padded)."""
    tmp = tmp_path_factory.mktemp("trained")
    data = make_folder(tmp / "d", size=(45, 30), classes=6)
    return train(tmp, SPECS / "unet-mini.json", data), data


def test_eval_backends_agree(trained):
    pytest.importorskip("onnxruntime")
    run, _ = trained
    results = {}
    for backend in ("torch", "onnxruntime"):
        assert main(["eval", str(run), "--checkpoint", "last", "--backend", backend]) == 0
        results[backend] = json.loads((run / "eval-val.json").read_text())
    assert results["onnxruntime"]["backend"] == "onnxruntime" and results["torch"]["backend"] == "torch"
    torch_counts, ort_counts = (np.asarray(results[b]["confusion"]) for b in ("torch", "onnxruntime"))
    # argmax may flip only where two class scores tie within float noise: a handful of pixels at most
    assert np.abs(torch_counts - ort_counts).sum() <= 0.001 * torch_counts.sum()


def test_eval_reproduces_validation_and_an_independent_confusion(trained, capsys):
    run, data = trained
    summary = json.loads((run / "summary.json").read_text())
    assert main(["eval", str(run), "--checkpoint", "last", "--backend", "torch"]) == 0
    assert "mIoU" in capsys.readouterr().out
    result = json.loads((run / "eval-val.json").read_text())
    assert result["miou"] == pytest.approx(summary["miou"], abs=1e-12)
    # oracle: run the model by hand, count pixels with numpy
    state = load_checkpoint(run / "last.pt")
    spec, model = restore_model(state, run / "last.pt")
    model.eval()
    expected = np.zeros((6, 6), np.int64)
    for stem in (data / "splits" / "val.txt").read_text().split():
        rgb = np.asarray(Image.open(data / "images" / f"{stem}.png").convert("RGB")) / 255.0
        x = (torch.tensor(rgb, dtype=torch.float32).permute(2, 0, 1) - torch.tensor(spec.data.mean)[:, None, None]) \
            / torch.tensor(spec.data.std)[:, None, None]
        padded = torch.zeros(3, 48, 32)
        padded[:, :45, :30] = x
        with torch.no_grad():
            pred = model(padded[None])[0, :, :45, :30].argmax(0).numpy()
        truth = np.asarray(Image.open(data / "masks" / f"{stem}.png"))
        np.add.at(expected, (truth.ravel(), pred.ravel()), 1)
    assert result["confusion"] == expected.tolist()
    counts = load_per_image(run, "val")
    assert counts["tp"].shape == (2, 6) and counts["tp"].sum() == np.trace(expected)
    assert (counts["gt"].sum(0) == expected.sum(1)).all() and (counts["pred"].sum(0) == expected.sum(0)).all()
    assert (run / "eval-val-per-image.csv").read_text().startswith("image,miou,iou_c0")


def test_training_eval_and_compare_count_per_image_alike(tmp_path):
    """One scoring loop: the counts training's last validation wrote, those `compare` computes for a
    run without them and those `eval` of last.pt writes are the same arrays."""
    data = make_folder(tmp_path / "d", size=(45, 30), classes=6)  # padded: all three must pad alike
    run = train(tmp_path, SPECS / "unet-mini.json", data)
    written = load_per_image(run, "val")
    (run / "per-image-val.npz").unlink()
    record = read_run(run)
    splits = make_splits(record.spec.data, record.spec.train, record.spec.num_classes)
    recomputed = per_image_counts(record, splits)
    assert main(["eval", str(run), "--checkpoint", "last", "--backend", "torch"]) == 0
    evaluated = load_per_image(run, "val")
    assert list(written["stems"]) == list(recomputed["ids"]) == list(evaluated["stems"]) == ["s4", "s5"]
    assert written["gt"].sum() == 2 * 45 * 30  # every pixel labelled, none of the padding counted
    for key in ("tp", "gt", "pred"):
        np.testing.assert_array_equal(written[key], recomputed[key])
        np.testing.assert_array_equal(written[key], evaluated[key])


def _plain_and_tta(tmp_path, tta: str):
    """A trained per-pixel net (PIX) on 12x9 images, evaluated plainly and with `--tta tta`."""
    spec = tmp_path / "pix.json"
    spec.write_text(json.dumps(PIX))
    run = train(tmp_path, spec, make_folder(tmp_path / "d", size=(12, 9)))
    assert main(["eval", str(run)]) == 0
    assert main(["eval", str(run), "--tta", tta]) == 0
    return run, *(json.loads((run / f"eval-val{t}.json").read_text()) for t in ("", "-tta"))


def test_flip_tta_equals_plain_for_a_flip_equivariant_net(tmp_path):
    run, plain, tta = _plain_and_tta(tmp_path, "flip")
    assert plain["confusion"] == tta["confusion"] and tta["tta"]["flip"]
    # a tile the image fits in gives whole-image inference; smaller overlapping tiles do too for a 1×1 net
    for tile in (["--tile", "16"], ["--tile", "5", "--overlap", "2"]):
        assert main(["eval", str(run), *tile]) == 0
        assert json.loads((run / "eval-val.json").read_text())["confusion"] == plain["confusion"]


def test_multi_scale_tta_at_the_extreme_scales_scores_every_pixel_once(tmp_path, capsys):
    """Scales 1/8 and 8 of a 12x9 image (1 pixel high at 1/8) run and score the same pixels as
    plain inference, by a plausible amount apart; scales outside [1/8, 8], NaN or inf are one line."""
    run, plain, tta = _plain_and_tta(tmp_path, "scales=0.125,1,8")
    assert np.sum(tta["confusion"]) == np.sum(plain["confusion"]) == 2 * 12 * 9
    assert tta["tta"]["scales"] == [0.125, 1.0, 8.0] and abs(tta["miou"] - plain["miou"]) < 0.25
    for bad in ("scales=1e9", "scales=inf", "scales=nan", "scales=0.0001"):
        capsys.readouterr()
        assert main(["eval", str(run), "--tta", bad]) == 2
        err = capsys.readouterr().err
        assert err == f"fcngraph: error: --tta {bad}: scales must be between 0.125 and 8.0\n"


def test_tile_fitting_the_image_equals_whole_image_on_unet(trained):
    run, _ = trained
    assert main(["eval", str(run)]) == 0
    whole = json.loads((run / "eval-val.json").read_text())["confusion"]
    assert main(["eval", str(run), "--tile", "48"]) == 0
    assert json.loads((run / "eval-val.json").read_text())["confusion"] == whole


def test_pad_crop_round_trip_matches_the_valid_size_output():
    spec = load_spec(SPECS / "unet-mini.json")
    from fcngraph.compile import compile_spec

    torch.manual_seed(0)
    model = compile_spec(spec).eval()
    x = torch.randn(1, 3, 45, 30)
    with torch.no_grad():
        out = PadToValid(model, spec)(x)
        reference = model(torch.nn.functional.pad(x, (0, 2, 0, 3)))[..., :45, :30]
        valid = torch.randn(1, 3, 32, 48)
        assert torch.equal(PadToValid(model, spec)(valid), model(valid))  # valid sizes: untouched
    assert out.shape == (1, 6, 45, 30) and torch.equal(out, reference)


def test_valid_conv_unet_is_fitted_to_any_size():
    """unet-original (valid convs: output = input − 184, shifted by 92) on a 45×30 image: the padding
    wrapper shifts the image by 92 so output pixel j lands on image pixel j, and returns 45×30."""
    from fcngraph.compile import compile_spec
    from fcngraph.sizing import fit_of

    spec = load_spec(SPECS / "unet-original.json")
    fit = fit_of(spec)
    assert (fit.shift, fit.delta) == (92, -184)
    torch.manual_seed(0)
    model = compile_spec(spec).eval()
    x = torch.randn(1, 1, 45, 30)
    h, w = fit.padded(45), fit.padded(30)
    with torch.no_grad():
        out = PadToValid(model, spec)(x)
        reference = model(torch.nn.functional.pad(x, (92, w - 30 - 92, 92, h - 45 - 92)))[..., :45, :30]
    assert out.shape == (1, 2, 45, 30) and torch.equal(out, reference)


def test_unpadded_spec_on_bad_sizes_is_one_line(tmp_path, capsys):
    data = make_folder(tmp_path / "d", size=(45, 30), classes=6)
    err = one_line_error(capsys, ["run", str(SPECS / "unet-mini.json"), "--data", str(data), "--runs",
                                  str(tmp_path / "r"), "--set", "data.pad=false", "--quiet"])
    assert "30x45" in err and "mod 16" in err and "32x48" in err and "data.pad" in err


def test_predict_odd_size_uses_checkpoint_palette_and_writes_truth_panel(trained, tmp_path, capsys,
                                                                           monkeypatch):
    run, data = trained
    image = tmp_path / "odd.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (97, 131, 3), dtype=np.uint8)).save(image)
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(np.random.default_rng(2).integers(0, 6, (97, 131), dtype=np.uint8)).save(masks / "odd.png")
    monkeypatch.chdir(tmp_path)  # no dataset folder reachable from here
    shutil.move(str(data), str(tmp_path / "moved"))
    try:
        assert main(["predict", str(run), str(image), "-o", str(tmp_path / "out"), "--masks", str(masks)]) == 0
    finally:
        shutil.move(str(tmp_path / "moved"), str(data))
    assert "odd.png: mIoU" in capsys.readouterr().out
    mask = Image.open(tmp_path / "out" / "odd.png")
    assert mask.size == (131, 97)
    palette = load_checkpoint(run / "best.pt")["palette"]
    assert mask.getpalette()[:3 * len(palette)] == [v for c in palette for v in c]
    assert Image.open(tmp_path / "out" / "odd_truth.png").size == (262, 97)


def test_grayscale_unet_trains_on_grayscale_images(tmp_path):
    spec = json.loads((SPECS / "unet-mini.json").read_text())
    spec.update(name="unet-gray", input={"channels": 1}, data={"mean": [0.5], "std": [0.25]})
    path = tmp_path / "gray.json"
    path.write_text(json.dumps(spec))
    data = make_folder(tmp_path / "d", size=(20, 16), classes=6)
    for f in (data / "images").iterdir():
        Image.open(f).convert("L").save(f)
    run = train(tmp_path, path, data)
    assert json.loads((run / "summary.json").read_text())["status"] == "complete"


def test_class_weight_formulas_match_numpy_oracle():
    masks = [torch.tensor([[0, 0, 1], [255, 0, 0]]), torch.tensor([[2, 2, 2], [2, 0, 255]])]
    freq = class_frequencies([(None, m) for m in masks], 4, 255)
    # freq(c) = pixels of c / pixels (non-ignored) of the images that contain c
    oracle = np.array([(4 + 1) / (5 + 5), 1 / 5, 4 / 5, 0.0])
    assert np.allclose(freq, oracle)
    present = oracle[:3]
    assert np.allclose(class_weights("median_frequency", freq), [*(np.median(present) / present), 0.0])
    raw = 1 / np.sqrt(present)
    assert np.allclose(class_weights("inverse_sqrt", freq), [*(raw / raw.mean()), 0.0])


def test_median_frequency_weights_are_stored_in_the_run(tmp_path):
    data = make_folder(tmp_path / "d", classes=6)
    run = train(tmp_path, SPECS / "fcn32s-mini.json", data, "--set", 'train.class_weights="median_frequency"')
    stored = json.loads((run / "class_weights.json").read_text())
    assert stored["kind"] == "median_frequency" and len(stored["weights"]) == 6


def test_run_hash_ignores_where_the_data_lies_but_not_skip_bad(tmp_path):
    a = make_folder(tmp_path / "a" / "camvid")
    b = tmp_path / "elsewhere" / "copy"
    shutil.copytree(a, b)
    spec = load_spec(SPECS / "fcn32s-mini.json")
    from fcngraph.overrides import apply_overrides

    dirs = [run_dir_for(apply_overrides(spec, [f'data.path="{p}"']), tmp_path) for p in (a, b)]
    assert dirs[0] == dirs[1]
    assert run_dir_for(apply_overrides(spec, [f'data.path="{a}"']), tmp_path, skip_bad=True) != dirs[0]
    (b / "splits" / "val.txt").write_text("s5\n")
    assert run_dir_for(apply_overrides(spec, [f'data.path="{b}"']), tmp_path) != dirs[0]


def test_data_path_is_relative_to_the_spec_file(tmp_path):
    make_folder(tmp_path / "data" / "set", classes=6)
    spec = json.loads((SPECS / "fcn32s-mini.json").read_text())
    spec["data"] = {"path": "../data/set"}
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "s.json").write_text(json.dumps(spec))
    assert main(["run", str(tmp_path / "specs" / "s.json"), "--runs", str(tmp_path / "r"), "--epochs", "1",
                 *QUICK]) == 0


@pytest.mark.parametrize("damage, words", [
    ("utf8", "not UTF-8"), ("traversal", "is a path"), ("colour", "not in the classes.json palette"),
    ("pixels", "over data.max_pixels"), ("classes_utf8", "not UTF-8")])
def test_bad_data_is_one_line(tmp_path, capsys, damage, words):
    data = make_folder(tmp_path / "d", classes=6)
    extra = []
    if damage == "utf8":
        (data / "splits" / "train.txt").write_bytes(b"s0\n\xff\xfe\n")
    elif damage == "classes_utf8":
        (data / "classes.json").write_bytes(b'{"classes": ["\xff"]}')
    elif damage == "traversal":
        (data / "splits" / "train.txt").write_text("s0\n../../etc/passwd\n")
    elif damage == "colour":
        (data / "classes.json").write_text(json.dumps({"classes": [f"c{i}" for i in range(6)],
                                                       "palette": [[i, i, i] for i in range(6)]}))
        rgb = np.zeros((20, 16, 3), np.uint8)
        rgb[0, 0] = (9, 8, 7)
        Image.fromarray(rgb).save(data / "masks" / "s1.png")
    else:
        extra = ["--set", "data.max_pixels=100"]
    err = one_line_error(capsys, ["run", str(SPECS / "fcn32s-mini.json"), "--data", str(data), "--runs",
                                  str(tmp_path / "r"), *QUICK, *extra])
    assert words in err


def test_decompression_bomb_is_skipped_with_skip_bad(tmp_path, capsys):
    data = make_folder(tmp_path / "d", classes=6)
    Image.new("L", (12000, 12000)).save(data / "masks" / "s1.png")  # compresses to a few KB
    Image.new("RGB", (12000, 12000)).save(data / "images" / "s1.png")
    err = one_line_error(capsys, ["run", str(SPECS / "fcn32s-mini.json"), "--data", str(data), "--runs",
                                  str(tmp_path / "r"), *QUICK])
    assert "s1.png" in err and "max_pixels" in err
    assert main(["run", str(SPECS / "fcn32s-mini.json"), "--data", str(data), "--runs", str(tmp_path / "r"),
                 "--epochs", "1", "--skip-bad", *QUICK]) == 0


@pytest.mark.parametrize("content", [b"", os.urandom(256), "list", "mismatch", "pickle"])
def test_broken_checkpoints_are_one_line(trained, tmp_path, capsys, content):
    run, _ = trained
    bad = tmp_path / "bad.pt"
    if content == "list":
        torch.save([1, 2, 3], bad)
    elif content == "mismatch":
        state = load_checkpoint(run / "best.pt")
        state["model"] = {k: v[:1] if v.dim() else v for k, v in state["model"].items()}
        torch.save(state, bad)
    elif content == "pickle":
        import pickle

        class Evil:
            def __reduce__(self):
                return (os.system, ("echo pwned",))

        bad.write_bytes(pickle.dumps(Evil()))
    else:
        bad.write_bytes(content)
    for command in (["eval", str(bad)], ["predict", str(bad), str(bad), "-o", str(tmp_path / "o")]):
        assert "bad.pt" in one_line_error(capsys, command)


def test_garbled_summary_lock_and_spec_edit_are_one_line(tmp_path, capsys):
    data = make_folder(tmp_path / "d", classes=6)
    argv = ["run", str(SPECS / "fcn32s-mini.json"), "--data", str(data), "--runs", str(tmp_path / "r"),
            "--epochs", "1", *QUICK]
    assert main(argv) == 0
    run = next((tmp_path / "r").iterdir())
    (run / "summary.json").write_text("[1, 2")
    assert "unreadable summary" in one_line_error(capsys, argv)
    (run / "summary.json").unlink()
    (run / "lock").write_text(str(os.getppid()))  # a live process holds it
    assert f"pid {os.getppid()}" in one_line_error(capsys, argv + ["--resume"])
    (run / "lock").write_text("999999999")  # stale: taken over
    state = load_checkpoint(run / "last.pt")
    state["spec"]["description"] = "edited"
    torch.save(state, run / "last.pt")
    assert "different spec" in one_line_error(capsys, argv + ["--resume"])


@pytest.mark.skipif(not CAMVID.is_dir(), reason="CamVid copy not present in ../shared/data/camvid")
def test_camvid_unet_trains_on_240x180_and_eval_matches(tmp_path):
    """Real 240×180 CamVid images (not a multiple of 16) through unet-mini; a few images, linked."""
    subset = tmp_path / "camvid"
    for sub in ("images", "masks", "splits"):
        (subset / sub).mkdir(parents=True)
    shutil.copy(CAMVID / "classes.json", subset / "classes.json")
    for split, count in (("train", 4), ("val", 2)):
        stems = (CAMVID / "splits" / f"{split}.txt").read_text().split()[:count]
        (subset / "splits" / f"{split}.txt").write_text("\n".join(stems))
        for stem in stems:
            for sub in ("images", "masks"):
                (subset / sub / f"{stem}.png").symlink_to(CAMVID / sub / f"{stem}.png")
    run = train(tmp_path, SPECS / "unet-mini.json", subset, "--set", "num_classes=11")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["classes"][0] == "sky"
    assert main(["eval", str(run), "--checkpoint", "last", "--backend", "torch"]) == 0
    assert json.loads((run / "eval-val.json").read_text())["miou"] == pytest.approx(summary["miou"], abs=1e-12)
