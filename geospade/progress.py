"""Progress reporting: tqdm bars for the terminal, callbacks for other front ends (ArcGIS).

Long-running library functions take ``progress``: True (a tqdm bar), False (silent), or a
callable ``progress(done, total, message)`` that is called as work completes.
"""

from __future__ import annotations

from collections.abc import Callable

from tqdm.auto import tqdm

ProgressCallback = Callable[[int, int, str], None]
ProgressArg = bool | ProgressCallback


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


def progress_bar(progress: ProgressArg = True, **kwargs) -> tqdm:
    """A tqdm bar (``progress=True``), a silent one (False), or one feeding a callback."""
    if callable(progress):
        return _CallbackBar(callback=progress, **kwargs)
    return tqdm(disable=not progress, dynamic_ncols=True, **kwargs)
