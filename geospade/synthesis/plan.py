"""Tile and halo planning for synthesis: which window each tile reads, generates and keeps.

Every tile of a ``pad`` :class:`~geospade.tiling.TileGrid` is generated from its core plus a
``halo`` of context on every side (the generator is fully convolutional); only the core, grown
by half the feather width towards each neighbouring tile, is kept. Neighbours' kept regions
therefore overlap by ``feather`` pixels centred on the tile boundary, where
:mod:`geospade.synthesis.blend` cross-fades them.

World anchoring: tiles lie on a grid fixed in the CRS, not on the raster. Pixel (0, 0) of
the *world grid* has its corner at the CRS origin (x = 0, y = 0) and the raster's pixel
size; tile origins sit at whole multiples of ``tile_size`` world pixels, and the noise is
hashed from world pixel indices. Two rasters on the same pixel grid (a window of a larger
raster, a neighbouring sheet) therefore share tile boundaries, noise and generator phase,
and synthesising one alone gives the same pixels as the same area inside a larger run,
except within a tile or so of its own edges, where context beyond them is missing. A raster
whose corner is not on a whole world pixel (a sub-pixel shift) is anchored to the nearest
one: runs over rasters sharing its grid still join exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from affine import Affine
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
        world_row, world_col: world-grid indices of the raster's pixel (0, 0); the noise of
            raster pixel (r, c) is that of world pixel (world_row + r, world_col + c).
    """

    grid: TileGrid
    halo: int
    feather: int
    multiple_of: int = 1
    world_row: int = 0
    world_col: int = 0

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
        grid = self.grid
        return (
            kept_range(tile.row, grid.n_rows, self.tile_size, self.feather, grid.row_origin),
            kept_range(tile.col, grid.n_cols, self.tile_size, self.feather, grid.col_origin),
        )

    def kept_slices(self, tile: Tile) -> tuple[slice, slice]:
        """Where the kept window lies inside the generated (core + halo) array."""
        (r0, r1), (c0, c1) = self.kept_ranges(tile)
        top = tile.row_off - self.halo
        left = tile.col_off - self.halo
        return slice(r0 - top, r1 - top), slice(c0 - left, c1 - left)


def kept_range(index: int, n_tiles: int, tile_size: int, feather: int,
               origin: int = 0) -> tuple[int, int]:
    """Pixel range kept along one axis for tile ``index`` of ``n_tiles`` (tile 0 starting at
    pixel ``origin``)."""
    half = feather // 2
    start = origin + index * tile_size - (half if index > 0 else 0)
    stop = origin + (index + 1) * tile_size + (half if index < n_tiles - 1 else 0)
    return start, stop


def world_offset(transform: Affine | None) -> tuple[int, int]:
    """World-grid (row, col) of a raster's pixel (0, 0): its corner over the pixel size.

    The world grid has the raster's own pixel size and its corner at the CRS origin, so
    rasters on one pixel grid get offsets that differ by exactly their distance in pixels.
    A corner off the world grid by a fraction of a pixel is rounded to the nearest world
    pixel (halves upwards, with a tolerance for float noise, so rasters sharing a grid round
    alike). Returns (0, 0) without a transform or for a rotated one: the raster's own
    origin then anchors the grid.
    """
    if transform is None or transform.b or transform.d or not transform.a or not transform.e:
        return 0, 0
    return (_nearest(transform.f / transform.e), _nearest(transform.c / transform.a))


def _nearest(value: float) -> int:
    return int(math.floor(value + 0.5 + 1e-6))


def round_up(value: int, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is >= ``value``."""
    return -(-int(value) // multiple) * multiple


def default_tile_size(width: int, height: int, multiple_of: int,
                      preferred: int = DEFAULT_TILE_SIZE) -> int:
    """``preferred``, rounded down to a multiple of the downsampling factor, whatever the
    raster's size: the tile grid is fixed in the world (see the module notes), so runs over
    small and large rasters only share tiles when they share the tile size."""
    del width, height  # kept in the signature: callers pass the raster's size
    return max(multiple_of, preferred // multiple_of * multiple_of)


def default_halo(multiple_of: int, receptive_field: int | None = None,
                 exact_reach: int = 0) -> int:
    """Context on each side: the generator's receptive field when known (then a tile's core
    is exactly what generating the whole raster at once would give), capped at 128 pixels to
    bound the extra compute, else 64; rounded up to a multiple of the downsampling factor.

    ``exact_reach`` is the part of the receptive field that the cap must not cut: the per-field
    tones' reach (:func:`~geospade.models.generator.field_reach`). A tone is decided by the
    pixels of its field within that reach, so a halo short of it could give one field two
    tones in two neighbouring tiles (a seam); a far conv input only nudges a pixel. The halo is
    then that reach plus the capped remainder."""
    if not receptive_field:
        return round_up(DEFAULT_HALO, multiple_of)
    exact = max(0, min(int(exact_reach), int(receptive_field)))
    return round_up(exact + min(MAX_DEFAULT_HALO, int(receptive_field) - exact), multiple_of)


def plan_tiles(
    width: int,
    height: int,
    *,
    tile_size: int,
    halo: int,
    feather: int = DEFAULT_FEATHER,
    multiple_of: int = 1,
    source: str | None = None,
    world: tuple[int, int] = (0, 0),
) -> SynthesisPlan:
    """Check the sizes and lay the synthesis tile grid over a ``width`` x ``height`` raster.

    Tile origins lie at multiples of ``tile_size`` on the world grid (see the module notes),
    so the first tiles may start before the raster's first row and column.

    Args:
        width, height: raster size in pixels.
        tile_size: tile core side, a multiple of ``multiple_of``.
        halo: context on each side, a multiple of ``multiple_of`` and at least feather/2.
        feather: cross-fade width at tile boundaries (even; 0 for hard seams).
        multiple_of: the generator's downsampling factor.
        source: raster name for error messages.
        world: world-grid (row, col) of the raster's pixel (0, 0), from
            :func:`world_offset`; (0, 0) anchors the grid at the raster's corner.

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
    world_row, world_col = (int(v) for v in world)
    origin = (-(world_row % tile_size), -(world_col % tile_size)) if tile_size > 0 else (0, 0)
    grid = tile_grid(width, height, tile_size, edge="pad", multiple_of=multiple_of,
                     origin=origin, source=source)
    return SynthesisPlan(grid, halo, feather, multiple_of, world_row, world_col)
