"""Net surgery: torchvision-layout VGG16 weights poured into the exact FCN-32s (fc6/fc7
reshaped, checked against the fully connected layers they replace), and FCN-16s started
from an FCN-32s run by node id, as in the paper's staged training."""

import pytest
import torch
import torch.nn.functional as F

from fcngraph.cli import main
from fcngraph.compile import compile_spec
from fcngraph.spec import load_spec
from fcngraph.surgery import SurgeryError, init_from

from .conftest import SPECS

# torchvision's vgg16().state_dict() layout, from the VGG16 layer table: conv layers sit at
# these `features` indices (ReLUs and pools between them), then three Linear layers.
VGG16_FEATURES = [(0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256), (12, 256, 256),
                  (14, 256, 256), (17, 256, 512), (19, 512, 512), (21, 512, 512), (24, 512, 512),
                  (26, 512, 512), (28, 512, 512)]
VGG16_CLASSIFIER = [(0, 512 * 7 * 7, 4096), (3, 4096, 4096), (6, 4096, 1000)]


@pytest.fixture(scope="module")
def vgg16_file(tmp_path_factory):
    g = torch.Generator().manual_seed(0)
    state = {}
    for index, cin, cout in VGG16_FEATURES:
        state[f"features.{index}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) / (cin * 9) ** 0.5
        state[f"features.{index}.bias"] = torch.randn(cout, generator=g)
    for index, cin, cout in VGG16_CLASSIFIER:
        state[f"classifier.{index}.weight"] = torch.randn(cout, cin, generator=g) / cin ** 0.5  # unit-scale outputs
        state[f"classifier.{index}.bias"] = torch.randn(cout, generator=g)
    path = tmp_path_factory.mktemp("vgg") / "vgg16.pth"
    torch.save(state, path)
    return path, state


def test_vgg16_into_fcn32s_reshapes_fc6_fc7_into_equivalent_convolutions(vgg16_file):
    path, vgg = vgg16_file
    spec = load_spec(SPECS / "fcn32s-vgg16.json")
    surgery = init_from(spec, path, "vgg16")
    state = surgery.state
    assert torch.equal(state["conv1.0.weight"], vgg["features.0.weight"])
    assert torch.equal(state["conv5.4.bias"], vgg["features.28.bias"])  # conv5_3: third conv of conv5
    assert surgery.reshaped == {"fc6.0.weight": "classifier.0.weight", "fc7.0.weight": "classifier.3.weight"}
    assert "classifier.6.weight" in surgery.unused  # the 1000-way ImageNet classifier is dropped
    assert set(surgery.kept_nodes()) >= {"score_fr", "upscore"}
    # the oracle: fc6/fc7 as convolutions on a 7x7 pool5 equal torchvision's Linear layers on the flattened map
    model = compile_spec(spec)
    model.load_state_dict(state)
    pool5 = torch.randn(2, 512, 7, 7)  # [B, C, 7, 7]
    fc6 = F.relu(F.linear(pool5.flatten(1), vgg["classifier.0.weight"], vgg["classifier.0.bias"]))  # [B, 4096]
    fc7 = F.relu(F.linear(fc6, vgg["classifier.3.weight"], vgg["classifier.3.bias"]))
    with torch.no_grad():
        conv6 = model.fc6(pool5)  # [B, 4096, 1, 1]
        conv7 = model.fc7(conv6)
    torch.testing.assert_close(conv6.flatten(1), fc6, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(conv7.flatten(1), fc7, rtol=1e-4, atol=1e-4)


def test_vgg16_into_a_spec_it_does_not_fit_names_the_node(vgg16_file, tmp_path, capsys):
    path, _ = vgg16_file
    with pytest.raises(SurgeryError, match=r"node 'conv1': conv1.0.weight has shape \[8, 3, 3, 3\]"):
        init_from(load_spec(SPECS / "fcn32s-mini.json"), path, "vgg16")
    assert main(["init-from", str(SPECS / "fcn-alexnet.json"), str(path), "--map", "vgg16", "-o",
                 str(tmp_path / "x.pt")]) == 2
    assert "VGG16 needs 15" in capsys.readouterr().err and not (tmp_path / "x.pt").exists()
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "junk.pth")
    with pytest.raises(SurgeryError, match="not a torchvision VGG16 state dict"):
        init_from(load_spec(SPECS / "fcn32s-vgg16.json"), tmp_path / "junk.pth", "vgg16")


QUICK = ["--set", "data.size=32", "--set", "data.train_samples=16", "--set", "data.val_samples=8",
         "--set", "train.batch_size=8", "--epochs", "1", "--quiet"]


def test_fcn16s_starts_from_an_fcn32s_run_by_node_id(tmp_path, capsys):
    assert main(["run", str(SPECS / "fcn32s-mini.json"), *QUICK, "--runs", str(tmp_path / "runs")]) == 0
    (run32,) = (tmp_path / "runs").iterdir()
    out = tmp_path / "fcn16s-init.pt"
    assert main(["init-from", str(SPECS / "fcn16s-mini.json"), str(run32), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "kept their own initialisation: upscore2, score_pool4, upscore16" in printed
    assert "not used from the source: upscore.weight" in printed
    trained = torch.load(run32 / "best.pt", weights_only=True)["model"]
    started = torch.load(out, weights_only=True)["model"]
    shared = [k for k in trained if k in started]
    assert len(shared) == len(trained) - 1 and all(torch.equal(trained[k], started[k]) for k in shared)
    assert torch.count_nonzero(started["score_pool4.weight"]) == 0  # new score layers start at zero
    assert main(["run", str(SPECS / "fcn16s-mini.json"), *QUICK, "--init", str(out),
                 "--runs", str(tmp_path / "runs16")]) == 0
    log = next((tmp_path / "runs16").iterdir()) / "log.txt"
    assert "initialised from" in log.read_text() and "copied" in log.read_text()
