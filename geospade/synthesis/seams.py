"""Seam score: how much more pixels change across tile boundaries than elsewhere.

score = mean |difference between adjacent pixels across a tile boundary|
        / mean |difference between adjacent pixels everywhere else|,
over columns and rows, all bands, counting only pairs of valid (unmasked) pixels.
1.0 means this statistic cannot tell where the boundaries are; a visible seam scores > 1.

A generator that upsamples by 2^k leaves a faint texture that repeats every 2^k pixels, and
tile boundaries always fall at the same phase of it. ``period=2**k`` therefore compares
boundaries only with interior lines at that same phase, which separates seams from the
model's own texture; ``period=1`` (the default) compares with every interior line.
Files are read in strips of rows, so memory is bounded whatever the raster's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from geospade.errors import InputError
from geospade.progress import ProgressArg, progress_bar
from geospade.raster import open_raster, read_pixels
from geospade.synthesis.plan import world_offset

STRIP_BYTES = 16 * 2**20  # pixel bytes per strip read (about 20x that while scoring it)


@dataclass
class SeamStats:
    """Running sums of absolute differences at boundary and interior positions."""

    seam_sum: float = 0.0
    seam_count: int = 0
    interior_sum: float = 0.0
    interior_count: int = 0

    @property
    def score(self) -> float:
        """Boundary mean / interior mean (nan when either has no valid pairs)."""
        if not self.seam_count or not self.interior_count:
            return float("nan")
        interior = self.interior_sum / self.interior_count
        seam = self.seam_sum / self.seam_count
        if interior == 0:
            return 1.0 if seam == 0 else float("inf")
        return seam / interior

    def __add__(self, other: SeamStats) -> SeamStats:
        """Sums of two parts of a raster (e.g. blocks scored separately)."""
        return SeamStats(self.seam_sum + other.seam_sum, self.seam_count + other.seam_count,
                         self.interior_sum + other.interior_sum,
                         self.interior_count + other.interior_count)

    def add(self, diffs: np.ndarray, pair_valid: np.ndarray, at_seam: np.ndarray,
            in_baseline: np.ndarray) -> None:
        """Add differences (bands, h, w) of pairs valid (h, w); ``at_seam`` and ``in_baseline``
        (broadcastable to it) say which pairs straddle a boundary and which interior pairs
        count towards the baseline."""
        seam = pair_valid & at_seam
        inner = pair_valid & ~at_seam & in_baseline
        bands = diffs.shape[0]
        self.seam_sum += float(diffs[:, seam].sum(dtype=np.float64))
        self.seam_count += int(seam.sum()) * bands
        self.interior_sum += float(diffs[:, inner].sum(dtype=np.float64))
        self.interior_count += int(inner.sum()) * bands


def seam_score(image, tile_size: int, offset: int | tuple[int, int] | None = None, *,
               mask: np.ndarray | None = None, period: int = 1,
               progress: ProgressArg = False) -> float:
    """The seam score of a raster file or an array for tiles of ``tile_size`` pixels.

    Args:
        image: path to a raster (its dataset mask excludes masked pixels), or an array
            (bands, H, W) or (H, W).
        tile_size: the tile size used to generate it; boundaries lie at columns and rows
            ``offset + k * tile_size`` (k >= 1), between that pixel and the one before it.
        offset: position of the tile grid's origin, one int for both axes or (row, col).
            None: for a file, the world-anchored grid that ``geospade synthesize`` lays
            (from its georeferencing, see :mod:`geospade.synthesis.plan`); for an array, 0.
        mask: for an array, bool (H, W), True where valid (default: every pixel).
        period: compare boundaries only with interior lines ``offset + k * period`` (the
            generator's downsampling factor separates seams from its periodic texture);
            1 compares with every interior line.
        progress: progress bar while reading a file (True, False or a callback).

    Returns:
        The score (1.0 = boundaries indistinguishable from the interior).

    Raises:
        InputError: no tile boundary crosses the raster (tile size at least its size), or no
            valid pixel pairs lie on one side of the comparison (e.g. all masked): no score.
    """
    stats = seam_stats(image, tile_size, offset, mask=mask, period=period, progress=progress)
    source = image if isinstance(image, str | Path) else None
    if not stats.seam_count or not stats.interior_count:
        what = ("no valid pixel pairs at tile boundaries" if stats.interior_count
                else "no valid pixel pairs away from tile boundaries")
        raise InputError(f"no seam score with tile size {tile_size}, offset {offset}: {what}",
                         path=source,
                         hint="Give the tile size the raster was synthesised with; it must be "
                              "smaller than the raster, and the raster must have unmasked "
                              "pixels.")
    return stats.score


def seam_stats(image, tile_size: int, offset: int | tuple[int, int] | None = None, *,
               mask: np.ndarray | None = None, period: int = 1,
               progress: ProgressArg = False) -> SeamStats:
    """The sums behind :func:`seam_score` (add several to score parts of a raster together).

    Args: as for :func:`seam_score`.
    """
    if tile_size <= 0:
        raise InputError(f"tile size {tile_size} must be positive", hint="Use e.g. --tile-size 512.")
    if period <= 0 or tile_size % period:
        raise InputError(f"period {period} does not divide the tile size {tile_size}",
                         hint="Use the generator's downsampling factor (a power of 2), or 1.")
    if isinstance(image, (str, Path)):
        return _file_stats(Path(image), tile_size, offset, period, progress)
    grid = _Grid(tile_size, *_offsets(offset if offset is not None else 0), period)
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[None]
    valid = np.ones(array.shape[1:], bool) if mask is None else np.asarray(mask, bool)
    stats = SeamStats()
    _add_strip(stats, array, valid, None, None, 0, grid)
    return stats


def _offsets(offset: int | tuple[int, int]) -> tuple[int, int]:
    """(row, col) grid origins from one int or a pair."""
    if isinstance(offset, (tuple, list)):
        row, col = offset
        return int(row), int(col)
    return int(offset), int(offset)


@dataclass(frozen=True)
class _Grid:
    tile_size: int
    row_offset: int
    col_offset: int
    period: int

    def lines(self, n: int, start: int, axis: str) -> tuple[np.ndarray, np.ndarray]:
        """bool (n - 1,) twice, for the pairs (i - 1, i) of positions ``start + i`` along
        ``axis`` ("row" or "col"): does the pair straddle a tile boundary; is it at the
        boundaries' phase of the period."""
        offset = self.row_offset if axis == "row" else self.col_offset
        pos = np.arange(start, start + n)[1:]
        at_seam = (pos - offset) % self.tile_size == 0
        return at_seam, (pos - offset) % self.period == 0


def _add_strip(stats: SeamStats, strip: np.ndarray, valid: np.ndarray,
               prev_row: np.ndarray | None, prev_valid: np.ndarray | None,
               row_off: int, grid: _Grid) -> None:
    """Add the horizontal pairs of a strip of rows, and the vertical pairs inside it and with
    the row just above it (``prev_row``, from the previous strip)."""
    data = strip.astype(np.float32)
    # Horizontal neighbours: column c against c - 1.
    diffs = np.abs(data[:, :, 1:] - data[:, :, :-1])
    pair = valid[:, 1:] & valid[:, :-1]
    at_col, base_col = grid.lines(data.shape[2], 0, "col")
    stats.add(diffs, pair, at_col[None, :], base_col[None, :])
    # Vertical neighbours: row r against r - 1, including the first row against prev_row.
    if prev_row is not None:
        data = np.concatenate([prev_row.astype(np.float32), data], axis=1)
        valid = np.concatenate([prev_valid, valid], axis=0)
        row_off -= 1
    diffs = np.abs(data[:, 1:, :] - data[:, :-1, :])
    pair = valid[1:, :] & valid[:-1, :]
    at_row, base_row = grid.lines(data.shape[1], row_off, "row")
    stats.add(diffs, pair, at_row[:, None], base_row[:, None])


def _file_stats(path: Path, tile_size: int, offset, period: int,
                progress: ProgressArg) -> SeamStats:
    stats = SeamStats()
    with open_raster(path, "raster") as ds:
        if offset is None:
            world_row, world_col = world_offset(ds.transform)
            offset = (-(world_row % tile_size), -(world_col % tile_size))
        grid = _Grid(tile_size, *_offsets(offset), period)
        row_bytes = ds.width * ds.count * np.dtype(ds.dtypes[0]).itemsize
        strip_rows = max(1, STRIP_BYTES // max(row_bytes, 1))
        prev_row = prev_valid = None
        starts = range(0, ds.height, strip_rows)
        for row_off in progress_bar(progress, iterable=starts, desc="seam score", unit="strip"):
            window = Window(0, row_off, ds.width, min(strip_rows, ds.height - row_off))
            strip = read_pixels(ds, "raster", window=window)
            valid = read_pixels(ds, "raster", "dataset_mask", window=window) > 0
            _add_strip(stats, strip, valid, prev_row, prev_valid, row_off, grid)
            prev_row, prev_valid = strip[:, -1:, :], valid[-1:, :]
    return stats
