import sys
from pathlib import Path

import pytest
import torch

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
