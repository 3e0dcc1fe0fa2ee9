"""Class schemes: value -> model index mapping, nodata, errors, JSON, presets, inference."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from geospade.classes import (
    CHESAPEAKE_7,
    CHESAPEAKE_13,
    ClassScheme,
    LandCoverClass,
    default_color,
    preset,
    raster_values,
    read_attribute_table,
    resolve_scheme,
    scheme_from_raster,
    value_counts,
)
from geospade.errors import ClassSchemeError, InputError


@pytest.fixture
def scheme() -> ClassScheme:
    return ClassScheme((LandCoverClass(1, "Water", (0, 0, 255)),
                        LandCoverClass(2, "Forest", (0, 128, 0)),
                        LandCoverClass(5, "Urban", (128, 128, 128))), nodata=0, name="test")


def write_landcover(path, data, *, nodata=None, colormap=None):
    """A small single-band uint8 land-cover GeoTIFF."""
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0],
                       count=1, dtype="uint8", crs="EPSG:26918", nodata=nodata,
                       transform=from_origin(0, 100, 1, 1)) as dst:
        dst.write(data, 1)
        if colormap:
            dst.write_colormap(1, colormap)
    return path


# -- encoding --------------------------------------------------------------------------------


def test_encode_maps_values_to_indices(scheme):
    labels = np.array([[1, 2, 5], [0, 5, 1]], dtype=np.uint8)
    indices = scheme.encode(labels)
    assert indices.dtype == np.int64
    np.testing.assert_array_equal(indices, [[0, 1, 2], [3, 2, 0]])
    assert scheme.ignore_index == scheme.num_classes == 3


def test_encode_valid_mask_gives_ignore_index(scheme):
    labels = np.array([[1, 2], [7, 5]], dtype=np.uint8)
    valid = np.array([[True, False], [False, True]])
    # The unknown value 7 is masked, so it is no error.
    np.testing.assert_array_equal(scheme.encode(labels, valid=valid), [[0, 3], [3, 2]])


def test_unknown_values_are_named(scheme):
    labels = np.array([[1, 7], [300, -1]], dtype=np.int16)
    with pytest.raises(ClassSchemeError) as exc:
        scheme.encode(labels, source="chip.tif")
    message = str(exc.value)
    assert "[-1, 7, 300]" in message
    assert message.startswith("chip.tif:")
    assert "--map-unknown" in message


def test_map_unknown(scheme):
    labels = np.array([[1, 7], [300, 0]], dtype=np.int16)
    np.testing.assert_array_equal(scheme.encode(labels, map_unknown=5), [[0, 2], [2, 3]])
    with pytest.raises(ClassSchemeError, match="value 9 is not a class"):
        scheme.encode(labels, map_unknown=9)


def test_float_labels_are_refused(scheme):
    with pytest.raises(ClassSchemeError, match="dtype float32"):
        scheme.encode(np.ones((2, 2), dtype=np.float32))


def test_lookup_table(scheme):
    lut = scheme.lookup_table()
    assert lut.size >= 256
    assert (lut[1], lut[2], lut[5], lut[0], lut[3]) == (0, 1, 2, 3, -1)
    assert scheme.lookup_table() is lut  # cached
    assert scheme.lookup_table(map_unknown=2)[3] == 1


def test_check_values(scheme):
    scheme.check_values([0, 1, 2, 5])
    with pytest.raises(ClassSchemeError, match=r"\[4, 9\]"):
        scheme.check_values([1, 4, 9])


def test_invalid_schemes_are_refused():
    water = LandCoverClass(1, "Water", (0, 0, 255))
    with pytest.raises(ClassSchemeError, match="no classes"):
        ClassScheme(())
    with pytest.raises(ClassSchemeError, match="repeats values"):
        ClassScheme((water, water))
    with pytest.raises(ClassSchemeError, match="nodata value 1 is also a class"):
        ClassScheme((water,), nodata=1)
    with pytest.raises(ClassSchemeError, match="negative"):
        ClassScheme((LandCoverClass(-2, "x", (0, 0, 0)),))


def test_views(scheme):
    assert scheme.values == [1, 2, 5]
    assert scheme.names == ["Water", "Forest", "Urban"]
    palette = scheme.palette()
    assert palette.shape == (4, 3) and palette.dtype == np.uint8
    assert tuple(palette[-1]) == (0, 0, 0)
    cmap = scheme.colormap()
    assert cmap[2] == (0, 128, 0, 255) and cmap[0] == (0, 0, 0, 0)
    assert scheme.subset([5, 1]).values == [1, 5]
    assert scheme.with_nodata(255).nodata == 255


# -- serialisation -----------------------------------------------------------------------------


def test_json_round_trip(scheme, tmp_path):
    scheme.to_json(tmp_path / "scheme.json")
    assert ClassScheme.from_json(tmp_path / "scheme.json") == scheme
    assert ClassScheme.from_dict(json.loads(json.dumps(scheme.to_dict()))) == scheme


def test_esri_key_spellings():
    emd = {"Classes": [{"Value": 1, "Name": "Water", "Color": [0, 0, 255]},
                       {"Value": 3, "Name": "Trees", "Color": [0, 99, 0]}]}
    stats = {"Classes": [{"ClassValue": 1, "ClassName": "Water", "Color": [0, 0, 255]},
                         {"ClassValue": 3, "ClassName": "Trees", "Color": [0, 99, 0]}]}
    a = ClassScheme.from_dict({"classes": emd["Classes"]})
    b = ClassScheme.from_dict({"classes": stats["Classes"]})
    assert a == b
    assert a.values == [1, 3] and a.names == ["Water", "Trees"] and a.colors[1] == (0, 99, 0)


def test_bad_scheme_files(tmp_path):
    with pytest.raises(ClassSchemeError, match="not a class scheme"):
        ClassScheme.from_dict({"classes": [{"name": "no value"}]}, source="x.json")
    with pytest.raises(ClassSchemeError, match="not a class scheme"):  # colours are (r, g, b)
        ClassScheme.from_dict({"classes": [{"value": 1, "color": [0, 99]}]}, source="x.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ClassSchemeError, match="cannot read class scheme"):
        ClassScheme.from_json(tmp_path / "broken.json")


# -- presets -------------------------------------------------------------------------------------


def test_presets():
    assert preset("chesapeake-7") is CHESAPEAKE_7
    assert CHESAPEAKE_7.num_classes == 7 and CHESAPEAKE_7.nodata == 15
    assert CHESAPEAKE_13.num_classes == 13 and CHESAPEAKE_13.nodata == 0
    assert CHESAPEAKE_7.names[0] == "Water"
    with pytest.raises(ClassSchemeError, match="unknown class scheme 'nlcd'"):
        preset("nlcd")


# -- schemes read from rasters ---------------------------------------------------------------------


def test_raster_values(tmp_path):
    data = np.array([[1, 1, 2], [2, 2, 9]], dtype=np.uint8)
    with rasterio.open(write_landcover(tmp_path / "lc.tif", data, nodata=9)) as ds:
        assert raster_values(ds) == {1: 2, 2: 3}


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "int32"])
def test_value_counts_skips_masked_and_invalid_pixels_whatever_the_dtype(dtype):
    data = np.array([[1, 1, 2], [2, 7, 9]], dtype=dtype)
    valid = data != 7
    assert value_counts(data) == {1: 2, 2: 2, 7: 1, 9: 1}
    assert value_counts(data, valid) == {1: 2, 2: 2, 9: 1}
    masked = np.ma.masked_equal(data, 9)
    assert value_counts(masked) == {1: 2, 2: 2, 7: 1}
    assert value_counts(masked, valid) == {1: 2, 2: 2}
    assert value_counts(data, np.zeros_like(valid)) == {}
    assert all(type(k) is int and type(v) is int for k, v in value_counts(data).items())


def test_classes_without_colours_get_one_default_colour_from_every_source(tmp_path):
    from geospade.chips.esri import classes_from_esri

    values = [1, 2, 3]
    data = np.array([values, values], dtype=np.uint8)
    with rasterio.open(write_landcover(tmp_path / "lc.tif", data)) as ds:
        from_raster = scheme_from_raster(ds)
    from_json = ClassScheme.from_dict({"classes": [{"value": v, "name": str(v)} for v in values]})
    from_esri = classes_from_esri({"Classes": [{"Value": v, "Name": str(v)} for v in values]})
    expected = [default_color(v) for v in values]
    assert from_raster.colors == from_json.colors == from_esri.colors == expected
    assert len(set(expected)) == 3 and expected == [default_color(v) for v in values]


def test_scheme_from_raster_with_colour_table(tmp_path):
    data = np.array([[3, 3, 4], [4, 0, 0]], dtype=np.uint8)
    cmap = {3: (10, 20, 30, 255), 4: (200, 100, 0, 255)}
    path = write_landcover(tmp_path / "lc.tif", data, nodata=0, colormap=cmap)
    with rasterio.open(path) as ds:
        scheme = scheme_from_raster(ds)
    assert scheme.values == [3, 4]
    assert scheme.colors == [(10, 20, 30), (200, 100, 0)]
    assert scheme.names == ["class_3", "class_4"]
    assert scheme.nodata == 0
    assert scheme.name == "lc"


def test_scheme_from_raster_recognises_chesapeake(tmp_path):
    data = np.array([[1, 2, 3], [5, 15, 15]], dtype=np.uint8)
    cmap = {c.value: (*c.color, 255) for c in CHESAPEAKE_7.classes}
    path = write_landcover(tmp_path / "cc.tif", data, nodata=15, colormap=cmap)
    with rasterio.open(path) as ds:
        assert scheme_from_raster(ds) == CHESAPEAKE_7

    cmap13 = {c.value: (*c.color, 255) for c in CHESAPEAKE_13.classes}
    path = write_landcover(tmp_path / "cc13.tif", data[:1], nodata=0, colormap=cmap13)
    with rasterio.open(path) as ds:
        assert scheme_from_raster(ds) == CHESAPEAKE_13


def test_scheme_from_raster_all_nodata(tmp_path):
    path = write_landcover(tmp_path / "empty.tif", np.zeros((2, 2), np.uint8), nodata=0)
    with rasterio.open(path) as ds, pytest.raises(ClassSchemeError, match="no valid pixels"):
        scheme_from_raster(ds)


AUX_XML = """<PAMDataset>
  <PAMRasterBand band="1">
    <GDALRasterAttributeTable>
      <FieldDefn index="0"><Name>Value</Name><Type>0</Type><Usage>0</Usage></FieldDefn>
      <FieldDefn index="1"><Name>Count</Name><Type>1</Type><Usage>1</Usage></FieldDefn>
      <FieldDefn index="2"><Name>ClassName</Name><Type>2</Type><Usage>2</Usage></FieldDefn>
      <Row index="0"><F>3</F><F>2</F><F>Wetland</F></Row>
      <Row index="1"><F>4</F><F>2</F><F>Cropland</F></Row>
    </GDALRasterAttributeTable>
  </PAMRasterBand>
</PAMDataset>
"""


def test_read_attribute_table(tmp_path):
    raster = tmp_path / "lc.tif"
    assert read_attribute_table(raster) == {}
    (tmp_path / "lc.tif.aux.xml").write_text(AUX_XML)
    assert read_attribute_table(raster) == {3: "Wetland", 4: "Cropland"}
    (tmp_path / "lc.tif.aux.xml").write_text("<PAMDataset><broken")
    assert read_attribute_table(raster) == {}


def test_scheme_from_raster_takes_names_from_attribute_table(tmp_path):
    data = np.array([[3, 3, 4], [4, 0, 0]], dtype=np.uint8)
    path = write_landcover(tmp_path / "lc.tif", data, nodata=0)
    (tmp_path / "lc.tif.aux.xml").write_text(AUX_XML)
    with rasterio.open(path) as ds:
        assert scheme_from_raster(ds).names == ["Wetland", "Cropland"]


def test_resolve_scheme(scheme, tmp_path):
    assert resolve_scheme(scheme) is scheme
    assert resolve_scheme("chesapeake-13") == CHESAPEAKE_13
    scheme.to_json(tmp_path / "mine.json")
    assert resolve_scheme(tmp_path / "mine.json") == scheme
    with pytest.raises(ClassSchemeError, match="class scheme file not found"):
        resolve_scheme(tmp_path / "missing.json")
    with pytest.raises(ClassSchemeError, match="unknown class scheme"):
        resolve_scheme("nlcd")
    with pytest.raises(InputError, match="no class scheme given"):
        resolve_scheme(None)

    data = np.array([[1, 2], [3, 255]], dtype=np.uint8)
    path = write_landcover(tmp_path / "lc.tif", data, nodata=255)
    with rasterio.open(path) as ds:
        # The raster's nodata replaces the preset's.
        assert resolve_scheme("chesapeake-7", ds).nodata == 255
        assert resolve_scheme(None, ds).values == [1, 2, 3]
