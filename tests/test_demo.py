"""The demo scene: georeference, classes, learnable imagery, determinism, tiling, CLI."""

from __future__ import annotations

import time

import numpy as np
import pytest
import rasterio
from affine import Affine
from helpers import tile_raster
from rasterio.crs import CRS
from rasterio.enums import ColorInterp

from geospade.classes import CHESAPEAKE_7
from geospade.cli.main import main
from geospade.demo import DEMO_ORIGIN, demo_arrays, make_demo_scene
from geospade.errors import InputError, OutputExistsError

CLASSES = range(1, 7)


@pytest.fixture(scope="module")
def default_scene(tmp_path_factory):
    """One scene at the default size (2048), shared by the tests that need realistic fractions."""
    start = time.perf_counter()
    scene = make_demo_scene(tmp_path_factory.mktemp("default") / "demo", progress=False)
    elapsed = time.perf_counter() - start
    with rasterio.open(scene.landcover) as lc, rasterio.open(scene.imagery) as im:
        return scene, lc.read(1), im.read(), elapsed


@pytest.fixture(scope="module")
def small_scene(tmp_path_factory):
    return make_demo_scene(tmp_path_factory.mktemp("small"), size=256, seed=3, progress=False)


def test_default_scene_is_fast(default_scene):
    *_, elapsed = default_scene
    assert elapsed < 60  # about 5 s on one core; generous for a busy test machine


def test_same_seed_gives_identical_arrays_and_another_seed_differs():
    labels_a, pixels_a = demo_arrays(256, seed=7)
    labels_b, pixels_b = demo_arrays(256, seed=7)
    labels_c, pixels_c = demo_arrays(256, seed=8)
    assert np.array_equal(labels_a, labels_b) and np.array_equal(pixels_a, pixels_b)
    assert not np.array_equal(labels_a, labels_c)
    assert not np.array_equal(pixels_a, pixels_c)


def test_written_rasters_match_in_memory_arrays(small_scene):
    labels, pixels = demo_arrays(256, seed=3)
    with rasterio.open(small_scene.landcover) as lc, rasterio.open(small_scene.imagery) as im:
        assert np.array_equal(lc.read(1), labels)
        assert np.array_equal(im.read(), pixels)


def test_landcover_georeference_dtype_nodata_and_colour_table(small_scene):
    with rasterio.open(small_scene.landcover) as ds:
        assert ds.count == 1 and ds.dtypes[0] == "uint8"
        assert ds.crs == CRS.from_epsg(32618)
        assert ds.res == (1.0, 1.0)
        assert (ds.transform.c, ds.transform.f) == DEMO_ORIGIN
        assert ds.nodata == 15
        assert ds.compression.value.lower() == "deflate"
        cmap = ds.colormap(1)
        for cls in CHESAPEAKE_7.classes:
            assert cmap[cls.value][:3] == cls.color


def test_imagery_is_on_the_land_cover_grid_with_rgb_interpretation(small_scene):
    with rasterio.open(small_scene.landcover) as lc, rasterio.open(small_scene.imagery) as im:
        assert (im.crs, im.transform, im.shape) == (lc.crs, lc.transform, lc.shape)
        assert im.count == 3 and im.dtypes[0] == "uint8"
        assert im.colorinterp == (ColorInterp.red, ColorInterp.green, ColorInterp.blue)


def test_small_scene_has_every_class_and_a_nodata_corner():
    labels, _ = demo_arrays(256, seed=11)
    values = set(np.unique(labels).tolist())
    assert values == {*CLASSES, 15}
    assert 7 not in values


def test_default_scene_class_fractions_are_plausible(default_scene):
    _, labels, _, _ = default_scene
    fraction = {v: float((labels == v).mean()) for v in (*CLASSES, 15)}
    assert 0.005 < fraction[1] < 0.15  # water: a river and ponds
    assert 0.1 < fraction[2] < 0.5  # tree canopy
    assert 0.3 < fraction[3] < 0.8  # low vegetation dominates farmland
    assert 0.01 < fraction[4] < 0.2  # barren: ploughed fields, tracks, yards
    assert 0.005 < fraction[5] < 0.1  # impervious: roofs, lots, driveways
    assert 0.005 < fraction[6] < 0.1  # roads
    assert 0.01 < fraction[15] < 0.08  # survey gap: a few percent
    # The gap is one region in a corner, not scattered pixels.
    corners = [labels[0, 0], labels[0, -1], labels[-1, 0], labels[-1, -1]]
    assert corners.count(15) == 1


def test_imagery_is_a_learnable_function_of_land_cover(default_scene):
    _, labels, pixels, _ = default_scene
    px = pixels.astype(np.float64)
    means, stds = {}, {}
    for v in CLASSES:
        sel = px[:, labels == v]
        means[v], stds[v] = sel.mean(axis=1), sel.std(axis=1)
    blue = {v: m[2] / m.sum() for v, m in means.items()}
    green = {v: m[1] - (m[0] + m[2]) / 2 for v, m in means.items()}
    brightness = {v: m.mean() for v, m in means.items()}
    assert max(blue, key=blue.get) == 1  # water is the bluest
    assert sorted(green, key=green.get)[-2:] in ([2, 3], [3, 2])  # vegetation the greenest
    assert brightness[6] < min(brightness[v] for v in (3, 4, 5))  # asphalt darker than land
    for a in CLASSES:  # every class has a colour of its own
        for b in CLASSES:
            if a < b:
                assert np.linalg.norm(means[a] - means[b]) > 10, (a, b)
    between = np.std(np.array(list(means.values())), axis=0).mean()
    within = np.mean(np.array(list(stds.values())))
    assert within < between


def test_imagery_under_nodata_is_still_plausible(default_scene):
    _, labels, pixels, _ = default_scene
    gap = pixels[:, labels == 15].astype(float)
    assert gap.std(axis=1).min() > 5  # real texture, not a flat fill
    assert 40 < gap.mean() < 200


def test_four_bands_have_nir_high_for_vegetation_low_for_water(tmp_path):
    labels, pixels = demo_arrays(256, seed=2, bands=4)
    nir = pixels[3].astype(float)
    assert pixels.shape == (4, 256, 256)
    assert nir[labels == 2].mean() > 2 * nir[labels == 1].mean()
    assert nir[labels == 3].mean() > 2 * nir[labels == 6].mean()
    scene = make_demo_scene(tmp_path, size=256, seed=2, bands=4, progress=False)
    with rasterio.open(scene.imagery) as ds:
        assert ds.count == 4 and ds.descriptions[3] == "nir"


def test_previews_exist_with_the_right_size(default_scene, small_scene):
    scene = default_scene[0]
    for png in (scene.landcover_preview, scene.imagery_preview):
        with rasterio.open(png) as ds:
            assert (ds.driver, ds.count, ds.shape) == ("PNG", 3, (1024, 1024))
    with rasterio.open(small_scene.imagery_preview) as ds:
        assert ds.shape == (256, 256)


def test_existing_output_needs_overwrite(small_scene, tmp_path):
    before = small_scene.landcover.read_bytes()
    with pytest.raises(OutputExistsError):
        make_demo_scene(small_scene.landcover.parent, size=256, seed=4, progress=False)
    assert small_scene.landcover.read_bytes() == before
    make_demo_scene(tmp_path, size=256, seed=4, progress=False)
    make_demo_scene(tmp_path, size=256, seed=5, overwrite=True, progress=False)
    labels, _ = demo_arrays(256, seed=5)
    with rasterio.open(tmp_path / "landcover.tif") as ds:
        assert np.array_equal(ds.read(1), labels)


def test_bad_arguments_raise_input_error(tmp_path):
    with pytest.raises(InputError, match="size"):
        make_demo_scene(tmp_path, size=64, progress=False)
    with pytest.raises(InputError, match="bands"):
        make_demo_scene(tmp_path, size=256, bands=5, progress=False)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("which", ["landcover", "imagery"])
def test_tile_raster_repeats_the_source(small_scene, tmp_path, which):
    src = getattr(small_scene, which)
    dst = tile_raster(src, tmp_path / "tiled.tif", 3, progress=False)
    with rasterio.open(src) as a, rasterio.open(dst) as b:
        data = a.read()
        assert b.shape == (3 * a.height, 3 * a.width) and b.count == a.count
        assert b.crs == a.crs and b.transform == a.transform
        assert b.nodata == a.nodata and b.dtypes == a.dtypes
        assert b.colorinterp == a.colorinterp
        assert np.array_equal(b.read(), np.tile(data, (1, 3, 3)))
        if which == "landcover":
            assert b.colormap(1)[6][:3] == (0, 0, 0)
    with pytest.raises(OutputExistsError):
        tile_raster(src, dst, 2, progress=False)


def test_tile_raster_windows_wrap_across_source_edges(tmp_path):
    # 700 px is not a multiple of the 512 px blocks, so output windows straddle repeats.
    profile = {"driver": "GTiff", "width": 700, "height": 300, "count": 1, "dtype": "uint16",
               "crs": "EPSG:32618", "transform": Affine(1, 0, 0, 0, -1, 300)}
    data = np.arange(700 * 300, dtype=np.uint16).reshape(1, 300, 700)
    with rasterio.open(tmp_path / "src.tif", "w", **profile) as ds:
        ds.write(data)
    out = tile_raster(tmp_path / "src.tif", tmp_path / "big.tif", 2, progress=False)
    with rasterio.open(out) as ds:
        assert np.array_equal(ds.read(), np.tile(data, (1, 2, 2)))


def test_cli_writes_the_scene(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(["demo-data", str(out), "--size", "256", "--seed", "1", "--bands", "4",
                 "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out.split()
    names = ["landcover.tif", "imagery.tif", "landcover.png", "imagery.png"]
    assert printed == [str(out / n) for n in names]
    assert all((out / n).is_file() for n in names)
    assert main(["demo-data", str(out), "--size", "256", "--no-progress"]) == 3  # exists
    assert "--overwrite" in capsys.readouterr().err
