"""The tile grid: square windows laid over a raster with a stride, edge rule and halo.

Chip export and synthesis both use :class:`TileGrid`. A tile's ``index`` is its position in
the full grid (row-major), which is also the number in an exported chip's file name, so chip
names stay stable whichever tiles are skipped.

Edge rules: ``"drop"`` keeps only tiles that lie wholly inside the raster (training chips);
``"pad"`` covers every pixel, the last row and column of tiles reaching past the raster's
right and bottom edges (synthesis; reads there are boundless and writes are clipped).

A ``pad`` grid may also start before the raster's first pixel (``origin``): synthesis lays
its tiles on a grid fixed in the CRS, so the first row and column of tiles can reach past the
top and left edges too.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rasterio import windows
from rasterio.windows import Window

from geospade.errors import GridError

EDGE_RULES = ("drop", "pad")


@dataclass(frozen=True)
class Tile:
    """One cell of a :class:`TileGrid`.

    Attributes:
        index: position in the full grid, ``row * n_cols + col``.
        row, col: grid coordinates.
        col_off, row_off: pixel offset of the tile's top-left corner in the raster.
        size: side length in pixels.
    """

    index: int
    row: int
    col: int
    col_off: int
    row_off: int
    size: int

    @property
    def window(self) -> Window:
        """The tile's own window (may reach past the raster with the ``pad`` rule)."""
        return Window(self.col_off, self.row_off, self.size, self.size)

    def with_halo(self, halo: int) -> Window:
        """The tile's window grown by ``halo`` pixels on every side (may start below 0)."""
        return Window(self.col_off - halo, self.row_off - halo, self.size + 2 * halo,
                      self.size + 2 * halo)

    def clipped(self, width: int, height: int) -> Window:
        """The part of the tile inside a ``width`` x ``height`` raster (rasterio's ``crop``).

        Zero-sized for a tile wholly outside the raster. Whether two tiles share pixels is
        ``rasterio.windows.intersect(a.window, b.window)``.
        """
        return windows.crop(self.window, height, width)


@dataclass(frozen=True)
class TileGrid:
    """Square tiles of ``tile_size`` pixels every ``stride`` pixels over a raster.

    Build one with :func:`tile_grid`, which checks the arguments. ``row_origin`` and
    ``col_origin`` are the pixel offsets of tile (0, 0) in the raster: 0, or (``pad`` grids
    only) between ``-stride`` and 0 for a grid anchored outside the raster.
    """

    width: int
    height: int
    tile_size: int
    stride: int
    edge: str = "drop"
    row_origin: int = 0
    col_origin: int = 0

    @property
    def n_cols(self) -> int:
        return _count(self.width - self.col_origin, self.tile_size, self.stride, self.edge)

    @property
    def n_rows(self) -> int:
        return _count(self.height - self.row_origin, self.tile_size, self.stride, self.edge)

    def __len__(self) -> int:
        return self.n_rows * self.n_cols

    def tile(self, row: int, col: int) -> Tile:
        """The tile at grid position (row, col)."""
        if not (0 <= row < self.n_rows and 0 <= col < self.n_cols):
            raise IndexError(f"tile ({row}, {col}) outside a {self.n_rows} x {self.n_cols} grid")
        return Tile(row * self.n_cols + col, row, col, self.col_origin + col * self.stride,
                    self.row_origin + row * self.stride, self.tile_size)

    def tile_at(self, index: int) -> Tile:
        """The tile with the given grid index."""
        return self.tile(*divmod(index, self.n_cols))

    def __iter__(self) -> Iterator[Tile]:
        for row in range(self.n_rows):
            for col in range(self.n_cols):
                yield self.tile(row, col)


def _count(extent: int, size: int, stride: int, edge: str) -> int:
    if edge == "pad":
        return 1 if extent <= size else math.ceil((extent - size) / stride) + 1
    return 0 if extent < size else (extent - size) // stride + 1


def tile_grid(
    width: int,
    height: int,
    tile_size: int,
    stride: int | None = None,
    *,
    edge: str = "drop",
    multiple_of: int = 1,
    origin: tuple[int, int] = (0, 0),
    source: str | Path | None = None,
) -> TileGrid:
    """Lay a grid of ``tile_size`` tiles every ``stride`` pixels over a raster.

    Args:
        width, height: raster size in pixels.
        tile_size: tile side in pixels.
        stride: step between tile origins (default: ``tile_size``, no overlap).
        edge: ``"drop"`` (tiles wholly inside) or ``"pad"`` (cover every pixel).
        multiple_of: ``tile_size`` and ``stride`` must be multiples of this (the generator's
            downsampling factor in synthesis, so every tile sees the same low-resolution grid).
        origin: (row, col) pixel offset of tile (0, 0), each in ``(-stride, 0]``; only for
            ``pad`` grids (synthesis anchors its grid in the CRS this way).
        source: raster file name, for error messages.

    Raises:
        GridError: bad sizes, or (``drop``) a tile larger than the raster.
    """
    stride = tile_size if stride is None else stride
    if edge not in EDGE_RULES:
        raise GridError(f"edge rule '{edge}' is not one of {EDGE_RULES}")
    if tile_size <= 0 or stride <= 0:
        raise GridError(f"tile size {tile_size} and stride {stride} must be positive",
                        hint="Use e.g. --tile-size 256.")
    for name, value in (("tile size", tile_size), ("stride", stride)):
        if value % multiple_of:
            raise GridError(f"{name} {value} is not a multiple of {multiple_of}",
                            hint=f"Use a multiple of {multiple_of}, e.g. "
                                 f"{max(multiple_of, value // multiple_of * multiple_of)}.")
    row_origin, col_origin = (int(v) for v in origin)
    if (row_origin, col_origin) != (0, 0) and edge != "pad":
        raise GridError(f"a grid origin {origin} outside the raster needs the 'pad' edge rule")
    if not (-stride < row_origin <= 0 and -stride < col_origin <= 0):
        raise GridError(f"grid origin {origin} is not within one stride ({stride}) before "
                        "the raster's first pixel")
    if edge == "drop" and (tile_size > width or tile_size > height):
        raise GridError(
            f"tile size {tile_size} is larger than the raster ({width} x {height} pixels)",
            path=source,
            hint=f"Use --tile-size {_largest_fitting(min(width, height), multiple_of)} or smaller.",
        )
    return TileGrid(width, height, tile_size, stride, edge, row_origin, col_origin)


def _largest_fitting(extent: int, multiple_of: int) -> int:
    step = max(multiple_of, 32 if extent >= 32 else 1)
    return max(step, extent // step * step)
