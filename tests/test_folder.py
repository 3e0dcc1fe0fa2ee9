"""Reading chip folders: ArcGIS Pro Classified_Tiles exports built by hand, and geospade's own."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning

from geospade.chips.folder import ChipFolder, read_chip_folder
from geospade.chips.split import spatial_split, split_chips
from geospade.classes import ClassScheme
from geospade.errors import InputError
from geospade.imagery import ImageryInfo
from geospade.raster import esri_world_file, world_file_options
from geospade.tiling import tile_grid

# Label values in the hand-made chips: 0 is Pro's "no class", 1, 2 and 255 are classes.
VALUES = (0, 1, 2, 255)
CLASSES = [
    {"ClassValue": 1, "ClassName": "Water", "Color": [0, 197, 255]},
    {"ClassValue": 2, "ClassName": "Forest", "Color": [38, 115, 0]},
    {"ClassValue": 255, "ClassName": "Built", "Color": [156, 156, 156]},
]
# Image pixels are a function of the label value, so any mismatch between the label and image
# transforms shows up.
BRIGHTNESS = {0: 0, 1: 100, 2: 200, 255: 255}
ORIGIN = (500000.0, 4300000.0)
RESOLUTION = 0.5
CRS_UTM = CRS.from_epsg(26918)


def label_pattern(index: int, size: int) -> np.ndarray:
    """An asymmetric label chip holding every value of VALUES."""
    labels = np.random.default_rng(index).choice(np.array(VALUES, dtype=np.uint8), (size, size))
    labels[0, :4] = VALUES
    return labels


def image_of(labels: np.ndarray, bands: int) -> np.ndarray:
    """The image chip of a label chip: band b is BRIGHTNESS of the label (minus b, not below 0)."""
    lut = np.zeros(256, dtype=np.int32)
    for value, bright in BRIGHTNESS.items():
        lut[value] = bright
    return np.stack([np.clip(lut[labels] - b, 0, 255) for b in range(bands)]).astype(np.uint8)


def write_chip(path: Path, pixels: np.ndarray, *, transform: Affine | None, tags: bool,
               nodata=None) -> None:
    """Write a chip; GeoTIFF tags only when ``tags``, a world file whenever ``transform``."""
    driver = {".tif": "GTiff", ".png": "PNG", ".jpg": "JPEG"}[path.suffix]
    if pixels.ndim == 2:
        pixels = pixels[None]
    profile = {"driver": driver, "width": pixels.shape[2], "height": pixels.shape[1],
               "count": pixels.shape[0], "dtype": pixels.dtype.name}
    if transform is not None:
        profile.update(transform=transform, **world_file_options(driver))
        if tags:
            profile["crs"] = CRS_UTM
        elif driver == "GTiff":
            profile["PROFILE"] = "BASELINE"  # no GeoTIFF tags: the world file alone
    if nodata is not None:
        profile["nodata"] = nodata
    if driver == "JPEG":
        profile["quality"] = 95
    path.parent.mkdir(parents=True, exist_ok=True)
    # No .aux.xml: Pro's PNG and JPEG chips carry their position in the world file only.
    with warnings.catch_warnings(), rasterio.Env(GDAL_PAM_ENABLED="NO"):
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(pixels)
    if transform is not None:
        esri_world_file(path)


def esri_stats(*, bands: int, size: int, n_tiles: int, classes=CLASSES) -> dict:
    """esri_accumulated_stats.json with every key a Pro 3.1 Classified_Tiles export writes."""
    cell = {"x": RESOLUTION, "y": RESOLUTION,
            "spatialReference": {"wkid": 26918, "latestWkid": 26918}}
    return {
        "Version": 1, "NumBands": bands, "TileSizeX": size, "TileSizeY": size,
        "NumClasses": len(classes), "NumTiles": n_tiles, "NumTilesAsDouble": float(n_tiles),
        "NextTileIndex": n_tiles, "OutputFeatures": False, "MetaDataMode": "Classified_Tiles",
        "MinCellSize": cell, "MaxCellSize": cell, "Classes": classes,
        "InputRastersProps": {"RasterCount": 1, "SensorName": "",
                              "BandNames": ["Band_1", "Band_2", "Band_3", "Band_4"][:bands]},
        "BandStatsState": [{"Min": 0.0, "Max": 255.0, "Mean": 120.0, "StdDev": 80.0,
                            "M1": 120.0, "M2": 6400.0 * n_tiles, "Num": n_tiles * size * size}
                           for _ in range(bands)],
        "ClassPixelStats": {"NumClasses": len(classes), "NumImagesTotal": n_tiles,
                            "NumImagesPerClass": [n_tiles] * len(classes),
                            "NumPixelsPerClass": [10] * len(classes)},
    }


def esri_emd(*, bands: int, size: int, classes=CLASSES) -> dict:
    """The template .emd Pro writes beside the chips (Value/Name spellings)."""
    cell = {"x": RESOLUTION, "y": RESOLUTION,
            "spatialReference": {"wkid": 26918, "latestWkid": 26918}}
    return {
        "Framework": "Templated", "ModelConfiguration": "Please fill this in",
        "ModelFile": "Please fill this in", "ModelType": "ImageClassification",
        "InferenceFunction": "Please fill this in", "ExtractBands": list(range(bands)),
        "ImageHeight": size, "ImageWidth": size, "MetaDataMode": "Classified_Tiles",
        "CropTileMode": False, "ImageSpaceUsed": "MAP_SPACE", "MinCellSize": cell,
        "MaxCellSize": cell,
        "InputRastersProps": {"RasterCount": 1, "SensorName": "", "BandNames": []},
        "AllTilesStats": [{"BandName": f"Band_{b + 1}", "Min": 0, "Max": 255, "Mean": 120,
                           "StdDev": 80} for b in range(bands)],
        "Classes": [{"Value": c["ClassValue"], "Name": c["ClassName"], "Color": c["Color"]}
                    for c in classes],
    }


def make_pro_folder(
    root: Path,
    *,
    digits: int = 12,
    image_format: str = "tif",
    label_format: str | None = None,
    n_rows: int = 3,
    n_cols: int = 4,
    size: int = 8,
    stride: int | None = None,
    bands: int = 3,
    georef: str = "tags",
    map_txt: bool = True,
    metadata: bool = True,
    label_nodata=None,
    start: int = 9600,
) -> Path:
    """A Classified_Tiles folder laid out exactly as ArcGIS Pro writes it.

    Args:
        georef: "tags" (GeoTIFF tags and world files), "world" (world files only) or "none".
    """
    stride = stride or size
    label_format = label_format or ("png" if image_format == "jpg" else image_format)
    lines = []
    for row in range(n_rows):
        for col in range(n_cols):
            index = start + row * n_cols + col
            name = f"{index:0{digits}d}"
            labels = label_pattern(index, size)
            transform = None
            if georef != "none":
                transform = Affine(RESOLUTION, 0, ORIGIN[0] + col * stride * RESOLUTION,
                                   0, -RESOLUTION, ORIGIN[1] - row * stride * RESOLUTION)
            tags = georef == "tags" and image_format == "tif"
            write_chip(root / "images" / f"{name}.{image_format}", image_of(labels, bands),
                       transform=transform, tags=tags)
            write_chip(root / "labels" / f"{name}.{label_format}", labels,
                       transform=transform, tags=tags, nodata=label_nodata)
            lines.append(f"images\\{name}.{image_format} labels\\{name}.{label_format}\r\n")
    if map_txt:
        (root / "map.txt").write_bytes("".join(lines).encode())
    if metadata:
        n = n_rows * n_cols
        (root / "stats.txt").write_text(f"images = {n} *{bands}*{size}*{size}\n"
                                        f"labels = {n} *1*{size}*{size}\n")
        (root / "esri_accumulated_stats.json").write_text(
            json.dumps(esri_stats(bands=bands, size=size, n_tiles=n), indent=2))
        (root / "esri_model_definition.emd").write_text(
            json.dumps(esri_emd(bands=bands, size=size), indent=2))
    return root


def footprint_overlap(a, b, size_map: float) -> bool:
    ta = rasterio.open(a.label).transform
    tb = rasterio.open(b.label).transform
    return abs(ta.c - tb.c) < size_map and abs(ta.f - tb.f) < size_map


# -- ArcGIS Pro folders ------------------------------------------------------------------------


def test_pro_folder_metadata(tmp_path):
    folder = read_chip_folder(make_pro_folder(tmp_path / "chips"), progress=False)
    assert isinstance(folder, ChipFolder)
    assert folder.source == "arcgis"
    assert len(folder.records) == 12
    assert [r.index for r in folder.records] == list(range(9600, 9612))
    assert folder.records[0].image == tmp_path / "chips" / "images" / "000000009600.tif"
    assert folder.records[0].label == tmp_path / "chips" / "labels" / "000000009600.tif"
    scheme = folder.class_scheme
    assert scheme.values == [1, 2, 255]
    assert scheme.names == ["Water", "Forest", "Built"]
    assert scheme.colors[0] == (0, 197, 255)
    assert scheme.nodata == 0  # Pro's "no class", not a listed class
    assert folder.imagery == ImageryInfo(3, "uint8", band_names=("Band_1", "Band_2", "Band_3"))
    assert folder.tile_size == 8
    assert folder.resolution == (RESOLUTION, RESOLUTION)
    assert CRS.from_wkt(folder.crs_wkt) == CRS_UTM
    assert folder.crs_units == "metre"


def test_nine_digit_names_and_whitespace_in_map(tmp_path):
    root = make_pro_folder(tmp_path / "chips", digits=9)
    text = (root / "map.txt").read_text().replace(" ", " \t  ")
    (root / "map.txt").write_text("\n" + text + "\n\n")
    folder = read_chip_folder(root, progress=False)
    assert len(folder.records) == 12
    assert folder.records[3].index == 9603
    assert folder.records[3].image.name == "000009603.tif"


def test_absolute_windows_paths_in_map_of_a_moved_folder(tmp_path):
    root = make_pro_folder(tmp_path / "chips", n_rows=1, n_cols=2)
    text = (root / "map.txt").read_text()
    (root / "map.txt").write_text(text.replace("images\\", "D:\\Projects\\chips\\images\\")
                                  .replace("labels\\", "D:\\Projects\\chips\\labels\\"))
    folder = read_chip_folder(root, progress=False)
    assert [r.label for r in folder.records] == [root / "labels" / "000000009600.tif",
                                                 root / "labels" / "000000009601.tif"]


def test_missing_map_txt_pairs_by_name(tmp_path):
    with_map = read_chip_folder(make_pro_folder(tmp_path / "a"), progress=False)
    without = read_chip_folder(make_pro_folder(tmp_path / "b", map_txt=False), progress=False)
    assert [(r.index, r.image.name, r.label.name, r.split) for r in without.records] == \
        [(r.index, r.image.name, r.label.name, r.split) for r in with_map.records]


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_png_and_jpeg_chips_with_world_files(tmp_path, fmt):
    folder = read_chip_folder(make_pro_folder(tmp_path / "chips", image_format=fmt),
                              progress=False)
    assert folder.records[0].image.suffix == f".{fmt}"
    assert folder.imagery.count == 3
    # No GeoTIFF tags: position from the world file, CRS from the Esri statistics.
    assert folder.resolution == (RESOLUTION, RESOLUTION)
    assert CRS.from_wkt(folder.crs_wkt) == CRS_UTM
    assert folder.split_method == "spatial"


def test_value_range_from_band_statistics(tmp_path):
    root = make_pro_folder(tmp_path / "chips", metadata=True)
    stats = json.loads((root / "esri_accumulated_stats.json").read_text())
    for band in stats["BandStatsState"]:
        band.update(Min=10.0, Max=20.0)
    (root / "esri_accumulated_stats.json").write_text(json.dumps(stats))
    # uint8 imagery keeps 0..255 whatever the statistics say.
    assert read_chip_folder(root, progress=False).imagery.high == (255.0,) * 3

    labels = label_pattern(0, 8)
    write_chip(root / "images" / "000000009600.tif",
               image_of(labels, 3).astype(np.uint16) * 40, transform=None, tags=False)
    imagery = read_chip_folder(root, progress=False).imagery
    assert imagery.dtype == "uint16"
    assert imagery.low == (10.0,) * 3 and imagery.high == (20.0,) * 3


def test_without_class_list_label_values_are_scanned(tmp_path):
    root = make_pro_folder(tmp_path / "chips", metadata=False, label_nodata=0)
    folder = read_chip_folder(root, progress=False)
    assert folder.class_scheme.values == [1, 2, 255]
    assert folder.class_scheme.nodata == 0
    assert folder.tile_size == 8
    assert folder.crs_units == "metre"  # from the GeoTIFF tags

    root = make_pro_folder(tmp_path / "untagged", metadata=False)
    assert read_chip_folder(root, progress=False).class_scheme.values == [0, 1, 2, 255]


def test_label_nodata_tag_is_the_nodata(tmp_path):
    root = make_pro_folder(tmp_path / "chips", label_nodata=255)
    # 255 is a listed class, so the tag cannot make it nodata: the scheme keeps it a class.
    scheme = read_chip_folder(root, progress=False).class_scheme
    assert scheme.values == [1, 2, 255] and scheme.nodata is None


# -- the split of folders without one -----------------------------------------------------------


def test_spatial_hold_out_never_overlaps(tmp_path):
    root = make_pro_folder(tmp_path / "chips", n_rows=6, n_cols=6)
    folder = read_chip_folder(root, val_fraction=0.2, block_size=2, progress=False)
    assert folder.split_method == "spatial"
    train, val = folder.select("train"), folder.select("val")
    assert len(train) + len(val) == 36
    assert 0 < len(val) < 36
    again = read_chip_folder(root, val_fraction=0.2, block_size=2, progress=False)
    assert [r.split for r in again.records] == [r.split for r in folder.records]
    # Held out by whole 2 x 2 blocks: each val chip has a val neighbour in its block.
    val_indices = {r.index - 9600 for r in val}
    for i in val_indices:
        row, col = divmod(i, 6)
        block = {(row // 2 * 2 + dr) * 6 + col // 2 * 2 + dc for dr in (0, 1) for dc in (0, 1)}
        assert block <= val_indices


def test_overlapping_chips_are_kept_apart(tmp_path):
    root = make_pro_folder(tmp_path / "chips", n_rows=6, n_cols=6, stride=4)
    folder = read_chip_folder(root, val_fraction=0.2, block_size=2, progress=False)
    val, train = folder.select("val"), folder.select("train")
    buffer = [r for r in folder.records if r.split == "buffer"]
    assert val and train and buffer
    assert len(folder.select("all")) == 36
    size_map = 8 * RESOLUTION
    for v in val:
        for t in train:
            assert not footprint_overlap(v, t, size_map)


def test_without_positions_the_last_chips_are_held_out(tmp_path):
    root = make_pro_folder(tmp_path / "chips", image_format="png", georef="none")
    folder = read_chip_folder(root, val_fraction=0.25, progress=False)
    assert folder.split_method == "index"
    assert [r.index for r in folder.select("val")] == [9609, 9610, 9611]
    assert folder.resolution == (RESOLUTION, RESOLUTION)  # Esri MinCellSize


def test_split_of_chip_positions_is_seeded_by_whole_blocks():
    offsets = np.array([(r * 10.0, c * 10.0) for r in range(4) for c in range(4)])
    split = split_chips(range(16), offsets, 10, val_fraction=0.25, block_size=20, seed=3)
    assert len(split.val) == 4 and len(split.train) == 12 and not split.dropped
    assert split == split_chips(range(16), offsets, 10, val_fraction=0.25, block_size=20, seed=3)
    rows_cols = {(i // 4 // 2, i % 4 // 2) for i in split.val}
    assert len(rows_cols) == 1  # one whole 2 x 2 block


@pytest.mark.parametrize("stride", [8, 4])
def test_folder_without_split_is_split_as_an_export_of_the_same_grid(tmp_path, stride):
    # The same chips split through the folder reader and through the export's grid give the
    # same validation chips, and the folder's "buffer" chips are the ones an export drops.
    # (0.15 of 36 chips in blocks of 4: "closer to the target" holds out one block, where
    # "until the target is reached" would hold out two.)
    root = make_pro_folder(tmp_path / "chips", n_rows=6, n_cols=6, stride=stride)
    folder = read_chip_folder(root, val_fraction=0.15, block_size=2, seed=5, progress=False)
    side = 8 + 5 * stride
    grid = tile_grid(side, side, 8, stride)
    export = spatial_split(grid, list(grid), val_fraction=0.15, block_size=16, seed=5)
    by_split = {s: [r.index - 9600 for r in folder.records if r.split == s]
                for s in ("train", "val", "buffer")}
    assert by_split["val"] == list(export.val)
    assert by_split["train"] == list(export.train)
    assert by_split["buffer"] == list(export.dropped)
    assert (len(export.dropped) > 0) == (stride < 8)


def test_empty_and_unknown_splits(tmp_path):
    root = make_pro_folder(tmp_path / "chips", n_rows=2, n_cols=2)
    folder = read_chip_folder(root, val_fraction=0.0, progress=False)
    with pytest.raises(InputError, match="no 'val' chips"):
        folder.select("val")
    with pytest.raises(InputError, match="unknown split 'test'"):
        folder.select("test")


# -- broken folders -----------------------------------------------------------------------------


def test_missing_chip_is_named(tmp_path):
    root = make_pro_folder(tmp_path / "chips", n_rows=1, n_cols=2)
    (root / "labels" / "000000009601.tif").unlink()
    with pytest.raises(InputError, match="000000009601.tif"):
        read_chip_folder(root, progress=False)


def test_not_a_chip_folder(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_chip_folder(tmp_path / "nowhere")
    with pytest.raises(InputError, match="no chips found"):
        read_chip_folder(tmp_path)


# -- geospade's own folders ---------------------------------------------------------------------


def make_geospade_folder(root: Path, *, n_val: int = 2) -> Path:
    """A geospade export: the Pro layout plus class_scheme.json, geospade_export.json and
    chips.gpkg (written with geopandas as the exporter does)."""
    import geopandas as gpd
    from shapely.geometry import box

    make_pro_folder(root, n_rows=2, n_cols=3, label_nodata=0)
    scheme = ClassScheme.from_dict({"name": "test", "nodata": 0, "classes": CLASSES})
    scheme.to_json(root / "class_scheme.json")
    imagery = ImageryInfo(3, "uint8", band_names=("red", "green", "blue"))
    (root / "geospade_export.json").write_text(json.dumps({
        "geospade_version": "0.1.0", "tile_size": 8, "stride": 8, "format": "tif",
        "imagery": imagery.to_dict(), "crs_wkt": CRS_UTM.to_wkt(),
        "resolution": [RESOLUTION, RESOLUTION], "crs_units": "metre",
        "landcover": "lc.tif", "imagery_source": "naip.tif",
        "split": {"val_fraction": 0.3, "block_size": 16, "seed": 0},
        "num_chips": {"train": 6 - n_val, "val": n_val}}))
    rows = []
    for i in range(6):
        index = 9600 + i
        rows.append({"index": index, "image": f"images/{index:012d}.tif",
                     "label": f"labels/{index:012d}.tif",
                     "split": "val" if i >= 6 - n_val else "train", "nodata_fraction": 0.2,
                     "px_1": 10, "px_2": 10, "px_255": 10,
                     "geometry": box(i * 4.0, 0.0, i * 4.0 + 4.0, 4.0)})
    gpd.GeoDataFrame(rows, crs=CRS_UTM.to_wkt()).to_file(root / "chips.gpkg", layer="chips")
    return root


@pytest.mark.parametrize("damage", ["junk", "no layer", "no split column", "bad split"])
def test_broken_chip_table_is_named(tmp_path, damage):
    import geopandas as gpd

    root = make_geospade_folder(tmp_path / "chips")
    gpkg = root / "chips.gpkg"
    table = gpd.read_file(gpkg, layer="chips")
    gpkg.unlink()
    if damage == "junk":
        gpkg.write_text("not a GeoPackage")
    elif damage == "no layer":
        table.to_file(gpkg, layer="tiles")
    elif damage == "no split column":
        table.drop(columns="split").to_file(gpkg, layer="chips")
    else:
        table.assign(split="test").to_file(gpkg, layer="chips")
    match = {"junk": "cannot read the chip table", "no layer": "cannot read the chip table",
             "no split column": "no column split", "bad split": "has split 'test'"}[damage]
    with pytest.raises(InputError, match=match) as exc:
        read_chip_folder(root, progress=False)
    assert "chips.gpkg" in str(exc.value)


def test_geospade_folder(tmp_path):
    folder = read_chip_folder(make_geospade_folder(tmp_path / "chips"), progress=False)
    assert folder.source == "geospade"
    assert folder.split_method == "geospade"
    assert [r.index for r in folder.select("val")] == [9604, 9605]
    assert len(folder.select("train")) == 4
    assert folder.class_scheme.name == "test"
    assert folder.imagery.band_names == ("red", "green", "blue")
    assert folder.crs_units == "metre"
    assert folder.records[0].image == tmp_path / "chips" / "images" / "000000009600.tif"
