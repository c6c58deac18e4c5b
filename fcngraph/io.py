"""Small file helpers: atomic writes (temp file + rename), so nothing written is half-written."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write through `write(file)` into a temp file beside `path`, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode open() would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    """UTF-8; a file name that is not UTF-8 (a lone surrogate in Python) is written as \\udcff."""
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8", errors="backslashreplace")))


def safe_stem(name: str) -> str:
    """`name` made safe as a file name: characters other than letters, digits and ._+- become '_'.
    A name that this changes (or cuts to 100 characters), or that holds capitals (a case-insensitive
    disk folds them), gets '~' and a hash of the name appended, so distinct names never share a file
    ('a b' and 'a_b', 'Net' and 'net'): a name kept as it is has no '~', two changed ones differ by hash."""
    stem = (re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("._") or "unnamed")[:100]  # file names end at 255 bytes
    if stem != name or name != name.lower():
        stem += "~" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return stem


def parse_json(text: str) -> Any:
    """json.loads, where JSON nested too deeply for the parser is a ValueError like any other bad JSON
    (callers that report bad JSON as one line then report this too)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
