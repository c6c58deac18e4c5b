"""Multi-channel inputs: 16-bit TIFF stacks (interleaved and one page per channel) and .npy arrays
train, evaluate and predict through the CLI; the loader's values are the documented scaling
(uint8 / 255, uint16 / 65535, float as is) checked against numpy; sizes and channel counts come
from headers; data that cannot supply the spec's channels is one line naming the file, exit 2."""

import json

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from fcngraph import images
from fcngraph.cli import main
from fcngraph.data import FolderSegmentation
from fcngraph.errors import DataError

from .conftest import tiny_spec

SIZE = (20, 16)  # H, W
STEMS = [f"s{i}" for i in range(6)]
SUFFIX = {"npy": ".npy", "tif": ".tif", "pages": ".tiff"}  # how write_stack names each layout


def write_stack(path, array, layout):
    """array [H, W, C] → path as `layout`: npy, tif (interleaved samples) or pages (one per channel)."""
    if layout == "npy":
        np.save(path.with_suffix(SUFFIX[layout]), array)
    elif layout == "tif":
        tifffile.imwrite(path.with_suffix(SUFFIX[layout]), array, photometric="minisblack", planarconfig="contig")
    else:
        with tifffile.TiffWriter(path.with_suffix(SUFFIX[layout])) as tif:
            for plane in array.transpose(2, 0, 1):  # [H, W] pages
                tif.write(plane, photometric="minisblack")


def stack_folder(root, channels, dtype, layouts, mask_suffix=".png"):
    """images/ of [H, W, C] stacks (layouts cycled over the stems), masks/ of 3 classes, splits/."""
    rng = np.random.default_rng(channels)
    for sub in ("images", "masks", "splits"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i, stem in enumerate(STEMS):
        if np.dtype(dtype).kind == "f":
            array = rng.random((*SIZE, channels)).astype(dtype)
        else:
            array = rng.integers(0, np.iinfo(dtype).max, (*SIZE, channels), dtype=dtype, endpoint=True)
        write_stack(root / "images" / stem, array, layouts[i % len(layouts)])
        labels = rng.integers(0, 3, SIZE, dtype=np.uint8)
        if mask_suffix == ".npy":
            np.save(root / "masks" / f"{stem}.npy", labels.astype(np.int32))
        else:
            Image.fromarray(labels).save(root / "masks" / f"{stem}.png")
    (root / "splits" / "train.txt").write_text("\n".join(STEMS[:4]))
    (root / "splits" / "val.txt").write_text("\n".join(STEMS[4:]))
    return root


def spec_file(tmp_path, channels):
    spec = tiny_spec()
    spec.update(name=f"tiny{channels}", input={"channels": channels},
                data={"mean": [0.5] * channels, "std": [0.25] * channels},
                train={"iterations": 2, "batch_size": 2, "crop_size": 16, "threads": 1})
    path = tmp_path / f"tiny{channels}.json"
    path.write_text(json.dumps(spec))
    return path


def expected(path):
    """[C, H, W] float as documented, from numpy/tifffile directly."""
    array = np.load(path) if path.suffix == ".npy" else tifffile.imread(path)
    if path.suffix == ".tiff":  # one page per channel
        with tifffile.TiffFile(path) as tif:
            array = np.stack([page.asarray() for page in tif.pages], axis=-1)
    scale = {np.uint8: 255.0, np.uint16: 65535.0}.get(array.dtype.type, 1.0)
    return torch.from_numpy(array.astype(np.float32).transpose(2, 0, 1) / np.float32(scale))


@pytest.mark.parametrize("channels, dtype, layouts", [
    (4, np.uint16, ("tif", "pages")), (5, np.float32, ("npy",)), (2, np.uint8, ("npy", "tif"))])
def test_loader_values_are_the_documented_scaling(tmp_path, channels, dtype, layouts):
    root = stack_folder(tmp_path / "d", channels, dtype, layouts)
    folder = FolderSegmentation(root, "train", 3, channels=channels, cache=False)
    assert {s.image.suffix for s in folder.samples} == {SUFFIX[x] for x in layouts}
    for index, sample in enumerate(folder.samples):
        image, mask = folder[index]
        assert image.shape == (channels, *SIZE) and image.dtype == torch.float32
        assert torch.equal(image, expected(sample.image))
        assert torch.equal(mask, torch.from_numpy(np.asarray(Image.open(sample.mask)).astype(np.int64)))
    if dtype == np.uint16:  # the full 16-bit range reaches 1.0, not 257 as an 8-bit reading would
        assert 0.99 < float(torch.stack([folder[i][0] for i in range(len(folder))]).max()) <= 1.0


@pytest.mark.parametrize("channels, dtype, layouts, masks", [
    (4, np.uint16, ("tif", "pages"), ".png"), (5, np.float32, ("npy",), ".npy")])
def test_stacks_train_evaluate_and_predict(tmp_path, capsys, channels, dtype, layouts, masks):
    data = stack_folder(tmp_path / "d", channels, dtype, layouts, masks)
    spec = spec_file(tmp_path, channels)
    assert main(["run", str(spec), "--data", str(data), "--runs", str(tmp_path / "r"), "--quiet"]) == 0
    (run,) = (tmp_path / "r").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["steps"] == 2
    assert main(["eval", str(run), "--split", "val", "--backend", "torch"]) == 0
    scored = json.loads((run / "eval-val.json").read_text())
    assert scored["images"] == 2 and scored["confusion"] == summary["confusion"]  # the same pixels, read alike
    inputs = sorted((data / "images").iterdir())[:2]
    out = tmp_path / "out"
    assert main(["predict", str(run), *map(str, inputs), "-o", str(out), "--masks", str(data / "masks")]) == 0
    for path in inputs:
        mask = Image.open(out / f"{path.stem}.png")
        assert mask.mode == "P" and mask.size == SIZE[::-1]
        assert Image.open(out / f"{path.stem}_overlay.png").size == SIZE[::-1]
        assert Image.open(out / f"{path.stem}_truth.png").size == (2 * SIZE[1], SIZE[0])
    assert "mIoU" in capsys.readouterr().out


def one_line(capsys, argv) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("fcngraph: error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("have, want, suffix", [(3, 4, ".npy"), (4, 5, ".tif"), (3, 4, ".png")])
def test_channel_mismatch_is_one_line_naming_the_file(tmp_path, capsys, have, want, suffix):
    if suffix == ".png":  # an RGB image cannot feed a 4-channel spec
        data = stack_folder(tmp_path / "d", 3, np.uint8, ("npy",))
        for stem in STEMS:
            (data / "images" / f"{stem}.npy").unlink()
            Image.fromarray(np.zeros((*SIZE, 3), np.uint8)).save(data / "images" / f"{stem}.png")
    else:
        data = stack_folder(tmp_path / "d", have, np.uint16, (suffix[1:],))
    err = one_line(capsys, ["run", str(spec_file(tmp_path, want)), "--data", str(data), "--runs",
                            str(tmp_path / "r"), "--quiet"])
    assert f"s0{suffix}" in err and str(want) in err
    assert not (tmp_path / "r").exists() or not list((tmp_path / "r").glob("*/last.pt"))


def test_predict_refuses_a_stack_with_the_wrong_channels(tmp_path, capsys):
    data = stack_folder(tmp_path / "d", 4, np.uint16, ("tif",))
    assert main(["run", str(spec_file(tmp_path, 4)), "--data", str(data), "--runs", str(tmp_path / "r"),
                 "--quiet"]) == 0
    wrong = tmp_path / "three.npy"
    np.save(wrong, np.zeros((*SIZE, 3), np.uint16))
    err = one_line(capsys, ["predict", str(next((tmp_path / "r").iterdir())), str(wrong), "-o",
                            str(tmp_path / "out")])
    assert "three.npy" in err and "3 channel(s)" in err


def test_sizes_and_channels_come_from_the_header(tmp_path, monkeypatch):
    data = stack_folder(tmp_path / "d", 4, np.uint16, ("tif", "pages", "npy"))
    for path in sorted((data / "images").iterdir()):
        head = images.header(path, 10**6)
        assert (head.height, head.width, head.channels, head.dtype) == (*SIZE, 4, np.dtype(np.uint16))

    def no_decoding(path, head):
        raise AssertionError(f"{path} was decoded")
    monkeypatch.setattr(images, "_decode", no_decoding)
    with pytest.raises(DataError, match=r"s0\.tif: 16x20 image is over data\.max_pixels \(100\)"):
        FolderSegmentation(data, "train", 3, channels=4, max_pixels=100)
    with pytest.raises(DataError, match=r"s0\.tif: 4 channel\(s\)"):
        FolderSegmentation(data, "train", 3, channels=3)


@pytest.mark.parametrize("content, words", [
    (b"not a tiff at all", "unreadable image"),
    ("truncated", "unreadable image"),
    ("int32", "int32 pixels; images must be uint8, uint16 or float"),
    ("nan", "non-finite pixel values"),
    ("4d", "expected [H, W] or [H, W, C]")])
def test_bad_stacks_are_named(tmp_path, content, words):
    data = stack_folder(tmp_path / "d", 4, np.uint16, ("npy",))
    bad = data / "images" / "s1.npy"
    if content == "truncated":
        bad.write_bytes(bad.read_bytes()[:200])
    elif content == "int32":
        np.save(bad, np.zeros((*SIZE, 4), np.int32))
    elif content == "nan":
        np.save(bad, np.full((*SIZE, 4), np.nan, np.float32))
    elif content == "4d":
        np.save(bad, np.zeros((1, *SIZE, 4), np.uint16))
    else:
        bad.unlink()
        bad = bad.with_suffix(".tif")
        bad.write_bytes(content)
    with pytest.raises(DataError) as info:
        FolderSegmentation(data, "train", 3, channels=4)
    assert str(info.value).startswith(str(bad)) and words in str(info.value)
    kept = FolderSegmentation(data, "train", 3, channels=4, skip_bad=True)
    assert len(kept) == 3 and len(kept.skipped) == 1


def test_label_masks_as_npy_must_be_one_channel_of_integers(tmp_path):
    data = stack_folder(tmp_path / "d", 4, np.uint16, ("npy",), ".npy")
    np.save(data / "masks" / "s1.npy", np.zeros(SIZE, np.float32))
    with pytest.raises(DataError, match=r"s1\.npy: a label mask is one channel of integers"):
        FolderSegmentation(data, "train", 3, channels=4)
    np.save(data / "masks" / "s1.npy", np.full(SIZE, -1, np.int16))
    with pytest.raises(DataError, match=r"s1\.npy: label -1 outside \[0, 3\)"):
        FolderSegmentation(data, "train", 3, channels=4)


def test_16_bit_grayscale_png_keeps_its_precision(tmp_path):
    data = stack_folder(tmp_path / "d", 1, np.uint8, ("npy",))
    grey = np.arange(SIZE[0] * SIZE[1], dtype=np.uint16).reshape(SIZE) * 200  # up to 63,800
    for stem in STEMS:
        (data / "images" / f"{stem}.npy").unlink()
        Image.fromarray(grey).save(data / "images" / f"{stem}.png")  # mode I;16
    image, _ = FolderSegmentation(data, "train", 3, channels=1)[0]
    assert torch.equal(image[0], torch.from_numpy(grey.astype(np.float32) / np.float32(65535)))


def test_caffe_bgr_needs_three_channels(tmp_path, capsys):
    spec = json.loads(spec_file(tmp_path, 4).read_text())
    spec["data"] = {"caffe_bgr": True}
    (tmp_path / "bgr.json").write_text(json.dumps(spec))
    assert "caffe_bgr needs input.channels 3" in one_line(capsys, ["validate", str(tmp_path / "bgr.json")])


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_predict_normalises_as_training_does(dtype):
    from fcngraph.data import normalise
    from fcngraph.infer import Predictor
    from fcngraph.settings import DataSettings

    rng = np.random.default_rng(0)
    array = (rng.random((*SIZE, 4)) * (1 if dtype == np.float32 else np.iinfo(dtype).max)).astype(dtype)
    data = DataSettings(mean=(0.1, 0.2, 0.3, 0.4), std=(0.5, 0.6, 0.7, 0.8))
    meta = {"normalise": {"caffe_bgr": False, "mean": list(data.mean), "std": list(data.std)},
            "size_fit": {"min": 1, "step": 1, "shift": 0, "delta": 0}}
    served = Predictor(run=None, meta=meta).normalise(array)  # [C, H, W], numpy
    trained = normalise(images.to_unit(array), data)  # [C, H, W], torch
    assert np.allclose(served, trained.numpy(), rtol=0, atol=1e-6)


def test_big_endian_stacks_scale_like_little_endian(tmp_path):
    array = np.random.default_rng(0).integers(0, 65536, (*SIZE, 4), dtype=np.uint16)
    np.save(tmp_path / "be.npy", array.astype(">u2"))
    tifffile.imwrite(tmp_path / "be.tif", array, byteorder=">", photometric="minisblack", planarconfig="contig")
    want = torch.from_numpy(array.astype(np.float32).transpose(2, 0, 1) / np.float32(65535))
    for name in ("be.npy", "be.tif"):
        got = images.to_unit(images.read_image(tmp_path / name, 4, 10**6))
        assert torch.equal(got, want), name
