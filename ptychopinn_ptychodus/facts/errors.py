"""One small exception hierarchy, so callers (the CLI, the plugin) can tell our
refusals from bugs and print them as a single line."""

from __future__ import annotations

from os import PathLike


class PtychoPINNError(ValueError):
    """Base class: a file or request we refuse, with a message naming the file."""

    def __init__(self, path: str | PathLike[str] | None, problem: str) -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(problem if path is None else f'{path}: {problem}')


class InvalidInputError(PtychoPINNError):
    """The input file is missing, unreadable, corrupt or not a PtychoPINN dataset."""


class AmbiguousLayoutError(InvalidInputError):
    """The pattern axis of a diffraction stack cannot be decided without guessing."""


class OutputError(PtychoPINNError):
    """The destination cannot be written (exists, bad path, disk full, ...)."""



class RunError(PtychoPINNError):
    """The run cannot start: a missing optional dependency, an unreachable scheduler."""
