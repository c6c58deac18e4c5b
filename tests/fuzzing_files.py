"""Bad-input fuzzing of the CLI on files: corrupt data folders and run folders.

Data folders: a small valid dataset (images/masks/splits + classes.json, or the VOC layout) gets
one to three corruptions — truncated, garbled, zero-byte or bit-flipped images and masks, masks of
the wrong size, with labels out of range or unknown RGB colours, split files that are empty, not
UTF-8, or list stems that are missing, paths, too long or hold a NUL byte, classes.json garbled, of
the wrong length or type, directories where files belong, PNG/JPEG headers declaring huge sizes,
1x1 images, grayscale/RGBA/16-bit modes, file names that are not UTF-8 — and then goes through
`run --data`, `eval --data`, `predict` or `compare --data`.

Run folders: copies of real runs (two finished seeds of one spec, one stopped after its first
epoch) get corrupted summary.json, metrics.jsonl, spec.json, last.pt/best.pt (bytes, or a valid
file with hostile content), per-image-*.npz, eval-*.json, latency.json, lock files (garbage, dead,
zero or huge pids), missing files or directories in place of files, and then go through
`report`, `eval`, `predict`, `run --resume`, `compare`, `export` and `init-from`.

Every case runs in-process through `fcngraph.cli.main` under a per-case timeout (SIGALRM); the
outcome is classified by `tests.fuzzing.Outcome` (exit 0, or one `fcngraph: error:` line with a
documented status; a timeout is status -1, a broken promise).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shutil
import signal
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tests.fuzzing import HOSTILE_VALUES, Outcome, mutate

TIMEOUT_S = 60.0  # per case; a tiny case takes well under a second
HANG = -1  # the status recorded for a case that ran past its timeout
CLASSES = ["background", "thing", "stuff"]
PALETTE = [[0, 0, 0], [200, 30, 30], [30, 200, 30]]


class CaseTimeout(BaseException):
    """Raised by SIGALRM inside a case that ran too long (a BaseException: the CLI must not catch it)."""


def call_cli(argv: list[str], timeout: float = TIMEOUT_S) -> tuple[int, str]:
    """`fcngraph.cli.main(argv)` with stdout swallowed → (status, stderr); HANG after `timeout` s."""
    from fcngraph import cli

    def on_alarm(signum, frame):
        raise CaseTimeout

    err = io.StringIO()
    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")  # strict, as a terminal's UTF-8 stdout
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                status = cli.main(argv)
            except SystemExit as exc:  # argparse
                status = exc.code if isinstance(exc.code, int) else 2
    except CaseTimeout:
        return HANG, err.getvalue() + f"no result after {timeout:.0f} s\n"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return status, err.getvalue()


# -- fixtures: a spec, two data folders, three runs ----------------------------------------------------
def tiny_spec(name: str = "fz", **train) -> dict:
    """A 3-class net small enough that a training step is milliseconds (runs on sides ≥ 2)."""
    return {
        "name": name, "num_classes": 3,
        "nodes": {
            "c1": {"op": "conv", "in": "input", "out": 4, "pad": 1},
            "p1": {"op": "pool", "in": "c1"},
            "s": {"op": "score", "in": "p1"},
            "up": {"op": "tconv", "in": "s", "factor": 2},
            "out": {"op": "crop", "in": "up", "to": "input"},
        },
        "output": "out",
        "train": {"epochs": 1, "batch_size": 2, "threads": 1, "device": "cpu", **train},
    }


def _save(image: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="JPEG" if path.suffix == ".jpg" else "PNG")


def make_data(root: Path, voc: bool, rng: np.random.Generator) -> Path:
    """Four samples (two train, two val) of 12x16 and 16x16 pixels; index masks (palette masks in VOC)."""
    images, masks, splits = (("JPEGImages", "SegmentationClass", "ImageSets/Segmentation") if voc
                             else ("images", "masks", "splits"))
    stems = ["a", "b", "c", "d"]
    for i, stem in enumerate(stems):
        size = (12, 16) if i % 2 else (16, 16)
        _save(Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)),
              root / images / f"{stem}{'.jpg' if voc else '.png'}")
        mask = Image.fromarray(rng.integers(0, 3, size, dtype=np.uint8))
        if voc:
            mask = mask.convert("P")
            mask.putpalette([v for colour in PALETTE for v in colour])
        _save(mask, root / masks / f"{stem}.png")
    (root / splits).mkdir(parents=True, exist_ok=True)
    (root / splits / "train.txt").write_text("a\nb\n")
    (root / splits / "val.txt").write_text("c\nd\n")
    (root / "classes.json").write_text(json.dumps({"classes": CLASSES, "palette": PALETTE}))
    return root


@dataclass(frozen=True)
class Fixtures:
    root: Path
    spec: Path        # tiny_spec, 1 epoch of 1 step
    spec_seed1: Path  # the same with train.seed 1 (a second seed of one variant)
    spec_long: Path   # 2 epochs: its run is stopped after the first
    data: Path        # images/masks/splits + classes.json with a palette
    voc: Path         # VOC layout, JPEG images, palette masks
    runs: Path        # the three runs below, pristine (cases work on copies)
    finished: Path
    finished_seed1: Path
    stopped: Path


def build_fixtures(root: Path) -> Fixtures:
    """Data folders and trained runs that every case starts from (a few seconds, once per process)."""
    from fcngraph.checkpoint import load_checkpoint, save_checkpoint

    root = Path(root)
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(0)
    data, voc = make_data(root / "data", False, rng), make_data(root / "voc", True, rng)
    specs = {}
    for key, doc in (("spec", tiny_spec()), ("spec_seed1", tiny_spec(seed=1)),
                     ("spec_long", tiny_spec("fz-long", epochs=2))):
        specs[key] = root / f"{key}.json"
        specs[key].write_text(json.dumps(doc))
    runs = root / "runs"
    made = {}
    for key in specs:
        before = set(runs.iterdir()) if runs.is_dir() else set()
        status, err = call_cli(["run", str(specs[key]), "--data", str(data), "--runs", str(runs), "--quiet"])
        assert status == 0, err
        (made[key],) = set(runs.iterdir()) - before
        if key == "spec":  # an eval and a report leave their files (eval-val.json, latency.json) too
            assert call_cli(["eval", str(made[key]), "--backend", "torch"])[0] == 0
            assert call_cli(["report", str(made[key]), "-o", str(root / "report")])[0] == 0
    stopped = made["spec_long"]  # rewind to "stopped after epoch 1": what a kill between epochs leaves
    state = load_checkpoint(stopped / "last.pt")
    state["epoch"], state["history"] = 0, state["history"][:1]
    save_checkpoint(stopped / "last.pt", state)
    (stopped / "summary.json").unlink()
    lines = (stopped / "metrics.jsonl").read_text().splitlines(keepends=True)
    (stopped / "metrics.jsonl").write_text(lines[0])
    return Fixtures(root, specs["spec"], specs["spec_seed1"], specs["spec_long"], data, voc, runs,
                    made["spec"], made["spec_seed1"], stopped)


# -- corrupting bytes ------------------------------------------------------------------------------
def _png_header(width: int, height: int, mode: int = 2) -> bytes:
    """A PNG signature and IHDR declaring width x height (colour type `mode`), then a short IDAT and IEND."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, mode, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _jpeg_header(width: int, height: int) -> bytes:
    """SOI, a baseline SOF0 declaring height x width, then end of image."""
    sof = struct.pack(">BBHBHHB", 0xFF, 0xC0, 17, 8, height, width, 3)
    sof += b"".join(bytes([i, 0x11, 0]) for i in (1, 2, 3))
    return b"\xff\xd8" + sof + b"\xff\xd9"


def garbage(rng: random.Random) -> bytes:
    body = bytes(rng.getrandbits(8) for _ in range(rng.choice([1, 7, 64, 600])))
    prefix = rng.choice([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"BM", b"PK\x03\x04",
                         b"\x80\x02", b"{", b"\x93NUMPY"])
    return prefix + body


def clear(path: Path) -> Path:
    """Remove whatever is at `path` (file, link, folder), so something else can be written there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def corrupt_bytes(path: Path, rng: random.Random) -> str:
    """Truncate, garble, empty, flip bytes of, or replace by a directory or a FIFO, the file at `path`."""
    kind = rng.choice(["truncate", "truncate", "flip", "flip", "garbage", "zero", "directory", "not utf-8", "fifo"])
    data = path.read_bytes() if path.is_file() else b""
    clear(path)
    if kind == "truncate" and data:
        path.write_bytes(data[:rng.randrange(len(data))])
    elif kind == "flip" and data:
        buf = bytearray(data)
        for _ in range(rng.choice([1, 2, 8])):
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(buf))
    elif kind == "garbage":
        path.write_bytes(garbage(rng))
    elif kind == "directory":
        path.mkdir()
        (path / "inside.txt").write_text("x")
    elif kind == "not utf-8":
        path.write_bytes(b"\xff\xfe\x00bad \xc3\x28 " + data[:40])
    elif kind == "fifo":  # opening it for reading waits for a writer: a hang unless refused
        os.mkfifo(path)
    else:
        path.write_bytes(b"")
        kind = "zero"
    return f"{kind} {path.name}"


def short(argv: list[str], case: Path, fx: Fixtures) -> str:
    """The command line with the case and fixture folders abbreviated, for reports of broken cases."""
    return " ".join(argv).replace(str(case), "CASE").replace(str(fx.root), "FIXTURES")


# -- data folders ----------------------------------------------------------------------------------
def layout(root: Path) -> dict[str, Path]:
    voc = (root / "JPEGImages").exists() or (root / "SegmentationClass").exists()
    return {"images": root / ("JPEGImages" if voc else "images"),
            "masks": root / ("SegmentationClass" if voc else "masks"),
            "splits": root / ("ImageSets/Segmentation" if voc else "splits"), "classes": root / "classes.json"}


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()) if folder.is_dir() else []


def _pick(rng: random.Random, paths: list[Path], fallback: Path) -> Path:
    return rng.choice(paths) if paths else fallback


def _size_of(path: Path) -> tuple[int, int]:
    if not path.is_file():  # a folder or a FIFO left by an earlier mutation
        return 16, 16
    try:
        with Image.open(path) as img:
            return img.height, img.width
    except Exception:  # noqa: BLE001 - an already corrupted file
        return 16, 16


def _write_image(path: Path, image: Image.Image) -> None:
    clear(path)
    jpeg = path.suffix in (".jpg", ".jpeg") and image.mode in ("L", "RGB") or image.mode == "CMYK"
    fmt = "JPEG" if jpeg else "PNG"  # a CMYK JPEG under a .png name: the content decides
    image.save(path, format=fmt)


def data_mutation(root: Path, rng: random.Random) -> str:
    """One corruption of the data folder at `root`; returns what it did."""
    where = layout(root)
    images, masks = _files(where["images"]), _files(where["masks"])
    split_files = _files(where["splits"])
    kind = rng.choice(["bytes", "bytes", "bytes", "mask size", "mask labels", "mask rgb", "image mode",
                       "bomb", "split", "split", "classes", "classes", "names", "remove", "tiny"])
    if kind == "bytes":
        target = rng.choice([*images, *masks, *split_files, where["classes"]])
        return corrupt_bytes(target, rng)
    if kind == "mask size" and masks:
        mask = rng.choice(masks)
        h, w = _size_of(mask)
        h, w = rng.choice([(h + 1, w), (h, w - 1), (1, 1), (w, h), (h * 2, w * 2)])
        _write_image(mask, Image.fromarray(np.zeros((max(h, 1), max(w, 1)), np.uint8)))
        return f"mask {mask.name} resized to {w}x{h}"
    if kind == "mask labels" and masks:
        mask = rng.choice(masks)
        h, w = _size_of(mask)
        value = rng.choice([3, 4, 100, 254, 255, 256, 1000, 65535])
        labels = np.full((h, w), value, np.int32)
        labels[0, 0] = rng.choice([0, value])
        image = (Image.fromarray(labels.astype(np.uint16)) if value > 255 else
                 Image.fromarray(labels.astype(np.uint8)))
        _write_image(mask, image)
        return f"mask {mask.name} labels {value}"
    if kind == "mask rgb" and masks:
        mask = rng.choice(masks)
        h, w = _size_of(mask)
        rgb = np.zeros((h, w, 3), np.uint8)
        rgb[:] = rng.choice([PALETTE[1], [1, 2, 3], [255, 255, 255]])
        mode = rng.choice(["RGB", "RGBA", "LA"])
        image = Image.fromarray(rgb).convert(mode)
        _write_image(mask, image)
        return f"mask {mask.name} as {mode} {rgb[0, 0].tolist()}"
    if kind == "image mode" and images:
        image = rng.choice(images)
        h, w = _size_of(image)
        base = Image.fromarray(np.random.default_rng(rng.randrange(99)).integers(0, 255, (h, w, 3), dtype=np.uint8))
        mode = rng.choice(["L", "LA", "RGBA", "P", "I;16", "1", "CMYK", "F"])
        if mode == "F":
            converted = Image.fromarray(np.zeros((h, w), np.float32))
            target = image.with_suffix(".tiff")
            if image.is_file():
                image.unlink()
            converted.save(target)  # a float TIFF under a name the folder does not look for
            return f"image {image.name} replaced by a float TIFF"
        converted = base.convert("I;16" if mode == "I;16" else mode)
        _write_image(image, converted)
        return f"image {image.name} as mode {mode}"
    if kind == "bomb":
        target = rng.choice([*images, *masks] or [where["images"] / "a.png"])
        side = rng.choice([(100_000, 100_000), (65_535, 65_535), (7_000, 7_000), (60_000, 1), (1, 60_000),
                           (0, 10), (2**31 - 1, 1)])
        clear(target)
        data = _jpeg_header(min(side[0], 65_535), min(side[1], 65_535)) if rng.random() < 0.3 else \
            _png_header(*side, rng.choice([0, 2, 3, 6]))
        target.write_bytes(data)
        return f"{target.name} declares {side[0]}x{side[1]}"
    if kind == "split":
        path = rng.choice(split_files or [where["splits"] / "train.txt"])
        clear(path)
        choice = rng.choice(["empty", "blank", "bytes", "bom", "crlf", "missing", "dotdot", "absolute", "nul",
                             "long", "dupes", "backslash", "dot", "space", "tab", "glob", "only"])
        text = {"empty": b"", "blank": b"\n \n\t\n", "bytes": b"a\n\xff\xfe\n", "bom": "\ufeffa\nb\n".encode(),
                "crlf": b"a\r\nb\r\n", "missing": b"a\nnope\n", "dotdot": b"../data/images/a\n",
                "absolute": b"/etc/passwd\n", "nul": b"a\x00b\n", "long": b"x" * 300 + b"\n",
                "dupes": b"a\na\na\n", "backslash": b"..\\a\n", "dot": b".\n..\n", "space": b"a b\n",
                "tab": b"a\tb\n", "glob": b"*\n", "only": b"c\n"}[choice]
        path.write_bytes(text)
        return f"split {path.name}: {choice}"
    if kind == "classes":
        value = rng.choice([
            "{", "[]", "null", "3", '"abc"', '{"classes": "abc"}', '{"classes": 3}', '{"classes": {"a": 1}}',
            '{"classes": ["a", "b"]}', '{"classes": ["a", "b", "c", "d"]}', '{"classes": [1, 2, 3]}',
            '{"classes": ["a", "b", "c"], "palette": [[0, 0, 0]]}',
            '{"classes": ["a", "b", "c"], "palette": [[0, 0, 0], [1, 2], [3, 4, 5]]}',
            '{"classes": ["a", "b", "c"], "palette": [[300, 0, 0], [-1, 0, 0], [0, 0, 0]]}',
            '{"classes": ["a", "b", "c"], "palette": [[1e400, 0, 0], [0, 0, 0], [1, 1, 1]]}',
            '{"classes": ["a", "b", "c"], "palette": [[NaN, 0, 0], [0, 0, 0], [1, 1, 1]]}',
            '{"classes": ["a", "b", "c"], "palette": "rgb"}', '{"classes": ["a", "b", "c"], "palette": 5}',
            '{"classes": ["a", "b", "c"], "palette": [[0.5, 0, 0], [0, 0, 0], [1, 1, 1]]}',
            '{"classes": ["a", "b", "c"], "palette": [["a", 0, 0], [0, 0, 0], [1, 1, 1]]}',
            '{"classes": [null, [], {}]}', '{"classes": ["", "", ""]}',
            "[" * 100_000 + "]" * 100_000, '{"classes": ' + "[" * 5000 + "]" * 5000 + "}",
        ])
        clear(where["classes"]).write_text(value)
        return f"classes.json = {value[:60]}"
    if kind == "names":
        folder = rng.choice([where["images"], where["masks"]])
        if not folder.is_dir():
            clear(folder).mkdir()
        choice = rng.choice(["not utf-8", "dangling link", "folder.png", "link loop", "hidden"])
        if choice == "not utf-8":
            with open(os.fsencode(folder) + b"/\xff\xfe.png", "wb") as handle:  # a name that is not UTF-8
                handle.write(b"x")
        elif choice == "dangling link":
            clear(folder / "dangling.png").symlink_to(folder / "nowhere.png")
        elif choice == "folder.png":
            clear(folder / "folder.png").mkdir()
        elif choice == "link loop":
            clear(folder / "loop.png").symlink_to(folder / "loop.png")
        else:
            clear(folder / ".hidden.png").write_bytes(b"")
        return f"{folder.name}: {choice} entry"
    if kind == "remove":
        target = rng.choice([where["images"], where["masks"], where["splits"], where["classes"],
                             *images, *masks, *split_files])
        clear(target)
        return f"removed {target.name}"
    # tiny: every sample 1x1 (or 1xN), image and mask alike
    h, w = rng.choice([(1, 1), (1, 16), (16, 1), (2, 2)])
    for image in images:
        if image.is_file():
            _write_image(image, Image.fromarray(np.full((h, w, 3), 128, np.uint8)))
    for mask in masks:
        if mask.is_file():
            _write_image(mask, Image.fromarray(np.ones((h, w), np.uint8)))
    return f"every sample {w}x{h}"


DATA_SETS = [[], [], [], ["--skip-bad"], ["--set", "data.max_pixels=300"], ["--set", "data.cache=false"],
             ["--set", "data.pad=false"], ["--set", "train.crop_size=8"],
             ["--set", "train.class_weights=\"median_frequency\""], ["--set", "train.scale_range=[0.5, 1.5]"],
             ["--set", "train.workers=1"],
             ["--set", "input.channels=1", "--set", "data.mean=[0.5]", "--set", "data.std=[0.25]"],  # grayscale
             ["--set", "input.channels=4", "--set", "data.mean=[0.5,0.5,0.5,0.5]",
              "--set", "data.std=[0.25,0.25,0.25,0.25]"]]  # RGBA


def fuzz_data(fx: Fixtures, rng: random.Random, tmp: Path, timeout: float = TIMEOUT_S) -> Outcome:
    """A corrupted copy of a data folder through run, eval, predict or compare."""
    case = Path(tmp) / "case"
    shutil.rmtree(case, ignore_errors=True)
    case.mkdir(parents=True)
    data = case / "data"
    shutil.copytree(rng.choice([fx.data, fx.data, fx.voc]), data, symlinks=True)
    mutations = [data_mutation(data, rng) for _ in range(rng.choice([1, 1, 2, 3]))]
    command = rng.choice(["run", "run", "run", "run", "eval", "predict", "compare"])
    where = layout(data)
    if command == "run":
        argv = ["run", str(fx.spec), "--data", str(data), "--runs", str(case / "runs"), "--quiet",
                *rng.choice(DATA_SETS)]
    elif command == "compare":
        argv = ["compare", str(fx.spec), "--data", str(data), "--runs", str(case / "runs"), "-o",
                str(case / "report"), "--quiet"]
    elif command == "eval":
        run = case / "run"
        shutil.copytree(fx.finished, run)
        argv = ["eval", str(run), "--data", str(data), "--split", rng.choice(["val", "val", "train", "nope"]),
                "--backend", "torch", *rng.choice([[], [], ["--tta", "flip"], ["--tile", "8"], ["--tta", rng.choice(
                    ["flip+scales=0.125,8", "scales=0.5,2", "scales=1e9", "scales=nan", "scales=0.01,1"])]])]
    else:
        files = _files(where["images"]) or [where["images"] / "a.png"]
        chosen = rng.sample(files, min(len(files), rng.choice([1, 2])))
        argv = ["predict", str(fx.finished), *map(str, chosen), "-o", str(case / "out"), "--backend", "torch",
                *(["--masks", str(where["masks"])] if rng.random() < 0.5 else [])]
    status, stderr = call_cli(argv, timeout)
    return Outcome(f"data {command}", status, stderr, "; ".join(mutations) + " | " + short(argv, case, fx))


# -- run folders -------------------------------------------------------------------------------------
RUN_FILES = ["summary.json", "summary.json", "metrics.jsonl", "metrics.jsonl", "spec.json", "spec.json",
             "last.pt", "last.pt", "best.pt", "best.pt", "per-image-val.npz", "per-image-val.npz", "eval-val.json",
             "latency.json", "class_weights.json", "failed.txt", "log.txt", "lock", "metrics.csv"]
DEAD_PIDS = ["", "garbage", "0", "-1", "-7", "4194304", "99999999999999999999", "1.5", " 12 ", "\x00", "2147483648"]


def _json_or_none(path: Path):
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except Exception:  # noqa: BLE001
        return None


def _hostile_checkpoint(state, rng: random.Random):
    """A checkpoint payload with one part made hostile (what a hand-edited or foreign file could hold)."""
    import torch

    if not isinstance(state, dict) or rng.random() < 0.1:
        return rng.choice([[1, 2], torch.zeros(3), {"weights": torch.zeros(2)}, None, "text", 3])
    state = dict(state)
    key = rng.choice(["model", "model", "optimizer", "epoch", "best", "history", "spec", "classes", "palette"])
    if key == "model" and isinstance(state.get("model"), dict):
        model = dict(state["model"])
        name = rng.choice(sorted(model)) if model else "x"
        choice = rng.choice(["shape", "drop", "extra", "dtype", "nontensor"])
        if choice == "shape":
            model[name] = torch.zeros(1, 2, 3)
        elif choice == "drop":
            model.pop(name, None)
        elif choice == "extra":
            model["bogus.weight"] = torch.zeros(1)
        elif choice == "dtype":
            model[name] = model[name].to(torch.int64) if name in model else torch.zeros(1)
        else:
            model[name] = rng.choice([3, "x", None, [1.0]])
        state["model"] = model
        return state
    value = rng.choice([*HOSTILE_VALUES[:16], {"state": {}, "param_groups": []}, [{"epoch": 1}], [None], ["x"],
                        {"miou": 1}, [[1, 2], [3]], [["a", "b", "c"]], float("nan")])
    if rng.random() < 0.2:
        state.pop(key, None)
    else:
        state[key] = value
    return state


READ_BY = {  # the files of a run folder each command reads (a case corrupts these more often)
    "eval": ["best.pt", "last.pt"], "predict": ["best.pt"], "export": ["best.pt"], "init-from": ["best.pt"],
    "run": ["summary.json", "last.pt", "lock", "class_weights.json", "spec.json"],
    "compare": ["summary.json", "last.pt", "lock", "metrics.jsonl", "per-image-val.npz", "latency.json", "best.pt"],
    "report": ["summary.json", "metrics.jsonl", "spec.json", "per-image-val.npz", "best.pt", "eval-val.json",
               "latency.json", "failed.txt"],
}


def run_mutation(run: Path, rng: random.Random, others: list[Path], command: str = "report") -> str:
    """One corruption of the run folder `run` (mostly of a file `command` reads); returns what it did."""
    name = rng.choice(READ_BY[command] if rng.random() < 0.7 else RUN_FILES)
    path = run / name
    kind = rng.choice(["bytes", "bytes", "content", "content", "content", "delete", "swap"])
    if name == "lock":
        if rng.random() < 0.2:
            clear(path).mkdir()
            return "lock is a directory"
        pid = rng.choice([*DEAD_PIDS, str(os.getpid())])
        clear(path).write_text(pid)
        return f"lock holds {pid!r}"
    if kind == "delete":
        clear(path)
        return f"deleted {name}"
    if kind == "swap":
        other = rng.choice(others) / name
        if other.is_file() and other.resolve() != path.resolve():
            shutil.copyfile(other, clear(path))
            return f"{name} from {other.parent.name}"
        kind = "content"
    if kind == "bytes" or name in ("log.txt", "metrics.csv", "failed.txt") and rng.random() < 0.5:
        return corrupt_bytes(path, rng)
    if name.endswith(".json"):
        doc = _json_or_none(path)
        doc = doc if doc is not None else {"miou": 0.5}
        choice = rng.choice(["mutate", "mutate", "mutate", "type", "nested", "nan"])
        if choice == "mutate" and isinstance(doc, (dict, list)) and doc:
            for _ in range(rng.choice([1, 2])):
                if isinstance(doc, (dict, list)) and doc:  # a first mutation may leave nothing to mutate
                    doc, what = mutate(doc, rng)
        elif choice == "type":
            doc, what = rng.choice([[], "x", 3, None, True, [doc]]), "type"
        elif choice == "nested":
            clear(path).write_text("[" * 50_000 + "]" * 50_000)
            return f"{name} nested 50,000 deep"
        else:
            doc, what = {**doc, "miou": float("nan")} if isinstance(doc, dict) else float("nan"), "miou NaN"
        clear(path).write_text(json.dumps(doc, allow_nan=True))
        return f"{name}: {what if choice != 'mutate' else 'mutated'}"[:120]
    if name == "metrics.jsonl":
        rows = path.read_text(errors="replace").splitlines() if path.is_file() else []
        extra = rng.choice(['3', '[]', 'null', '"x"', '{"epoch": "x"}', '{"miou": "x", "epoch": 1}', '{}',
                            '{"epoch": 1, "miou": NaN, "loss": Infinity}', '{"epoch": 1e400}', "{" * 3000,
                            '{"epoch": 2, "miou": 0.5, "loss": [1]}', '{"epoch": null, "miou": 0.1}'])
        at = rng.randrange(len(rows) + 1)
        rows.insert(at, extra)
        clear(path).write_text("\n".join(rows) + "\n")
        return f"metrics.jsonl line {at} = {extra[:40]}"
    if name.endswith(".pt"):
        import torch

        from fcngraph.checkpoint import load_checkpoint, save_checkpoint

        try:
            state = load_checkpoint(path)
        except Exception:  # noqa: BLE001 - already corrupted, or missing
            state = None
        payload = _hostile_checkpoint(state, rng)
        clear(path)
        if rng.random() < 0.05:  # a pickle that is more than tensors
            with open(path, "wb") as handle:
                torch.save({"model": {}, "x": Fixtures}, handle)
            return f"{name} pickles a class"
        save_checkpoint(path, payload)
        return f"{name} with hostile content"
    if name.endswith(".npz"):
        arrays = {}
        try:
            if not path.is_file():
                raise OSError("not a regular file")
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception:  # noqa: BLE001
            pass
        choice = rng.choice(["drop", "shape", "rows", "dtype", "negative", "object", "empty", "extra"])
        key = rng.choice(["stems", "tp", "gt", "pred"])
        if choice == "drop":
            arrays.pop(key, None)
        elif choice == "shape":
            arrays[key] = np.zeros((2, 7), np.int64)
        elif choice == "rows":
            arrays[key] = arrays.get(key, np.zeros((2, 3), np.int64))[:1]
        elif choice == "dtype":
            arrays[key] = np.full((2, 3), 0.5) if key != "stems" else np.array([1, 2])
        elif choice == "negative":
            arrays[key] = -np.ones((2, 3), np.int64) if key != "stems" else np.array(["", ""])
        elif choice == "object":
            arrays[key] = np.array([None, {}], dtype=object)
        elif choice == "empty":
            arrays = {k: np.zeros((0,) + np.shape(v)[1:], np.asarray(v).dtype) for k, v in arrays.items()}
        else:
            arrays["x"] = np.zeros(1)
        with open(clear(path), "wb") as handle:
            np.savez(handle, **arrays)
        return f"{name}: {choice} {key}"
    return corrupt_bytes(path, rng)


def fuzz_runs(fx: Fixtures, rng: random.Random, tmp: Path, timeout: float = TIMEOUT_S) -> Outcome:
    """Corrupted copies of run folders through report, eval, predict, run --resume, compare, export, init-from."""
    case = Path(tmp) / "case"
    shutil.rmtree(case, ignore_errors=True)
    runs = case / "runs"
    shutil.copytree(fx.runs, runs)
    copies = {key: runs / getattr(fx, key).name for key in ("finished", "finished_seed1", "stopped")}
    key = rng.choice(["finished", "finished", "finished_seed1", "stopped"])
    run = copies[key]
    command = rng.choice(["report", "report", "eval", "predict", "run", "run", "compare", "export", "init-from"])
    mutations = [run_mutation(run, rng, [p for p in copies.values() if p != run], command)
                 for _ in range(rng.choice([1, 1, 2, 3]))]
    spec = {"finished": fx.spec, "finished_seed1": fx.spec_seed1, "stopped": fx.spec_long}[key]
    if command == "report":
        partner = rng.choice([[], [copies["finished_seed1"] if key != "finished_seed1" else copies["finished"]],
                              [copies["stopped"]]])
        argv = ["report", str(run), *map(str, partner), "-o", str(case / "report")]
    elif command == "eval":
        argv = ["eval", str(run), "--backend", "torch", *rng.choice([[], ["--checkpoint", "last"]])]
    elif command == "predict":
        argv = ["predict", str(run), str(fx.data / "images" / "a.png"), "-o", str(case / "out"),
                "--backend", "torch", "--masks", str(fx.data / "masks")]
    elif command == "run":
        argv = ["run", str(spec), "--data", str(fx.data), "--runs", str(runs), "--quiet",
                *(["--resume"] if rng.random() < 0.7 else [])]
    elif command == "compare":
        argv = ["compare", str(spec), "--data", str(fx.data), "--runs", str(runs), "-o", str(case / "report"),
                "--quiet"]
    elif command == "export":
        argv = ["export", str(run), "--onnx", str(case / "m.onnx"), "--size", "16"]
    else:
        argv = ["init-from", str(fx.spec), str(run), "-o", str(case / "init.pt")]
    status, stderr = call_cli(argv, timeout)
    return Outcome(f"runs {command}", status, stderr, f"{key}: " + "; ".join(mutations) + " | " + short(argv, case, fx))


_FIXTURES: dict[str, Fixtures] = {}


def fixtures_in(tmp: Path) -> Fixtures:
    """The fixtures under `tmp`, built on first use in this process."""
    key = str(Path(tmp).resolve())
    if key not in _FIXTURES:
        _FIXTURES[key] = build_fixtures(Path(tmp) / "fixtures")
    return _FIXTURES[key]


__all__ = ["Fixtures", "build_fixtures", "call_cli", "fixtures_in", "fuzz_data", "fuzz_runs"]
