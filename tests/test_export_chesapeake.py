"""Chip export on a real Chesapeake Conservancy tile (13 classes, Albers as WKT, 89% nodata).

The tile has no paired imagery, so a synthetic one is made in UTM at 8 m: the export must warp
it onto the land cover's Albers grid, keep exactly the tiles without nodata, and place every
chip where its window lies in the source.
"""

from __future__ import annotations

from pathlib import Path

import geopandas
import numpy as np
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds
from rasterio.windows import bounds as window_bounds
from rasterio.windows import transform as window_transform
from test_raster import world_file_transform

from geospade.chips import esri
from geospade.chips.export import export_chips
from geospade.classes import CHESAPEAKE_13
from geospade.tiling import tile_grid

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "chesapeake"
TILE_FILE = DATA / "Baywide_13Class_20132014_E1300000_N1770000.tif"
TILE = 512

pytestmark = pytest.mark.skipif(not TILE_FILE.exists(),
                                reason=f"real Chesapeake sample not found at {DATA}")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The real tile exported at 512 px against 8 m UTM imagery whose pixels encode x and y."""
    tmp = tmp_path_factory.mktemp("chesapeake")
    with rasterio.open(TILE_FILE) as src:
        left, bottom, right, top = transform_bounds(src.crs, "EPSG:26918", *src.bounds)
    res, margin = 8.0, 200.0
    transform = from_origin(left - margin, top + margin, res, res)
    width = int((right - left + 2 * margin) / res)
    height = int((top - bottom + 2 * margin) / res)
    rows, cols = np.mgrid[0:height, 0:width]
    pixels = np.stack([cols % 256, rows % 256, (cols + rows) % 256]).astype(np.uint8)
    imagery = tmp / "utm_imagery.tif"
    with rasterio.open(imagery, "w", driver="GTiff", width=width, height=height, count=3,
                       dtype="uint8", crs="EPSG:26918", transform=transform, tiled=True) as dst:
        dst.write(pixels)
    out = tmp / "chips"
    result = export_chips(TILE_FILE, imagery, out, tile_size=TILE, progress=False)
    return result, out


def test_chip_count_follows_the_nodata_rule(exported):
    result, out = exported
    with rasterio.open(TILE_FILE) as src:
        grid = tile_grid(src.width, src.height, TILE)
        # Independently of the exporter: GDAL's mask of the source, tile by tile.
        clean = [t.index for t in grid if src.read_masks(1, window=t.window).all()]
    written = sorted(int(image.stem) for image, _ in esri.read_map_txt(out))
    assert written == clean
    assert result.num_tiles == len(grid) == 19 * 19
    assert result.skipped["nodata"] == len(grid) - len(clean)
    assert 0 < len(clean) < len(grid) / 4  # mostly nodata


def test_every_chip_maps_back_to_its_place_in_the_source(exported):
    _, out = exported
    with rasterio.open(TILE_FILE) as src:
        grid = tile_grid(src.width, src.height, TILE)
        for image, label in esri.read_map_txt(out):
            window = grid.tile_at(int(label.stem)).window
            expected = window_transform(window, src.transform)
            for chip_path in (out / image, out / label):
                with rasterio.open(chip_path) as chip:
                    assert chip.transform.almost_equals(expected)
                    assert chip.crs == src.crs
                    assert chip.bounds == pytest.approx(window_bounds(window, src.transform))
                tfw = world_file_transform(chip_path)
                assert tfw.almost_equals(expected)
            with rasterio.open(out / label) as chip:
                np.testing.assert_array_equal(chip.read(1), src.read(1, window=window))


def test_warped_imagery_lands_where_the_land_cover_is(exported):
    _, out = exported
    image, _ = esri.read_map_txt(out)[0]
    with rasterio.open(out / image) as chip:
        pixels = chip.read()
        # The imagery's band 1 is its column modulo 256: recover it at the chip's centre.
        x, y = chip.xy(TILE // 2, TILE // 2)
        ux, uy = rasterio.warp.transform(chip.crs, "EPSG:26918", [x], [y])
    with rasterio.open(out.parent / "utm_imagery.tif") as img:
        row, col = img.index(ux[0], uy[0])
    assert abs(int(pixels[0, TILE // 2, TILE // 2]) - col % 256) <= 1
    assert abs(int(pixels[1, TILE // 2, TILE // 2]) - row % 256) <= 1


def test_scheme_and_metadata_of_the_real_tile(exported):
    result, out = exported
    assert result.class_scheme.name == "chesapeake-13" and result.class_scheme.nodata == 0
    stats = esri.read_accumulated_stats(out)
    ref = stats["MinCellSize"]["spatialReference"]
    assert ref["wkid"] == 0 and "Albers" in ref["wkt"]
    index = geopandas.read_file(out / "chips.gpkg", layer="chips")
    pixels = {v: int(index[f"px_{v}"].sum()) for v in CHESAPEAKE_13.values}
    assert [c["ClassValue"] for c in stats["Classes"]] == [v for v in pixels if pixels[v]]
    assert stats["ClassPixelStats"]["NumPixelsPerClass"] == [n for n in pixels.values() if n]
    assert sum(stats["ClassPixelStats"]["NumPixelsPerClass"]) == len(index) * TILE * TILE
    with rasterio.open(TILE_FILE) as src:
        for row in index.itertuples():
            window = tile_grid(src.width, src.height, TILE).tile_at(row.index).window
            assert row.geometry.equals(shapely.box(*window_bounds(window, src.transform)))
