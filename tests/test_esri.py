"""ArcGIS metadata of a chip folder: band statistics, writers and readers, class schemes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from rasterio.crs import CRS

from geospade.chips import esri
from geospade.classes import CHESAPEAKE_7, ClassScheme, LandCoverClass, resolve_scheme
from geospade.errors import ClassSchemeError, InputError

ALBERS_WKT = (
    'PROJCS["USA_Contiguous_Albers_Equal_Area_Conic_USGS_version",GEOGCS["NAD83",'
    'DATUM["North_American_Datum_1983",SPHEROID["GRS 1980",6378137,298.257222101004]],'
    'PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433]],'
    'PROJECTION["Albers_Conic_Equal_Area"],PARAMETER["latitude_of_center",23],'
    'PARAMETER["longitude_of_center",-96],PARAMETER["standard_parallel_1",29.5],'
    'PARAMETER["standard_parallel_2",45.5],PARAMETER["false_easting",0],'
    'PARAMETER["false_northing",0],UNIT["metre",1]]'
)


def _reference(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    flat = pixels.reshape(pixels.shape[0], -1).astype(np.float64)
    return flat.mean(axis=1), flat.std(axis=1)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_band_stats_of_pixels_match_numpy(dtype):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 250, (3, 32, 32)).astype(dtype)
    stats = esri.BandStats.of_pixels(pixels)
    mean, std = _reference(pixels)
    np.testing.assert_allclose(stats.mean, mean)
    np.testing.assert_allclose(stats.std, std)
    np.testing.assert_array_equal(stats.minimum, pixels.reshape(3, -1).min(axis=1))
    np.testing.assert_array_equal(stats.num, [32 * 32] * 3)


def test_band_stats_skip_invalid_pixels():
    pixels = np.zeros((2, 4, 4), np.uint8)
    pixels[:, :2] = 100
    valid = np.zeros((4, 4), bool)
    valid[:2] = True
    stats = esri.BandStats.of_pixels(pixels, valid)
    np.testing.assert_array_equal(stats.mean, [100, 100])
    np.testing.assert_array_equal(stats.num, [8, 8])
    empty = esri.BandStats.of_pixels(pixels, np.zeros((4, 4), bool))
    assert empty.to_esri()[0] == {"Min": 0.0, "Max": 0.0, "Mean": 0.0, "StdDev": 0.0,
                                  "M1": 0.0, "M2": 0.0, "Num": 0}


def test_merged_chip_stats_equal_the_stats_of_all_pixels():
    rng = np.random.default_rng(2)
    chips = [rng.integers(0, 256, (4, 16, 16)).astype(np.uint8) + k * 3 for k in range(5)]
    total = esri.BandStats(4)
    for chip in chips:
        total.merge(esri.BandStats.of_pixels(chip))
    whole = np.concatenate(chips, axis=2)
    mean, std = _reference(whole)
    np.testing.assert_allclose(total.mean, mean)
    np.testing.assert_allclose(total.std, std)
    assert total.num.tolist() == [5 * 256] * 4
    state = total.to_esri()
    assert set(state[0]) == {"Min", "Max", "Mean", "StdDev", "M1", "M2", "Num"}
    # Esri's own convention: StdDev = sqrt(M2 / Num), M1 the mean.
    assert state[0]["StdDev"] == pytest.approx((state[0]["M2"] / state[0]["Num"]) ** 0.5)
    back = esri.BandStats.from_esri(state)
    np.testing.assert_allclose(back.m2, total.m2)


def test_map_txt_is_written_with_backslashes_and_read_back_as_paths(tmp_path):
    pairs = [("images/000000000012.tif", "labels/000000000012.tif"),
             ("images/000000000013.tif", "labels/000000000013.tif")]
    esri.write_map_txt(tmp_path, pairs)
    text = (tmp_path / "map.txt").read_text()
    assert text.splitlines()[0] == r"images\000000000012.tif labels\000000000012.tif"
    assert esri.read_map_txt(tmp_path) == [
        (Path("images/000000000012.tif"), Path("labels/000000000012.tif")),
        (Path("images/000000000013.tif"), Path("labels/000000000013.tif")),
    ]


def test_map_txt_reader_accepts_any_whitespace_and_forward_slashes(tmp_path):
    (tmp_path / "map.txt").write_text(
        "images\\a.tif\tlabels\\a.tif\r\n\n  images/b.png   labels/b.png  \n")
    assert esri.read_map_txt(tmp_path) == [(Path("images/a.tif"), Path("labels/a.tif")),
                                          (Path("images/b.png"), Path("labels/b.png"))]


def test_map_txt_reader_names_the_bad_line_and_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"map\.txt: cannot read the chip list"):
        esri.read_map_txt(tmp_path)
    (tmp_path / "map.txt").write_text("images\\a.tif\n")
    with pytest.raises(InputError, match="line 1 has 1 fields"):
        esri.read_map_txt(tmp_path)


def _stats(crs: CRS | None = None) -> dict:
    crs = CRS.from_epsg(32618) if crs is None else crs
    band_stats = esri.BandStats.of_pixels(np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4))
    return esri.accumulated_stats(
        scheme=CHESAPEAKE_7, band_stats=band_stats, band_names=["red", "nir"], tile_size=256,
        num_tiles=10, next_tile_index=64, resolution=(1.0, 1.0), crs=crs,
        pixels_per_class={1: 500, 3: 20}, images_per_class={1: 10, 3: 2})


def test_accumulated_stats_hold_every_key_pro_writes(tmp_path):
    stats = _stats()
    for key in ("Version", "NumBands", "TileSizeX", "TileSizeY", "NumClasses", "NumTiles",
                "NumTilesAsDouble", "NextTileIndex", "OutputFeatures", "MetaDataMode",
                "MinCellSize", "MaxCellSize", "Classes", "InputRastersProps", "BandStatsState",
                "ClassPixelStats"):
        assert key in stats, key
    assert stats["MetaDataMode"] == "Classified_Tiles"
    assert stats["MinCellSize"] == {"x": 1.0, "y": 1.0,
                                    "spatialReference": {"wkid": 32618, "latestWkid": 32618}}
    assert stats["Classes"][0] == {"ClassValue": 1, "ClassName": "Water", "Color": [0, 197, 255]}
    pixel_stats = stats["ClassPixelStats"]
    assert pixel_stats["NumPixelsPerClass"] == [500, 0, 20, 0, 0, 0, 0]
    assert pixel_stats["NumImagesPerClass"][:3] == [10, 0, 2]
    esri.write_json(tmp_path, esri.ACCUMULATED_STATS, stats)
    assert esri.read_accumulated_stats(tmp_path) == json.loads(json.dumps(stats))


def test_crs_without_epsg_code_keeps_its_wkt():
    cell = _stats(CRS.from_wkt(ALBERS_WKT))["MinCellSize"]
    assert cell["spatialReference"]["wkid"] == 0
    assert "Albers" in cell["spatialReference"]["wkt"]


def test_model_definition_is_the_template_with_real_values(tmp_path):
    emd = esri.model_definition(_stats())
    assert emd["ImageHeight"] == emd["ImageWidth"] == 256
    assert emd["MetaDataMode"] == "Classified_Tiles"
    assert emd["Classes"][1] == {"Value": 2, "Name": "Tree Canopy and Shrubs",
                                 "Color": [38, 115, 0]}
    assert [b["BandName"] for b in emd["AllTilesStats"]] == ["red", "nir"]
    assert emd["AllTilesStats"][0]["Mean"] == pytest.approx(7.5)
    esri.write_json(tmp_path, esri.MODEL_DEFINITION, emd)
    assert esri.read_emd(tmp_path) == emd
    assert esri.read_emd(tmp_path / esri.MODEL_DEFINITION) == emd


def test_stats_txt_summarises_like_pro(tmp_path):
    esri.write_stats_txt(tmp_path, _stats())
    lines = (tmp_path / "stats.txt").read_text().splitlines()
    assert lines[0] == "images = 10 *2*256*256"
    assert "  1, Water, 10, 500" in lines


def test_readers_report_missing_or_broken_json(tmp_path):
    with pytest.raises(InputError, match="cannot read esri_model_definition.emd"):
        esri.read_emd(tmp_path)
    (tmp_path / esri.ACCUMULATED_STATS).write_text("{broken")
    with pytest.raises(InputError, match="not valid JSON"):
        esri.read_accumulated_stats(tmp_path)


def test_classes_from_esri_accept_both_spellings():
    from_stats = esri.classes_from_esri(_stats())
    from_emd = esri.classes_from_esri(esri.model_definition(_stats()))
    assert from_stats.values == from_emd.values == CHESAPEAKE_7.values
    assert from_emd.names == CHESAPEAKE_7.names
    assert from_emd.colors == CHESAPEAKE_7.colors
    assert from_emd.nodata == 0


def test_classes_from_esri_drop_a_nodata_that_is_a_class():
    scheme = esri.classes_from_esri({"Classes": [{"Value": 0, "Name": "Background"},
                                                 {"ClassValue": 5, "ClassName": "Roof",
                                                  "Color": [255, 0, 0]}]})
    assert scheme.values == [0, 5] and scheme.nodata is None
    assert scheme.colors[1] == (255, 0, 0)
    with pytest.raises(ClassSchemeError, match="lists no Classes"):
        esri.classes_from_esri({})
    with pytest.raises(ClassSchemeError, match="Color is not three numbers"):
        esri.classes_from_esri({"Classes": [{"Value": 5, "Name": "Roof", "Color": [255, 0]}]})


# -- the class scheme these files carry --------------------------------------------------------


def test_class_scheme_round_trips_through_json(tmp_path):
    scheme = ClassScheme((LandCoverClass(3, "Fields", (1, 2, 3)),
                          LandCoverClass(7, "Roofs", (9, 8, 7))), nodata=0, name="mine")
    scheme.to_json(tmp_path / "s.json")
    assert ClassScheme.from_json(tmp_path / "s.json") == scheme
    assert resolve_scheme(str(tmp_path / "s.json")) == scheme
    assert resolve_scheme("chesapeake-7") == CHESAPEAKE_7


def test_class_scheme_names_unknown_values():
    with pytest.raises(ClassSchemeError, match=r"values \[9, 42\] are not classes"):
        CHESAPEAKE_7.check_values([1, 2, 15, 9, 42])
    encoded = CHESAPEAKE_7.encode(np.array([[1, 7], [15, 3]], np.uint8))
    assert encoded.tolist() == [[0, 6], [CHESAPEAKE_7.ignore_index, 2]]
