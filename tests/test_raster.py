"""Raster helpers: opening with clear errors, grid alignment, world files, safe outputs."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.transform import from_origin
from rasterio.vrt import WarpedVRT

from geospade.errors import InputError, OutputExistsError
from geospade.raster import (
    aligned_view,
    atomic_dir,
    atomic_file,
    check_landcover,
    check_output,
    esri_world_file,
    geotiff_profile,
    open_raster,
    output_exists,
    require_crs,
    same_grid,
    world_file_options,
)

ORIGIN = from_origin(500000.0, 4000000.0, 1.0, 1.0)


def _raster(path, data, *, crs="EPSG:32618", transform=ORIGIN, nodata=None):
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    profile = {"driver": "GTiff", "width": data.shape[2], "height": data.shape[1],
               "count": data.shape[0], "dtype": data.dtype.name, "transform": transform,
               "nodata": nodata}
    if crs:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def test_open_raster_names_a_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"missing\.tif: imagery not found"):
        open_raster(tmp_path / "missing.tif", "imagery")


def test_open_raster_names_an_unreadable_file(tmp_path):
    bad = tmp_path / "bad.tif"
    bad.write_text("not a raster")
    with pytest.raises(InputError, match="cannot open land cover"):
        open_raster(bad, "land cover")


def test_float_land_cover_is_rejected(tmp_path):
    with open_raster(_raster(tmp_path / "f.tif", np.zeros((8, 8), np.float32))) as ds, \
            pytest.raises(InputError, match="data type float32"):
        check_landcover(ds)
    with open_raster(_raster(tmp_path / "i.tif", np.zeros((8, 8), np.uint8))) as ds:
        check_landcover(ds)


def test_missing_crs_is_named(tmp_path):
    nocrs = _raster(tmp_path / "n.tif", np.zeros((8, 8), np.uint8), crs=None)
    with open_raster(nocrs) as ds, \
            pytest.raises(InputError, match="imagery has no coordinate reference system"):
        require_crs(ds, "imagery")


def test_same_grid_needs_crs_transform_and_size(tmp_path):
    a = _raster(tmp_path / "a.tif", np.zeros((8, 8), np.uint8))
    b = _raster(tmp_path / "b.tif", np.zeros((3, 8, 8), np.uint8))
    c = _raster(tmp_path / "c.tif", np.zeros((8, 8), np.uint8),
                transform=ORIGIN @ Affine.translation(1, 0))
    d = _raster(tmp_path / "d.tif", np.zeros((8, 8), np.uint8), crs="EPSG:26918")
    with rasterio.open(a) as ra, rasterio.open(b) as rb, rasterio.open(c) as rc, \
            rasterio.open(d) as rd:
        assert same_grid(ra, rb)
        assert not same_grid(ra, rc)
        assert not same_grid(ra, rd)


def test_aligned_view_is_the_imagery_itself_on_the_same_grid(tmp_path):
    lc = _raster(tmp_path / "lc.tif", np.zeros((16, 16), np.uint8))
    img = _raster(tmp_path / "img.tif", np.zeros((3, 16, 16), np.uint8))
    with rasterio.open(lc) as l_ds, rasterio.open(img) as i_ds:
        assert aligned_view(i_ds, l_ds) is i_ds


def test_aligned_view_warps_other_grids_onto_the_land_cover(tmp_path):
    lc = _raster(tmp_path / "lc.tif", np.zeros((16, 16), np.uint8))
    # Imagery at 2 m, shifted by 4 m: a pixel of the view must sample the right place.
    cols = np.arange(12, dtype=np.float32)
    img_data = np.broadcast_to(cols, (12, 12)).astype(np.float32)
    img = _raster(tmp_path / "img.tif", img_data,
                  transform=from_origin(500000.0 - 4.0, 4000000.0, 2.0, 2.0))
    with rasterio.open(lc) as l_ds, rasterio.open(img) as i_ds:
        view = aligned_view(i_ds, l_ds)
        assert isinstance(view, WarpedVRT)
        with view:
            assert (view.width, view.height) == (16, 16)
            assert view.transform == l_ds.transform
            values = view.read(1)
    # Land-cover column 4 (x = 500004.5) is imagery x = 8.5 m from its origin: column 4.25.
    assert values[5, 4] == pytest.approx(3.75, abs=0.3)


def test_aligned_view_rejects_imagery_elsewhere(tmp_path):
    lc = _raster(tmp_path / "lc.tif", np.zeros((16, 16), np.uint8))
    img = _raster(tmp_path / "far.tif", np.zeros((3, 16, 16), np.uint8),
                  transform=from_origin(600000.0, 4000000.0, 1.0, 1.0))
    with rasterio.open(lc) as l_ds, rasterio.open(img) as i_ds, \
            pytest.raises(InputError, match="do not overlap"):
        aligned_view(i_ds, l_ds)


def test_aligned_view_requires_imagery_crs(tmp_path):
    lc = _raster(tmp_path / "lc.tif", np.zeros((16, 16), np.uint8))
    img = _raster(tmp_path / "img.tif", np.zeros((3, 16, 16), np.uint8), crs=None)
    with rasterio.open(lc) as l_ds, rasterio.open(img) as i_ds, \
            pytest.raises(InputError, match="no coordinate reference system"):
        aligned_view(i_ds, l_ds)


def world_file_transform(chip) -> Affine:
    """The transform GDAL reads from a chip's world file alone (not its GeoTIFF tags)."""
    with rasterio.Env(GDAL_GEOREF_SOURCES="WORLDFILE"), rasterio.open(chip) as ds:
        assert ds.transform != Affine.identity(), f"{chip} has no world file"
        return ds.transform


@pytest.mark.parametrize(("driver", "suffix", "world"),
                         [("GTiff", ".tif", ".tfw"), ("PNG", ".png", ".pgw"),
                          ("JPEG", ".jpg", ".jgw")])
def test_gdal_world_files_are_the_esri_ones(tmp_path, driver, suffix, world):
    # The six lines ArcGIS writes: pixel size, rotation, the CENTRE of the top-left pixel,
    # 10 decimals; named as ArcGIS names them; read back by GDAL to the same transform.
    transform = from_origin(1300000.25, 1780000.0, 0.5, 0.75)
    chip = tmp_path / f"chip{suffix}"
    with rasterio.open(chip, "w", driver=driver, width=4, height=4, count=1, dtype="uint8",
                       crs="EPSG:32618", transform=transform,
                       **world_file_options(driver)) as dst:
        dst.write(np.zeros((1, 4, 4), np.uint8))
    path = esri_world_file(chip)
    assert path == chip.with_suffix(world) and path.exists()
    assert not chip.with_suffix(".wld").exists()
    centre = transform @ (0.5, 0.5)
    expected = (transform.a, transform.d, transform.b, transform.e, *centre)
    assert path.read_text().split() == [f"{v:.10f}" for v in expected]
    assert world_file_transform(chip).almost_equals(transform, precision=1e-9)


def test_geotiff_profile_is_tiled_only_for_large_rasters():
    big = geotiff_profile(4096, 4096, 3, "uint8", "EPSG:32618", ORIGIN)
    assert big["tiled"] and big["blockxsize"] == 512 and big["predictor"] == 2
    small = geotiff_profile(100, 100, 1, "float32", None, ORIGIN, nodata=-1)
    assert "tiled" not in small and "predictor" not in small and small["nodata"] == -1


def test_check_output_refuses_non_empty_paths_without_overwrite(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert check_output(empty, overwrite=False) == empty
    (empty / "x").write_text("x")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        check_output(empty, overwrite=False)
    assert check_output(empty, overwrite=True) == empty


@pytest.mark.parametrize("state", ["missing", "empty folder", "folder with a file", "file"])
def test_library_trainer_and_dialog_agree_on_existing_outputs(tmp_path, state):
    # The library, the trainer's run folder and the ArcGIS dialog agree on what an output
    # that would be replaced is.
    from geospade.arcgis.tools import check_output_folder
    from geospade.training.distributed import Process
    from geospade.training.trainer import prepare_run_dir

    path = tmp_path / "out"
    if state != "missing":
        path.mkdir() if state != "file" else path.write_text("x")
    if state == "folder with a file":
        (path / "x").write_text("x")
    taken = state in ("folder with a file", "file")
    assert output_exists(path) == taken
    refused = []
    for check in (lambda: check_output(path, overwrite=False),
                  lambda: prepare_run_dir(path, False, False, Process(0, 1, 0, None, False))):
        try:
            check()
            refused.append(False)
        except OutputExistsError:
            refused.append(True)
    assert refused == [taken, taken]
    if state != "file":  # the dialog's own message for a file is another one
        [message] = check_output_folder(str(path), overwrite=False)
        assert (message.level == "error") == taken


def test_atomic_file_appears_only_on_success(tmp_path):
    target = tmp_path / "out.tif"
    with pytest.raises(RuntimeError), atomic_file(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with atomic_file(target) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole"
    with pytest.raises(OutputExistsError), atomic_file(target):
        pass
    assert target.read_text() == "whole"


def test_atomic_dir_replaces_an_old_folder_only_when_complete(tmp_path):
    target = tmp_path / "chips"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(target, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
        raise RuntimeError("interrupted")
    assert [p.name for p in target.iterdir()] == ["old.txt"]
    with atomic_dir(target, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chips"]
