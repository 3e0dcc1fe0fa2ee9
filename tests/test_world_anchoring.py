"""World-anchored synthesis: a window synthesised alone equals the same area of a larger run.

Tiles lie on a grid fixed in the CRS and the noise is hashed from world pixel indices, so
two runs over overlapping or adjacent areas agree wherever both had the land cover within
the generator's receptive field. Tolerance: at most 1 grey level (float noise between
batches); in practice the pixels are identical.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from helpers import random_model

from geospade.classes import CHESAPEAKE_7
from geospade.imagery import ImageryInfo
from geospade.synthesis import seam_score, synthesize, synthesize_array
from geospade.synthesis.plan import plan_tiles, world_offset

# A corner that is not on the 64 px world tile grid (360003 = 64 * 5625 + 3).
CORNER = Affine(1.0, 0.0, 360003.0, 0.0, -1.0, 4310005.0)
SETTINGS = dict(tile_size=64, halo=56, seed=5)  # halo >= the receptive field (54 px)
MARGIN = 56  # context beyond a window's edge is unknown to it: compare inside this margin
TOLERANCE = 1  # grey levels


@pytest.fixture(scope="module")
def model():
    """A narrow CLADE generator with a style vector and per-pixel noise."""
    return random_model(CHESAPEAKE_7, ImageryInfo(3, "uint8"), preset="tiny", ngf=4,
                        adaptive="clade", noise_dim=4, noise_spatial=2)


@pytest.fixture(scope="module")
def labels():
    rng = np.random.default_rng(1)
    coarse = rng.integers(1, 8, (192 // 16 + 1, 320 // 16 + 1))
    return coarse.repeat(16, 0).repeat(16, 1)[:192, :320].astype(np.uint8)


@pytest.fixture(scope="module")
def whole(model, labels):
    return synthesize_array(labels, CORNER, model, **SETTINGS).image.astype(int)


def window_of(labels, row, col, height, width):
    """A window's land cover and its own transform (same grid, shifted corner)."""
    return (labels[row:row + height, col:col + width],
            CORNER @ Affine.translation(col, row))


def interior_difference(part: np.ndarray, whole: np.ndarray, row: int, col: int) -> np.ndarray:
    _, height, width = part.shape
    inside = (slice(None), slice(MARGIN, height - MARGIN), slice(MARGIN, width - MARGIN))
    region = whole[:, row:row + height, col:col + width]
    return np.abs(part.astype(int) - region)[inside]


def test_adjacent_windows_equal_the_whole_run(model, labels, whole):
    for col in (0, 160):  # two windows side by side, splitting the raster in half
        part, transform = window_of(labels, 0, col, 192, 160)
        image = synthesize_array(part, transform, model, **SETTINGS).image
        diff = interior_difference(image, whole, 0, col)
        assert diff.size and diff.max() <= TOLERANCE


def test_window_at_an_odd_offset_equals_the_whole_run(model, labels, whole, tmp_path):
    row, col, height, width = 21, 77, 160, 176  # not a multiple of the tile size or factor
    part, transform = window_of(labels, row, col, height, width)
    path = tmp_path / "window.tif"
    profile = dict(driver="GTiff", width=width, height=height, count=1, dtype="uint8",
                   crs="EPSG:32618", transform=transform, nodata=CHESAPEAKE_7.nodata)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(part, 1)
    out = synthesize(path, model, tmp_path / "out.tif", progress=False, **SETTINGS)
    with rasterio.open(out.path) as ds:
        image = ds.read()
    diff = interior_difference(image, whole, row, col)
    assert diff.size and diff.max() <= TOLERANCE
    # Without the world anchor (the window's own corner as origin) the pixels differ.
    loose = synthesize_array(part, None, model, **SETTINGS).image
    assert interior_difference(loose, whole, row, col).max() > 10


def test_tile_grid_starts_on_the_world_grid():
    plan = plan_tiles(100, 90, tile_size=64, halo=8, feather=16, multiple_of=8,
                      world=world_offset(CORNER))
    first = plan.grid.tile(0, 0)
    # World col of raster col 0 is 360003: the tile holding it starts 3 px before it.
    assert (first.row_off, first.col_off) == (-((-4310005) % 64), -3)
    world_cols = [360003 + plan.grid.tile(0, c).col_off for c in range(plan.grid.n_cols)]
    assert all(c % 64 == 0 for c in world_cols)
    assert plan.grid.tile(0, plan.grid.n_cols - 1).col_off + 64 >= 100  # covers the raster


def test_world_offset_rounds_sub_pixel_corners_alike():
    assert world_offset(Affine(0.6, 0, 360000.0, 0, -0.6, 4310000.2)) == (-7183334, 600000)
    # Two rasters on the same half-pixel-shifted grid keep their exact distance in pixels.
    a = world_offset(Affine(1.0, 0, 10.5, 0, -1.0, 20.5))
    b = world_offset(Affine(1.0, 0, 110.5, 0, -1.0, -9.5))
    assert (b[0] - a[0], b[1] - a[1]) == (30, 100)
    assert world_offset(None) == (0, 0)
    assert world_offset(Affine(1.0, 0.2, 5.0, 0.1, -1.0, 7.0)) == (0, 0)  # rotated


def test_seam_score_of_a_file_uses_the_world_grid(model, labels, tmp_path):
    path = tmp_path / "lc.tif"
    profile = dict(driver="GTiff", width=320, height=192, count=1, dtype="uint8",
                   crs="EPSG:32618", transform=CORNER)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(labels, 1)
    out = synthesize(path, model, tmp_path / "hard.tif", tile_size=64, halo=0, feather=0,
                     seed=5, progress=False).path
    # Hard seams (no halo, no feather) are found where the world grid puts them...
    world_row, world_col = world_offset(CORNER)
    offsets = (-(world_row % 64), -(world_col % 64))
    assert seam_score(out, 64) == pytest.approx(seam_score(out, 64, offsets))
    assert seam_score(out, 64) > seam_score(out, 64, 0)  # ...not at the raster's corner
