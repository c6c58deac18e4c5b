"""Image and label files → numpy arrays, sizes read from headers, and the one value scaling
every input goes through on its way to the network.

Formats, chosen by suffix:
- PIL images (.png, .jpg, .jpeg and anything else Pillow opens): converted to what the spec asks,
  grayscale (1 channel) or RGB (3); a 16-bit grayscale PNG stays 16-bit.
- TIFF (.tif, .tiff; read with tifffile, which Pillow cannot replace for multi-channel 16-bit files):
  one plane [H, W], interleaved samples [H, W, C], or planes / pages [C, H, W] (one page per channel).
- NumPy (.npy): [H, W] or [H, W, C].
A TIFF or .npy stack must hold exactly the spec's `input.channels`; nothing is converted.

Scaling to float (`to_unit`, `unit_scale`): uint8 / 255, uint16 / 65535, float as is (so float
data should already be in the range `data.mean`/`data.std` describe); other dtypes are refused.
Sizes and channel counts are read from the header (PIL's lazy open, the .npy header, the TIFF's
IFDs, not its pixels) and checked before anything is decoded.
"""

from __future__ import annotations

import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .errors import DataError

IMAGE_SUFFIXES = (".jpg", ".png", ".jpeg", ".tif", ".tiff", ".npy")  # lookup order for a stem
MASK_SUFFIXES = (".png", ".npy", ".tif", ".tiff")
STACK_SUFFIXES = (".tif", ".tiff", ".npy")  # read with numpy/tifffile, never converted
SCALES = {("u", 1): 255.0, ("u", 2): 65535.0, ("f", 2): 1.0, ("f", 4): 1.0, ("f", 8): 1.0}  # (kind, bytes)
# tifffile raises these (TiffFileError is a ValueError) on damaged files, numpy the first three
DECODE_ERRORS = (OSError, ValueError, EOFError, IndexError, KeyError, struct.error)


def find_file(folder: Path, stem: str, suffixes: tuple[str, ...]) -> Path:
    """folder/stem + the first suffix that exists (the first suffix when none does)."""
    return next((folder / f"{stem}{s}" for s in suffixes if (folder / f"{stem}{s}").is_file()),
                folder / f"{stem}{suffixes[0]}")


# -- value scaling --------------------------------------------------------------------------------
def unit_scale(dtype: np.dtype) -> float:
    """What pixels of this dtype are divided by to reach 0..1 (1 for float data, taken as is);
    by kind and size, so big-endian files (TIFF, .npy) scale like little-endian ones."""
    dtype = np.dtype(dtype)
    if (dtype.kind, dtype.itemsize) in SCALES:
        return SCALES[dtype.kind, dtype.itemsize]
    raise ValueError(f"{dtype} pixels; images must be uint8, uint16 or float")


def to_unit(image: np.ndarray) -> torch.Tensor:
    """[H, W, C] uint8/uint16/float → float32 [C, H, W]: uint8 / 255, uint16 / 65535, float as is."""
    scale = unit_scale(image.dtype)
    x = torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1)  # a copy: cached arrays stay intact
    return x / scale if scale != 1.0 else x


# -- headers --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Header:
    """What a file promises before decoding: size, channels, pixel type and (TIFF) axes."""

    height: int
    width: int
    channels: int
    dtype: np.dtype
    layout: str = "HWC"  # or "CHW" (planes / pages first), "series" (one TIFF series per channel)


def _refuse_special(path: Path, what: str) -> None:
    if path.exists() and not path.is_file():  # a folder, or a FIFO that open() would wait on forever
        raise DataError(f"{path}: unreadable {what} (not a regular file)")


def open_pil(path: Path, max_pixels: int, what: str) -> Image.Image:
    """Open without decoding, refusing files whose header promises more than max_pixels."""
    _refuse_special(path, what)
    try:
        with warnings.catch_warnings():  # PIL's own bomb warning: max_pixels below decides instead
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError):
        raise DataError(f"{path}: unreadable {what}") from None
    if img.width * img.height > max_pixels:
        img.close()
        raise DataError(f"{path}: {img.width}x{img.height} {what} is over data.max_pixels ({max_pixels:,})")
    return img


def _npy_header(path: Path) -> Header:
    """The .npy header alone (numpy's public reader; versions 1 and 2: version 3 only adds
    unicode field names, which no image has), so a huge or truncated file is judged unread."""
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        if version not in readers:
            raise ValueError(f".npy format version {version[0]}.{version[1]}")
        shape, _, dtype = readers[version](handle)
    if len(shape) not in (2, 3):
        raise ValueError(f"array of shape {shape}; expected [H, W] or [H, W, C]")
    return Header(shape[0], shape[1], shape[2] if len(shape) == 3 else 1, dtype)


def _tiff_header(path: Path) -> Header:
    import tifffile  # imported here: only TIFF stacks need it

    with tifffile.TiffFile(path) as tif:
        series = [(tuple(x.shape), x.axes, x.dtype) for x in tif.series]
    if not series:
        raise ValueError("no image in the file")
    (shape, axes, dtype), count = series[0], len(series)
    if count > 1:  # pages written one by one with shape metadata: tifffile reads one series per page
        if any(len(s[0]) != 2 or s[0] != shape or s[2] != dtype for s in series):
            raise ValueError(f"{count} image series that are not planes of one size and type")
        return Header(shape[0], shape[1], count, dtype, "series")
    if len(shape) == 2:
        return Header(shape[0], shape[1], 1, dtype)
    if len(shape) == 3 and axes.endswith("S"):  # interleaved samples
        return Header(shape[0], shape[1], shape[2], dtype)
    if len(shape) == 3 and axes.endswith("YX"):  # planar samples, or one page per channel
        return Header(shape[1], shape[2], shape[0], dtype, "CHW")
    raise ValueError(f"TIFF of shape {shape} (axes {axes}); expected YX, YXS or one page per channel")


def header(path: Path, max_pixels: int, what: str = "image") -> Header:
    """Size, channels and dtype of a TIFF/.npy stack from its header, over-size files refused."""
    _refuse_special(path, what)
    try:
        head = _tiff_header(path) if path.suffix.lower() in (".tif", ".tiff") else _npy_header(path)
    except DECODE_ERRORS as exc:
        raise DataError(f"{path}: unreadable {what} ({exc})") from None
    if head.height * head.width > max_pixels:
        raise DataError(f"{path}: {head.width}x{head.height} {what} is over data.max_pixels ({max_pixels:,})")
    if head.height == 0 or head.width == 0:
        raise DataError(f"{path}: empty {what} ({head.width}x{head.height})")
    return head


def _decode(path: Path, head: Header) -> np.ndarray:
    """The pixels as stored: [H, W], [H, W, C] or (layout CHW/series) [C, H, W]."""
    if path.suffix.lower() == ".npy":
        return np.load(path, allow_pickle=False)
    import tifffile

    with tifffile.TiffFile(path) as tif:
        if head.layout == "series":
            return np.stack([x.asarray() for x in tif.series])
        return tif.series[0].asarray()


# -- reading --------------------------------------------------------------------------------------
def read_image(path: Path, channels: int, max_pixels: int) -> np.ndarray:
    """[H, W, C] with C = `channels`, dtype uint8, uint16 or float; a one-line DataError naming
    the file when it cannot supply that (wrong channel count, pixel type, or damage)."""
    if path.suffix.lower() in STACK_SUFFIXES:
        return _read_stack(path, channels, max_pixels)
    if channels not in (1, 3):
        raise DataError(f"{path}: the spec wants {channels} input channels; {path.suffix or 'this'} images "
                        "supply 1 or 3 (multi-channel data: .tif or .npy stacks)")
    try:
        with open_pil(path, max_pixels, "image") as img:
            if channels == 1 and img.mode.startswith("I;16"):  # 16-bit grey: keep the precision
                image = np.asarray(img).astype(np.uint16)
            else:
                image = np.asarray(img.convert("L" if channels == 1 else "RGB"))
    except (OSError, ValueError, Image.DecompressionBombError):
        raise DataError(f"{path}: unreadable image") from None
    return image[..., None] if image.ndim == 2 else image


def _read_stack(path: Path, channels: int, max_pixels: int) -> np.ndarray:
    head = header(path, max_pixels)
    if head.channels != channels:
        raise DataError(f"{path}: {head.channels} channel(s), the spec's input.channels is {channels}")
    try:
        unit_scale(head.dtype)
    except ValueError as exc:
        raise DataError(f"{path}: {exc}") from None
    try:
        array = _decode(path, head)
    except DECODE_ERRORS as exc:
        raise DataError(f"{path}: unreadable image ({exc})") from None
    image = array.reshape(head.height, head.width, 1) if array.ndim == 2 else array
    image = np.ascontiguousarray(image if head.layout == "HWC" else image.transpose(1, 2, 0))  # [H, W, C]
    if image.dtype.kind == "f" and not np.isfinite(image).all():  # NaN/inf would only surface as a NaN loss
        raise DataError(f"{path}: non-finite pixel values")
    return image


def read_mask(path: Path, max_pixels: int, palette: list[tuple[int, int, int]] | None) -> np.ndarray:
    """Labels [H, W] int64: a .npy/.tif stack of integers (one channel), a palette-mode or index
    PNG, or an RGB PNG mapped through the palette (a colour not in it is an error)."""
    if path.suffix.lower() in STACK_SUFFIXES:
        head = header(path, max_pixels, "mask")
        if head.channels != 1 or head.dtype.kind not in "ui":
            raise DataError(f"{path}: a label mask is one channel of integers, not {head.channels} x {head.dtype}")
        try:
            return _decode(path, head).reshape(head.height, head.width).astype(np.int64)
        except DECODE_ERRORS as exc:
            raise DataError(f"{path}: unreadable mask ({exc})") from None
    try:
        with open_pil(path, max_pixels, "mask") as m:
            if m.mode in ("P", "L", "I;16", "I"):
                return np.asarray(m if m.mode in ("P", "L") else m.convert("I")).astype(np.int64)
            if palette is None:
                raise DataError(f"{path}: RGB mask but no palette in classes.json")
            return rgb_to_index(np.asarray(m.convert("RGB")), palette, path)
    except (OSError, ValueError, Image.DecompressionBombError):
        raise DataError(f"{path}: unreadable mask") from None


def is_palette(value: Any, classes: int) -> bool:
    """A JSON palette for `classes` classes: a list of at least that many [r, g, b], ints in 0..255."""
    return isinstance(value, list) and len(value) >= classes and all(
        isinstance(c, list) and len(c) == 3 and all(type(v) is int and 0 <= v <= 255 for v in c) for c in value)


def rgb_to_index(rgb: np.ndarray, palette: list[tuple[int, int, int]], path: Path) -> np.ndarray:
    codes = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    lut = {(r << 16) | (g << 8) | b: i for i, (r, g, b) in enumerate(palette)}
    out = np.full(codes.shape, -1, dtype=np.int64)
    for code, index in lut.items():
        out[codes == code] = index
    if (out < 0).any():  # silently ignoring an unknown colour would hide a wrong palette
        code = int(codes[out < 0][0])
        raise DataError(f"{path}: colour ({code >> 16}, {(code >> 8) & 255}, {code & 255}) is not in the "
                        "classes.json palette")
    return out
