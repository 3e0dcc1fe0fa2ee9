"""Class schemes: raster value <-> model index <-> name <-> colour, and nodata.

One :class:`ClassScheme` travels from chip export (metadata files) through the dataset and the
model (one-hot channels) to synthesis (mapping an input land cover onto model indices).
Model index ``i`` is the i-th class in ``scheme.classes``; nodata and "don't care" pixels get
``scheme.ignore_index`` (== number of classes), the extra one-hot channel.
"""

from __future__ import annotations

import collections
import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from geospade.errors import ClassSchemeError, InputError

Color = tuple[int, int, int]


@dataclass(frozen=True)
class LandCoverClass:
    """One class: the value stored in the raster, its name and its display colour."""

    value: int
    name: str
    color: Color


@dataclass(frozen=True)
class ClassScheme:
    """An ordered set of land-cover classes plus the raster's nodata value.

    Args:
        classes: the classes, in model-index order.
        nodata: raster value meaning "no data" (not a class), or None.
        name: short name of the scheme (e.g. ``chesapeake-7``), for messages and metadata.
    """

    classes: tuple[LandCoverClass, ...]
    nodata: int | None = None
    name: str = "custom"
    _lut_cache: dict = field(default_factory=dict, compare=False, repr=False, hash=False)

    def __post_init__(self) -> None:
        values = [c.value for c in self.classes]
        if not values:
            raise ClassSchemeError(f"class scheme '{self.name}' has no classes")
        if len(set(values)) != len(values):
            raise ClassSchemeError(f"class scheme '{self.name}' repeats values: {values}")
        if self.nodata is not None and self.nodata in values:
            raise ClassSchemeError(
                f"class scheme '{self.name}': nodata value {self.nodata} is also a class value",
                hint="Give the nodata value a value of its own, or remove that class.",
            )
        if min(values) < 0:
            raise ClassSchemeError(f"class scheme '{self.name}': negative class values {values}")

    # -- views --------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        """Number of real classes (one-hot channels without the don't-care channel)."""
        return len(self.classes)

    @property
    def ignore_index(self) -> int:
        """Model index of nodata / don't-care pixels: one past the last class."""
        return len(self.classes)

    @property
    def values(self) -> list[int]:
        return [c.value for c in self.classes]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def colors(self) -> list[Color]:
        return [c.color for c in self.classes]

    def colormap(self) -> dict[int, tuple[int, int, int, int]]:
        """A GDAL colour table (value -> RGBA) for writing label rasters."""
        cmap = {c.value: (*c.color, 255) for c in self.classes}
        if self.nodata is not None and 0 <= self.nodata <= 255:
            cmap[self.nodata] = (0, 0, 0, 0)
        return cmap

    def palette(self) -> np.ndarray:
        """RGB colours by model index, shape (num_classes + 1, 3); don't-care is black."""
        return np.array([*self.colors, (0, 0, 0)], dtype=np.uint8)

    # -- mapping raster values to model indices ------------------------------------------
    def lookup_table(self, map_unknown: int | None = None) -> np.ndarray:
        """Array ``lut`` with ``lut[value] = model index`` for every value 0..max.

        Unknown values map to -1 unless ``map_unknown`` (a class value) is given.
        """
        key = map_unknown
        if key not in self._lut_cache:
            size = max([*self.values, self.nodata or 0, 255]) + 1
            lut = np.full(size, -1, dtype=np.int64)
            if map_unknown is not None:
                lut[:] = self.index_of(map_unknown)
            for i, value in enumerate(self.values):
                lut[value] = i
            if self.nodata is not None and self.nodata >= 0:
                lut[self.nodata] = self.ignore_index
            self._lut_cache[key] = lut
        return self._lut_cache[key]

    def index_of(self, value: int) -> int:
        """Model index of a class value; ClassSchemeError when it is not a class."""
        try:
            return self.values.index(int(value))
        except ValueError:
            raise ClassSchemeError(
                f"value {value} is not a class of scheme '{self.name}' (classes: {self.values})"
            ) from None

    def encode(
        self,
        labels: np.ndarray,
        *,
        valid: np.ndarray | None = None,
        map_unknown: int | None = None,
        source: str | Path | None = None,
    ) -> np.ndarray:
        """Map raster values to model indices (int64); nodata -> ``ignore_index``.

        Args:
            labels: integer array of raster values.
            valid: optional boolean mask; False pixels become ``ignore_index``.
            map_unknown: class value to use for values outside the scheme; by default
                such values raise :class:`ClassSchemeError` naming them.
            source: file the labels came from, for the error message.
        """
        if not np.issubdtype(labels.dtype, np.integer):
            raise ClassSchemeError(
                f"land cover has dtype {labels.dtype}; class values must be integers",
                path=source,
                hint="Use a classified (integer) raster, not a continuous one.",
            )
        lut = self.lookup_table(map_unknown)
        arr = labels.astype(np.int64, copy=False)
        out_of_range = (arr < 0) | (arr >= lut.size)
        safe = np.where(out_of_range, 0, arr)
        indices = lut[safe]
        indices[out_of_range] = -1 if map_unknown is None else self.index_of(map_unknown)
        if self.nodata is not None and self.nodata < 0:  # e.g. int16 land cover with nodata -1
            indices[arr == self.nodata] = self.ignore_index
        if valid is not None:
            indices[~valid] = self.ignore_index
        unknown = indices < 0
        if unknown.any():
            raise self.unknown_values_error(np.unique(arr[unknown]), source)
        return indices

    def unknown_values_error(self, values: Iterable[int], source=None,
                             hint: str | None = None) -> ClassSchemeError:
        """The error for raster values that are not in this scheme (``hint``: what to do, for
        a caller whose options differ from export and training's)."""
        found = sorted(int(v) for v in values)
        return ClassSchemeError(
            f"values {found} are not classes of scheme '{self.name}' "
            f"(classes {self.values}, nodata {self.nodata})",
            path=source,
            hint=hint or "Pass a class scheme that includes them (--classes scheme.json), "
            "or map them to a known class with --map-unknown VALUE.",
        )

    def check_values(self, values: Iterable[int], source=None, hint: str | None = None) -> None:
        """Raise ClassSchemeError naming every value that is neither a class nor nodata."""
        known = set(self.values) | ({self.nodata} if self.nodata is not None else set())
        unknown = [v for v in values if int(v) not in known]
        if unknown:
            raise self.unknown_values_error(unknown, source, hint)

    # -- (de)serialisation -----------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "nodata": self.nodata,
            "classes": [
                {"value": c.value, "name": c.name, "color": list(c.color)} for c in self.classes
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping, source: str | Path | None = None) -> ClassScheme:
        """Build a scheme from :meth:`to_dict` output (also accepts Esri's key spellings)."""
        try:
            classes = tuple(_class_from_mapping(c) for c in data["classes"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ClassSchemeError(
                f"not a class scheme ({exc!r})",
                path=source,
                hint='Expected {"classes": [{"value": 1, "name": "Water", "color": [0, 197, 255]}, ...], "nodata": 0}.',
            ) from None
        return cls(classes, data.get("nodata"), str(data.get("name", "custom")))

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_json(cls, path: str | Path) -> ClassScheme:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ClassSchemeError(
                f"cannot read class scheme ({exc})", path=path, hint="Give a readable JSON file."
            ) from None
        return cls.from_dict(data, source=path)

    def with_nodata(self, nodata: int | None) -> ClassScheme:
        """The same classes with another nodata value."""
        return ClassScheme(self.classes, nodata, self.name)

    def subset(self, values: Sequence[int]) -> ClassScheme:
        """Only the classes whose values are given, in this scheme's order."""
        keep = set(int(v) for v in values)
        return ClassScheme(tuple(c for c in self.classes if c.value in keep), self.nodata, self.name)


def _class_from_mapping(item: Mapping) -> LandCoverClass:
    value = item.get("value", item.get("Value", item.get("ClassValue")))
    name = item.get("name", item.get("Name", item.get("ClassName")))
    if value is None:
        raise ValueError(f"class without a value: {dict(item)}")
    color = item.get("color") or item.get("Color") or default_color(int(value))
    return LandCoverClass(int(value), str(name if name is not None else f"class_{value}"),
                          as_color(color))


def _scheme(name: str, nodata: int, rows: Sequence[tuple[int, str, Color]]) -> ClassScheme:
    return ClassScheme(tuple(LandCoverClass(v, n, c) for v, n, c in rows), nodata, name)


CHESAPEAKE_7 = _scheme(
    "chesapeake-7",
    15,
    [
        (1, "Water", (0, 197, 255)),
        (2, "Tree Canopy and Shrubs", (38, 115, 0)),
        (3, "Low Vegetation", (163, 255, 115)),
        (4, "Barren", (255, 170, 0)),
        (5, "Impervious Surfaces", (156, 156, 156)),
        (6, "Impervious Roads", (0, 0, 0)),
        (7, "Aberdeen Proving Ground", (197, 0, 255)),
    ],
)

CHESAPEAKE_13 = _scheme(
    "chesapeake-13",
    0,
    [
        (1, "Water", (0, 197, 255)),
        (2, "Emergent Wetlands", (0, 168, 132)),
        (3, "Tree Canopy", (38, 115, 0)),
        (4, "Scrub/Shrub", (76, 230, 0)),
        (5, "Low Vegetation", (163, 255, 115)),
        (6, "Barren", (255, 170, 0)),
        (7, "Impervious Structures", (255, 0, 0)),
        (8, "Other Impervious", (156, 156, 156)),
        (9, "Impervious Roads", (0, 0, 0)),
        (10, "Tree Canopy over Structures", (115, 115, 0)),
        (11, "Tree Canopy over Other Impervious", (230, 230, 0)),
        (12, "Tree Canopy over Roads", (255, 255, 115)),
        (13, "Aberdeen Proving Ground", (197, 0, 255)),
    ],
)

PRESETS: dict[str, ClassScheme] = {s.name: s for s in (CHESAPEAKE_7, CHESAPEAKE_13)}


def preset(name: str) -> ClassScheme:
    """A built-in scheme by name (``chesapeake-7`` or ``chesapeake-13``)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ClassSchemeError(
            f"unknown class scheme '{name}'",
            hint=f"Use one of {sorted(PRESETS)} or a path to a scheme JSON file.",
        ) from None


# -- schemes read from a raster ---------------------------------------------------------------


def value_counts(data: np.ndarray, valid: np.ndarray | None = None) -> dict[int, int]:
    """Pixel count per value of a label array, the ``valid`` pixels only (default: all).

    A masked array's masked pixels are not counted either. Small unsigned types (the usual
    label rasters) are counted with ``bincount``, which is several times faster than sorting.
    """
    if np.ma.isMaskedArray(data):
        unmasked = ~np.ma.getmaskarray(data)
        valid = unmasked if valid is None else valid & unmasked
        data = np.ma.getdata(data)
    values = data.ravel() if valid is None or valid.all() else data[valid]
    if values.size == 0:
        return {}
    if values.dtype.kind == "u" and values.dtype.itemsize <= 2:
        counts = np.bincount(values)
        present = np.flatnonzero(counts)
        return dict(zip(present.tolist(), counts[present].tolist(), strict=True))
    uniq, n = np.unique(values, return_counts=True)
    return dict(zip(uniq.tolist(), n.tolist(), strict=True))


def raster_values(dataset, band: int = 1) -> dict[int, int]:
    """Pixel count per value of an integer band, read block by block (bounded memory).

    Masked pixels (nodata) are not counted.
    """
    counts: collections.Counter = collections.Counter()
    for _, window in dataset.block_windows(band):
        counts.update(value_counts(dataset.read(band, window=window, masked=True)))
    return dict(counts)


def read_attribute_table(path: str | Path) -> dict[int, str]:
    """Class names from a GDAL raster attribute table in ``<raster>.aux.xml`` (as ArcGIS writes).

    Returns {} when there is none. Fields named Value and one of ClassName/Class_Name/Name/
    Class are used.
    """
    aux = Path(f"{path}.aux.xml")
    if not aux.exists():
        return {}
    try:
        root = ET.parse(aux).getroot()
    except ET.ParseError:
        return {}
    table = root.find(".//GDALRasterAttributeTable")
    if table is None:
        return {}
    fields = [(f.findtext("Name") or "").lower() for f in table.findall("FieldDefn")]
    value_col = _find_field(fields, ("value",))
    name_col = _find_field(fields, ("classname", "class_name", "name", "class", "classvalue_name"))
    if value_col is None or name_col is None:
        return {}
    names = {}
    for row in table.findall("Row"):
        cells = [f.text or "" for f in row.findall("F")]
        try:
            names[int(float(cells[value_col]))] = cells[name_col]
        except (ValueError, IndexError):
            continue
    return names


def _find_field(fields: list[str], wanted: tuple[str, ...]) -> int | None:
    for w in wanted:
        if w in fields:
            return fields.index(w)
    return None


def scheme_from_raster(dataset, *, counts: Mapping[int, int] | None = None) -> ClassScheme:
    """Infer a scheme from a land-cover raster: its colour table, attribute table and values.

    Classes are the values present in the raster (``counts``, computed if not given). If the
    colour table matches a built-in scheme on those values, that scheme (names included) is
    used; otherwise names come from the attribute table, or ``class_<value>``.
    """
    if counts is None:
        counts = raster_values(dataset)
    nodata = None if dataset.nodata is None else int(dataset.nodata)
    present = sorted(v for v in counts if v != nodata)
    negative = [v for v in present if v < 0]
    if negative:
        raise ClassSchemeError(
            f"the land cover holds negative values {negative[:5]}; class values are 0 or more "
            "(only the nodata value may be negative)",
            path=dataset.name,
            hint=f"If {negative[0]} marks missing data, set it as the raster's nodata "
                 f"(gdal_edit.py -a_nodata {negative[0]} FILE); else reclassify to values >= 0.",
        )
    if not present:
        raise ClassSchemeError(
            "the land cover holds no valid pixels (all nodata)",
            path=dataset.name,
            hint="Check the raster's nodata value.",
        )
    try:
        cmap = dataset.colormap(1)
    except ValueError:
        cmap = {}
    for candidate in PRESETS.values():
        if set(present) <= set(candidate.values) and all(
            tuple(cmap.get(v, (-1, -1, -1))[:3]) == candidate.colors[candidate.index_of(v)]
            for v in present
        ):
            return candidate.with_nodata(nodata)
    names = read_attribute_table(dataset.name)
    rows = []
    for v in present:
        color = tuple(cmap[v][:3]) if v in cmap else default_color(v)
        rows.append(LandCoverClass(v, names.get(v, f"class_{v}"), color))
    return ClassScheme(tuple(rows), nodata, Path(dataset.name).stem)


def default_color(value: int) -> Color:
    """The colour of a class that has none (no colour table, JSON or Esri entry gives one).

    The same value always gets the same colour, and neighbouring values get distinct hues:
    the hue steps by the golden ratio of a turn from one value to the next.
    """
    hue = (value * 0.618033988749895) % 1.0
    return as_color([255 * (0.5 + 0.5 * math.cos(2 * math.pi * (hue + k / 3))) for k in range(3)])


def as_color(components: Sequence) -> Color:
    """The first three components (red, green, blue) of a colour, as ints.

    Raises ValueError when fewer than three are given.
    """
    red, green, blue = (int(c) for c in components[:3])
    return red, green, blue


def resolve_scheme(spec: str | Path | ClassScheme | None, dataset=None, **kwargs) -> ClassScheme:
    """The scheme named by a CLI ``--classes`` value, or inferred from ``dataset``.

    ``spec`` may be a :class:`ClassScheme`, a preset name, a JSON path, or None (infer).
    When a dataset is given, its nodata value overrides the preset's.
    """
    if isinstance(spec, ClassScheme):
        return spec
    if spec is None:
        if dataset is None:
            raise InputError("no class scheme given and no raster to infer it from")
        return scheme_from_raster(dataset, **kwargs)
    spec = str(spec)
    if spec in PRESETS:
        scheme = PRESETS[spec]
    elif re.search(r"\.json$", spec, re.IGNORECASE) or Path(spec).exists():
        if not Path(spec).exists():
            raise ClassSchemeError(
                "class scheme file not found", path=spec, hint="Check the --classes path."
            )
        scheme = ClassScheme.from_json(spec)
    else:
        scheme = preset(spec)
    if dataset is not None and dataset.nodata is not None:
        scheme = scheme.with_nodata(int(dataset.nodata))
    return scheme
