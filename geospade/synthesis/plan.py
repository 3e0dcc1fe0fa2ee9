"""Tile and halo planning for synthesis: which window each tile reads, generates and keeps.

Every tile of a ``pad`` :class:`~geospade.tiling.TileGrid` is generated from its core plus a
``halo`` of context on every side (the generator is fully convolutional); only the core, grown
by half the feather width towards each neighbouring tile, is kept. Neighbours' kept regions
therefore overlap by ``feather`` pixels centred on the tile boundary, where
:mod:`geospade.synthesis.blend` cross-fades them.
"""

from __future__ import annotations

from dataclasses import dataclass

from rasterio.windows import Window

from geospade.errors import GridError
from geospade.tiling import Tile, TileGrid, tile_grid

DEFAULT_TILE_SIZE = 512
DEFAULT_HALO = 64
DEFAULT_FEATHER = 32
MAX_DEFAULT_HALO = 128


@dataclass(frozen=True)
class SynthesisPlan:
    """A tile grid over the raster with the halo and feather width used to generate it.

    Attributes:
        grid: the tile grid (``edge="pad"``: tile cores cover every pixel).
        halo: context pixels read and generated on every side of a tile core.
        feather: width of the cross-fade band centred on each tile boundary (even).
        multiple_of: the generator's downsampling factor; tile origins, sizes and halos are
            multiples of it so every tile sees the same low-resolution grid.
    """

    grid: TileGrid
    halo: int
    feather: int
    multiple_of: int = 1

    @property
    def width(self) -> int:
        return self.grid.width

    @property
    def height(self) -> int:
        return self.grid.height

    @property
    def tile_size(self) -> int:
        return self.grid.tile_size

    @property
    def input_size(self) -> int:
        """Side of the array the generator sees for each tile (core + 2 halos)."""
        return self.tile_size + 2 * self.halo

    def read_window(self, tile: Tile) -> Window:
        """The core + halo window of a tile (may reach outside the raster)."""
        return tile.with_halo(self.halo)

    def kept_window(self, tile: Tile) -> Window:
        """The part of a tile's output that is kept: its core grown by feather/2 towards
        each neighbour (not past the grid's outer edges, where there is nothing to blend)."""
        (r0, r1), (c0, c1) = self.kept_ranges(tile)
        return Window(c0, r0, c1 - c0, r1 - r0)

    def kept_ranges(self, tile: Tile) -> tuple[tuple[int, int], tuple[int, int]]:
        """((row_start, row_stop), (col_start, col_stop)) of :meth:`kept_window`."""
        return (
            kept_range(tile.row, self.grid.n_rows, self.tile_size, self.feather),
            kept_range(tile.col, self.grid.n_cols, self.tile_size, self.feather),
        )

    def kept_slices(self, tile: Tile) -> tuple[slice, slice]:
        """Where the kept window lies inside the generated (core + halo) array."""
        (r0, r1), (c0, c1) = self.kept_ranges(tile)
        top = tile.row_off - self.halo
        left = tile.col_off - self.halo
        return slice(r0 - top, r1 - top), slice(c0 - left, c1 - left)


def kept_range(index: int, n_tiles: int, tile_size: int, feather: int) -> tuple[int, int]:
    """Pixel range kept along one axis for tile ``index`` of ``n_tiles``."""
    half = feather // 2
    start = index * tile_size - (half if index > 0 else 0)
    stop = (index + 1) * tile_size + (half if index < n_tiles - 1 else 0)
    return start, stop


def round_up(value: int, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is >= ``value``."""
    return -(-int(value) // multiple) * multiple


def default_tile_size(width: int, height: int, multiple_of: int,
                      preferred: int = DEFAULT_TILE_SIZE) -> int:
    """``preferred`` (a multiple of the downsampling factor), but no larger than the raster
    needs: a small raster gets one tile just covering it."""
    preferred = max(multiple_of, preferred // multiple_of * multiple_of)
    return min(preferred, round_up(max(width, height), multiple_of))


def default_halo(multiple_of: int, receptive_field: int | None = None) -> int:
    """Context on each side: the generator's receptive field when known (then a tile's core
    is exactly what generating the whole raster at once would give), capped at 128 pixels to
    bound the extra compute, else 64; rounded up to a multiple of the downsampling factor."""
    halo = DEFAULT_HALO if not receptive_field else min(MAX_DEFAULT_HALO, receptive_field)
    return round_up(halo, multiple_of)


def plan_tiles(
    width: int,
    height: int,
    *,
    tile_size: int,
    halo: int,
    feather: int = DEFAULT_FEATHER,
    multiple_of: int = 1,
    source: str | None = None,
) -> SynthesisPlan:
    """Check the sizes and lay the synthesis tile grid over a ``width`` x ``height`` raster.

    Args:
        width, height: raster size in pixels.
        tile_size: tile core side, a multiple of ``multiple_of``.
        halo: context on each side, a multiple of ``multiple_of`` and at least feather/2.
        feather: cross-fade width at tile boundaries (even; 0 for hard seams).
        multiple_of: the generator's downsampling factor.
        source: raster name for error messages.

    Raises:
        GridError: sizes that do not fit these rules.
    """
    if halo < 0 or halo % multiple_of:
        raise GridError(f"halo {halo} is not a non-negative multiple of {multiple_of}",
                        path=source,
                        hint=f"Use --halo {round_up(max(halo, 0), multiple_of)}.")
    if feather < 0 or feather % 2:
        raise GridError(f"feather width {feather} must be an even number >= 0", path=source,
                        hint=f"Use {max(0, feather // 2 * 2)}.")
    if feather // 2 > halo:
        raise GridError(f"feather width {feather} needs a halo of at least {feather // 2} "
                        f"(halo is {halo})", path=source,
                        hint=f"Use --halo {round_up(feather // 2, multiple_of)} or more.")
    if feather > tile_size // 2:
        raise GridError(f"feather width {feather} is more than half the tile size {tile_size}",
                        path=source, hint="Use a larger --tile-size.")
    grid = tile_grid(width, height, tile_size, edge="pad", multiple_of=multiple_of,
                     source=source)
    return SynthesisPlan(grid, halo, feather, multiple_of)
