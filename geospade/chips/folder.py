"""Chip folders: which image and label chips a folder holds, and what their pixels mean.

:func:`read_chip_folder` reads a folder written by ``geospade export`` or by ArcGIS Pro's
"Export Training Data For Deep Learning" (Classified_Tiles), and returns a :class:`ChipFolder`:
the chip pairs with their train/val split, the class scheme, the imagery's bands and value
range, the chip size and the georeference. Everything comes from the folder's own metadata
(or, failing that, from the chips), so training never needs flags the user must get right.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from geospade.chips.esri import (
    ACCUMULATED_STATS,
    MAP_TXT,
    MODEL_DEFINITION,
    classes_from_esri,
    read_accumulated_stats,
    read_emd,
    read_map_txt,
)
from geospade.chips.merge import merge_schemes
from geospade.chips.split import default_block, split_chips
from geospade.classes import ClassScheme, resolve_scheme, scheme_from_raster, value_counts
from geospade.errors import ClassSchemeError, InputError
from geospade.imagery import ImageryInfo, range_from_stats
from geospade.progress import ProgressArg, progress_bar
from geospade.raster import open_raster

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "all")
CHIP_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".mrf")


@dataclass(frozen=True)
class ChipRecord:
    """One image chip and its label chip.

    Attributes:
        index: the chip's number (its position in the exporter's tile grid; from the file name).
        image, label: absolute paths of the two chips.
        split: ``"train"`` or ``"val"``; ``"buffer"`` only for ArcGIS folders with overlapping
            chips: a chip that overlaps a validation chip, kept out of both splits (used only
            by ``split="all"``) so validation never sees pixels trained on.
        nodata: label value meaning "no class" written by the exporter (0, ArcGIS's NoData,
            in geospade exports that allow nodata), read as don't-care; None when the folder
            does not say.
    """

    index: int
    image: Path
    label: Path
    split: str = "train"
    nodata: int | None = None


@dataclass
class ChipFolder:
    """A chip folder's contents and metadata (see :func:`read_chip_folder`).

    Attributes:
        root: the folder.
        records: every chip pair, sorted by index.
        class_scheme: the label values' classes and nodata.
        imagery: band count, dtype and value range of the image chips.
        tile_size: chip side in pixels.
        resolution: ground size (x, y) of a pixel in CRS units, or None when unknown.
        crs_wkt: the chips' CRS as WKT, or None.
        crs_units: linear unit of that CRS (e.g. ``"metre"``), or None.
        source: ``"geospade"`` (geospade's own metadata found) or ``"arcgis"``.
        split_method: how the train/val split was decided: ``"geospade"`` (chips.gpkg),
            ``"spatial"`` (blocks of neighbouring chips held out) or ``"index"`` (the last chips);
            ``"mixed"`` for folders merged by :func:`read_chip_folders` that differ.
        roots: every folder the chips come from (just ``root`` for one folder).
    """

    root: Path
    records: list[ChipRecord]
    class_scheme: ClassScheme
    imagery: ImageryInfo
    tile_size: int
    resolution: tuple[float, float] | None = None
    crs_wkt: str | None = None
    crs_units: str | None = None
    source: str = "arcgis"
    split_method: str = "index"
    metadata: dict = field(default_factory=dict, repr=False)
    roots: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        if not self.roots:
            self.roots = (self.root,)

    def select(self, split: str) -> list[ChipRecord]:
        """The records of one split (``"train"``, ``"val"`` or ``"all"``).

        Raises:
            InputError: for an unknown split name or a split without chips.
        """
        if split not in SPLITS:
            raise InputError(f"unknown split '{split}'", path=self.root,
                             hint=f"Use one of {list(SPLITS)}.")
        chosen = [r for r in self.records if split == "all" or r.split == split]
        if not chosen:
            counts = self.split_counts()
            raise InputError(
                f"no '{split}' chips in this folder (chips per split: {counts})",
                path=self.root,
                hint="Use split='all', or export again with a validation fraction above 0."
                if split == "val" else "Export chips for training into this folder first.",
            )
        return chosen

    def split_counts(self) -> dict[str, int]:
        """Number of chips per split value."""
        counts: dict[str, int] = {}
        for r in self.records:
            counts[r.split] = counts.get(r.split, 0) + 1
        return counts


def read_chip_folder(
    path: str | Path,
    *,
    val_fraction: float = 0.1,
    block_size: int | None = None,
    seed: int = 0,
    progress: ProgressArg = True,
) -> ChipFolder:
    """Read a geospade or ArcGIS Pro Classified_Tiles chip folder.

    Sources, most trusted first: geospade's ``class_scheme.json``, ``geospade_export.json`` and
    ``chips.gpkg``; then Esri's ``map.txt``, ``esri_accumulated_stats.json`` and
    ``esri_model_definition.emd``; then the chips themselves (band count, dtype, nodata tag,
    georeferencing; and, when no class list is written anywhere, the label values present).
    Label nodata is the scheme's; with an Esri class list, the label chips' nodata tag, else 0
    when 0 is not a listed class (Pro's "no class"). Other values outside the classes are
    reported (ClassSchemeError naming them and the chip) when the chip is read.

    The split comes from ``chips.gpkg``. ArcGIS folders have none, so a validation set is
    held out spatially by the export's own rule (:func:`~geospade.chips.split.split_chips`):
    whole blocks of chips, chosen by ``seed``, go to validation, and training chips
    overlapping a validation chip are marked ``"buffer"`` (neither trained nor validated on).
    When chip positions are unknown (no world files, no GeoTIFF transform), the last
    ``val_fraction`` of the chips by index are held out instead.

    Args:
        path: the chip folder.
        val_fraction: share of chips held out for validation in folders without a split.
        block_size: side, in chip footprints, of the blocks held out together in such
            folders; default: 4 chip steps, halved on small folders (as an export's default).
        seed: chooses the held-out blocks.
        progress: progress bar while scanning label values (only when no class list exists).

    Raises:
        InputError: not a chip folder, missing chips, unreadable metadata.
        ClassSchemeError: labels without any valid value.
    """
    root = Path(path)
    if not root.is_dir():
        raise InputError("chip folder not found", path=root,
                         hint="Give the folder written by geospade export or ArcGIS Pro.")
    export_info = _read_json(root / "geospade_export.json")
    stats = read_accumulated_stats(root) if (root / ACCUMULATED_STATS).exists() else {}
    emd = read_emd(root) if (root / MODEL_DEFINITION).exists() else {}

    pairs, splits = _list_pairs(root)
    records = [ChipRecord(i, image, label, split or "train")
               for (i, image, label), split in zip(pairs, splits, strict=True)]
    records = _distinct_indices(sorted(records, key=lambda r: r.index))
    _check_files_exist(root, records)

    first_label = _chip_info(records[0].label)
    first_image = _chip_info(records[0].image)

    scheme_file = root / "class_scheme.json"
    if scheme_file.exists():
        scheme = ClassScheme.from_json(scheme_file)
    else:
        listed = _esri_scheme(stats, emd, first_label["nodata"], root.name)
        scheme = listed if listed is not None else _scan_scheme(records, root.name, progress)

    imagery = (ImageryInfo.from_dict(export_info["imagery"]) if "imagery" in export_info
               else _imagery_from_chip(first_image, stats, emd))
    tile_size = int(export_info.get("tile_size") or stats.get("TileSizeX")
                    or emd.get("ImageWidth") or first_label["width"])

    if export_info:
        res = export_info.get("resolution")
        resolution = None if res is None else (float(res[0]), float(res[1]))
        crs_wkt, crs_units = export_info.get("crs_wkt"), export_info.get("crs_units")
    else:
        resolution, crs_wkt, crs_units = _georeference(first_image, stats)

    split_method = "geospade"
    if any(s is None for s in splits):
        records, split_method = _hold_out(root, records, tile_size, val_fraction, block_size, seed)
    label_nodata = _int_nodata(export_info.get("label_nodata"))
    if label_nodata is not None and label_nodata not in scheme.values:
        records = [dataclasses.replace(r, nodata=label_nodata) for r in records]

    return ChipFolder(
        root=root, records=records, class_scheme=scheme, imagery=imagery, tile_size=tile_size,
        resolution=resolution, crs_wkt=crs_wkt, crs_units=crs_units,
        source="geospade" if export_info or scheme_file.exists() else "arcgis",
        split_method=split_method,
        metadata={"geospade_export": export_info, "esri_stats": stats, "esri_emd": emd},
    )


def read_chip_folders(
    paths: str | Path | Sequence[str | Path],
    *,
    classes: ClassScheme | str | Path | None = None,
    val_fraction: float = 0.1,
    block_size: int | None = None,
    seed: int = 0,
    progress: ProgressArg = True,
) -> ChipFolder:
    """Read one chip folder, or several merged into one (as arcgis.learn's ``prepare_data``).

    Each folder is read by :func:`read_chip_folder` (keyword arguments as there). Merged:
    the chips of all folders in order (numbered on from one folder to the next), one class
    scheme reconciled by value (:func:`~geospade.chips.merge.merge_schemes`; ``classes``
    replaces it), the imagery value range covering every folder's, the CRS and resolution
    when the folders share them (a warning when resolutions differ).

    Raises:
        InputError: a folder that is no chip folder; folders whose chip sizes, band counts or
            data types differ.
        ClassSchemeError: two folders give one class value different names (without
            ``classes``).
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    folders = [read_chip_folder(p, val_fraction=val_fraction, block_size=block_size,
                                seed=seed, progress=progress) for p in paths]
    if not folders:
        raise InputError("no chip folder given", hint="Give at least one chip folder.")
    if len(folders) == 1:
        return folders[0]
    first = folders[0]
    for folder in folders[1:]:
        _check_compatible(first, folder)
    scheme = (resolve_scheme(classes) if classes is not None else merge_schemes(
        [(f.root, f.class_scheme) for f in folders],
        hint="Train them with one scheme (--classes scheme.json), or fix the folders' class "
             "names."))
    records: list[ChipRecord] = []
    for folder in folders:
        start = max((r.index for r in records), default=-1) + 1
        # A folder's own "no class" value stays don't-care in its chips, whatever the
        # merged scheme's nodata (an ArcGIS folder's 0 beside a geospade folder's 15).
        own = folder.class_scheme.nodata
        records += [dataclasses.replace(r, index=start + r.index - folder.records[0].index,
                                        nodata=own if r.nodata is None else r.nodata)
                    for r in folder.records]
    if len({f.resolution for f in folders}) > 1:
        log.warning("chip folders have different pixel sizes (%s): one model learns them "
                    "as one", ", ".join(f"{f.root}: {f.resolution}" for f in folders))
    return ChipFolder(
        root=first.root, records=records, class_scheme=scheme,
        imagery=_combined_imagery([f.imagery for f in folders]), tile_size=first.tile_size,
        resolution=first.resolution,
        crs_wkt=first.crs_wkt if len({f.crs_wkt for f in folders}) == 1 else None,
        crs_units=first.crs_units if len({f.crs_units for f in folders}) == 1 else None,
        source=first.source if len({f.source for f in folders}) == 1 else "mixed",
        split_method=(first.split_method if len({f.split_method for f in folders}) == 1
                      else "mixed"),
        metadata={"folders": [f.metadata for f in folders]},
        roots=tuple(f.root for f in folders))


def _check_compatible(first: ChipFolder, other: ChipFolder) -> None:
    """InputError unless two folders have chips of one size and band layout."""
    what = None
    if other.tile_size != first.tile_size:
        what = f"chips of {other.tile_size} px but {first.root} has {first.tile_size} px"
    elif (other.imagery.count, other.imagery.dtype) != (first.imagery.count,
                                                         first.imagery.dtype):
        what = (f"{other.imagery.count} band(s) of {other.imagery.dtype} but {first.root} has "
                f"{first.imagery.count} of {first.imagery.dtype}")
    if what:
        raise InputError(f"chip folder has {what}", path=other.root,
                         hint="Train together only chips of one size from imagery of one band "
                              "layout (export them with the same --tile-size).")


def _combined_imagery(infos: Sequence[ImageryInfo]) -> ImageryInfo:
    """One value range for imagery of several folders: the lowest low, the highest high."""
    first = infos[0]
    low = tuple(min(vals) for vals in zip(*(i.low for i in infos), strict=True))
    high = tuple(max(vals) for vals in zip(*(i.high for i in infos), strict=True))
    return ImageryInfo(first.count, first.dtype, low, high, first.band_names)


# -- listing the chip pairs -------------------------------------------------------------------


def _list_pairs(root: Path) -> tuple[list[tuple[int, Path, Path]], list[str | None]]:
    """(index, image, label) triples and their splits (None when the folder has no split)."""
    gpkg = root / "chips.gpkg"
    if gpkg.exists():
        return _pairs_from_gpkg(gpkg)
    pairs = _pairs_from_map(root) if (root / MAP_TXT).exists() else _pairs_by_stem(root)
    if not pairs:
        raise InputError(
            "no chips found (map.txt empty, or no matching images/ and labels/ files)",
            path=root,
            hint="Give a Classified_Tiles folder: images/ and labels/ with chips of the same "
                 "names, and map.txt.",
        )
    return pairs, [None] * len(pairs)


def _pairs_from_gpkg(gpkg: Path) -> tuple[list[tuple[int, Path, Path]], list[str | None]]:
    """Chip pairs and splits from geospade's chips.gpkg, read as it was written (pyogrio)."""
    import pyogrio
    from pyogrio.errors import DataLayerError, DataSourceError, FieldError

    root = gpkg.parent
    try:
        table = pyogrio.read_dataframe(gpkg, layer="chips", read_geometry=False,
                                       columns=["index", "image", "label", "split"])
    except (DataSourceError, DataLayerError, FieldError) as exc:
        raise InputError(f"cannot read the chip table ({exc})", path=gpkg,
                         hint="Export the chips again; chips.gpkg needs a layer 'chips' with "
                              "columns index, image, label, split.") from None
    missing = {"index", "image", "label", "split"} - set(table.columns)
    if missing:  # pyogrio leaves out requested columns the layer lacks
        raise InputError(f"the chip table has no column {', '.join(sorted(missing))}", path=gpkg,
                         hint="Export the chips again; chips.gpkg needs a layer 'chips' with "
                              "columns index, image, label, split.")
    if table.empty:
        raise InputError("the chip table is empty", path=gpkg, hint="Export the chips again.")
    rows = list(zip(table["index"].tolist(), table["image"].tolist(), table["label"].tolist(),
                    table["split"].tolist(), strict=True))
    pairs = [(int(i), root / img, root / lab) for i, img, lab, _ in rows]
    splits = []
    for (i, _, _, split) in rows:
        if split not in ("train", "val"):
            raise InputError(f"chip {i} has split {split!r}", path=gpkg,
                             hint="Splits must be 'train' or 'val'; export the chips again.")
        splits.append(split)
    return pairs, splits


def _pairs_from_map(root: Path) -> list[tuple[int, Path, Path]]:
    """Pairs listed in map.txt (``images\\0001.tif labels\\0001.tif`` per line)."""
    pairs: list[tuple[int, Path, Path]] = []
    for image, label in read_map_txt(root):
        image, label = _chip_path(root, image, "images"), _chip_path(root, label, "labels")
        pairs.append((_chip_number(image, len(pairs)), image, label))
    return pairs


def _chip_path(root: Path, relative: Path, folder: str) -> Path:
    """A map.txt entry under ``root``; a folder moved since it was written (absolute paths in
    map.txt) still has its chips in images/ and labels/."""
    path = root / relative
    if not path.exists() and (root / folder / relative.name).exists():
        return root / folder / relative.name
    return path


def _pairs_by_stem(root: Path) -> list[tuple[int, Path, Path]]:
    """Pairs from images/ and labels/ matched by file name stem (when map.txt is missing)."""
    images = {p.stem: p for p in _chip_files(root / "images")}
    labels = {p.stem: p for p in _chip_files(root / "labels")}
    unmatched = sorted(set(images) ^ set(labels))
    if unmatched and images and labels:
        warnings.warn(f"{root}: {len(unmatched)} chips without a partner in images/ or "
                      f"labels/ are skipped (e.g. {unmatched[0]})", stacklevel=3)
    stems = sorted(set(images) & set(labels))
    return [(_chip_number(images[s], n), images[s], labels[s]) for n, s in enumerate(stems)]


def _chip_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in CHIP_SUFFIXES)


def _chip_number(path: Path, fallback: int) -> int:
    """The tile number in a chip name (``000000009600.tif`` -> 9600), else ``fallback``."""
    match = re.search(r"(\d+)$", path.stem)
    return int(match.group(1)) if match else fallback


def _check_files_exist(root: Path, records: Sequence[ChipRecord]) -> None:
    missing = [p for r in records for p in (r.image, r.label) if not p.exists()]
    if missing:
        raise InputError(
            f"{len(missing)} chip files listed in map.txt or chips.gpkg are missing, "
            f"e.g. {missing[0]}",
            path=root, hint="Copy the whole chip folder, or export it again.")


def _distinct_indices(records: list[ChipRecord]) -> list[ChipRecord]:
    """The records, renumbered in order when their names do not give distinct numbers."""
    if len({r.index for r in records}) == len(records):
        return records
    return [dataclasses.replace(r, index=n) for n, r in enumerate(records)]


# -- metadata ---------------------------------------------------------------------------------


def _read_json(path: Path) -> dict:
    """A JSON metadata file as a dict ({} when absent)."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read metadata ({exc})", path=path,
                         hint="Export the chips again, or delete the damaged file.") from None
    if not isinstance(data, dict):
        raise InputError("metadata is not a JSON object", path=path,
                         hint="Export the chips again, or delete the damaged file.")
    return data


def _chip_info(path: Path) -> dict:
    """Band count, dtype, size, nodata, transform, CRS and colour table of one chip."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PNG/JPEG chips without a world file are not georeferenced
        with open_raster(path, "chip") as ds:
            try:
                colormap = ds.colormap(1)
            except ValueError:
                colormap = {}
            return {"path": path, "count": ds.count, "dtype": ds.dtypes[0], "width": ds.width,
                    "height": ds.height, "nodata": ds.nodata, "transform": ds.transform,
                    "crs": ds.crs, "colormap": colormap}


def _esri_scheme(stats: dict, emd: dict, nodata, name: str) -> ClassScheme | None:
    """The class list of esri_accumulated_stats.json or the .emd, None when neither has one.

    Nodata is the label chips' nodata tag; without one, 0 when it is not a class (Pro leaves
    unclassified label pixels at 0, and arcgis.learn reads 0 as background). Any other value
    outside the list is an error when the chip is read.
    """
    metadata = stats if stats.get("Classes") else emd
    if not metadata.get("Classes"):
        return None
    nodata = _int_nodata(nodata)
    return classes_from_esri(metadata, nodata=0 if nodata is None else nodata, name=name)


def _int_nodata(nodata) -> int | None:
    """A nodata tag usable as a label value (a non-negative integer), else None."""
    if nodata is None or not math.isfinite(nodata) or nodata < 0 or nodata != int(nodata):
        return None
    return int(nodata)


def _scan_scheme(records: Sequence[ChipRecord], name: str, progress: ProgressArg) -> ClassScheme:
    """A scheme of the label values present in the chips (the folder lists no classes)."""
    counts: collections.Counter = collections.Counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bar = progress_bar(progress, total=len(records), desc="scanning label values",
                           unit="chip")
        with bar:
            for record in records:
                with open_raster(record.label, "label chip") as ds:
                    data = ds.read(1, masked=True)
                if not np.issubdtype(data.dtype, np.integer):
                    raise ClassSchemeError(
                        f"label chip has dtype {data.dtype}; labels must be integer class values",
                        path=record.label, hint="Export the labels from a classified raster.")
                counts.update(value_counts(data))
                bar.update(1)
        with open_raster(records[0].label, "label chip") as ds:
            scheme = scheme_from_raster(ds, counts=dict(counts))
    if scheme.name == Path(records[0].label).stem:
        scheme = ClassScheme(scheme.classes, scheme.nodata, name)
    return scheme


def _imagery_from_chip(chip: dict, stats: dict, emd: dict) -> ImageryInfo:
    """ImageryInfo from the first image chip, with the value range of the Esri band statistics."""
    count, dtype = chip["count"], chip["dtype"]
    band_stats = stats.get("BandStatsState") or emd.get("AllTilesStats") or []
    names = (stats.get("InputRastersProps") or emd.get("InputRastersProps") or {}).get("BandNames")
    names = tuple(str(n) for n in names) if names and len(names) == count else ()
    try:
        if len(band_stats) == count:
            minimum = [float(b["Min"]) for b in band_stats]
            maximum = [float(b["Max"]) for b in band_stats]
            return range_from_stats(count, dtype, minimum, maximum, names)
    except (KeyError, TypeError, ValueError):
        pass  # unusable statistics: fall back to the dtype's range
    return ImageryInfo(count, dtype, band_names=names)


def _georeference(chip: dict, stats: dict) -> tuple[tuple[float, float] | None, str | None,
                                                    str | None]:
    """Resolution, CRS WKT and CRS units from the first chip, else from the Esri statistics."""
    transform = chip_transform(chip["path"], chip["transform"])
    resolution = None if transform is None else (abs(transform.a), abs(transform.e))
    cell = stats.get("MinCellSize") or {}
    if resolution is None and cell.get("x") and cell.get("y"):
        resolution = (float(cell["x"]), float(cell["y"]))
    crs = chip["crs"] or _esri_crs(cell.get("spatialReference") or {})
    if crs is None:
        return resolution, None, None
    return resolution, crs.to_wkt(), crs.units_factor[0]


def _esri_crs(spatial_reference: dict):
    """A rasterio CRS from an Esri ``spatialReference`` ({wkid, latestWkid} or {wkt})."""
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    candidates = [spatial_reference.get("wkt")]
    for key in ("latestWkid", "wkid"):
        if spatial_reference.get(key):
            candidates += [f"EPSG:{spatial_reference[key]}", f"ESRI:{spatial_reference[key]}"]
    for candidate in candidates:
        if candidate:
            try:
                return CRS.from_user_input(candidate)
            except CRSError:
                continue
    return None


def chip_transform(path: Path, transform: Affine | None = None) -> Affine | None:
    """A chip's pixel-corner transform, as GDAL reads it: its own, else its world file's.

    GDAL looks for the world file names ArcGIS and GDAL write (``.tfw``, ``.pgw``, ``.jgw``,
    ``.wld`` and the four-letter forms) by itself.

    Args:
        path: the chip.
        transform: the transform rasterio reported for it, if already opened.

    Returns:
        None when the chip is not georeferenced.
    """
    if transform is None:
        # Without the directory listing GDAL probes for each sibling file by name instead:
        # much faster in a folder of many thousand chips.
        with warnings.catch_warnings(), rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="TRUE"):
            warnings.simplefilter("ignore")
            with open_raster(path, "chip") as ds:
                transform = ds.transform
    return None if transform == Affine.identity() else transform


# -- the train / validation split -------------------------------------------------------------


def _hold_out(root: Path, records: list[ChipRecord], tile_size: int, val_fraction: float,
              block_size: int | None, seed: int) -> tuple[list[ChipRecord], str]:
    """Assign splits to chips of a folder without one: spatially when positions are known."""
    if not 0.0 <= val_fraction < 1.0:
        raise InputError(f"validation fraction {val_fraction} is not in [0, 1)", path=root,
                         hint="Use e.g. val_fraction=0.1.")
    if val_fraction == 0 or len(records) < 2:
        return [_with_split(r, "train") for r in records], "index"
    transforms = []
    for r in records:
        t = chip_transform(r.label)
        if t is None:
            t = chip_transform(r.image)
        if t is None:
            n_val = min(max(1, round(val_fraction * len(records))), len(records) - 1)
            splits = ["train"] * (len(records) - n_val) + ["val"] * n_val
            return [_with_split(r, s) for r, s in zip(records, splits, strict=True)], "index"
        transforms.append(t)
    offsets = _pixel_offsets(transforms)
    if block_size is None:
        block = default_block(offsets[:, 0].max(), offsets[:, 1].max(),
                              _chip_step(offsets, tile_size))
    else:
        block = int(block_size) * tile_size
    try:
        split = split_chips([r.index for r in records], offsets, tile_size,
                            val_fraction=val_fraction, block_size=block, seed=seed)
    except InputError as exc:
        if block_size is not None:
            raise InputError(exc.message, path=root,
                             hint="Use a smaller block size (in chips), or val_fraction 0."
                             ) from None
        log.warning("%s: chips too few or too close together to hold some out for "
                    "validation; all train", root)
        return [_with_split(r, "train") for r in records], "index"
    names = {**split.assignment(), **{i: "buffer" for i in split.dropped}}
    return [_with_split(r, names[r.index]) for r in records], "spatial"


def _pixel_offsets(transforms: Sequence[Affine]) -> np.ndarray:
    """(row, col) pixel offset of each chip's top-left corner from the folder's top-left."""
    x = np.array([t.c for t in transforms], dtype=np.float64)
    y = np.array([t.f for t in transforms], dtype=np.float64)
    res_x, res_y = abs(transforms[0].a), abs(transforms[0].e)
    return np.stack([(y.max() - y) / res_y, (x - x.min()) / res_x], axis=1)


def _chip_step(offsets: np.ndarray, tile_size: int) -> int:
    """Pixels between neighbouring chips (the export's stride): the smallest gap found."""
    gaps = np.concatenate([np.diff(np.unique(np.round(offsets[:, axis]))) for axis in (0, 1)])
    gaps = gaps[gaps > 0]
    return int(min(gaps.min(), tile_size)) if gaps.size else tile_size


def _with_split(record: ChipRecord, split: str) -> ChipRecord:
    return dataclasses.replace(record, split=split)
