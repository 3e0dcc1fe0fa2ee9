"""``geospade export-chips`` end to end on the demo scene, its options and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas
import numpy as np
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin
from rasterio.warp import calculate_default_transform, reproject
from rasterio.windows import bounds as window_bounds
from rasterio.windows import intersect
from rasterio.windows import transform as window_transform
from test_raster import world_file_transform

from geospade.chips import esri
from geospade.chips.aoi import footprints
from geospade.chips.export import export_chips
from geospade.chips.split import default_block_size, spatial_split
from geospade.classes import CHESAPEAKE_7
from geospade.cli.main import main
from geospade.demo import DEMO_ORIGIN, make_demo_scene
from geospade.errors import InputError
from geospade.tiling import tile_grid

TILE = 128
DEMO_TRANSFORM = from_origin(*DEMO_ORIGIN, 1.0, 1.0)  # the demo scene's grid


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """The 512 px demo scene (Chesapeake 7 classes, nodata 15 over a survey gap)."""
    return make_demo_scene(tmp_path_factory.mktemp("demo"), size=512, progress=False)


@pytest.fixture(scope="module")
def exported(scene, tmp_path_factory):
    """The demo scene exported through the CLI with default options and 128 px chips."""
    out = tmp_path_factory.mktemp("export") / "chips"
    code = main(["export-chips", str(scene.landcover), "--imagery", str(scene.imagery),
                 "-o", str(out), "--tile-size", str(TILE), "--no-progress"])
    assert code == 0
    return out


def _cli(*args) -> int:
    return main(["export-chips", *map(str, args), "--no-progress"])


def _expected_chips(landcover: Path, tile: int, stride: int | None = None) -> list[int]:
    """Grid indices of the tiles without any nodata pixel, from GDAL's own mask."""
    with rasterio.open(landcover) as src:
        grid = tile_grid(src.width, src.height, tile, stride)
        return [t.index for t in grid if src.read_masks(1, window=t.window).all()]


def _write(path: Path, data: np.ndarray, *, crs="EPSG:32618", transform=DEMO_TRANSFORM,
           nodata=None, **extra) -> Path:
    data = data if data.ndim == 3 else data[None]
    profile = {"driver": "GTiff", "width": data.shape[2], "height": data.shape[1],
               "count": data.shape[0], "dtype": data.dtype.name, "crs": crs,
               "transform": transform, "nodata": nodata, **extra}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


# -- the default export --------------------------------------------------------------------------


def test_folder_has_the_classified_tiles_layout(exported):
    names = sorted(p.name for p in exported.iterdir())
    assert names == ["chips.gpkg", "class_scheme.json", "esri_accumulated_stats.json",
                     "esri_model_definition.emd", "geospade_export.json", "images", "labels",
                     "map.txt", "stats.txt"]
    pairs = esri.read_map_txt(exported)
    assert pairs
    for image, label in pairs:
        assert image.parent.name == "images" and label.parent.name == "labels"
        assert image.name == label.name and len(image.stem) == 12 and image.suffix == ".tif"
        for chip in (image, label):
            assert (exported / chip).exists() and (exported / chip).with_suffix(".tfw").exists()
    assert r"images\0000" in (exported / "map.txt").read_text()


def test_chips_follow_the_nodata_rule(scene, exported):
    written = sorted(int(image.stem) for image, _ in esri.read_map_txt(exported))
    expected = _expected_chips(scene.landcover, TILE)
    assert written == expected
    assert len(expected) < 16  # the demo's survey gap does remove some tiles


def test_every_chip_is_the_source_window_in_place(scene, exported):
    with rasterio.open(scene.landcover) as lc, rasterio.open(scene.imagery) as img:
        grid = tile_grid(lc.width, lc.height, TILE)
        for image, label in esri.read_map_txt(exported):
            window = grid.tile_at(int(image.stem)).window
            expected = window_transform(window, lc.transform)
            with rasterio.open(exported / label) as chip:
                assert chip.transform == expected and chip.crs == lc.crs
                assert (chip.count, chip.dtypes[0], chip.nodata) == (1, "uint8", 15)
                assert chip.colormap(1)[1][:3] == (0, 197, 255)
                np.testing.assert_array_equal(chip.read(1), lc.read(1, window=window))
            with rasterio.open(exported / image) as chip:
                assert chip.transform == expected and chip.crs == img.crs
                assert (chip.count, chip.dtypes[0]) == (img.count, img.dtypes[0])
                np.testing.assert_array_equal(chip.read(), img.read(window=window))
            assert (exported / image).with_suffix(".tfw").exists()
            assert world_file_transform(exported / image).almost_equals(expected)


def test_tile_index_records_footprints_files_split_and_class_pixels(exported):
    index = geopandas.read_file(exported / "chips.gpkg", layer="chips")
    pairs = esri.read_map_txt(exported)
    assert index["image"].tolist() == [p[0].as_posix() for p in pairs]
    assert index["label"].tolist() == [p[1].as_posix() for p in pairs]
    assert set(index["split"]) == {"train"}
    assert (index["nodata_fraction"] == 0).all()
    assert [f"px_{v}" for v in CHESAPEAKE_7.values] == [c for c in index if c.startswith("px_")]
    assert index.crs.to_epsg() == 32618
    for row in index.itertuples():
        with rasterio.open(exported / row.label) as chip:
            assert row.geometry.equals(shapely.box(*chip.bounds))
            counts = np.bincount(chip.read(1).ravel(), minlength=16)
        assert [getattr(row, f"px_{v}") for v in CHESAPEAKE_7.values] == counts[1:8].tolist()


def test_metadata_describe_the_chips(exported):
    stats = esri.read_accumulated_stats(exported)
    index = geopandas.read_file(exported / "chips.gpkg", layer="chips")
    assert stats["NumTiles"] == len(index) and stats["TileSizeX"] == TILE
    pixels = {v: int(index[f"px_{v}"].sum()) for v in CHESAPEAKE_7.values}
    present = [v for v in CHESAPEAKE_7.values if pixels[v]]
    assert 2 < len(present) < 7  # the demo has no Aberdeen Proving Ground
    # The Esri files list the classes in the chips, as Pro does; class_scheme.json all of them.
    assert [c["ClassValue"] for c in stats["Classes"]] == present
    assert stats["ClassPixelStats"]["NumPixelsPerClass"] == [pixels[v] for v in present]
    assert stats["BandStatsState"][0]["Num"] == len(index) * TILE * TILE
    assert esri.classes_from_esri(esri.read_emd(exported)).values == present
    assert json.loads((exported / "class_scheme.json").read_text()) == CHESAPEAKE_7.to_dict()
    info = json.loads((exported / "geospade_export.json").read_text())
    assert info["tile_size"] == info["stride"] == TILE and info["format"] == "tif"
    assert info["num_chips"] == {"train": len(index), "val": 0}
    assert info["imagery"]["count"] == 3 and info["resolution"] == [1.0, 1.0]
    assert info["crs_units"] == "metre" and "UTM zone 18N" in info["crs_wkt"]


# -- options -------------------------------------------------------------------------------------


def test_spatial_split_keeps_validation_apart_from_training(scene, tmp_path):
    result = export_chips(scene.landcover, scene.imagery, tmp_path / "out", tile_size=TILE,
                          stride=64, val_fraction=0.3, val_block=128, seed=3, progress=False)
    index = geopandas.read_file(tmp_path / "out" / "chips.gpkg", layer="chips")
    train, val = index[index.split == "train"], index[index.split == "val"]
    assert len(train) == result.num_train > 0 and len(val) == result.num_val > 0
    for shape in val.geometry:
        # Touching edges are fine; sharing pixels is not.
        assert train.geometry.intersection(shape).area.max() == 0
    info = json.loads((tmp_path / "out" / "geospade_export.json").read_text())
    assert info["split"] == {"val_fraction": 0.3, "block_size": 128, "seed": 3}
    assert result.skipped["overlaps_val"] > 0
    assert len(grid_indices := _expected_chips(scene.landcover, TILE, 64)) == (
        result.num_chips + result.skipped["overlaps_val"])
    assert set(index["index"]) <= set(grid_indices)


def test_area_of_interest_in_another_crs_keeps_only_chips_inside(scene, tmp_path):
    # The left half of the scene, given in geographic coordinates.
    left, top = DEMO_ORIGIN
    half = shapely.box(left - 50, top - 512 - 50, left + 256 + 0.5, top + 50)
    aoi = geopandas.GeoDataFrame(geometry=[half], crs="EPSG:32618").to_crs("EPSG:4326")
    aoi.to_file(tmp_path / "aoi.geojson")
    out = tmp_path / "out"
    assert _cli(scene.landcover, "--imagery", scene.imagery, "-o", out, "--tile-size", TILE,
                "--aoi", tmp_path / "aoi.geojson") == 0
    written = sorted(int(image.stem) for image, _ in esri.read_map_txt(out))
    left = [i for i in _expected_chips(scene.landcover, TILE) if i % 4 < 2]
    assert written == left


def test_imagery_on_another_grid_is_warped_onto_the_land_cover(scene, tmp_path):
    # Web Mercator at a coarser, unaligned resolution.
    with rasterio.open(scene.imagery) as src:
        transform, width, height = calculate_default_transform(
            src.crs, "EPSG:3857", src.width, src.height, *src.bounds, resolution=1.7)
        data = np.zeros((src.count, height, width), np.uint8)
        reproject(src.read(), data, src_transform=src.transform, src_crs=src.crs,
                  dst_transform=transform, dst_crs="EPSG:3857")
    warped = _write(tmp_path / "mercator.tif", data, crs="EPSG:3857", transform=transform)
    out = tmp_path / "out"
    result = export_chips(scene.landcover, warped, out, tile_size=TILE, max_nodata=1.0,
                          progress=False)
    assert result.num_chips > 0
    with rasterio.open(scene.landcover) as lc, rasterio.open(scene.imagery) as img:
        grid = tile_grid(lc.width, lc.height, TILE)
        for image, _ in esri.read_map_txt(out):
            window = grid.tile_at(int(image.stem)).window
            with rasterio.open(out / image) as chip:
                assert chip.transform == window_transform(window, lc.transform)
                assert chip.crs == lc.crs
                pixels = chip.read().astype(float)
            original = img.read(window=window).astype(float)[:, 4:-4, 4:-4].ravel()
            # Blurred by two resamplings, but in place: no shift matches the source better.
            shifts = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)]
            scores = [np.corrcoef(pixels[:, 4 + dy:124 + dy, 4 + dx:124 + dx].ravel(),
                                  original)[0, 1] for dy, dx in shifts]
            assert shifts[int(np.argmax(scores))] == (0, 0)
            assert max(scores) > 0.9


def test_imagery_covering_part_of_the_land_cover(scene, tmp_path):
    with rasterio.open(scene.imagery) as src:
        left = src.read(window=((0, 512), (0, 320)))
        transform = src.transform
    partial = _write(tmp_path / "left.tif", left, transform=transform)
    strict = export_chips(scene.landcover, partial, tmp_path / "strict", tile_size=TILE,
                          progress=False)
    # Columns 0-1 are covered, column 2 half covered, column 3 outside the imagery.
    assert strict.skipped["outside_imagery"] == 4
    assert strict.skipped["imagery_nodata"] > 0
    written = sorted(int(p.stem) for p, _ in esri.read_map_txt(tmp_path / "strict"))
    assert all(i % 4 < 2 for i in written)
    export_chips(scene.landcover, partial, tmp_path / "lenient", tile_size=TILE, max_nodata=1.0,
                 progress=False)
    index = geopandas.read_file(tmp_path / "lenient" / "chips.gpkg", layer="chips")
    half = index[index["index"] % 4 == 2]
    assert len(half) > 0 and (half.nodata_fraction >= 0.5).all()
    with rasterio.open(tmp_path / "lenient" / half.iloc[0].label) as chip:
        # Land cover where there is no imagery becomes nodata: nothing to learn there.
        # It is written as 0, ArcGIS's NoData (0 is no Chesapeake class).
        labels = chip.read(1)
        assert chip.nodata == 0 and (labels[:, 64:] == 0).all()
    counts = np.bincount(labels.ravel(), minlength=16)
    assert [half.iloc[0][f"px_{v}"] for v in CHESAPEAKE_7.values] == counts[1:8].tolist()


def test_png_chips_with_world_files(scene, tmp_path):
    out = tmp_path / "png"
    assert _cli(scene.landcover, "--imagery", scene.imagery, "-o", out, "--tile-size", TILE,
                "--format", "png", "--max-nodata", "0.5") == 0
    image, label = esri.read_map_txt(out)[0]
    assert image.suffix == label.suffix == ".png"
    with rasterio.open(out / label) as chip:
        assert chip.driver == "PNG" and chip.colormap(1)[1][:3] == (0, 197, 255)
        transform = chip.transform
    assert (out / image).with_suffix(".pgw").exists()
    assert not (out / image).with_suffix(".wld").exists()
    assert world_file_transform(out / image).almost_equals(transform)
    assert json.loads((out / "geospade_export.json").read_text())["format"] == "png"


def test_nodata_allowance_and_worker_count_do_not_change_the_chips(scene, tmp_path):
    one = export_chips(scene.landcover, scene.imagery, tmp_path / "one", tile_size=TILE,
                       max_nodata=0.5, workers=1, progress=False)
    calls = []
    three = export_chips(scene.landcover, scene.imagery, tmp_path / "three", tile_size=TILE,
                         max_nodata=0.5, workers=3,
                         progress=lambda done, total, desc: calls.append((done, total)))
    assert one.num_chips == three.num_chips > len(_expected_chips(scene.landcover, TILE))
    assert calls[-1] == (three.num_chips, three.num_chips)
    for rel in ["map.txt", "esri_accumulated_stats.json", "class_scheme.json",
                *(f"{d}/{p.name}" for d in ("images", "labels")
                  for p in (tmp_path / "one" / d).iterdir())]:
        assert (tmp_path / "one" / rel).read_bytes() == (tmp_path / "three" / rel).read_bytes()
    index = geopandas.read_file(tmp_path / "one" / "chips.gpkg", layer="chips")
    assert index.nodata_fraction.max() <= 0.5 and index.nodata_fraction.max() > 0


# -- bad input: a clear error and nothing written ------------------------------------------------


@pytest.fixture()
def small(tmp_path):
    """A 64 px land cover (values 1-3, nodata 0) and matching 3-band imagery."""
    labels = np.tile(np.repeat(np.array([1, 2, 3, 1], np.uint8), 16), (64, 1))
    lc = _write(tmp_path / "lc.tif", labels, nodata=0)
    img = _write(tmp_path / "img.tif", np.stack([labels * 40] * 3))
    return lc, img


@pytest.mark.parametrize(("case", "message"), [
    ("float", "land cover has data type float32"),
    ("no_crs", "imagery has no coordinate reference system"),
    ("far", "do not overlap"),
    ("big_tile", "tile size 128 is larger than the raster (64 x 64"),
    ("bad_class", "values [2, 3] are not classes of scheme 'two'"),
    ("bad_aoi", "cannot read the area of interest"),
    ("png_4_bands", "imagery has 4 bands; PNG chips hold at most 3"),
])
def test_bad_input_is_a_one_line_error_and_writes_nothing(small, tmp_path, capsys, case,
                                                          message):
    lc, img = small
    args = ["--tile-size", "32"]
    if case == "float":
        lc = _write(tmp_path / "float.tif", np.ones((64, 64), np.float32))
    elif case == "no_crs":
        img = _write(tmp_path / "nocrs.tif", np.ones((3, 64, 64), np.uint8), crs=None)
    elif case == "far":
        img = _write(tmp_path / "far.tif", np.ones((3, 64, 64), np.uint8),
                     transform=from_origin(400000.0, 4310000.0, 1.0, 1.0))
    elif case == "big_tile":
        args = ["--tile-size", "128"]
    elif case == "bad_class":
        scheme = {"name": "two", "nodata": 0,
                  "classes": [{"value": 1, "name": "Water", "color": [0, 0, 255]},
                              {"value": 9, "name": "Other", "color": [9, 9, 9]}]}
        (tmp_path / "two.json").write_text(json.dumps(scheme))
        args += ["--classes", tmp_path / "two.json"]
    elif case == "bad_aoi":
        (tmp_path / "aoi.gpkg").write_text("not a geopackage")
        args += ["--aoi", tmp_path / "aoi.gpkg"]
    elif case == "png_4_bands":
        img = _write(tmp_path / "nir.tif", np.ones((4, 64, 64), np.uint8))
        args += ["--format", "png"]
    out = tmp_path / "out"
    assert _cli(lc, "--imagery", img, "-o", out, *args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_existing_output_needs_overwrite(small, tmp_path, capsys):
    lc, img = small
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert _cli(lc, "--imagery", img, "-o", out, "--tile-size", 32) == 3
    assert "--overwrite" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert _cli(lc, "--imagery", img, "-o", out, "--tile-size", 32, "--overwrite") == 0
    assert "keep.txt" not in [p.name for p in out.iterdir()]
    assert len(esri.read_map_txt(out)) == 4


def test_nothing_to_export_is_an_error(small, tmp_path):
    lc, img = small
    empty = _write(tmp_path / "empty.tif", np.zeros((64, 64), np.uint8), nodata=0)
    for classes in (None, "chesapeake-7"):
        with pytest.raises(InputError, match="no chip left to export: of 4 tiles, 4 nodata"):
            export_chips(empty, img, tmp_path / "out", tile_size=32, classes=classes,
                         progress=False)
    assert not (tmp_path / "out").exists()


# -- the split and the footprints on their own ---------------------------------------------------


def test_spatial_split_by_blocks_is_seeded_and_drops_overlapping_training_chips():
    grid = tile_grid(1024, 1024, 128, 64)
    tiles = list(grid)
    split = spatial_split(grid, tiles, val_fraction=0.2, block_size=256, seed=1)
    assert split == spatial_split(grid, tiles, val_fraction=0.2, block_size=256, seed=1)
    assert split != spatial_split(grid, tiles, val_fraction=0.2, block_size=256, seed=2)
    assert len(split.train) + len(split.val) + len(split.dropped) == len(tiles)
    assert abs(len(split.val) - 0.2 * len(tiles)) <= 16  # within one block of the target
    val = [grid.tile_at(i) for i in split.val]
    for i in split.train:
        assert not any(intersect(grid.tile_at(i).window, v.window) for v in val)
    for i in split.dropped:
        assert any(intersect(grid.tile_at(i).window, v.window) for v in val)
    blocks = {(grid.tile_at(i).row_off // 256, grid.tile_at(i).col_off // 256) for i in split.val}
    assert all((t.row_off // 256, t.col_off // 256) not in blocks
               for t in map(grid.tile_at, split.train))


def test_spatial_split_needs_two_blocks_and_defaults_to_enough_blocks():
    grid = tile_grid(512, 512, 256)
    with pytest.raises(InputError, match="fall in one 1024-pixel block"):
        spatial_split(grid, list(grid), val_fraction=0.5, block_size=1024)
    assert default_block_size(grid) == 256
    assert default_block_size(tile_grid(8192, 8192, 256)) == 1024
    assert spatial_split(grid, list(grid), val_fraction=0.0).train == (0, 1, 2, 3)


def test_footprints_are_the_windows_bounds():
    transform = from_origin(1300000.0, 1780000.0, 1.0, 1.0)
    grid = tile_grid(1024, 512, 256, 128)
    for tile, shape in zip(grid, footprints(list(grid), transform), strict=True):
        assert shape.equals(shapely.box(*window_bounds(tile.window, transform)))
