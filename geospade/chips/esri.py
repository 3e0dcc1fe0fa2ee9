"""ArcGIS Pro chip-folder metadata: writers and readers for the Classified_Tiles side files.

An ArcGIS Pro "Export Training Data For Deep Learning" folder holds ``map.txt``,
``stats.txt``, ``esri_accumulated_stats.json`` and ``esri_model_definition.emd`` beside the
chips. geospade writes them so arcgis.learn reads its exports as-is, and reads them so a folder
exported by Pro trains as-is. Readers accept both key spellings Esri uses for classes
(``Value``/``Name`` in the .emd, ``ClassValue``/``ClassName`` in the stats file).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np

from geospade.classes import ClassScheme, LandCoverClass, as_color, default_color
from geospade.errors import ClassSchemeError, InputError

MAP_TXT = "map.txt"
STATS_TXT = "stats.txt"
ACCUMULATED_STATS = "esri_accumulated_stats.json"
MODEL_DEFINITION = "esri_model_definition.emd"
METADATA_MODE = "Classified_Tiles"


# -- running band statistics -------------------------------------------------------------------


@dataclass
class BandStats:
    """Running per-band moments (Esri's ``BandStatsState``), merged chip by chip.

    ``M1`` is the running mean and ``M2`` the sum of squared deviations from it, as Esri
    stores them (so ``StdDev = sqrt(M2 / Num)``); chips merge with Chan's parallel formula,
    which stays exact in floating point where summing squares of uint16 pixels would not.
    """

    count: int
    num: np.ndarray = field(init=False)
    mean: np.ndarray = field(init=False)
    m2: np.ndarray = field(init=False)
    minimum: np.ndarray = field(init=False)
    maximum: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.num = np.zeros(self.count, dtype=np.int64)
        self.mean = np.zeros(self.count, dtype=np.float64)
        self.m2 = np.zeros(self.count, dtype=np.float64)
        self.minimum = np.full(self.count, np.inf)
        self.maximum = np.full(self.count, -np.inf)

    @classmethod
    def of_pixels(cls, pixels: np.ndarray, valid: np.ndarray | None = None) -> BandStats:
        """Moments of (bands, H, W) pixels, only where ``valid`` (H, W) is True."""
        count = pixels.shape[0]
        flat = pixels.reshape(count, -1)
        if valid is not None and not valid.all():
            flat = flat[:, valid.reshape(-1)]
        stats = cls(count)
        n = flat.shape[1]
        if n == 0:
            return stats
        if flat.dtype == np.uint8:
            # A histogram per band gives exact sums at a fraction of the cost of float maths.
            levels = np.arange(256, dtype=np.float64)
            for band in range(count):
                hist = np.bincount(flat[band], minlength=256).astype(np.float64)
                mean = hist @ levels / n
                stats.mean[band] = mean
                stats.m2[band] = hist @ (levels - mean) ** 2
                present = np.flatnonzero(hist)
                stats.minimum[band], stats.maximum[band] = present[0], present[-1]
        else:
            values = flat.astype(np.float64)
            stats.mean[:] = values.mean(axis=1)
            stats.m2[:] = ((values - stats.mean[:, None]) ** 2).sum(axis=1)
            stats.minimum[:] = values.min(axis=1)
            stats.maximum[:] = values.max(axis=1)
        stats.num[:] = n
        return stats

    def merge(self, other: BandStats) -> None:
        """Add another set of moments to this one (Chan et al. pairwise update)."""
        n_a, n_b = self.num.astype(np.float64), other.num.astype(np.float64)
        n = n_a + n_b
        with np.errstate(invalid="ignore", divide="ignore"):
            delta = other.mean - self.mean
            mean = np.where(n > 0, self.mean + delta * n_b / n, 0.0)
            m2 = np.where(n > 0, self.m2 + other.m2 + delta**2 * n_a * n_b / n, 0.0)
        self.num = self.num + other.num
        self.mean, self.m2 = mean, m2
        self.minimum = np.minimum(self.minimum, other.minimum)
        self.maximum = np.maximum(self.maximum, other.maximum)

    @property
    def std(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.num > 0, np.sqrt(self.m2 / np.maximum(self.num, 1)), 0.0)

    def to_esri(self) -> list[dict]:
        """``BandStatsState``: per band {Min, Max, Mean, StdDev, M1, M2, Num}."""
        bands = []
        for i in range(self.count):
            empty = self.num[i] == 0
            bands.append({
                "Min": 0.0 if empty else float(self.minimum[i]),
                "Max": 0.0 if empty else float(self.maximum[i]),
                "Mean": float(self.mean[i]),
                "StdDev": float(self.std[i]),
                "M1": float(self.mean[i]),
                "M2": float(self.m2[i]),
                "Num": int(self.num[i]),
            })
        return bands

    @classmethod
    def from_esri(cls, bands: Sequence[Mapping]) -> BandStats:
        """Running moments back from a ``BandStatsState`` list."""
        stats = cls(len(bands))
        for i, band in enumerate(bands):
            stats.num[i] = int(band.get("Num", 0))
            stats.mean[i] = float(band.get("M1", band.get("Mean", 0.0)))
            stats.m2[i] = float(band.get("M2", float(band.get("StdDev", 0.0)) ** 2 * stats.num[i]))
            stats.minimum[i] = float(band.get("Min", 0.0))
            stats.maximum[i] = float(band.get("Max", 0.0))
        return stats


# -- writers -----------------------------------------------------------------------------------


def cell_size(resolution: tuple[float, float], crs) -> dict:
    """Esri ``MinCellSize``/``MaxCellSize``: {x, y, spatialReference: {wkid, latestWkid}}.

    A CRS without an EPSG code gets wkid 0 and its WKT under ``wkt``, as Esri does for
    custom coordinate systems.
    """
    reference: dict = {"wkid": 0, "latestWkid": 0}
    if crs is not None:
        epsg = crs.to_epsg()
        if epsg:
            reference = {"wkid": epsg, "latestWkid": epsg}
        else:
            reference["wkt"] = crs.to_wkt()
    return {"x": float(resolution[0]), "y": float(resolution[1]), "spatialReference": reference}


def esri_classes(scheme: ClassScheme, value_key: str = "ClassValue",
                 name_key: str = "ClassName") -> list[dict]:
    """The scheme's classes as Esri class entries ({ClassValue, ClassName, Color})."""
    return [{value_key: c.value, name_key: c.name, "Color": list(c.color)}
            for c in scheme.classes]


def accumulated_stats(*, scheme: ClassScheme, band_stats: BandStats, band_names: Sequence[str],
                      tile_size: int, num_tiles: int, next_tile_index: int,
                      resolution: tuple[float, float], crs, pixels_per_class: Mapping[int, int],
                      images_per_class: Mapping[int, int]) -> dict:
    """The content of ``esri_accumulated_stats.json`` for a Classified_Tiles export."""
    cells = cell_size(resolution, crs)
    return {
        "Version": 1,
        "NumBands": band_stats.count,
        "TileSizeX": tile_size,
        "TileSizeY": tile_size,
        "NumClasses": scheme.num_classes,
        "NumTiles": num_tiles,
        "NumTilesAsDouble": float(num_tiles),
        "NextTileIndex": next_tile_index,
        "OutputFeatures": False,
        "MetaDataMode": METADATA_MODE,
        "MinCellSize": cells,
        "MaxCellSize": cells,
        "Classes": esri_classes(scheme),
        "InputRastersProps": {"RasterCount": 1, "SensorName": "",
                              "BandNames": list(band_names)},
        "BandStatsState": band_stats.to_esri(),
        "ClassPixelStats": {
            "NumClasses": scheme.num_classes,
            "NumImagesTotal": num_tiles,
            "NumImagesPerClass": [int(images_per_class.get(v, 0)) for v in scheme.values],
            "NumPixelsPerClass": [int(pixels_per_class.get(v, 0)) for v in scheme.values],
        },
    }


def model_definition(stats: Mapping) -> dict:
    """The template ``esri_model_definition.emd`` that Pro's export writes beside its chips.

    Placeholder strings where Pro writes them; real values from ``stats``
    (:func:`accumulated_stats`) for sizes, cell sizes, bands, band statistics and classes.
    """
    bands = stats["InputRastersProps"]["BandNames"]
    all_tiles = [
        {"BandName": name, "Min": b["Min"], "Max": b["Max"], "Mean": b["Mean"],
         "StdDev": b["StdDev"]}
        for name, b in zip(bands, stats["BandStatsState"], strict=True)
    ]
    return {
        "Framework": "Templated",
        "ModelConfiguration": "Please fill this in",
        "ModelFile": "Please fill this in",
        "ModelType": "ImageClassification",
        "InferenceFunction": "Please fill this in",
        "ExtractBands": list(range(len(bands))),
        "ImageHeight": stats["TileSizeY"],
        "ImageWidth": stats["TileSizeX"],
        "MetaDataMode": stats["MetaDataMode"],
        "CropTileMode": False,
        "ImageSpaceUsed": "MAP_SPACE",
        "MinCellSize": stats["MinCellSize"],
        "MaxCellSize": stats["MaxCellSize"],
        "InputRastersProps": stats["InputRastersProps"],
        "AllTilesStats": all_tiles,
        "Classes": [{"Value": c["ClassValue"], "Name": c["ClassName"], "Color": c["Color"]}
                    for c in stats["Classes"]],
    }


def write_map_txt(folder: str | Path, pairs: Iterable[tuple[str, str]]) -> Path:
    """Write ``map.txt``: one ``images\\X.tif labels\\X.tif`` line per chip, as Pro writes it.

    ``pairs`` are relative paths with forward slashes; they are written with backslashes.
    """
    path = Path(folder) / MAP_TXT
    lines = [f"{_windows(image)} {_windows(label)}\n" for image, label in pairs]
    path.write_text("".join(lines), newline="")
    return path


def _windows(relative: str) -> str:
    return str(PureWindowsPath(PurePosixPath(relative)))


def write_json(folder: str | Path, name: str, content: Mapping) -> Path:
    """Write ``content`` as indented JSON under ``folder/name``."""
    path = Path(folder) / name
    path.write_text(json.dumps(content, indent=2) + "\n")
    return path


def write_stats_txt(folder: str | Path, stats: Mapping) -> Path:
    """Write Pro's human-readable ``stats.txt`` summary from the accumulated statistics."""
    size = stats["TileSizeX"]
    pixel_stats = stats["ClassPixelStats"]
    lines = [
        f"images = {stats['NumTiles']} *{stats['NumBands']}*{size}*{stats['TileSizeY']}",
        f"labels = {stats['NumTiles']} *1*{size}*{stats['TileSizeY']}",
        "",
        "image statistics (per band):",
    ]
    for name, band in zip(stats["InputRastersProps"]["BandNames"], stats["BandStatsState"],
                          strict=True):
        lines.append(f"  {name}: min = {band['Min']:g}, max = {band['Max']:g}, "
                     f"mean = {band['Mean']:.4f}, std dev = {band['StdDev']:.4f}")
    lines += ["", f"classes = {stats['NumClasses']}",
              "class value, class name, number of images, number of pixels:"]
    for c, images, pixels in zip(stats["Classes"], pixel_stats["NumImagesPerClass"],
                                 pixel_stats["NumPixelsPerClass"], strict=True):
        lines.append(f"  {c['ClassValue']}, {c['ClassName']}, {images}, {pixels}")
    path = Path(folder) / STATS_TXT
    path.write_text("\n".join(lines) + "\n")
    return path


# -- readers -----------------------------------------------------------------------------------


def read_map_txt(folder: str | Path) -> list[tuple[Path, Path]]:
    """(image, label) relative paths from ``map.txt``; any whitespace, either slash."""
    path = Path(folder) / MAP_TXT
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"cannot read the chip list ({exc.strerror})", path=path,
                         hint="Give a chip folder exported by geospade or ArcGIS Pro.") from None
    pairs: list[tuple[Path, Path]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise InputError(f"line {number} has {len(parts)} fields: {line!r}", path=path,
                             hint="Each line must be 'images\\NAME.tif labels\\NAME.tif'.")
        image, label = (Path(*PureWindowsPath(p).parts) for p in parts)
        pairs.append((image, label))
    return pairs


def _read_json(folder: str | Path, name: str) -> dict:
    path = Path(folder) / name
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise InputError(f"cannot read {name} ({exc.strerror})", path=path,
                         hint="Give a chip folder exported by geospade or ArcGIS Pro.") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{name} is not valid JSON ({exc})", path=path,
                         hint="Re-export the chips.") from None
    if not isinstance(data, dict):
        raise InputError(f"{name} holds a {type(data).__name__}, not a JSON object", path=path)
    return data


def read_accumulated_stats(folder: str | Path) -> dict:
    """The parsed ``esri_accumulated_stats.json`` of a chip folder."""
    return _read_json(folder, ACCUMULATED_STATS)


def read_emd(folder: str | Path) -> dict:
    """The parsed ``esri_model_definition.emd`` of a chip folder (or an .emd file path)."""
    folder = Path(folder)
    if folder.is_file():
        return _read_json(folder.parent, folder.name)
    return _read_json(folder, MODEL_DEFINITION)


def classes_from_esri(metadata: Mapping, *, nodata: int | None = 0,
                      name: str = "arcgis") -> ClassScheme:
    """A ClassScheme from the ``Classes`` of an .emd or accumulated-stats mapping.

    Accepts ``Value``/``Name`` and ``ClassValue``/``ClassName``. Pro exports have no nodata
    class; ``nodata`` (default 0, the value Pro leaves outside classes) is kept unless it is
    itself a class value, in which case the scheme has no nodata.
    """
    entries = metadata.get("Classes")
    if not entries:
        raise ClassSchemeError("the Esri metadata lists no Classes",
                               hint="Give a Classified_Tiles export or pass --classes.")
    classes = []
    for entry in entries:
        value = entry.get("Value", entry.get("ClassValue"))
        label = entry.get("Name", entry.get("ClassName"))
        if value is None:
            raise ClassSchemeError(f"Esri class entry without a value: {dict(entry)}")
        color = entry.get("Color") or default_color(int(value))
        try:
            rgb = as_color(list(color))
        except ValueError:
            raise ClassSchemeError(f"Esri class entry whose Color is not three numbers "
                                   f"(red, green, blue): {dict(entry)}") from None
        classes.append(LandCoverClass(int(value), str(label or f"class_{value}"), rgb))
    values = {c.value for c in classes}
    return ClassScheme(tuple(classes), None if nodata in values else nodata, name)
