"""The CLI's one error path: input → 2, machine → 3, bug → 1 with a traceback, pipe closed → 141."""

from __future__ import annotations

import errno

import pytest

from fcngraph import cli
from fcngraph.errors import EXIT_BUG, EXIT_ENVIRONMENT, EXIT_INPUT, EnvironmentProblem, NodeRuntimeError, SpecError


def _raising(exc: BaseException):
    def handler(args):
        raise exc
    return handler


@pytest.mark.parametrize("exc, status, text", [
    (SpecError("bad kernel", file="a.json", path="nodes.c.kernel"), EXIT_INPUT, "a.json: nodes.c.kernel"),
    (EnvironmentProblem("device cuda:3 is not available"), EXIT_ENVIRONMENT, "cuda:3"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "x.json"), EXIT_INPUT, "x.json"),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "out"), EXIT_INPUT, "out: Is a directory"),
    (OSError(errno.ENAMETOOLONG, "File name too long", "images/xxx.jpg"), EXIT_INPUT, "File name too long"),
    (OSError(errno.ELOOP, "Too many levels of symbolic links", "masks/a.png"), EXIT_INPUT, "masks/a.png"),
    (PermissionError(errno.EACCES, "Permission denied", "runs/a"), EXIT_ENVIRONMENT, "runs/a"),
    (OSError(errno.ENOSPC, "No space left on device", "runs/a/last.pt"), EXIT_ENVIRONMENT, "No space"),
    (MemoryError(), EXIT_ENVIRONMENT, "out of memory"),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0.\nDefaultCPUAllocator: can't allocate memory: you "
                  "tried to allocate 120000000000 bytes."), EXIT_ENVIRONMENT, "allocate 120000000000 bytes"),
    (NodeRuntimeError("node 'conv1': OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"),
     EXIT_ENVIRONMENT, "Tried to allocate 2.00 GiB"),
    (RuntimeError("Storage size calculation overflowed with sizes=[1, 3, 180000000000, 240000000000]"),
     EXIT_ENVIRONMENT, "out of memory (Storage size"),
])
def test_known_failures_are_one_line(monkeypatch, capsys, exc, status, text):
    monkeypatch.setattr(cli, "cmd_validate", _raising(exc))
    assert cli.main(["validate", "whatever.json"]) == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fcngraph: error: ") and text in err
    assert "Traceback" not in err


def test_a_bug_shows_its_traceback_and_asks_for_a_report(monkeypatch, capsys):
    for exc in (ZeroDivisionError("oops"), RuntimeError("size mismatch")):  # a RuntimeError that is no OOM too
        monkeypatch.setattr(cli, "cmd_validate", _raising(exc))
        assert cli.main(["validate", "whatever.json"]) == EXIT_BUG
        err = capsys.readouterr().err
        assert "Traceback" in err and type(exc).__name__ in err and "report it" in err


def test_every_exit_status_is_documented_in_the_readme():
    from pathlib import Path

    from fcngraph import errors
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    statuses = {v for k, v in vars(errors).items() if k.startswith("EXIT_")}
    for status in statuses:
        assert f"| {status} |" in readme
