"""Synthesis of real Chesapeake land cover: georeferencing kept exactly, nodata masked."""

from __future__ import annotations

from pathlib import Path

import pytest
import rasterio
from affine import Affine
from helpers import random_model
from rasterio.windows import Window

from geospade.classes import CHESAPEAKE_13
from geospade.imagery import ImageryInfo
from geospade.synthesis import synthesize
from geospade.synthesis.plan import world_offset

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "chesapeake"
TILE = DATA / "Baywide_13Class_20132014_E1300000_N1770000.tif"
# 1024 x 1024 px at the watershed's edge: about half nodata, nine classes.
WINDOW = Window(7000, 3048, 1024, 1024)

pytestmark = pytest.mark.skipif(not TILE.exists(),
                                reason=f"real Chesapeake sample not found in {DATA}")


@pytest.fixture(scope="module")
def cropped(tmp_path_factory):
    """The window written as its own GeoTIFF: same CRS WKT, the window's transform."""
    path = tmp_path_factory.mktemp("chesapeake") / "crop.tif"
    with rasterio.open(TILE) as src:
        labels = src.read(1, window=WINDOW)
        profile = src.profile.copy()
        profile.update(width=WINDOW.width, height=WINDOW.height,
                       transform=src.transform @ Affine.translation(WINDOW.col_off, WINDOW.row_off))
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(labels, 1)
            dst.write_colormap(1, src.colormap(1))
    return path, labels


def test_chesapeake_window_synthesises_with_georeferencing_and_nodata(cropped, tmp_path):
    path, labels = cropped
    assert 0.2 < (labels == 0).mean() < 0.8  # the window holds both nodata and classes
    model = random_model(CHESAPEAKE_13, ImageryInfo(4, "uint8"), preset="tiny", ngf=4,
                         adaptive="clade", resolution=(1.0, 1.0))
    out = tmp_path / "synthetic.tif"
    result = synthesize(path, model, out, tile_size=256, halo=32, progress=False)
    with rasterio.open(path) as src, rasterio.open(out) as dst:
        assert dst.crs.to_wkt() == src.crs.to_wkt()
        assert dst.transform == src.transform
        assert (dst.width, dst.height) == (1024, 1024)
        assert dst.count == 4 and dst.dtypes[0] == "uint8"
        mask = dst.dataset_mask()
        image = dst.read()
    assert ((mask == 0) == (labels == 0)).all()
    assert (image[:, labels == 0] == 0).all()
    assert image[:, labels != 0].std() > 1
    assert result.stats.skipped > 0  # whole tiles of nodata were not generated
    # Tiles sit on the world grid (multiples of 256 px from the CRS origin): count those the
    # 1024 px window touches on each axis.
    row, col = world_offset(result.transform)
    per_axis = [(start + 1023) // 256 - start // 256 + 1 for start in (row, col)]
    assert result.stats.generated + result.stats.skipped == per_axis[0] * per_axis[1]
