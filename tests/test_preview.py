"""Quick-look previews: class colours, imagery display, decimated reads, PNG writing."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine

from geospade.classes import CHESAPEAKE_7
from geospade.errors import InputError, OutputExistsError
from geospade.imagery import ImageryInfo
from geospade.preview import (
    imagery_rgb,
    landcover_rgb,
    preview_raster,
    preview_shape,
    side_by_side,
    write_png,
)


def _write(path, data, **extra):
    count, height, width = data.shape
    profile = {"driver": "GTiff", "width": width, "height": height, "count": count,
               "dtype": data.dtype.name, "crs": "EPSG:32618",
               "transform": Affine(1, 0, 360000, 0, -1, 4310000), **extra}
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
    return path


def _read_png(path):
    with rasterio.open(path) as ds:
        assert ds.driver == "PNG"
        return ds.read()


def test_landcover_rgb_uses_class_colours_and_black_for_nodata_and_unknown():
    labels = np.array([[1, 2, 6], [15, 9, -1]])
    rgb = landcover_rgb(labels, CHESAPEAKE_7)
    assert rgb.shape == (3, 2, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[:, 0, 0]) == (0, 197, 255)
    assert tuple(rgb[:, 0, 1]) == (38, 115, 0)
    assert not rgb[:, 1].any()  # nodata 15, unknown 9, negative -1


def test_imagery_rgb_passes_uint8_through_and_picks_rgb_by_name():
    pixels = np.stack([np.full((2, 2), v, np.uint8) for v in (10, 20, 30, 40)])
    assert imagery_rgb(pixels)[:, 0, 0].tolist() == [10, 20, 30]
    info = ImageryInfo(4, band_names=("nir", "red", "green", "blue"))
    assert imagery_rgb(pixels, info)[:, 0, 0].tolist() == [20, 30, 40]
    grey = imagery_rgb(pixels[:1])
    assert grey.shape == (3, 2, 2) and (grey == 10).all()


def test_imagery_rgb_stretches_other_types_and_blacks_out_masked_pixels():
    ramp = np.linspace(1000, 5000, 100, dtype=np.float32).reshape(1, 10, 10)
    pixels = np.concatenate([ramp, ramp * 2, ramp * 3])
    pixels[:, 0, 0] = np.nan
    rgb = imagery_rgb(pixels)
    assert rgb.dtype == np.uint8
    assert rgb[:, 9, 9].tolist() == [255, 255, 255] and rgb[:, 0, 1].tolist() == [0, 0, 0]
    assert 100 < rgb[0, 5, 0] < 155  # the middle of the range lands mid-grey
    masked = np.ma.masked_array(np.nan_to_num(pixels).astype(np.uint16),
                                mask=np.zeros(pixels.shape, bool))
    masked.mask[:, 5, 5] = True
    assert not imagery_rgb(masked)[:, 5, 5].any()


def test_write_png_round_trip_and_refuses_to_overwrite(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (3, 5, 7), dtype=np.uint8)
    path = write_png(tmp_path / "a.png", rgb)
    assert np.array_equal(_read_png(path), rgb)
    with pytest.raises(OutputExistsError):
        write_png(path, rgb)
    write_png(path, rgb[:, :4], overwrite=True)
    assert _read_png(path).shape == (3, 4, 7)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]  # no temporary leftovers
    with pytest.raises(InputError):
        write_png(tmp_path / "b.png", rgb.astype(np.float32))


def test_preview_shape_keeps_aspect_and_never_upsamples():
    assert preview_shape(4000, 2000, 1024) == (512, 1024)
    assert preview_shape(300, 200, 1024) == (200, 300)


def test_preview_of_a_label_raster_uses_its_colour_table(tmp_path):
    labels = np.full((1, 400, 600), 3, dtype=np.uint8)
    labels[0, :200] = 1
    labels[0, 390:] = 15
    src = _write(tmp_path / "lc.tif", labels, nodata=15)
    with rasterio.open(src, "r+") as ds:
        ds.write_colormap(1, CHESAPEAKE_7.colormap())
    rgb = _read_png(preview_raster(src, tmp_path / "lc.png", max_size=300))
    assert rgb.shape == (3, 200, 300)
    assert tuple(rgb[:, 10, 10]) == (0, 197, 255)
    assert tuple(rgb[:, 150, 10]) == (163, 255, 115)
    assert not rgb[:, -1].any()  # nodata rows are black
    # Nearest decimation: only class colours, never blends of them.
    colours = {tuple(c) for c in rgb.reshape(3, -1).T}
    assert colours == {(0, 197, 255), (163, 255, 115), (0, 0, 0)}


def test_preview_of_a_label_raster_with_a_given_scheme(tmp_path):
    labels = np.full((1, 64, 64), 6, dtype=np.uint8)
    src = _write(tmp_path / "lc.tif", labels)
    rgb = _read_png(preview_raster(src, tmp_path / "lc.png", scheme=CHESAPEAKE_7))
    assert rgb.shape == (3, 64, 64) and not rgb.any()  # roads are black in the scheme


def test_preview_of_imagery_averages_when_decimating(tmp_path):
    checker = (np.indices((512, 512)).sum(axis=0) % 2 * 200).astype(np.uint8)
    src = _write(tmp_path / "im.tif", np.stack([checker, checker, checker]))
    rgb = _read_png(preview_raster(src, tmp_path / "im.png", max_size=128))
    assert rgb.shape == (3, 128, 128)
    assert np.abs(rgb.astype(int) - 100).max() <= 1  # 4x4 averages of 0 and 200


def test_preview_of_imagery_picks_bands_named_red_green_blue(tmp_path):
    pixels = np.stack([np.full((8, 8), v, np.uint8) for v in (200, 10, 20, 30)])
    src = _write(tmp_path / "im.tif", pixels)
    with rasterio.open(src, "r+") as ds:
        ds.descriptions = ("nir", "red", "green", "blue")
    rgb = _read_png(preview_raster(src, tmp_path / "im.png"))
    assert rgb[:, 0, 0].tolist() == [10, 20, 30]


def test_preview_raster_refuses_to_overwrite(tmp_path):
    src = _write(tmp_path / "im.tif", np.zeros((3, 8, 8), np.uint8))
    preview_raster(src, tmp_path / "im.png")
    with pytest.raises(OutputExistsError):
        preview_raster(src, tmp_path / "im.png")


def test_side_by_side_pads_to_the_tallest_panel():
    a = np.full((3, 10, 4), 50, np.uint8)
    b = np.full((6, 5), 100, np.uint8)
    out = side_by_side([a, b], gap=2)
    assert out.shape == (3, 10, 11)
    assert (out[:, :, :4] == 50).all()
    assert (out[:, :, 4:6] == 255).all()  # the gap
    assert (out[:, :6, 6:] == 100).all() and (out[:, 6:, 6:] == 255).all()
    with pytest.raises(InputError):
        side_by_side([])
