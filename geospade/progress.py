"""Progress reporting: tqdm bars for the terminal, callbacks for other front ends (ArcGIS).

Long-running library functions take ``progress``: True (a tqdm bar), False (silent), or a
callable ``progress(done, total, message)`` that is called as work completes.

On a terminal the bar redraws itself in place. When standard error is not a terminal (a log
file, a batch scheduler's output, a pipe), each update is instead written as one whole line,
at most every :data:`LOG_INTERVAL` seconds, so logs stay readable and small.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable

from tqdm import std
from tqdm.auto import tqdm

ProgressCallback = Callable[[int, int, str], None]
ProgressArg = bool | ProgressCallback

LOG_INTERVAL = 10.0  # seconds between progress lines in a log file


class _CallbackBar(tqdm):
    """A tqdm that is silent and forwards each update to a callback."""

    def __init__(self, *args, callback: ProgressCallback, **kwargs):
        self._callback = callback
        super().__init__(*args, disable=False, file=_NullFile(), **kwargs)

    def update(self, n=1):
        result = super().update(n)
        self._callback(int(self.n), int(self.total or 0), str(self.desc or ""))
        return result


class _NullFile:
    def write(self, _text: str) -> None:
        pass

    def flush(self) -> None:
        pass


class LineFile:
    """A text stream that turns tqdm's in-place redraws (``\\r`` + status) into whole lines.

    Args:
        stream: where the lines go (standard error by default).
    """

    def __init__(self, stream=None):
        self.stream = stream
        self._last = ""

    def write(self, text: str) -> None:
        stream = self.stream or sys.stderr
        for part in text.replace("\r", "\n").split("\n"):
            line = part.rstrip()
            # Closing a bar redraws its last count (with the overall rate): skip that repeat.
            # The key leaves out the bar itself: its width changes with the rate's text.
            count = re.sub(r"\|.*\|", "|", line.split(" [", 1)[0])
            if line.strip() and count != self._last:
                stream.write(line + "\n")
                self._last = count

    def flush(self) -> None:
        (self.stream or sys.stderr).flush()


def _is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def progress_bar(progress: ProgressArg = True, **kwargs) -> tqdm:
    """A tqdm bar (``progress=True``), a silent one (False), or one feeding a callback.

    Not on a terminal (and not in a notebook), the bar prints one line per update, at most
    every :data:`LOG_INTERVAL` seconds (plus the first and the last).
    """
    if callable(progress):
        return _CallbackBar(callback=progress, **kwargs)
    notebook = tqdm.__module__.startswith("tqdm.notebook")
    if progress and not notebook and not _is_terminal(kwargs.get("file") or sys.stderr):
        options = {"mininterval": LOG_INTERVAL, "ncols": 100, "ascii": True, **kwargs}
        options["file"] = LineFile(kwargs.get("file"))
        return std.tqdm(**options)
    return tqdm(disable=not progress, dynamic_ncols=True, **kwargs)
