"""geospade's errors: each says which file, which value, and what to do about it.

The CLI prints ``str(error)`` as one line and exits non-zero; library callers catch
:class:`GeospadeError` (or a subclass) to handle any problem geospade itself detected.
"""

from __future__ import annotations

from os import PathLike


class GeospadeError(Exception):
    """Base class of every error geospade raises on purpose.

    Args:
        message: what is wrong, naming the value found.
        path: the file or folder concerned, if any.
        hint: what the user should do about it.
    """

    exit_code = 1

    def __init__(self, message: str, *, path: str | PathLike | None = None, hint: str | None = None):
        self.message = message
        self.path = None if path is None else str(path)
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.path}: {self.message}" if self.path else self.message
        if self.hint:
            text = f"{text.rstrip('.')}. {self.hint}"
        # One line, whatever a library's message held (the CLI prints exactly this).
        return " ".join(line.strip() for line in text.splitlines() if line.strip())


class InputError(GeospadeError):
    """An input file or argument cannot be used as given."""

    exit_code = 2


class ClassSchemeError(InputError):
    """Class values, names or colours that do not fit the class scheme."""


class GridError(InputError):
    """A tile grid that cannot be laid over the raster (tile too large, bad stride...)."""


class OutputExistsError(GeospadeError):
    """The output exists and ``overwrite`` was not given."""

    exit_code = 3


class OutputError(GeospadeError):
    """An output could not be written completely (full disk, read-only folder, I/O error).

    Nothing is left at the output path and an existing file there is unchanged.
    """

    exit_code = 4


class CheckpointError(GeospadeError):
    """A checkpoint that cannot be read or lacks what the task needs."""


class TrainingDivergedError(GeospadeError):
    """Training produced a non-finite loss; the last good checkpoint is kept."""
