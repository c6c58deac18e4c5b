"""Errors that fcngraph reports to users.

Every problem with a spec becomes a `SpecError` that names the file, the JSON path and,
where there is one, the node; `str()` is one line, fit for a CLI error message.
"""

from __future__ import annotations

# Exit statuses of the CLI (README "Exit statuses" lists the same table).
EXIT_OK = 0
EXIT_BUG = 1           # a genuine bug: traceback shown, with a request to report it
EXIT_INPUT = 2         # bad input: spec, flags, data, checkpoint, run folder
EXIT_ENVIRONMENT = 3   # the machine: file system, permissions, disk full, memory, device
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # stdout closed early (e.g. piped into `head`)


class FcngraphError(Exception):
    """Base class: an error the CLI prints as one line and exits `exit_status` on."""

    exit_status = EXIT_INPUT


class EnvironmentProblem(FcngraphError):
    """The machine, not the input: file system, permissions, disk full, memory, device."""

    exit_status = EXIT_ENVIRONMENT


class SpecError(FcngraphError):
    """A spec that cannot be loaded, validated, analysed or compiled."""

    def __init__(self, message: str, *, file: str | None = None, path: str | None = None,
                 node: str | None = None) -> None:
        self.message = message
        self.file = file
        self.path = path
        self.node = node
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ": ".join(part for part in (self.file, self.path) if part)
        text = f"{where}: {self.message}" if where else self.message
        if self.node and f"'{self.node}'" not in text:
            text += f" (node '{self.node}')"
        return " ".join(text.split())  # one line, whatever the message held

    def at(self, *, file: str | None = None) -> SpecError:
        """The same error, with the file filled in where it was unknown."""
        return SpecError(self.message, file=self.file or file, path=self.path, node=self.node)


class OpError(ValueError):
    """Raised by an op's own rules; the analyser turns it into a SpecError naming the node."""

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class NodeRuntimeError(RuntimeError):
    """An exception raised inside a compiled module, re-raised with the node that raised it."""


class DataError(FcngraphError):
    """Bad training or evaluation data: names the file and what is wrong with it."""
