"""Inference backends, deployable export and predict parity (ONNX + sidecar vs the run)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from fcngraph.checkpoint import save_checkpoint
from fcngraph.cli import main
from fcngraph.compile import compile_spec
from fcngraph.export import deploy_meta
from fcngraph.infer import BackendError, Predictor, SizeFit, TorchOptions, default_backend, make_runner, size_fit
from fcngraph.predict import load_predictor
from fcngraph.shapes import analyze
from fcngraph.spec import load_spec

from .conftest import SPECS

pytest.importorskip("onnxruntime")  # the [onnx] extra; the test extra (CI) installs it


def randomised(spec):
    """The spec's model with its zero-initialised parameters (score layers) made random, so
    that predictions vary over the image."""
    torch.manual_seed(0)
    model = compile_spec(spec).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1 and not p.any():  # zero-sum over inputs: ReLU features are all positive,
                p.copy_(torch.randn_like(p))  # so otherwise one class would win everywhere
                p.sub_(p.mean(1, keepdim=True))
    return model


@pytest.mark.parametrize("name", ["fcn8s-mini", "unet-mini"])
def test_backends_agree_within_float_tolerance(name):
    spec = load_spec(SPECS / f"{name}.json")
    model = randomised(spec)
    x = np.random.default_rng(1).standard_normal((2, 3, 48, 64)).astype(np.float32)
    expected = model(torch.from_numpy(x)).detach().numpy()  # the plain eager forward, as the oracle
    for backend in ("torch", "onnxruntime"):
        got = make_runner(model, backend)(x)
        assert got.shape == expected.shape
        scale = np.abs(expected).max()
        assert np.abs(got - expected).max() <= 1e-4 * scale, backend


def test_default_backend_is_onnxruntime_when_installed_else_torch(monkeypatch):
    assert default_backend() == "onnxruntime"
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "onnxruntime" else real(n, *a))
    assert default_backend() == "torch"


def test_runner_rejects_what_it_cannot_do(tmp_path):
    model = compile_spec(load_spec(SPECS / "fcn8s-mini.json"))
    with pytest.raises(BackendError, match="unknown backend"):
        make_runner(model, "tensorrt")
    with pytest.raises(BackendError, match="onnxruntime' only"):
        make_runner(tmp_path / "m.onnx", "torch")
    with pytest.raises(BackendError, match="needs a CUDA device"):
        make_runner(model, "torch", options=TorchOptions(amp="bf16"))


def test_size_fit_pads_to_a_valid_side_and_covers_the_image():
    fit = size_fit(analyze(load_spec(SPECS / "unet-original.json")))
    assert fit == SizeFit(min=188, step=16, shift=92, delta=-184)
    for n in (1, 100, 388, 389):
        side = fit.padded(n)
        assert (side - 188) % 16 == 0 and side + fit.delta >= n and side >= n + fit.shift
        assert fit.padded(n) - 16 < max(188, n - fit.delta)  # the smallest such side


def test_predictor_handles_odd_sizes_with_the_same_scores_as_a_valid_size():
    spec = load_spec(SPECS / "unet-mini.json")
    predictor = Predictor(make_runner(randomised(spec), "torch"), deploy_meta(spec))
    rgb = np.random.default_rng(2).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    scores = predictor.scores(rgb)
    assert scores.shape == (spec.num_classes, 37, 53)
    # the padded forward done by hand: normalise, zero-pad to 48x64, run, crop
    x = np.zeros((1, 3, 48, 64), np.float32)
    x[0, :, :37, :53] = predictor.normalise(rgb)
    np.testing.assert_allclose(scores, predictor.run(x)[0, :, :37, :53], rtol=0, atol=0)


def fake_run(tmp_path, name):
    spec = load_spec(SPECS / f"{name}.json")
    run = tmp_path / "run"
    save_checkpoint(run / "best.pt", {"model": randomised(spec).state_dict(), "spec": spec.canonical()})
    return spec, run


@pytest.mark.parametrize("name", ["fcn8s-mini", "unet-mini"])
def test_predict_from_onnx_and_sidecar_equals_predict_from_the_run(tmp_path, capsys, name):
    spec, run = fake_run(tmp_path, name)
    rng = np.random.default_rng(3)
    images = []
    for i, (h, w) in enumerate([(64, 64), (48, 80), (37, 53), (21, 70)]):  # valid and odd sizes
        images.append(tmp_path / f"img{i}.png")
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(images[-1])
    onnx = tmp_path / "deploy" / "model.onnx"
    assert main(["export", str(run), "--onnx", str(onnx), "--size", "64"]) == 0
    meta = json.loads((tmp_path / "deploy" / "model.onnx.json").read_text())
    assert meta["spec_hash"] == spec.digest() and meta["num_classes"] == spec.num_classes
    assert meta["classes"][1] == "box" and len(meta["palette"]) == spec.num_classes
    run.joinpath("best.pt").rename(tmp_path / "moved.pt")  # the ONNX side must not need the run
    assert main(["predict", str(onnx), *map(str, images), "-o", str(tmp_path / "a")]) == 0
    (tmp_path / "moved.pt").rename(run / "best.pt")
    assert main(["predict", str(run), *map(str, images), "-o", str(tmp_path / "b"), "--backend", "torch"]) == 0
    for image in images:
        a = np.asarray(Image.open(tmp_path / "a" / f"{image.stem}.png"))
        b = np.asarray(Image.open(tmp_path / "b" / f"{image.stem}.png"))
        assert a.shape == b.shape == np.asarray(Image.open(image)).shape[:2]
        assert (a == b).mean() >= 0.999  # argmax may flip only on float-level ties
    # the masks can be near-constant with random weights, so compare the scores as well
    deployed, trained = load_predictor(onnx), load_predictor(run, "torch")
    for image in images:
        rgb = np.asarray(Image.open(image))
        expected = trained.scores(rgb)
        np.testing.assert_allclose(deployed.scores(rgb), expected, atol=1e-4 * np.abs(expected).max())


def test_predict_from_onnx_without_sidecar_is_one_line(tmp_path, capsys):
    onnx = tmp_path / "m.onnx"
    assert main(["export", str(SPECS / "fcn8s-mini.json"), "--onnx", str(onnx), "--size", "32"]) == 0
    (tmp_path / "m.onnx.json").unlink()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "i.png")
    capsys.readouterr()
    assert main(["predict", str(onnx), str(tmp_path / "i.png"), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "m.onnx.json: missing" in err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("amp", ["none", "bf16", "fp16"])
def test_cuda_runner_matches_cpu(amp):
    spec = load_spec(SPECS / "fcn8s-mini.json")
    model = randomised(spec)
    x = np.random.default_rng(4).standard_normal((2, 3, 64, 64)).astype(np.float32)
    expected = make_runner(model, "torch")(x)
    got = make_runner(randomised(spec), "torch", options=TorchOptions("cuda", amp, channels_last=True))(x)
    tol = 1e-3 if amp == "none" else 5e-2
    assert np.abs(got - expected).max() <= tol * np.abs(expected).max()
