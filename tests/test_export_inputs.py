"""export-chips on awkward inputs: damaged rasters and chips, tile sizes, multi-band land
cover, AOIs drawn in another CRS along chip borders, and label nodata as ArcGIS reads it."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas
import numpy as np
import pytest
import rasterio
import shapely
from rasterio.windows import from_bounds

from geospade.chips import esri
from geospade.chips.dataset import ChipDataset
from geospade.chips.export import CHIP_SIZE_STEP, export_chips
from geospade.cli.main import main
from geospade.demo import make_demo_scene
from geospade.errors import InputError
from geospade.models.config import PRESETS

TILE = 64


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """The 256 px demo scene (Chesapeake 7 classes, nodata 15 over a survey gap)."""
    return make_demo_scene(tmp_path_factory.mktemp("demo"), size=256, progress=False)


def _cli(capsys, *args) -> tuple[int, str]:
    code = main([*map(str, args)])
    return code, capsys.readouterr().err.strip()


def _truncated(source: Path, target: Path, keep: float = 0.5) -> Path:
    """A copy of ``source`` cut short: its header opens, its last blocks are missing."""
    data = source.read_bytes()
    target.write_bytes(data[:int(len(data) * keep)])
    return target


def _tiled_copy(source: Path, target: Path) -> Path:
    """A tiled, compressed copy (blocks at the end of the file, header at the start)."""
    with rasterio.open(source) as src:
        profile = {**src.profile, "tiled": True, "blockxsize": 64, "blockysize": 64,
                   "compress": "deflate"}
        with rasterio.open(target, "w", **profile) as dst:
            dst.write(src.read())
    return target


# -- damaged rasters and chips ------------------------------------------------------------------


@pytest.mark.parametrize("which", ["landcover", "imagery"])
def test_truncated_raster_is_one_line_naming_it(scene, tmp_path, capsys, which):
    lc, img = scene.landcover, scene.imagery
    broken = _truncated(_tiled_copy(getattr(scene, which), tmp_path / "whole.tif"),
                        tmp_path / f"{which}_cut.tif")
    with rasterio.open(broken) as ds:  # the header still opens: only the pixels fail
        assert ds.width == 256
    lc, img = (broken, img) if which == "landcover" else (lc, broken)
    code, err = _cli(capsys, "export-chips", lc, "--imagery", img, "-o", tmp_path / "out",
                     "--tile-size", TILE, "--no-progress")
    assert code == 2 and len(err.splitlines()) == 1, err
    assert str(broken) in err and "truncated or damaged" in err
    assert not (tmp_path / "out").exists()


def test_damaged_chip_is_named_when_training(scene, tmp_path, capsys):
    chips = tmp_path / "chips"
    export_chips(scene.landcover, scene.imagery, chips, tile_size=TILE, progress=False)
    image, _ = esri.read_map_txt(chips)[0]
    chip = chips / image
    _tiled_copy(chip, tmp_path / "tiled.tif")
    _truncated(tmp_path / "tiled.tif", chip, keep=0.6)
    with pytest.raises(InputError, match="truncated or damaged") as info:
        ChipDataset(chips, "train")[0]
    assert str(chip) in str(info.value)
    code, err = _cli(capsys, "train", chips, "-o", tmp_path / "run", "--preset", "tiny",
                     "--steps", "1", "--batch-size", "2", "--device", "cpu", "--no-progress")
    assert code == 2 and len(err.splitlines()) == 1 and str(chip) in err, err


# -- tile sizes and land-cover bands -------------------------------------------------------------


def test_tile_size_train_cannot_use_is_refused(scene, tmp_path, capsys):
    code, err = _cli(capsys, "export-chips", scene.landcover, "--imagery", scene.imagery,
                     "-o", tmp_path / "out", "--tile-size", "33", "--no-progress")
    assert code == 2 and len(err.splitlines()) == 1
    assert "tile size 33" in err and f"multiple of {CHIP_SIZE_STEP}" in err
    assert not (tmp_path / "out").exists()
    # The step is the smallest model's: every multiple of it trains with some preset.
    assert min(2 ** p["num_upsampling"] for p in PRESETS.values()) == CHIP_SIZE_STEP
    assert export_chips(scene.landcover, scene.imagery, tmp_path / "ok", tile_size=40,
                        progress=False).num_chips > 0


def test_two_band_land_cover_is_refused(scene, tmp_path, capsys):
    two = tmp_path / "two_bands.tif"
    with rasterio.open(scene.landcover) as src:
        data = src.read(1)
        with rasterio.open(two, "w", **{**src.profile, "count": 2}) as dst:
            dst.write(np.stack([data, data]))
    code, err = _cli(capsys, "export-chips", two, "--imagery", scene.imagery, "-o",
                     tmp_path / "out", "--tile-size", TILE, "--no-progress")
    assert code == 2 and len(err.splitlines()) == 1
    assert str(two) in err and "2 bands" in err and "gdal_translate -b 1" in err


# -- an AOI along chip borders, in another CRS ------------------------------------------------------


def _chips_in(folder: Path) -> set[int]:
    return {int(Path(image).stem) for image, _ in esri.read_map_txt(folder)}


def test_aoi_along_tile_borders_keeps_the_same_chips_in_any_crs(scene, tmp_path):
    with rasterio.open(scene.landcover) as src:
        left, top = src.transform.c, src.transform.f
        crs = src.crs
    # Two rows of four 64 px tiles: 8 chips, edges exactly on tile borders.
    box = shapely.box(left, top - 2 * TILE, left + 4 * TILE, top)
    utm = geopandas.GeoDataFrame(geometry=[box], crs=crs.to_wkt())
    utm.to_file(tmp_path / "utm.gpkg")
    utm.to_crs("EPSG:4326").to_file(tmp_path / "lonlat.gpkg")
    kept = {}
    for name in ("utm", "lonlat"):
        export_chips(scene.landcover, scene.imagery, tmp_path / name, tile_size=TILE,
                     max_nodata=1.0, aoi=tmp_path / f"{name}.gpkg", progress=False)
        kept[name] = _chips_in(tmp_path / name)
    assert kept["utm"] == kept["lonlat"] == set(range(8))
    # The tolerance is a fraction of a pixel: an AOI one pixel short of a border still drops
    # the chips along it.
    short = geopandas.GeoDataFrame(geometry=[shapely.box(left, top - 2 * TILE + 1,
                                                         left + 4 * TILE, top)], crs=crs.to_wkt())
    short.to_crs("EPSG:4326").to_file(tmp_path / "short.gpkg")
    export_chips(scene.landcover, scene.imagery, tmp_path / "short", tile_size=TILE,
                 max_nodata=1.0, aoi=tmp_path / "short.gpkg", progress=False)
    assert _chips_in(tmp_path / "short") == set(range(4))


# -- label nodata as ArcGIS reads it ----------------------------------------------------------------


@pytest.mark.parametrize("image_format", ["tif", "png"])
def test_label_nodata_is_written_as_0_and_read_back_as_dont_care(scene, tmp_path,
                                                                  image_format):
    out = tmp_path / "chips"
    export_chips(scene.landcover, scene.imagery, out, tile_size=TILE, max_nodata=1.0,
                 image_format=image_format, progress=False)
    info = json.loads((out / "geospade_export.json").read_text())
    assert info["label_nodata"] == 0
    assert json.loads((out / "class_scheme.json").read_text())["nodata"] == 15  # the scheme's
    dataset = ChipDataset(out, "train")
    index = geopandas.read_file(out / "chips.gpkg", layer="chips")
    gap = int(np.argmax(index.nodata_fraction.to_numpy()))
    assert index.nodata_fraction.iloc[gap] > 0
    with rasterio.open(scene.landcover) as lc, rasterio.open(out / index.label.iloc[gap]) as chip:
        raw = chip.read(1)
        window = from_bounds(*chip.bounds, transform=lc.transform)
        source = lc.read(1, window=window.round_offsets().round_lengths())
    missing = source == 15
    assert missing.any() and (raw[missing] == 0).all() and (raw[~missing] == source[~missing]).all()
    labels = dataset[gap]["label"].numpy()
    ignore = dataset.class_scheme.ignore_index
    assert (labels[missing] == ignore).all() and (labels[~missing] != ignore).all()


def test_label_nodata_stays_the_schemes_when_0_is_a_class(scene, tmp_path):
    classes = [{"value": v, "name": f"c{v}", "color": [v, v, v]} for v in range(0, 8)]
    (tmp_path / "with0.json").write_text(json.dumps(
        {"name": "with-0", "nodata": 15, "classes": classes}))
    out = tmp_path / "chips"
    export_chips(scene.landcover, scene.imagery, out, tile_size=TILE, max_nodata=1.0,
                 classes=tmp_path / "with0.json", progress=False)
    assert json.loads((out / "geospade_export.json").read_text())["label_nodata"] == 15
    index = geopandas.read_file(out / "chips.gpkg", layer="chips")
    gap = int(np.argmax(index.nodata_fraction.to_numpy()))
    with rasterio.open(out / index.label.iloc[gap]) as chip:
        assert chip.nodata == 15 and (chip.read(1) == 15).any()
