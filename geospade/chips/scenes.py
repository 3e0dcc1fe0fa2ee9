"""Scenes of a multi-scene export: which land cover goes with which imagery files.

A *scene* is one land-cover raster and the imagery files that overlap its footprint. Inputs
may be files, glob patterns or folders; each land cover is paired with every imagery file
whose bounds, reprojected to the land cover's CRS, overlap its own. Several imagery files
covering one land cover are read as one mosaic, a VRT written on the fly
(:func:`mosaic_vrt`).
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import shapely
from rasterio.crs import CRS
from rasterio.warp import transform as warp_points

from geospade.errors import InputError
from geospade.raster import open_raster, require_crs

log = logging.getLogger(__name__)

#: Files taken from a folder given as input (VRTs included: a VRT is a raster like any other).
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".img", ".jp2")
# GDAL's names of numpy data types, for the mosaic VRT.
_GDAL_TYPES = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16",
               "uint32": "UInt32", "int32": "Int32", "float32": "Float32",
               "float64": "Float64"}


@dataclass(frozen=True)
class Scene:
    """One land cover and the imagery files that cover it (one file, or a mosaic of several).

    Attributes:
        landcover: the land-cover raster; its grid is the chips' grid.
        imagery: the imagery files overlapping it, in input order.
        name: how messages, chips.gpkg and ``--val-scenes`` name the scene: the land cover's
            file name without suffix, with as many parent folders as make it unique.
    """

    landcover: Path
    imagery: tuple[Path, ...]
    name: str = ""


def expand_inputs(items: str | Path | Sequence[str | Path], what: str) -> list[Path]:
    """Raster paths from files, glob patterns and folders, in order, each once.

    Raises:
        InputError: an item that is neither an existing file, a folder holding rasters, nor a
            pattern matching any file.
    """
    if isinstance(items, (str, Path)):
        items = [items]
    paths: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir()
                           if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES)
            if not found:
                raise InputError(f"{what} folder holds no rasters ({', '.join(RASTER_SUFFIXES)})",
                                 path=path, hint=f"Give {what} files, a pattern or a folder of "
                                 "rasters.")
        elif path.exists():
            found = [path]
        elif glob.has_magic(str(item)):
            found = sorted(Path(p) for p in glob.glob(str(item), recursive=True)
                           if Path(p).is_file())
            if not found:
                raise InputError(f"no {what} file matches the pattern", path=path,
                                 hint="Check the pattern (quote it so the shell leaves it).")
        else:
            raise InputError(f"{what} not found", path=path, hint="Check the path.")
        paths += found
    unique = list(dict.fromkeys(p.resolve() for p in paths))
    if not unique:
        raise InputError(f"no {what} given", hint=f"Give at least one {what} raster.")
    return unique


@dataclass(frozen=True)
class _Footprint:
    """A raster's path, CRS and bounds (in that CRS), read once."""

    path: Path
    crs: CRS
    bounds: tuple[float, float, float, float]


def _footprint(path: Path, what: str) -> _Footprint:
    with open_raster(path, what) as ds:
        require_crs(ds, what)
        return _Footprint(path, ds.crs, tuple(ds.bounds))


def pair_scenes(landcovers: Sequence[Path], imagery: Sequence[Path], *,
                skip_unpaired: bool = False) -> tuple[list[Scene], list[Path]]:
    """Pair every land cover with the imagery files overlapping it.

    Overlap is tested in the land cover's CRS, on the imagery's reprojected outline;
    touching edges do not count. When one imagery file covers the whole land cover, that
    file alone is used (if several do: one in the land cover's CRS, then one named like the
    land cover, e.g. in the same folder or ending in the same tile number, then the first
    given). Otherwise the overlapping files are mosaicked: those of one CRS, the CRS whose
    files cover most of the land cover.

    Returns the scenes and the land covers left without imagery.

    Raises:
        InputError: a land cover without overlapping imagery (unless ``skip_unpaired``), or no
            scene at all.
    """
    images = _ImageryIndex([_footprint(p, "imagery") for p in imagery])
    scenes, unpaired = [], []
    for path in landcovers:
        lc = _footprint(path, "land cover")
        found = _choose_imagery(lc, images)
        if found:
            scenes.append(Scene(path, found))
            continue
        if not skip_unpaired:
            raise InputError(
                f"no imagery for this land cover: the {len(images)} imagery file(s) given "
                f"do not overlap its bounds {_rounded(lc.bounds)}", path=path,
                hint="Add imagery of this area to --imagery, or pass --skip-unpaired to "
                     "export the other land covers without it.")
        log.warning("%s: no imagery overlaps it; skipped (--skip-unpaired)", path)
        unpaired.append(path)
    if not scenes:
        raise InputError(f"none of the {len(landcovers)} land covers overlaps any imagery",
                         path=landcovers[0], hint="Give imagery of the same area.")
    names = unique_names([s.landcover for s in scenes])
    return [Scene(s.landcover, s.imagery, n) for s, n in zip(scenes, names, strict=True)], unpaired


def unique_names(paths: Sequence[Path]) -> list[str]:
    """Short distinct names for files: the stem, with parent folders where stems repeat
    (``a/landcover.tif``, ``b/landcover.tif`` -> ``a/landcover``, ``b/landcover``)."""
    parts = [p.with_suffix("").parts for p in paths]
    depth = 1
    while True:
        names = ["/".join(q[-depth:]) for q in parts]
        if len(set(names)) == len(names) or depth >= max(len(q) for q in parts):
            return names
        depth += 1


class _ImageryIndex:
    """The imagery outlines in each land-cover CRS met, with a spatial index over them:
    pairing thousands of patches must not test every land cover against every image."""

    def __init__(self, images: Sequence[_Footprint]):
        self.images = list(images)
        self._by_crs: dict[str, tuple[list, shapely.STRtree]] = {}

    def __len__(self) -> int:
        return len(self.images)

    def near(self, box: shapely.Geometry, crs) -> list[tuple[int, _Footprint, shapely.Geometry]]:
        """(input order, footprint, outline in ``crs``) of the images whose outline meets
        ``box``, in input order."""
        key = crs.to_wkt()
        if key not in self._by_crs:
            outlines = [_outline_in(im, crs) for im in self.images]
            tree = shapely.STRtree([o if o is not None else shapely.Point() for o in outlines])
            self._by_crs[key] = (outlines, tree)
        outlines, tree = self._by_crs[key]
        hits = sorted(int(i) for i in tree.query(box))
        return [(i, self.images[i], outlines[i]) for i in hits if outlines[i] is not None]


def _choose_imagery(lc: _Footprint, images: _ImageryIndex) -> tuple[Path, ...]:
    """The imagery files a land cover is read with (see :func:`pair_scenes`); () if none."""
    box = shapely.box(*lc.bounds)
    overlapping = []
    for order, im, outline in images.near(box, lc.crs):
        area = shapely.intersection(outline, box).area
        if area > 1e-9 * box.area:
            overlapping.append((order, im, outline, area))
    if not overlapping:
        return ()
    whole = [c for c in overlapping if c[3] >= (1 - 1e-6) * box.area]
    if whole:
        best = max(whole, key=lambda c: (c[1].crs == lc.crs, _affinity(lc.path, c[1].path),
                                         -c[0]))
        return (best[1].path,)
    groups: dict[str, list] = {}
    for c in overlapping:
        groups.setdefault(c[1].crs.to_wkt(), []).append(c)

    def coverage(group: list) -> tuple:
        covered = shapely.intersection(shapely.union_all([c[2] for c in group]), box).area
        return (round(covered / box.area, 6), group[0][1].crs == lc.crs, -group[0][0])

    chosen = max(groups.values(), key=coverage)
    if len(groups) > 1:
        left_out = [c[1].path.name for g in groups.values() if g is not chosen for c in g]
        log.info("%s: imagery in another CRS left out of its mosaic: %s", lc.path,
                 ", ".join(left_out))
    return tuple(c[1].path for c in chosen)


def _outline_in(im: _Footprint, crs) -> shapely.Geometry | None:
    """The imagery's extent as a polygon in ``crs`` (edges densified); None if unmappable."""
    box = shapely.box(*im.bounds)
    if im.crs == crs:
        return box
    ring = shapely.segmentize(box, max(im.bounds[2] - im.bounds[0],
                                       im.bounds[3] - im.bounds[1]) / 32)
    xs, ys = np.asarray(ring.exterior.coords).T
    try:
        xs, ys = warp_points(im.crs, crs, xs, ys)
    except Exception:  # no transformation between the CRSs
        return None
    if not (np.all(np.isfinite(xs)) and np.all(np.isfinite(ys))):
        return None
    return shapely.make_valid(shapely.Polygon(np.column_stack([xs, ys])))


def _affinity(landcover: Path, imagery: Path) -> tuple[bool, int]:
    """How alike two file names are: same folder, then the length of their common ending
    (``landcover_066278`` and ``imagery_066278`` share ``_066278``)."""
    a, b = landcover.stem, imagery.stem
    common = 0
    while common < min(len(a), len(b)) and a[-1 - common] == b[-1 - common]:
        common += 1
    return landcover.parent == imagery.parent, common


def _rounded(bounds: Iterable[float]) -> tuple[float, ...]:
    return tuple(round(float(v), 1) for v in bounds)


def check_same_layout(datasets: Sequence, what: str) -> None:
    """InputError when rasters differ in band count or data type (naming two of them)."""
    first = datasets[0]
    for ds in datasets[1:]:
        if ds.count != first.count or ds.dtypes[0] != first.dtypes[0]:
            raise InputError(
                f"{what} has {ds.count} band(s) of {ds.dtypes[0]} but {first.name} has "
                f"{first.count} of {first.dtypes[0]}", path=ds.name,
                hint=f"Give {what} with one band layout (the same bands and data type) for "
                     "every scene.")


def mosaic_vrt(paths: Sequence[Path], target: Path) -> Path:
    """Write a VRT mosaicking ``paths`` (one CRS, band layout) into ``target``.

    The mosaic has the finest resolution of its sources and their union's extent; each
    source keeps its own extent within it (later files over earlier ones where they
    overlap), and the sources' nodata value is the mosaic's.

    Raises:
        InputError: sources in different CRSs, or with different band counts or data types.
    """
    datasets = [open_raster(p, "imagery") for p in paths]
    try:
        for ds in datasets:
            require_crs(ds, "imagery")
            if ds.crs != datasets[0].crs:
                raise InputError(
                    f"imagery files covering one land cover are in different CRSs "
                    f"({ds.crs} here, {datasets[0].crs} in {datasets[0].name})", path=ds.name,
                    hint="Reproject the imagery tiles of an area to one CRS (gdalwarp).")
            if abs(ds.transform.b) > 0 or abs(ds.transform.d) > 0:
                raise InputError("rotated imagery cannot be mosaicked", path=ds.name,
                                 hint="Warp it to a north-up grid first (gdalwarp).")
        check_same_layout(datasets, "imagery")
        target.write_text(_vrt_xml(datasets), encoding="utf-8")
    finally:
        for ds in datasets:
            ds.close()
    return target


def _vrt_xml(datasets: Sequence) -> str:
    first = datasets[0]
    res_x = min(abs(ds.transform.a) for ds in datasets)
    res_y = min(abs(ds.transform.e) for ds in datasets)
    left = min(ds.bounds.left for ds in datasets)
    top = max(ds.bounds.top for ds in datasets)
    right = max(ds.bounds.right for ds in datasets)
    bottom = min(ds.bounds.bottom for ds in datasets)
    width = max(1, round((right - left) / res_x))
    height = max(1, round((top - bottom) / res_y))
    dtype = _GDAL_TYPES.get(first.dtypes[0])
    if dtype is None:
        raise InputError(f"imagery data type {first.dtypes[0]} cannot be mosaicked",
                         path=first.name, hint="Convert the imagery to an integer or float type.")
    lines = [f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">',
             f"  <SRS>{escape(first.crs.to_wkt())}</SRS>",
             f"  <GeoTransform>{left!r}, {res_x!r}, 0.0, {top!r}, 0.0, {-res_y!r}"
             "</GeoTransform>"]
    nodata = first.nodata
    for band in range(1, first.count + 1):
        lines.append(f'  <VRTRasterBand dataType="{dtype}" band="{band}">')
        if nodata is not None:
            lines.append(f"    <NoDataValue>{nodata!r}</NoDataValue>")
        interp = first.colorinterp[band - 1].name
        lines.append(f"    <ColorInterp>{interp.capitalize()}</ColorInterp>")
        description = first.descriptions[band - 1]
        if description:
            lines.append(f"    <Description>{escape(description)}</Description>")
        for ds in datasets:
            lines += _source_xml(ds, band, left, top, res_x, res_y, nodata)
        lines.append("  </VRTRasterBand>")
    lines.append("</VRTDataset>")
    return "\n".join(lines) + "\n"


def _source_xml(ds, band: int, left: float, top: float, res_x: float, res_y: float,
                nodata) -> list[str]:
    x_off = (ds.bounds.left - left) / res_x
    y_off = (top - ds.bounds.top) / res_y
    x_size = ds.width * abs(ds.transform.a) / res_x
    y_size = ds.height * abs(ds.transform.e) / res_y
    kind = "ComplexSource" if nodata is not None else "SimpleSource"
    out = [f"    <{kind}>",
           f'      <SourceFilename relativeToVRT="0">{escape(str(Path(ds.name).resolve()))}'
           "</SourceFilename>",
           f"      <SourceBand>{band}</SourceBand>",
           f'      <SrcRect xOff="0" yOff="0" xSize="{ds.width}" ySize="{ds.height}"/>',
           f'      <DstRect xOff="{x_off!r}" yOff="{y_off!r}" xSize="{x_size!r}" '
           f'ySize="{y_size!r}"/>']
    if nodata is not None:
        out.append(f"      <NODATA>{nodata!r}</NODATA>")
    out.append(f"    </{kind}>")
    return out


def imagery_source(scene: Scene, work_dir: Path, number: int) -> Path:
    """The path to read a scene's imagery from: its one file, or a mosaic VRT of its files."""
    if len(scene.imagery) == 1:
        return scene.imagery[0]
    return mosaic_vrt(scene.imagery, work_dir / f"mosaic_{number:05d}.vrt")

