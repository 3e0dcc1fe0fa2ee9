"""The tile grid shared by chip export and synthesis: stride, edge rules, halo, indices."""

from __future__ import annotations

import pytest
from rasterio.windows import Window, intersect

from geospade.errors import GridError
from geospade.tiling import Tile, tile_grid


def test_default_stride_is_the_tile_size_and_tiles_do_not_overlap():
    grid = tile_grid(1000, 600, 256)
    assert grid.stride == 256
    assert (grid.n_rows, grid.n_cols) == (2, 3)
    tiles = list(grid)
    assert len(tiles) == len(grid) == 6
    assert not any(intersect(a.window, b.window) for a in tiles for b in tiles if a is not b)


def test_drop_rule_keeps_only_whole_tiles_inside_the_raster():
    grid = tile_grid(1000, 600, 256, edge="drop")
    for tile in grid:
        assert tile.col_off + tile.size <= 1000
        assert tile.row_off + tile.size <= 600
    # The last whole column ends at 768: 232 pixels on the right are left out.
    assert max(t.col_off for t in grid) == 512


def test_pad_rule_covers_every_pixel_and_reaches_past_the_edge():
    grid = tile_grid(1000, 600, 256, edge="pad")
    assert (grid.n_rows, grid.n_cols) == (3, 4)
    last = grid.tile(grid.n_rows - 1, grid.n_cols - 1)
    assert last.col_off + last.size >= 1000 and last.row_off + last.size >= 600
    assert last.clipped(1000, 600) == Window(768, 512, 232, 88)


@pytest.mark.parametrize(("extent", "size", "stride", "drop", "pad"), [
    (512, 256, 256, 2, 2),
    (513, 256, 256, 2, 3),
    (512, 256, 128, 3, 3),
    (600, 256, 100, 4, 5),
    (256, 256, 64, 1, 1),
    (100, 256, 256, 0, 1),
])
def test_tile_counts_per_axis(extent, size, stride, drop, pad):
    if drop:
        assert tile_grid(extent, extent, size, stride, edge="drop").n_cols == drop
    assert tile_grid(extent, extent, size, stride, edge="pad").n_cols == pad


def test_stride_smaller_than_tile_gives_overlapping_neighbours():
    grid = tile_grid(512, 512, 256, 128)
    a, b, c = grid.tile(0, 0), grid.tile(0, 1), grid.tile(0, 2)
    assert (b.col_off, c.col_off) == (128, 256)
    assert intersect(a.window, b.window) and not intersect(a.window, c.window)


def test_index_is_row_major_grid_position():
    grid = tile_grid(1024, 768, 256)
    assert [t.index for t in grid] == list(range(len(grid)))
    tile = grid.tile(2, 3)
    assert tile.index == 2 * grid.n_cols + 3
    assert grid.tile_at(tile.index) == tile
    assert tile.window == Window(768, 512, 256, 256)
    with pytest.raises(IndexError):
        grid.tile(3, 0)


def test_halo_grows_the_window_on_every_side():
    tile = Tile(index=0, row=0, col=1, col_off=256, row_off=0, size=256)
    assert tile.with_halo(64) == Window(192, -64, 384, 384)
    assert tile.with_halo(0) == tile.window


def test_clipped_window_of_a_tile_inside_is_the_tile():
    tile = tile_grid(512, 512, 256).tile(1, 1)
    assert tile.clipped(512, 512) == tile.window


def test_clipped_window_of_a_grid_anchored_before_the_raster():
    grid = tile_grid(1000, 600, 256, 200, edge="pad", origin=(-50, -100))
    first, last = grid.tile(0, 0), grid.tile(grid.n_rows - 1, grid.n_cols - 1)
    assert first.window == Window(-100, -50, 256, 256)
    assert first.clipped(1000, 600) == Window(0, 0, 156, 206)
    assert last.clipped(1000, 600) == Window(last.col_off, last.row_off,
                                             1000 - last.col_off, 600 - last.row_off)
    outside = Tile(index=0, row=0, col=9, col_off=1200, row_off=0, size=256)
    assert outside.clipped(1000, 600).width == 0


def test_tiles_sharing_only_an_edge_do_not_overlap():
    a, b = Tile(0, 0, 0, 0, 0, 256), Tile(1, 0, 1, 256, 0, 256)
    assert not intersect(a.window, b.window)
    assert intersect(a.window, Tile(2, 0, 1, 255, 255, 256).window)


def test_tile_larger_than_the_raster_is_a_clear_error():
    with pytest.raises(GridError, match=r"tile size 512 is larger than the raster \(300 x 400"):
        tile_grid(300, 400, 512, source="lc.tif")
    # ...but synthesis may pad a small raster into one tile.
    assert len(tile_grid(300, 400, 512, edge="pad")) == 1


@pytest.mark.parametrize(("size", "stride"), [(0, None), (256, 0), (-1, 8)])
def test_non_positive_sizes_are_rejected(size, stride):
    with pytest.raises(GridError, match="must be positive"):
        tile_grid(1000, 1000, size, stride)


def test_multiple_of_is_enforced_for_tile_size_and_stride():
    assert tile_grid(1024, 1024, 256, 128, multiple_of=32).stride == 128
    with pytest.raises(GridError, match="stride 100 is not a multiple of 32"):
        tile_grid(1024, 1024, 256, 100, multiple_of=32)
    with pytest.raises(GridError, match="tile size 250 is not a multiple of 32"):
        tile_grid(1024, 1024, 250, multiple_of=32)


def test_unknown_edge_rule_is_rejected():
    with pytest.raises(GridError, match="edge rule 'wrap'"):
        tile_grid(512, 512, 256, edge="wrap")
