"""Multi-scene ``export-chips``: pairing, mosaics, one scheme, scene splits, and their errors.

Real data (the two FLAIR-1 patches) is read from ``../shared/data`` beside the repository;
those tests skip when it is absent. The other scenes are demo scenes made here: a second seed,
a copy reprojected to another UTM zone, imagery cut into several files.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import geopandas
import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.warp import calculate_default_transform, reproject
from rasterio.windows import Window
from rasterio.windows import transform as window_transform
from test_raster import world_file_transform

from geospade.chips import esri
from geospade.chips.export import export_chips
from geospade.chips.merge import merge_schemes
from geospade.chips.scenes import expand_inputs, mosaic_vrt, pair_scenes
from geospade.classes import CHESAPEAKE_7, ClassScheme, LandCoverClass
from geospade.cli.main import main
from geospade.demo import make_demo_scene
from geospade.errors import ClassSchemeError, InputError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FLAIR = DATA / "flair"
TILE = 64

needs_flair = pytest.mark.skipif(not (FLAIR / "flair19.json").exists(),
                                 reason=f"FLAIR sample patches not found at {FLAIR}")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Two 256 px demo scenes (seeds 0 and 1) and a copy of the first in UTM zone 17N."""
    root = tmp_path_factory.mktemp("scenes")
    a = make_demo_scene(root / "a", size=256, seed=0, progress=False)
    b = make_demo_scene(root / "b", size=256, seed=1, progress=False)
    utm17 = root / "utm17"
    utm17.mkdir()
    _reproject(a.landcover, utm17 / "landcover.tif", "EPSG:32617", Resampling.nearest)
    _reproject(a.imagery, utm17 / "imagery.tif", "EPSG:32617", Resampling.bilinear)
    return {"a": a, "b": b, "utm17": (utm17 / "landcover.tif", utm17 / "imagery.tif")}


def _reproject(src_path: Path, dst_path: Path, crs: str, resampling: Resampling) -> None:
    with rasterio.open(src_path) as src:
        transform, width, height = calculate_default_transform(
            src.crs, crs, src.width, src.height, *src.bounds, resolution=1.0)
        profile = {**src.profile, "crs": crs, "transform": transform, "width": width,
                   "height": height}
        with rasterio.open(dst_path, "w", **profile) as dst:
            for band in range(1, src.count + 1):
                reproject(rasterio.band(src, band), rasterio.band(dst, band),
                          resampling=resampling)
            if src.count == 1:
                dst.write_colormap(1, src.colormap(1))


def _index(folder: Path) -> geopandas.GeoDataFrame:
    return geopandas.read_file(folder / "chips.gpkg", layer="chips")


def _assert_chips_in_place(folder: Path) -> None:
    """Every chip holds its scene's pixels at its window, georeferenced on the scene's grid."""
    index = _index(folder)
    for _, row in index.iterrows():
        with rasterio.open(folder / row.label) as chip, \
                rasterio.open(row.landcover_source) as lc:
            transform = world_file_transform(folder / row.label)
            col, r = ~lc.transform @ (transform.c, transform.f)
            window = Window(round(col), round(r), chip.width, chip.height)
            assert transform.almost_equals(window_transform(window, lc.transform))
            assert chip.crs == lc.crs and row.native_crs == f"EPSG:{lc.crs.to_epsg()}"
            assert np.array_equal(chip.read(1), lc.read(1, window=window))


# -- real data: the FLAIR pair ---------------------------------------------------------------------


@needs_flair
def test_flair_pair_makes_one_19_class_folder(tmp_path):
    out = tmp_path / "flair"
    code = main(["export-chips", str(FLAIR / "landcover_*.tif"), "--imagery",
                 str(FLAIR / "imagery_066278.tif"), str(FLAIR / "imagery_076201.tif"),
                 "-o", str(out), "--classes", str(FLAIR / "flair19.json"), "--tile-size", "256",
                 "--no-progress"])
    assert code == 0
    scheme = ClassScheme.from_json(out / "class_scheme.json")
    assert scheme.num_classes == 19 and scheme.names[0] == "building"
    index = _index(out)
    assert sorted(set(index.scene)) == ["landcover_066278", "landcover_076201"]
    assert len(index) == 8 and index["index"].is_unique
    # Each land cover went with its own imagery, 600 km from the other.
    for _, row in index.iterrows():
        assert row.imagery_source.endswith(row.scene.replace("landcover", "imagery") + ".tif")
    assert index.crs.to_epsg() == 2154
    _assert_chips_in_place(out)
    stats = json.loads((out / esri.ACCUMULATED_STATS).read_text())
    assert stats["NumTiles"] == 8
    info = json.loads((out / "geospade_export.json").read_text())
    assert [s["num_chips"] for s in info["scenes"]] == [4, 4]


# -- scenes in different CRSs, imagery over several files ------------------------------------------


def test_scenes_in_different_crs_keep_their_own_grid(scenes, tmp_path):
    a, (lc17, img17) = scenes["a"], scenes["utm17"]
    out = tmp_path / "two_crs"
    result = export_chips([a.landcover, lc17], [a.imagery, img17], out, tile_size=TILE,
                          progress=False)
    assert result.num_scenes == 2
    index = _index(out)
    assert index.crs.to_epsg() == 4326  # the scenes share no CRS: the layer is in lon/lat
    assert set(index.native_crs) == {"EPSG:32618", "EPSG:32617"}
    # Each scene was paired with its own imagery, not the other's (they cover the same place).
    for _, row in index.iterrows():
        same_folder = Path(row.landcover_source).parent == Path(row.imagery_source).parent
        assert same_folder
    _assert_chips_in_place(out)
    # The lon/lat footprints of the two scenes lie over the same ground.
    by_scene = index.dissolve(by="native_crs").geometry
    overlap = by_scene.iloc[0].intersection(by_scene.iloc[1]).area
    assert overlap > 0.5 * by_scene.iloc[0].area
    info = json.loads((out / "geospade_export.json").read_text())
    assert info["crs_wkt"] is None and info["crs_units"] == "metre"


def test_imagery_split_over_several_files_is_read_as_one_mosaic(scenes, tmp_path):
    a = scenes["a"]
    parts = tmp_path / "parts"
    parts.mkdir()
    with rasterio.open(a.imagery) as src:
        for i, (row, col) in enumerate([(0, 0), (0, 128), (128, 0), (128, 128)]):
            window = Window(col, row, 128, 128)
            profile = {**src.profile, "width": 128, "height": 128,
                       "transform": window_transform(window, src.transform)}
            profile.pop("blockxsize", None)
            profile.pop("blockysize", None)
            profile["tiled"] = False
            with rasterio.open(parts / f"img_{i}.tif", "w", **profile) as dst:
                dst.write(src.read(window=window))
    whole = export_chips(a.landcover, a.imagery, tmp_path / "whole", tile_size=TILE,
                         progress=False)
    mosaic = export_chips(a.landcover, parts, tmp_path / "mosaic", tile_size=TILE,
                          progress=False)
    assert mosaic.num_chips == whole.num_chips > 0
    for image, _ in esri.read_map_txt(tmp_path / "whole"):
        with rasterio.open(tmp_path / "whole" / image) as x, \
                rasterio.open(tmp_path / "mosaic" / image) as y:
            assert np.array_equal(x.read(), y.read())
    row = _index(tmp_path / "mosaic").iloc[0]
    assert row.imagery_source.count(";") == 3  # the scene's four imagery files


def test_second_scene_numbers_chips_after_the_first(scenes, tmp_path):
    a, b = scenes["a"], scenes["b"]
    one = export_chips(a.landcover, a.imagery, tmp_path / "one", tile_size=TILE, progress=False)
    two = export_chips([a.landcover, b.landcover], [a.imagery, b.imagery], tmp_path / "two",
                       tile_size=TILE, progress=False)
    names_one = sorted(p.name for p in (tmp_path / "one" / "images").glob("*.tif"))
    names_two = sorted(p.name for p in (tmp_path / "two" / "images").glob("*.tif"))
    assert names_two[:len(names_one)] == names_one  # the first scene's names are unchanged
    assert len(names_two) == len(set(names_two)) == two.num_chips > one.num_chips
    assert all(int(Path(n).stem) >= 16 for n in names_two[len(names_one):])  # 16 tiles in a
    stats = json.loads((tmp_path / "two" / esri.ACCUMULATED_STATS).read_text())
    assert stats["NumTiles"] == two.num_chips
    # The statistics count the pixels of both scenes' chips (no nodata: every pixel).
    assert stats["ClassPixelStats"]["NumImagesTotal"] == two.num_chips
    assert sum(stats["ClassPixelStats"]["NumPixelsPerClass"]) == two.num_chips * TILE * TILE
    assert all(band["Num"] == two.num_chips * TILE * TILE for band in stats["BandStatsState"])


def test_val_scenes_hold_out_whole_scenes(scenes, tmp_path):
    a, b = scenes["a"], scenes["b"]
    lcs, imgs = [a.landcover, b.landcover], [a.imagery, b.imagery]
    named = export_chips(lcs, imgs, tmp_path / "named", tile_size=TILE, val_scenes="b/landcover",
                         progress=False)
    index = _index(tmp_path / "named")
    scene_of = {Path(s).parent.name for s in index.landcover_source[index.split == "val"]}
    assert scene_of == {"b"} and named.num_val > 0
    assert set(index.split[index.landcover_source == str(a.landcover.resolve())]) == {"train"}
    counted = export_chips(lcs, imgs, tmp_path / "counted", tile_size=TILE, val_scenes=1,
                           progress=False)
    assert counted.num_val in (named.num_val, counted.num_chips - named.num_val)
    with pytest.raises(InputError, match="no scene with chips"):
        export_chips(lcs, imgs, tmp_path / "bad", tile_size=TILE, val_scenes="nowhere",
                     progress=False)
    with pytest.raises(InputError, match="fewer than the 2"):
        export_chips(lcs, imgs, tmp_path / "bad", tile_size=TILE, val_scenes=2, progress=False)


def test_resolution_resamples_imagery_and_labels(scenes, tmp_path, caplog):
    a, (lc17, img17) = scenes["a"], scenes["utm17"]
    coarse = tmp_path / "coarse.tif"
    with rasterio.open(lc17) as src:
        profile = {**src.profile, "width": src.width // 2, "height": src.height // 2,
                   "transform": src.transform @ src.transform.scale(2.0, 2.0)}
        data = src.read(out_shape=(1, src.height // 2, src.width // 2),
                        resampling=Resampling.nearest)
        with rasterio.open(coarse, "w", **profile) as dst:
            dst.write(data)
            dst.write_colormap(1, src.colormap(1))
    with caplog.at_level(logging.WARNING):
        export_chips([a.landcover, coarse], [a.imagery, img17], tmp_path / "mixed", tile_size=TILE,
                     progress=False)
    assert "--resolution" in caplog.text
    export_chips([a.landcover, coarse], [a.imagery, img17], tmp_path / "one_res",
                 tile_size=TILE, resolution=1.0, progress=False)
    index = _index(tmp_path / "one_res")
    for _, row in index.iterrows():
        with rasterio.open(tmp_path / "one_res" / row.label) as chip:
            assert chip.res == (1.0, 1.0)
            labels = chip.read(1)
            assert set(np.unique(labels)) <= set(CHESAPEAKE_7.values) | {15}  # never blended


# -- inputs -------------------------------------------------------------------------------------------


def test_inputs_may_be_files_patterns_and_folders(scenes):
    a, b = scenes["a"], scenes["b"]
    found = expand_inputs([a.landcover.parent / "land*.tif", b.landcover], "land cover")
    assert found == [a.landcover.resolve(), b.landcover.resolve()]
    folder = expand_inputs(a.imagery.parent, "imagery")
    assert a.imagery.resolve() in folder and a.landcover.resolve() in folder
    nested = expand_inputs([a.landcover.parent.parent / "**" / "landcover.tif"], "land cover")
    assert a.landcover.resolve() in nested and b.landcover.resolve() in nested
    with pytest.raises(InputError, match="no land cover file matches"):
        expand_inputs([a.landcover.parent / "nothing*.tif"], "land cover")


def test_pairing_by_reprojected_footprint(scenes):
    a, b, (lc17, img17) = scenes["a"], scenes["b"], scenes["utm17"]
    # All these scenes lie on one place; each imagery covers every land cover, through its
    # reprojected outline. A land cover takes one file covering it whole: in its own CRS,
    # then named like it (here: in its folder), not a mosaic of all.
    pairs, _ = pair_scenes([a.landcover, lc17, b.landcover], [img17, b.imagery, a.imagery])
    assert [s.imagery for s in pairs] == [(a.imagery.resolve(),), (img17,),
                                          (b.imagery.resolve(),)]
    far = b.imagery.parent / "far.tif"
    with rasterio.open(b.imagery) as src:
        profile = {**src.profile, "transform": src.transform @ src.transform.translation(1e5, 0)}
        with rasterio.open(far, "w", **profile) as dst:
            dst.write(src.read())
    with pytest.raises(InputError, match="do not overlap") as info:
        pair_scenes([a.landcover], [far])
    assert str(a.landcover) in str(info.value)


# -- bad input ----------------------------------------------------------------------------------------


def _cli(capsys, *args) -> tuple[int, str]:
    code = main(["export-chips", *map(str, args), "--tile-size", str(TILE), "--no-progress"])
    return code, capsys.readouterr().err.strip()


def test_unpaired_land_cover_is_an_error_unless_skipped(scenes, tmp_path, capsys):
    a = scenes["a"]
    lonely = tmp_path / "lonely.tif"
    with rasterio.open(a.landcover) as src:
        profile = {**src.profile, "transform": src.transform @ src.transform.translation(1e5, 0)}
        with rasterio.open(lonely, "w", **profile) as dst:
            dst.write(src.read())
    code, err = _cli(capsys, a.landcover, lonely, "--imagery", a.imagery, "-o", tmp_path / "o")
    assert code == 2 and len(err.splitlines()) == 1
    assert str(lonely) in err and "--skip-unpaired" in err
    assert not (tmp_path / "o").exists()
    code, _ = _cli(capsys, a.landcover, lonely, "--imagery", a.imagery, "-o", tmp_path / "o",
                   "--skip-unpaired")
    assert code == 0
    assert set(_index(tmp_path / "o").landcover_source) == {str(a.landcover.resolve())}


def _with_names(path: Path, target: Path, names: dict[int, str]) -> Path:
    """A copy of a land cover without colour table, with an attribute table naming classes."""
    with rasterio.open(path) as src:
        profile = src.profile
        data = src.read()
    with rasterio.open(target, "w", **profile) as dst:
        dst.write(data)
    rows = "".join(f'<Row index="{i}"><F>{v}</F><F>{n}</F></Row>'
                   for i, (v, n) in enumerate(names.items()))
    Path(f"{target}.aux.xml").write_text(
        '<PAMDataset><PAMRasterBand band="1"><GDALRasterAttributeTable>'
        '<FieldDefn index="0"><Name>Value</Name><Type>0</Type><Usage>0</Usage></FieldDefn>'
        '<FieldDefn index="1"><Name>ClassName</Name><Type>2</Type><Usage>2</Usage></FieldDefn>'
        f"{rows}</GDALRasterAttributeTable></PAMRasterBand></PAMDataset>")
    return target


def test_class_names_that_disagree_name_both_files_and_the_value(scenes, tmp_path, capsys):
    a, b = scenes["a"], scenes["b"]
    names = {v: n for v, n in zip(CHESAPEAKE_7.values, CHESAPEAKE_7.names, strict=True)}
    first = _with_names(a.landcover, tmp_path / "first.tif", names)
    second = _with_names(b.landcover, tmp_path / "second.tif", {**names, 1: "Lake"})
    code, err = _cli(capsys, first, second, "--imagery", a.imagery, b.imagery, "-o",
                     tmp_path / "o")
    assert code == 2 and len(err.splitlines()) == 1
    assert "class value 1" in err and str(first.resolve()) in err and str(second.resolve()) in err
    assert not (tmp_path / "o").exists()
    # --classes gives one scheme to all: no conflict to resolve.
    code, _ = _cli(capsys, first, second, "--imagery", a.imagery, b.imagery, "-o",
                   tmp_path / "o", "--classes", "chesapeake-7")
    assert code == 0


def test_merged_scheme_takes_real_names_over_placeholders():
    named = ClassScheme((LandCoverClass(1, "water", (0, 0, 255)),), 0, "a")
    unnamed = ClassScheme((LandCoverClass(1, "class_1", (9, 9, 9)),
                           LandCoverClass(2, "class_2", (8, 8, 8))), 0, "b")
    merged = merge_schemes([("a.tif", unnamed), ("b.tif", named)])
    assert merged.values == [1, 2] and merged.names == ["water", "class_2"]
    with pytest.raises(ClassSchemeError, match="class value 1 is 'land' in c.tif"):
        merge_schemes([("a.tif", named), ("c.tif", ClassScheme(
            (LandCoverClass(1, "land", (0, 0, 0)),), 0, "c"))])


def test_scenes_with_other_band_layouts_are_an_error(scenes, tmp_path, capsys):
    a, b = scenes["a"], scenes["b"]
    nir = tmp_path / "nir"
    four = make_demo_scene(nir, size=256, seed=1, bands=4, progress=False)
    code, err = _cli(capsys, a.landcover, four.landcover, "--imagery", a.imagery, four.imagery,
                     "-o", tmp_path / "o")
    assert code == 2 and len(err.splitlines()) == 1 and "4 band(s)" in err and "3 of" in err
    as16 = nir / "imagery16.tif"  # beside its land cover: paired with it
    with rasterio.open(b.imagery) as src, \
            rasterio.open(as16, "w", **{**src.profile, "dtype": "uint16"}) as dst:
        dst.write(src.read().astype("uint16"))
    code, err = _cli(capsys, a.landcover, four.landcover, "--imagery", a.imagery, as16,
                     "-o", tmp_path / "o")
    assert code == 2 and "uint16" in err and "uint8" in err
    assert not (tmp_path / "o").exists()


def test_mosaic_of_imagery_in_two_crs_is_an_error(scenes, tmp_path):
    a, (_, img17) = scenes["a"], scenes["utm17"]
    with pytest.raises(InputError, match="different CRSs") as info:
        mosaic_vrt([a.imagery, img17], tmp_path / "mosaic.vrt")
    assert str(img17) in str(info.value) and str(a.imagery) in str(info.value)


def test_val_scenes_and_val_fraction_together_are_an_error(scenes, tmp_path):
    a = scenes["a"]
    with pytest.raises(InputError, match="not both"):
        export_chips(a.landcover, a.imagery, tmp_path / "o", tile_size=TILE, val_fraction=0.2,
                     val_scenes=1, progress=False)


# -- real data: multispectral float imagery, two scenes, through training and synthesis ---------


SENTINEL2 = DATA / "sentinel2-slovenia"


@pytest.mark.skipif(not (SENTINEL2 / "imagery.tif").exists(),
                    reason=f"Sentinel-2 sample not found at {SENTINEL2}")
def test_sentinel2_float_imagery_in_two_scenes_exports_trains_and_synthesises(tmp_path):
    from geospade.checkpoint import load_checkpoint, read_card
    from geospade.synthesis import synthesize
    from geospade.training import TrainConfig, train

    halves = []
    with rasterio.open(SENTINEL2 / "landcover.tif") as src:
        for name, rows in (("north", (0, 48)), ("south", (48, src.height))):
            window = Window(0, rows[0], src.width, rows[1] - rows[0])
            path = tmp_path / f"landcover_{name}.tif"
            profile = {**src.profile, "width": window.width, "height": window.height,
                       "transform": window_transform(window, src.transform)}
            profile.pop("blockysize", None)
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(src.read(window=window))
            halves.append(path)
    chips = tmp_path / "chips"
    result = export_chips(halves, SENTINEL2 / "imagery.tif", chips, tile_size=32,
                          max_nodata=0.5, progress=False)
    assert result.num_scenes == 2 and result.num_chips == 6
    assert set(_index(chips).scene) == {"landcover_north", "landcover_south"}
    info = json.loads((chips / "geospade_export.json").read_text())["imagery"]
    assert info["count"] == 13 and info["dtype"] == "float32"
    assert min(info["low"]) >= 0.0 and max(info["high"]) <= 1.0
    assert info["band_names"][0] == "B01"
    with rasterio.open(chips / "images" / "000000000000.tif") as chip:
        assert (chip.count, chip.dtypes[0]) == (13, "float32")
    run = tmp_path / "run"
    train(chips, run, TrainConfig(preset="tiny", steps=2, batch_size=2, device="cpu",
                                  checkpoint_every=1000, sample_every=1000), progress=False)
    card = read_card(load_checkpoint(run))
    assert card.imagery.count == 13 and card.imagery.low == tuple(info["low"])
    out = tmp_path / "synthetic.tif"
    synthesize(SENTINEL2 / "landcover.tif", run, out, tile_size=64, halo=8, device="cpu",
               progress=False)
    with rasterio.open(out) as dst, rasterio.open(SENTINEL2 / "landcover.tif") as lc:
        assert (dst.count, dst.dtypes[0]) == (13, "float32")
        assert dst.transform == lc.transform and dst.crs == lc.crs
        pixels = dst.read(masked=True)
        for band in range(13):
            values = pixels[band].compressed()
            assert values.min() >= info["low"][band] - 1e-6
            assert values.max() <= info["high"][band] + 1e-6
