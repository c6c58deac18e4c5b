import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
CAMVID = ROOT.parent / "shared" / "data" / "camvid"
sys.path.insert(0, str(ROOT))

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def specs_dir() -> Path:
    return SPECS


def tiny_spec(**nodes) -> dict:
    """A small valid spec dict to mutate in tests."""
    base = {
        "name": "tiny", "num_classes": 3,
        "nodes": {
            "c1": {"op": "conv", "in": "input", "out": [4, 4], "pad": 1},
            "p1": {"op": "pool", "in": "c1"},
            "c2": {"op": "conv", "in": "p1", "out": 8, "pad": 1},
            "s": {"op": "score", "in": "c2"},
            "up": {"op": "tconv", "in": "s", "factor": 2},
            "out": {"op": "crop", "in": "up", "to": "input"},
        },
        "output": "out",
    }
    base["nodes"].update(nodes)
    return base


def make_folder(root, n=6, size=(20, 16), classes=3, names=None):
    """A small images/masks/splits dataset with random pixels and labels."""
    rng = np.random.default_rng(0)
    for sub in ("images", "masks", "splits"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    stems = [f"s{i}" for i in range(n)]
    for stem in stems:
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(root / "images" / f"{stem}.png")
        Image.fromarray(rng.integers(0, classes, size, dtype=np.uint8)).save(root / "masks" / f"{stem}.png")
    (root / "splits" / "train.txt").write_text("\n".join(stems[:4]))
    (root / "splits" / "val.txt").write_text("\n".join(stems[4:]))
    (root / "classes.json").write_text(json.dumps({"classes": names or [f"c{i}" for i in range(classes)]}))
    return root
