"""Threads for chip export: per-thread dataset handles and ordered maps over tiles.

A GDAL dataset handle must never be used by two threads at once, so :class:`Sources` opens
one land cover and imagery pair per thread. :func:`ordered_map` runs a function over items on
a bounded thread pool with results in order; :func:`map_by_block` does so over tiles, keeping
the tiles of one source block on one thread so each compressed block is decoded once.
"""

from __future__ import annotations

import collections
import math
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from geospade.errors import InputError
from geospade.raster import RasterReader, aligned_view
from geospade.tiling import Tile

T = TypeVar("T")
R = TypeVar("R")


def landcover_view(raw: RasterReader, resolution: float | None) -> RasterReader:
    """The land cover on the chip grid: itself, or resampled (nearest) to ``resolution``."""
    if resolution is None or (math.isclose(abs(raw.transform.a), resolution)
                              and math.isclose(abs(raw.transform.e), resolution)):
        return raw
    left, bottom, right, top = raw.bounds
    width = max(1, round((right - left) / resolution))
    height = max(1, round((top - bottom) / resolution))
    transform = Affine(resolution, 0.0, left, 0.0, -resolution, top)
    # Nearest neighbour: a label is a class, never a blend of two.
    return WarpedVRT(raw, crs=raw.crs, transform=transform, width=width, height=height,
                     resampling=Resampling.nearest)


class Sources:
    """Dataset handles per thread: a GDAL handle must never be used by two threads at once."""

    def __init__(self, landcover: str | Path, imagery: str | Path,
                 resolution: float | None = None):
        self._paths = (landcover, imagery)
        self._resolution = resolution
        self._local = threading.local()
        self._opened: list[RasterReader] = []
        self._lock = threading.Lock()

    def get(self) -> tuple[RasterReader, RasterReader]:
        """This thread's (land cover, imagery on the land-cover grid) pair."""
        handles = getattr(self._local, "handles", None)
        if handles is None:
            raw = rasterio.open(self._paths[0])
            lc = landcover_view(raw, self._resolution)
            img = rasterio.open(self._paths[1])
            view = aligned_view(img, lc)
            handles = (lc, view)
            self._local.handles = handles
            opened = [view, img] if view is not img else [img]
            opened += [lc, raw] if lc is not raw else [raw]
            with self._lock:
                self._opened += opened
        return handles

    def read(self, what: str, window: Window, **kwargs: Any) -> np.ndarray:
        """Pixels of this thread's land cover (``what="landcover"``) or imagery in ``window``.

        Raises:
            InputError: the file's pixels cannot be read (truncated or damaged), naming it.
        """
        lc, view = self.get()
        ds = lc if what == "landcover" else view
        try:
            return ds.read(window=window, **kwargs)
        except RasterioIOError as exc:
            path = self._paths[0] if what == "landcover" else self._paths[1]
            raise InputError(
                f"cannot read the {'land cover' if what == 'landcover' else 'imagery'} pixels "
                f"at rows {int(window.row_off)}-{int(window.row_off + window.height)}, columns "
                f"{int(window.col_off)}-{int(window.col_off + window.width)}: the file is "
                f"truncated or damaged ({exc})", path=path,
                hint="Copy or download the file again (its header opens but its pixels do "
                     "not).") from None

    def __enter__(self) -> Sources:
        return self

    def __exit__(self, *exc) -> None:
        with self._lock:
            for ds in self._opened:
                ds.close()
            self._opened.clear()


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int,
                 on_result: Callable[[R], None] | None = None) -> list[R]:
    """``[fn(x) for x in items]`` on ``workers`` threads, with a bounded queue of tasks.

    Results come back in order. On any error (or Ctrl-C) the queued tasks are cancelled at
    once instead of being run to completion.
    """
    results: list[R] = []

    def take(result: R) -> None:
        results.append(result)
        if on_result is not None:
            on_result(result)

    if workers <= 1:
        for item in items:
            take(fn(item))
        return results
    pending: collections.deque[Future] = collections.deque()
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="geospade-chips")
    try:
        for item in items:
            pending.append(executor.submit(fn, item))
            if len(pending) >= 4 * workers:
                take(pending.popleft().result())
        while pending:
            take(pending.popleft().result())
    finally:
        for future in pending:
            future.cancel()
        executor.shutdown(wait=True, cancel_futures=True)
    return results


def map_by_block(fn: Callable[[Tile], R], tiles: Sequence[Tile], block: tuple[int, int],
                  workers: int, bar) -> list[R]:
    """``[fn(t) for t in tiles]``, running the tiles that share a source block together.

    Each group of tiles inside one block of the source raster runs on one thread, one tile
    after the other: the compressed block is decoded once while it sits in GDAL's (bounded)
    block cache, instead of once per thread or again after it was evicted.
    """
    members = block_groups(tiles, block)

    def run(group: list[int]) -> list[R]:
        return [fn(tiles[i]) for i in group]

    results: list = [None] * len(tiles)
    done = ordered_map(run, members, workers, lambda group: bar.update(len(group)))
    for group, outcomes in zip(members, done, strict=True):
        for i, outcome in zip(group, outcomes, strict=True):
            results[i] = outcome
    return results


def block_groups(tiles: Sequence[Tile], block: tuple[int, int]) -> list[list[int]]:
    """Positions in ``tiles`` grouped by the source block holding each tile's corner."""
    rows, cols = max(int(block[0]), 1), max(int(block[1]), 1)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, tile in enumerate(tiles):
        groups.setdefault((tile.row_off // rows, tile.col_off // cols), []).append(i)
    return list(groups.values())
