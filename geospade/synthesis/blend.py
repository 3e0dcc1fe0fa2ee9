"""Seam blending: cosine feathering of neighbouring tiles, with memory bounded by the seams.

This is the one place where tiles meet. Each tile keeps its core grown by ``feather / 2``
towards its neighbours (see :mod:`geospade.synthesis.plan`), so two neighbours overlap in a
band ``feather`` pixels wide centred on their common boundary. Across that band one tile's
weight falls as cos^2 while the other's rises as sin^2; the weights sum to one, so the band
cross-fades from one tile to the next and everything else is one tile's pixels untouched.
Because each tile was generated with a halo of context and one noise field for the whole
raster, the two tiles already nearly agree in the band: the feather only hides the small
residual difference, it never averages two unrelated images (which would ghost and blur).

Memory: the raster is cut, along each axis, into tile interiors and boundary bands. A cell
(row segment x column segment) is finished as soon as every tile touching it has been added;
interior cells are finished by their own tile at once, band cells wait for a neighbour. With
tiles added row by row only the bands below the current row of tiles are pending: about
``width x feather`` pixels, whatever the raster's height.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from rasterio.windows import Window

from geospade.synthesis.plan import SynthesisPlan, kept_range
from geospade.tiling import Tile


def cosine_ramp(width: int) -> np.ndarray:
    """Weights rising from near 0 to near 1 over ``width`` pixels (sin^2 at pixel centres).

    ``ramp + ramp[::-1] == 1`` exactly, so a falling tile and a rising tile sum to one.
    """
    centres = (np.arange(width, dtype=np.float64) + 0.5) / width
    return (np.sin(centres * math.pi / 2) ** 2).astype(np.float32)


def axis_weights(index: int, n_tiles: int, tile_size: int, feather: int) -> np.ndarray:
    """One tile's weights along one axis over its kept range: a ramp up over the band shared
    with the previous tile, 1 in between, a ramp down over the band shared with the next.
    (They do not depend on where the grid starts.)"""
    start, stop = kept_range(index, n_tiles, tile_size, feather)
    weights = np.ones(stop - start, dtype=np.float32)
    if feather:
        ramp = cosine_ramp(feather)
        if index > 0:
            weights[:feather] = ramp
        if index < n_tiles - 1:
            weights[-feather:] = ramp[::-1]
    return weights


def tile_weights(plan: SynthesisPlan, tile: Tile) -> np.ndarray:
    """2-D blend weights over a tile's kept window (outer product of the axis weights)."""
    rows = axis_weights(tile.row, plan.grid.n_rows, plan.tile_size, plan.feather)
    cols = axis_weights(tile.col, plan.grid.n_cols, plan.tile_size, plan.feather)
    return rows[:, None] * cols[None, :]


@dataclass(frozen=True)
class Segment:
    """A pixel range along one axis and the tiles (indices along that axis) covering it."""

    start: int
    stop: int
    tiles: tuple[int, ...]


def axis_segments(n_tiles: int, tile_size: int, feather: int, extent: int,
                  origin: int = 0) -> list[Segment]:
    """Tile interiors and boundary bands along one axis, clipped to ``[0, extent)``; tile 0
    starts at pixel ``origin`` (<= 0 for a grid anchored before the raster)."""
    half = feather // 2
    segments = []
    for k in range(n_tiles):
        start = origin + k * tile_size + (half if k > 0 else 0)
        stop = origin + (k + 1) * tile_size - (half if k < n_tiles - 1 else 0)
        segments.append(Segment(start, stop, (k,)))
        if k < n_tiles - 1 and half:
            boundary = origin + (k + 1) * tile_size
            segments.append(Segment(boundary - half, boundary + half, (k, k + 1)))
    clipped = [Segment(max(s.start, 0), min(s.stop, extent), s.tiles) for s in segments]
    return [s for s in clipped if s.stop > s.start]


@dataclass
class FinishedBlock:
    """A window of final output: model values (bands, h, w) in [-1, 1] and validity."""

    window: Window
    values: np.ndarray
    valid: np.ndarray


@dataclass
class _Cell:
    """Weighted sums waiting for the remaining tiles that touch one cell."""

    expected: int
    total: np.ndarray
    weight: np.ndarray
    valid: np.ndarray
    added: int = 0


@dataclass
class FeatherBlender:
    """Adds tiles' kept outputs and returns each block of the raster once it is final.

    Args:
        plan: the synthesis plan the tiles come from.
        bands: number of output bands.
    """

    plan: SynthesisPlan
    bands: int
    _rows: list[Segment] = field(init=False)
    _cols: list[Segment] = field(init=False)
    _pending: dict[tuple[int, int], _Cell] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        grid, f = self.plan.grid, self.plan.feather
        self._rows = axis_segments(grid.n_rows, grid.tile_size, f, grid.height, grid.row_origin)
        self._cols = axis_segments(grid.n_cols, grid.tile_size, f, grid.width, grid.col_origin)
        self._rows_of = _segments_by_tile(self._rows, grid.n_rows)
        self._cols_of = _segments_by_tile(self._cols, grid.n_cols)

    @property
    def pending_pixels(self) -> int:
        """Pixels held waiting for neighbouring tiles (what bounds the blender's memory)."""
        return sum(c.total.shape[1] * c.total.shape[2] for c in self._pending.values())

    @property
    def done(self) -> bool:
        """True when nothing is pending (after every tile of the grid was added)."""
        return not self._pending

    def add(self, tile: Tile, output: np.ndarray | None, valid: np.ndarray) -> list[FinishedBlock]:
        """Add one tile and return the blocks this completes.

        Args:
            tile: the tile (of ``plan.grid``).
            output: its generated values over :meth:`SynthesisPlan.kept_window`, shape
                (bands, h, w), or None for a tile that was not generated (all nodata).
            valid: bool (h, w) over the same window: False where the land cover is nodata.
        """
        (r0, _), (c0, _) = self.plan.kept_ranges(tile)
        weights = None
        finished = []
        for i in self._rows_of[tile.row]:
            rs = self._rows[i]
            rows = slice(rs.start - r0, rs.stop - r0)
            for j in self._cols_of[tile.col]:
                cs = self._cols[j]
                cols = slice(cs.start - c0, cs.stop - c0)
                window = Window(cs.start, rs.start, cs.stop - cs.start, rs.stop - rs.start)
                expected = len(rs.tiles) * len(cs.tiles)
                if expected == 1:  # a tile interior: this tile's pixels, weight 1
                    values = (np.zeros((self.bands, window.height, window.width), np.float32)
                              if output is None else output[:, rows, cols])
                    finished.append(FinishedBlock(window, values, valid[rows, cols]))
                    continue
                cell = self._pending.get((i, j))
                if cell is None:
                    shape = (window.height, window.width)
                    cell = self._pending[(i, j)] = _Cell(
                        expected, total=np.zeros((self.bands, *shape), np.float32),
                        weight=np.zeros(shape, np.float32), valid=valid[rows, cols].copy())
                if output is not None:
                    if weights is None:
                        weights = tile_weights(self.plan, tile)
                    w = weights[rows, cols]
                    cell.total += output[:, rows, cols] * w
                    cell.weight += w
                cell.added += 1
                if cell.added == cell.expected:
                    del self._pending[(i, j)]
                    finished.append(_finish(window, cell))
        return finished


def _finish(window: Window, cell: _Cell) -> FinishedBlock:
    """Normalise a completed cell by its weights (they sum to one unless a neighbour was
    skipped as all nodata, whose pixels are masked anyway)."""
    generated = cell.weight > 0
    values = np.divide(cell.total, cell.weight, out=np.zeros_like(cell.total),
                       where=generated[None])
    return FinishedBlock(window, values, cell.valid & generated)


def _segments_by_tile(segments: list[Segment], n_tiles: int) -> list[list[int]]:
    """For each tile index along an axis, the indices of the segments it covers."""
    by_tile: list[list[int]] = [[] for _ in range(n_tiles)]
    for i, seg in enumerate(segments):
        for k in seg.tiles:
            by_tile[k].append(i)
    return by_tile
