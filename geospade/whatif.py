"""What-if imagery: synthesise only what a plan changes and blend it into the real imagery.

A plan (polygons carrying new classes, or an edited copy of the land cover) changes some
pixels of the land cover. :func:`what_if` finds the change regions, synthesises each one's
window (plus the generator's context) with :func:`~geospade.synthesis.synthesize_array`,
matches the synthetic radiometry to the real imagery in a ring of unchanged land cover around
the change, and writes the real imagery back with the change pasted in: synthetic inside,
a cosine-feathered transition band outside it, and the real pixels, bit for bit, everywhere
else. Cost and memory follow the size of the change, not the size of the raster.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import Resampling
from rasterio.features import rasterize
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window
from rasterio.windows import bounds as window_bounds
from rasterio.windows import from_bounds as window_from_bounds
from rasterio.windows import transform as window_transform

from geospade.classes import ClassScheme
from geospade.errors import ClassSchemeError, InputError
from geospade.progress import ProgressArg, progress_bar
from geospade.raster import (
    atomic_file,
    check_landcover,
    check_not_input,
    check_output,
    geotiff_profile,
    open_raster,
    require_crs,
    same_grid,
)
from geospade.synthesis.model import LoadedModel
from geospade.synthesis.plan import DEFAULT_TILE_SIZE
from geospade.synthesis.seams import SeamStats
from geospade.synthesis.synthesize import load_model, synthesize_array

log = logging.getLogger(__name__)

DEFAULT_BLEND_METRES = 8.0
MIN_RING = 16          # pixels of unchanged land cover (beyond the band) used for matching
MIN_MATCH_PIXELS = 64  # fewer valid ring pixels than this: no radiometric matching
MIN_FIT_CLASSES = 3    # classes in the ring needed to fit a gain as well as an offset
GAIN_LIMITS = (0.8, 1.25)  # beyond: a fit extrapolating from few classes, not a sensor shift
SCAN_BLOCK = 512       # block side when scanning an edited land cover for changes
PREVIEW_SIZE = 768     # longest side of one preview panel
PREVIEW_MIN_VIEW = 256  # the preview shows at least this many pixels around the change
LOSSY = {"jpeg", "webp", "jxl", "lerc", "lerc_deflate", "lerc_zstd"}
OUTLINE = (255, 0, 255)


@dataclass
class WhatIfResult:
    """What :func:`what_if` wrote.

    Attributes:
        path: the output imagery (the real imagery with the change synthesised in).
        landcover: the edited land cover on the output's grid (``OUT.landcover.tif``).
        preview: the PNG before | after | outlined change, if written.
        regions: pixel windows that were synthesised (each change plus its context).
        changed_pixels: land-cover pixels the plan changes.
        synthesized_pixels: pixels generated (the regions' total area).
        blend_pixels: width of the transition band in pixels.
        gains, offsets: per region, the per-band radiometric match applied to the synthetic.
        seam: adjacent-pixel differences across the outer edge of the transition band
            (seam pairs) and between real pixels near the change (baseline).
        seconds: wall time.
        changed_masks: per region, its window and a bool mask of the changed pixels.
    """

    path: Path
    landcover: Path
    preview: Path | None = None
    regions: list[Window] = field(default_factory=list)
    changed_pixels: int = 0
    synthesized_pixels: int = 0
    blend_pixels: int = 0
    gains: list[np.ndarray] = field(default_factory=list)
    offsets: list[np.ndarray] = field(default_factory=list)
    seam: SeamStats = field(default_factory=SeamStats)
    seconds: float = 0.0
    changed_masks: list[tuple[Window, np.ndarray]] = field(default_factory=list, repr=False)

    @property
    def extent(self) -> Window:
        """The bounding window of every region synthesised."""
        window = self.regions[0]
        for other in self.regions[1:]:
            window = _union(window, other)
        return window

    @property
    def seam_score(self) -> float:
        """Mean |difference| across the band's outer edge over the same between real pixels
        around the change (1.0 = the edge cannot be told from the real imagery)."""
        return self.seam.score

    def summary(self) -> str:
        """What was written, in the lines the CLI and the ArcGIS tool report."""
        return (f"wrote {self.path} and {self.landcover}: {self.changed_pixels} changed "
                f"pixels in {len(self.regions)} region(s), {self.synthesized_pixels} pixels "
                f"synthesised, blend {self.blend_pixels} px, {self.seconds:.1f} s\n"
                f"seam score at the blend's edge: {self.seam_score:.3f} "
                "(1.0 = as smooth as the real imagery around it)")


def landcover_output_path(out: str | Path) -> Path:
    """Where the edited land cover goes: ``OUT.landcover.tif`` beside ``OUT.tif``."""
    out = Path(out)
    return out.with_name(out.stem + ".landcover.tif")


def preview_output_path(out: str | Path) -> Path:
    """The default preview path: ``OUT.preview.png`` beside ``OUT.tif``."""
    out = Path(out)
    return out.with_name(out.stem + ".preview.png")


# -- the plan: polygons or an edited land cover ------------------------------------------------


def split_layer(spec: str | Path) -> tuple[Path, str | None]:
    """``plan.gpkg:roads`` -> (plan.gpkg, "roads"); a bare path (or C:\\...) has no layer."""
    text = str(spec)
    if Path(text).exists() or ":" not in text:
        return Path(text), None
    path, layer = text.rsplit(":", 1)
    if not path or "\\" in layer or "/" in layer:  # a drive letter, not a layer
        return Path(text), None
    return Path(path), layer or None


def class_value_lookup(scheme: ClassScheme) -> dict[str, int]:
    """Lower-case class names and value strings -> class values."""
    lookup = {c.name.lower(): c.value for c in scheme.classes}
    lookup.update({str(c.value): c.value for c in scheme.classes})
    return lookup


def class_values(raw: Sequence, scheme: ClassScheme, field_name: str, source) -> list[int]:
    """The class value of each polygon's field value (a class value or a class name)."""
    lookup = class_value_lookup(scheme)
    values: list[int] = []
    unknown = []
    for item in raw:
        key = _field_key(item)
        value = lookup.get(key) if key is not None else None
        if value is None:
            unknown.append(item)
        else:
            values.append(value)
    if unknown:
        shown = sorted({str(u) for u in unknown})[:10]
        classes = ", ".join(f"{c.value} '{c.name}'" for c in scheme.classes)
        raise ClassSchemeError(
            f"field '{field_name}' holds {shown}, which are not classes of the model's scheme "
            f"'{scheme.name}'", path=source,
            hint=f"Use class values or names of the model: {classes}.")
    return values


def _field_key(item) -> str | None:
    """A field value as a lookup key: 3, 3.0 and "3" are all "3"; names are lower-cased."""
    if item is None or (isinstance(item, float) and math.isnan(item)):
        return None
    if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
        return str(int(item))
    if isinstance(item, (float, np.floating)):
        return str(int(item)) if float(item).is_integer() else str(item)
    return str(item).strip().lower()


def read_changes(spec: str | Path, class_field: str | None, scheme: ClassScheme, crs,
                 bounds) -> tuple[list, list[int]]:
    """Read the plan's polygons, reprojected to ``crs``, and their new class values.

    Args:
        spec: a vector file geopandas reads, ``path:layer`` for one layer.
        class_field: the field holding each polygon's new class (value or name).
        scheme: the model's class scheme.
        crs: the imagery's CRS, which the polygons are reprojected to.
        bounds: the imagery's bounds in ``crs``, to reject plans entirely outside it.

    Returns:
        (geometries, class values) in the imagery's CRS, in file order (later polygons win
        where they overlap).
    """
    import geopandas

    path, layer = split_layer(spec)
    if not path.exists():
        raise InputError("changes file not found", path=path, hint="Check the --changes path.")
    try:
        frame = geopandas.read_file(path, layer=layer) if layer else geopandas.read_file(path)
    except Exception as exc:  # fiona/pyogrio raise many types for unreadable files
        raise InputError(f"cannot read the changes ({exc})", path=spec,
                         hint="Give polygons in a format geopandas reads (GeoPackage, "
                              "shapefile, GeoJSON), with :layer for one layer.") from None
    if class_field is None:
        raise InputError("no --class-field given for the changes", path=spec,
                         hint=f"Name the field holding each polygon's new class (fields: "
                              f"{[c for c in frame.columns if c != 'geometry']}).")
    if class_field not in frame.columns:
        raise InputError(f"the changes have no field '{class_field}'", path=spec,
                         hint=f"Use one of {[c for c in frame.columns if c != 'geometry']}.")
    if frame.crs is None:
        raise InputError("the change polygons have no coordinate reference system", path=spec,
                         hint="Save them with a CRS (e.g. define the projection in GIS), so "
                              "they can be placed on the imagery.")
    frame = frame[frame.geometry.notna() & ~frame.geometry.is_empty]
    kinds = set(frame.geometry.geom_type)
    if not kinds <= {"Polygon", "MultiPolygon"}:
        raise InputError(f"the changes hold {sorted(kinds - {'Polygon', 'MultiPolygon'})} "
                         "geometries; a plan is polygons", path=spec,
                         hint="Buffer lines and points into polygons first.")
    if frame.empty:
        raise InputError("the changes hold no polygons", path=spec,
                         hint="Give a layer with at least one polygon.")
    values = class_values(frame[class_field].tolist(), scheme, class_field, spec)
    frame = frame.to_crs(crs)
    left, bottom, right, top = frame.total_bounds
    if left >= bounds.right or right <= bounds.left or bottom >= bounds.top or top <= bounds.bottom:
        raise InputError(
            f"the changes (bounds {tuple(round(v, 1) for v in (left, bottom, right, top))}) lie "
            f"entirely outside the imagery (bounds {tuple(round(v, 1) for v in bounds)}, in "
            "its CRS)", path=spec, hint="Give changes inside the imagery's area.")
    return list(frame.geometry), values


class PolygonEdits:
    """A plan as polygons burnt into the land cover (in the imagery's CRS and grid)."""

    def __init__(self, geometries: list, values: list[int], source):
        self.geometries, self.values, self.source = geometries, values, str(source)

    def candidates(self, transform, width: int, height: int) -> Iterator[Window]:
        """Pixel windows that may hold changes: each polygon's bounding box."""
        for geom in self.geometries:
            box = window_from_bounds(*geom.bounds, transform=transform)
            c0, r0 = math.floor(box.col_off), math.floor(box.row_off)
            c1 = math.ceil(box.col_off + box.width)
            r1 = math.ceil(box.row_off + box.height)
            window = _clip(Window(c0, r0, c1 - c0, r1 - r0), width, height)
            if window is not None:
                yield _grow(window, 1, width, height)  # pixel centres on the box edge

    def apply(self, window: Window, transform, labels: np.ndarray, valid: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
        """(edited labels, edited validity) over ``window``."""
        box = window_bounds(window, transform)
        shapes = [(g, v) for g, v in zip(self.geometries, self.values, strict=True)
                  if _intersects(g.bounds, box)]
        if not shapes:
            return labels, valid
        burnt = rasterize(shapes, out_shape=labels.shape,
                          transform=window_transform(window, transform), fill=-1, dtype="int32")
        hit = burnt >= 0
        return np.where(hit, burnt, labels).astype(labels.dtype), valid | hit


class RasterEdits:
    """A plan as an edited land cover, read on the imagery's grid (nearest)."""

    def __init__(self, dataset, source):
        self.dataset, self.source = dataset, str(source)

    def candidates(self, original, width: int, height: int,
                   progress: ProgressArg = False) -> Iterator[Window]:
        """Blocks' bounding boxes of changed pixels (a scan of both rasters, block by block)."""
        starts = [(r, c) for r in range(0, height, SCAN_BLOCK) for c in range(0, width, SCAN_BLOCK)]
        for r, c in progress_bar(progress, iterable=starts, desc="find changes", unit="block"):
            window = Window(c, r, min(SCAN_BLOCK, width - c), min(SCAN_BLOCK, height - r))
            labels, valid = _read_labels(original, window)
            edited, edited_valid = self.apply(window, None, labels, valid)
            changed = changed_pixels(labels, valid, edited, edited_valid)
            if changed.any():
                rows, cols = np.nonzero(changed.any(axis=1))[0], np.nonzero(changed.any(axis=0))[0]
                yield Window(c + int(cols[0]), r + int(rows[0]), int(cols[-1] - cols[0] + 1),
                             int(rows[-1] - rows[0] + 1))

    def apply(self, window: Window, transform, labels: np.ndarray, valid: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
        """The edited land cover where it has data, the original elsewhere."""
        edited, edited_valid = _read_labels(self.dataset, window)
        return (np.where(edited_valid, edited, labels).astype(labels.dtype, copy=False),
                valid | edited_valid)


def changed_pixels(labels: np.ndarray, valid: np.ndarray, edited: np.ndarray,
                   edited_valid: np.ndarray) -> np.ndarray:
    """Pixels whose class the plan changes (nodata given a class counts; a class set to
    nodata does not: there is nothing to synthesise for nodata)."""
    return edited_valid & (~valid | (edited != labels))


# -- windows ------------------------------------------------------------------------------------


def _intersects(a, b) -> bool:
    return a[0] < b[2] and a[2] > b[0] and a[1] < b[3] and a[3] > b[1]


def _clip(window: Window, width: int, height: int) -> Window | None:
    c0, r0 = max(int(window.col_off), 0), max(int(window.row_off), 0)
    c1 = min(int(window.col_off + window.width), width)
    r1 = min(int(window.row_off + window.height), height)
    return Window(c0, r0, c1 - c0, r1 - r0) if c1 > c0 and r1 > r0 else None


def _grow(window: Window, margin: int, width: int, height: int) -> Window:
    grown = Window(window.col_off - margin, window.row_off - margin,
                   window.width + 2 * margin, window.height + 2 * margin)
    return _clip(grown, width, height) or window


def _union(a: Window, b: Window) -> Window:
    c0, r0 = min(a.col_off, b.col_off), min(a.row_off, b.row_off)
    c1 = max(a.col_off + a.width, b.col_off + b.width)
    r1 = max(a.row_off + a.height, b.row_off + b.height)
    return Window(c0, r0, c1 - c0, r1 - r0)


def _overlap(a: Window, b: Window) -> bool:
    return (a.col_off < b.col_off + b.width and b.col_off < a.col_off + a.width
            and a.row_off < b.row_off + b.height and b.row_off < a.row_off + a.height)


def merge_windows(windows: Sequence[Window]) -> list[Window]:
    """Windows merged (as bounding boxes) until no two overlap, so regions never share pixels."""
    merged = list(windows)
    changed = True
    while changed:
        changed = False
        out: list[Window] = []
        for window in merged:
            for i, other in enumerate(out):
                if _overlap(window, other):
                    out[i] = _union(window, other)
                    changed = True
                    break
            else:
                out.append(window)
        merged = out
    return sorted(merged, key=lambda w: (w.row_off, w.col_off))


# -- distances, blend weights, radiometric matching --------------------------------------------


def _dilate(mask: np.ndarray, square: bool) -> np.ndarray:
    padded = np.pad(mask, 1)
    h, w = mask.shape
    out = mask.copy()
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        out |= padded[1 + dy: 1 + dy + h, 1 + dx: 1 + dx + w]
    if square:
        for dy, dx in ((-1, -1), (-1, 1), (1, -1), (1, 1)):
            out |= padded[1 + dy: 1 + dy + h, 1 + dx: 1 + dx + w]
    return out


def distance_from(mask: np.ndarray, limit: int) -> np.ndarray:
    """Distance in pixels to the nearest True pixel (0 on it), up to ``limit``; ``limit + 1``
    beyond. Alternating 4- and 8-neighbour growth gives octagonal rings, within 8 % of the
    Euclidean distance: smooth enough for a feather, with numpy alone."""
    dist = np.full(mask.shape, limit + 1, dtype=np.int32)
    dist[mask] = 0
    current = mask.copy()
    for step in range(1, limit + 1):
        grown = _dilate(current, square=step % 2 == 0)
        dist[grown & ~current] = step
        current = grown
    return dist


def blend_weights(dist: np.ndarray, band: int) -> np.ndarray:
    """Weight of the synthetic: 1 on the change, a cosine fall over ``band`` pixels, 0 beyond."""
    alpha = np.zeros(dist.shape, dtype=np.float32)
    alpha[dist == 0] = 1.0
    inside = (dist > 0) & (dist <= band)
    alpha[inside] = np.cos(np.pi / 2 * dist[inside] / (band + 1)) ** 2
    return alpha


def match_radiometry(synthetic: np.ndarray, real: np.ndarray, ring: np.ndarray,
                     labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-band gain and offset taking the synthetic to the real imagery's radiometry, fitted
    over ``ring`` (unchanged land cover, so any difference there is the model's rendering, not
    the plan).

    The fit is a weighted least-squares line through the per-class means of the ring
    (real mean = gain x synthetic mean + offset): class means average texture away, so the
    line captures a sensor or season shift without mistaking the model's smoother texture
    for a contrast difference. A line through two classes (a field and its hedges) would be
    extrapolated to the plan's new classes far from them, so with fewer than
    MIN_FIT_CLASSES classes only the offset (the mean shift) is fitted; with too small a
    ring nothing is. Gains stay within GAIN_LIMITS.
    """
    bands = synthetic.shape[0]
    gain, offset = np.ones(bands, np.float64), np.zeros(bands, np.float64)
    if int(ring.sum()) < MIN_MATCH_PIXELS:
        return gain, offset
    values, counts = np.unique(labels[ring], return_counts=True)
    keep = counts >= MIN_MATCH_PIXELS // 4
    values, weights = values[keep], counts[keep].astype(np.float64)
    if not len(values):
        return gain, offset
    weights /= weights.sum()
    for b in range(bands):
        x = np.array([synthetic[b][ring & (labels == v)].mean() for v in values])
        y = np.array([real[b][ring & (labels == v)].mean() for v in values])
        x_mean, y_mean = float(weights @ x), float(weights @ y)
        spread = float(weights @ (x - x_mean) ** 2)
        if len(values) >= MIN_FIT_CLASSES and spread > 1.0:  # classes at least ~1 DN apart
            slope = float(weights @ ((x - x_mean) * (y - y_mean))) / spread
            gain[b] = np.clip(slope, *GAIN_LIMITS)
        offset[b] = y_mean - gain[b] * x_mean
    return gain, offset


def to_dtype(values: np.ndarray, dtype: str) -> np.ndarray:
    """Float pixels -> ``dtype`` (rounded and clipped for integers)."""
    if np.issubdtype(np.dtype(dtype), np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


def boundary_seam(image: np.ndarray, touched: np.ndarray, valid: np.ndarray) -> SeamStats:
    """Seam sums at the edge of what was touched: adjacent pairs with one pixel untouched
    (real) and one touched count as seam; pairs of untouched real pixels are the baseline."""
    stats = SeamStats()
    data = image.astype(np.float32)
    for axis in (2, 1):
        a = [slice(None)] * 3
        b = [slice(None)] * 3
        a[axis], b[axis] = slice(1, None), slice(None, -1)
        diffs = np.abs(data[tuple(a)] - data[tuple(b)])
        ta, tb = touched[tuple(a[1:])], touched[tuple(b[1:])]
        pair = valid[tuple(a[1:])] & valid[tuple(b[1:])]
        stats.add(diffs, pair, ta != tb, ~ta & ~tb)
    return stats


# -- the inputs ----------------------------------------------------------------------------------


def _read_labels(dataset, window: Window) -> tuple[np.ndarray, np.ndarray]:
    labels = dataset.read(1, window=window)
    valid = dataset.read_masks(1, window=window) > 0
    return labels, valid


def check_band_layout(imagery, model: LoadedModel) -> None:
    """The imagery must have the bands and data type the model was trained on."""
    info = model.imagery
    if imagery.count != info.count or np.dtype(imagery.dtypes[0]) != np.dtype(info.dtype):
        raise InputError(
            f"imagery has {imagery.count} band(s) of {imagery.dtypes[0]}; the model was trained "
            f"on {info.count} band(s) of {info.dtype} ({', '.join(info.band_names)})",
            path=imagery.name,
            hint="Give imagery with the training imagery's bands (same order and data type), "
                 "or a model trained on this imagery.")


def labels_on_grid(landcover, imagery):
    """The land cover seen on the imagery's grid: itself, or a nearest-neighbour WarpedVRT."""
    require_crs(landcover, "land cover")
    if same_grid(landcover, imagery):
        return landcover
    left, bottom, right, top = transform_bounds(landcover.crs, imagery.crs, *landcover.bounds)
    ib = imagery.bounds
    if left >= ib.right or right <= ib.left or bottom >= ib.top or top <= ib.bottom:
        raise InputError(f"does not overlap the imagery {imagery.name}", path=landcover.name,
                         hint="Give land cover and imagery of the same area.")
    return WarpedVRT(landcover, crs=imagery.crs, transform=imagery.transform,
                     width=imagery.width, height=imagery.height, resampling=Resampling.nearest)


def pixel_size_metres(dataset) -> float:
    """The mean pixel side in metres (geographic CRSs: at the raster's centre latitude)."""
    xres, yres = (abs(v) for v in dataset.res)
    crs = dataset.crs
    if crs is not None and crs.is_geographic:
        lat = math.radians((dataset.bounds.top + dataset.bounds.bottom) / 2)
        return (xres * 111320.0 * math.cos(lat) + yres * 110540.0) / 2
    factor = 1.0
    if crs is not None:
        try:
            factor = float(crs.linear_units_factor[1])
        except Exception:  # a CRS without linear units: assume metres
            factor = 1.0
    return (xres + yres) / 2 * factor


# -- the work -------------------------------------------------------------------------------------


@dataclass
class _Region:
    """One change region: its window, edited land cover and changed pixels."""

    window: Window
    labels: np.ndarray
    valid: np.ndarray
    changed: np.ndarray


def what_if(
    landcover: str | Path,
    imagery: str | Path,
    checkpoint: str | Path | LoadedModel,
    out: str | Path,
    *,
    changes: str | Path | None = None,
    class_field: str | None = None,
    edited_landcover: str | Path | None = None,
    blend: float | None = None,
    match: bool = True,
    preview: str | Path | None = None,
    seed: int = 0,
    device: str = "auto",
    batch_size: int = 4,
    overwrite: bool = False,
    progress: ProgressArg = True,
) -> WhatIfResult:
    """What the real imagery would look like with the land-cover changes of a plan.

    Only the windows around changed pixels (plus the generator's context) are synthesised.
    The output is the real imagery (its grid, CRS, bands, data type and mask), identical bit
    for bit except on the changed pixels, which are synthetic, and a transition band of
    ``blend`` metres around them, where the synthetic fades into the real imagery. The
    synthetic is first matched to the real imagery (a per-band gain and offset fitted to the
    class means of both, :func:`match_radiometry`) over a ring of unchanged land cover around
    each change. The edited land cover, on the
    output's grid, is written beside the output (:func:`landcover_output_path`).

    Args:
        landcover: the land cover of the place (any grid: read on the imagery's, nearest).
        imagery: the real imagery, with the bands and data type the model was trained on.
        checkpoint: checkpoint file, run folder, or a :class:`LoadedModel`.
        out: output GeoTIFF.
        changes: polygons (any CRS; ``path:layer`` for a layer) with the new class in
            ``class_field`` (class values or names of the model's scheme).
        class_field: the field of ``changes`` holding the new class.
        edited_landcover: instead of ``changes``, an edited copy of the land cover (any grid).
        blend: width of the transition band in metres (default 8 m, at least 2 pixels).
        match: match the synthetic's radiometry to the real imagery around each change.
        preview: PNG before | after | change outlined, zoomed to the changes.
        seed: noise seed of the synthetic.
        device: "auto", "cpu", "cuda" or "cuda:N".
        batch_size: tiles per generator pass.
        overwrite: replace existing outputs.
        progress: progress bar (True), silent (False), or a callback(done, total, message).

    Returns:
        A :class:`WhatIfResult`.

    Raises:
        InputError: no or two plans, changes outside the imagery, polygons without a CRS,
            a plan that changes nothing (nothing is written), imagery whose bands the model
            was not trained on, an output that would replace an input.
        ClassSchemeError: classes that are not the model's.
        OutputExistsError: an output exists and ``overwrite`` is False.
    """
    began = time.perf_counter()
    if (changes is None) == (edited_landcover is None):
        raise InputError("give either polygon changes or an edited land cover (not both)",
                         hint="Pass --changes PLAN --class-field FIELD, or --edited-landcover "
                              "EDITED.tif.")
    if edited_landcover is not None and class_field is not None:
        raise InputError(f"--class-field {class_field} applies to polygon changes, not to an "
                         "edited land cover", path=edited_landcover,
                         hint="Drop --class-field: the edited raster holds the classes.")
    out = check_output(out, overwrite)
    lc_out = check_output(landcover_output_path(out), overwrite)
    if preview is not None:
        preview = check_output(preview, overwrite)
    check_not_input([out, lc_out, preview],
                    {"land cover": landcover, "imagery": imagery,
                     "edited land cover": edited_landcover, "checkpoint": checkpoint if isinstance(checkpoint, (str, Path)) else None,
                     "plan": split_layer(changes)[0] if changes is not None else None})
    model = load_model(checkpoint, device)
    with open_raster(imagery, "imagery") as img, open_raster(landcover, "land cover") as lc:
        require_crs(img, "imagery")
        check_band_layout(img, model)
        check_landcover(lc)
        view = labels_on_grid(lc, img)
        try:
            result = _run(view, img, lc, model, out, lc_out, changes=changes,
                          class_field=class_field, edited_landcover=edited_landcover,
                          blend=blend, match=match, seed=seed, batch_size=batch_size,
                          overwrite=overwrite, progress=progress)
        finally:
            if view is not lc:
                view.close()
    if preview is not None:
        result.preview = write_whatif_preview(imagery, out, result, preview, model,
                                              overwrite=overwrite)
    result.seconds = time.perf_counter() - began
    log.info("what-if %s: %d changed pixels in %d region(s), %d pixels synthesised, %.1f s",
             out, result.changed_pixels, len(result.regions), result.synthesized_pixels,
             result.seconds)
    return result


def _run(view, img, lc, model: LoadedModel, out: Path, lc_out: Path, *, changes, class_field,
         edited_landcover, blend, match, seed, batch_size, overwrite, progress) -> WhatIfResult:
    width, height = img.width, img.height
    band = blend_pixels(img, blend)
    ring = max(2 * band, MIN_RING)
    context = model.default_halo
    margin = band + ring + context
    edited_ds = None
    try:
        if changes is not None:
            geoms, values = read_changes(changes, class_field, model.scheme, img.crs, img.bounds)
            edits: PolygonEdits | RasterEdits = PolygonEdits(geoms, values, changes)
            candidates = list(edits.candidates(img.transform, width, height))
        else:
            edited_src = open_raster(edited_landcover, "edited land cover")
            check_landcover(edited_src)
            edited_ds = (edited_src, labels_on_grid(edited_src, img))
            edits = RasterEdits(edited_ds[1], edited_landcover)
            candidates = list(edits.candidates(view, width, height, progress))
        windows = merge_windows([_grow(w, margin, width, height) for w in candidates])
        regions = _edit_regions(windows, view, edits, img.transform, model.scheme, lc.name)
    finally:
        if edited_ds is not None:
            if edited_ds[1] is not edited_ds[0]:
                edited_ds[1].close()
            edited_ds[0].close()
    changed = sum(int(r.changed.sum()) for r in regions)
    if not changed:
        raise InputError("the plan changes nothing: every pixel it covers already has the "
                         "class it gives", path=changes or edited_landcover,
                         hint="Nothing was written. Check the new classes and where the "
                              "changes are.")
    result = WhatIfResult(out, lc_out, regions=[r.window for r in regions],
                          changed_pixels=changed, blend_pixels=band,
                          synthesized_pixels=sum(r.window.width * r.window.height
                                                 for r in regions))
    with atomic_file(out, overwrite) as tmp, atomic_file(lc_out, overwrite) as tmp_lc:
        copy_for_update(img, tmp)
        write_landcover_copy(view, lc, tmp_lc)
        with rasterio.open(tmp, "r+") as dst, rasterio.open(tmp_lc, "r+") as dst_lc:
            bar = progress_bar(progress, total=len(regions), desc="what-if", unit="region")
            try:
                for region in regions:
                    gain, offset, seam = _synthesise_region(region, img, dst, model, band,
                                                            ring, match, seed, batch_size,
                                                            progress)
                    result.seam = result.seam + seam
                    result.changed_masks.append((region.window, region.changed))
                    dst_lc.write(region.labels.astype(dst_lc.dtypes[0]), 1,
                                 window=region.window)
                    result.gains.append(gain)
                    result.offsets.append(offset)
                    bar.update(1)
            finally:
                bar.close()
    return result


def blend_pixels(imagery, blend: float | None) -> int:
    """The transition band in pixels for ``blend`` metres (default 8 m, then at least 2 px)."""
    if blend is not None and blend < 0:
        raise InputError(f"blend width {blend:g} m is negative", hint="Use --blend 0 or more.")
    metres = DEFAULT_BLEND_METRES if blend is None else float(blend)
    pixels = int(round(metres / pixel_size_metres(imagery)))
    return max(pixels, 2) if blend is None else pixels


def _edit_regions(windows: Sequence[Window], view, edits, transform, scheme: ClassScheme,
                  source) -> list[_Region]:
    """Each window's edited land cover and changed pixels, classes checked; windows the plan
    does not change are dropped. Nothing is written here."""
    regions = []
    for window in windows:
        labels, valid = _read_labels(view, window)
        edited, edited_valid = edits.apply(window, transform, labels, valid)
        changed = changed_pixels(labels, valid, edited, edited_valid)
        if not changed.any():
            continue
        scheme.check_values(np.unique(edited[edited_valid]).tolist(),
                            source=edits.source if isinstance(edits, RasterEdits) else source)
        regions.append(_Region(window, edited, edited_valid, changed))
    return regions


def region_tile_size(window: Window, model: LoadedModel) -> int:
    """Tiles (at most 512 px) that cover the region with the least padding: the tile grid
    pads its last row and column to whole tiles, which a region's own size rarely fills."""
    factor = model.downsampling_factor
    side = int(max(window.width, window.height))
    count = -(-side // DEFAULT_TILE_SIZE)
    return -(-side // count // factor) * factor if side > factor else factor


def _synthesise_region(region: _Region, img, dst, model: LoadedModel, band: int, ring: int,
                       match: bool, seed: int, batch_size: int, progress: ProgressArg
                       ) -> tuple[np.ndarray, np.ndarray, SeamStats]:
    """Synthesise one region, match it, blend it into the real pixels and write it.

    Returns the per-band gain and offset applied and the seam sums at the blend's edge."""
    window = region.window
    labels = np.ma.masked_array(region.labels, mask=~region.valid)
    synth = synthesize_array(labels, window_transform(window, img.transform), model,
                             crs=img.crs, tile_size=region_tile_size(window, model), seed=seed,
                             batch_size=batch_size, progress=progress)
    real = img.read(window=window)
    real_valid = img.dataset_mask(window=window) > 0
    dist = distance_from(region.changed, band + ring)
    usable = synth.mask & real_valid
    ring_pixels = usable & (dist > 0) & (dist <= band + ring)
    if match:
        gain, offset = match_radiometry(synth.image, real, ring_pixels, region.labels)
    else:
        gain, offset = np.ones(real.shape[0]), np.zeros(real.shape[0])
    matched = synth.image.astype(np.float64) * gain[:, None, None] + offset[:, None, None]
    alpha = blend_weights(dist, band) * usable
    composite = to_dtype(real * (1.0 - alpha) + matched * alpha, img.dtypes[0])
    touched = alpha > 0
    composite[:, ~touched] = real[:, ~touched]  # bit for bit where nothing was blended
    _avoid_nodata(composite, touched, img.nodata)
    dst.write(composite, window=window)
    return gain, offset, boundary_seam(composite, touched, real_valid)


def _avoid_nodata(pixels: np.ndarray, touched: np.ndarray, nodata) -> None:
    """A blended pixel that happens to equal the nodata value would vanish: nudge it by one."""
    if nodata is None or not np.issubdtype(pixels.dtype, np.integer):
        return
    hit = (pixels == nodata) & touched[None]
    info = np.iinfo(pixels.dtype)
    pixels[hit] = nodata + 1 if nodata < info.max else nodata - 1


# -- outputs ------------------------------------------------------------------------------------


def _plain_copy_possible(dataset) -> bool:
    """A GeoTIFF losslessly compressed, with no sidecar mask or overviews: the file itself
    can be copied and updated in place (fast, and every other pixel stays as it was)."""
    if dataset.driver != "GTiff" or len(dataset.files) != 1:
        return False
    compression = (dataset.compression.value if dataset.compression else "none").lower()
    return compression not in LOSSY and not dataset.overviews(1)


def copy_for_update(dataset, dst: Path) -> None:
    """A copy of a raster as a GeoTIFF at ``dst``, ready to be opened ``r+``.

    Lossless GeoTIFFs are copied file for file; anything else (another format, lossy
    compression, sidecar files) through GDAL into a tiled deflate GeoTIFF with an internal
    mask: the pixel values are the same, and changed blocks are never re-encoded lossily.
    """
    if _plain_copy_possible(dataset):
        shutil.copyfile(dataset.files[0], dst)
        return
    options = dict(TILED="YES", BLOCKXSIZE=512, BLOCKYSIZE=512, COMPRESS="DEFLATE",
                   BIGTIFF="IF_SAFER")
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        rasterio.shutil.copy(dataset, dst, driver="GTiff", **options)


def write_landcover_copy(view, landcover, dst: Path) -> None:
    """The land cover on the imagery's grid at ``dst`` (the changes are written after)."""
    if view is landcover and _plain_copy_possible(landcover):
        shutil.copyfile(landcover.files[0], dst)
        return
    profile = geotiff_profile(view.width, view.height, 1, landcover.dtypes[0], view.crs,
                              view.transform, nodata=landcover.nodata)
    with rasterio.open(dst, "w", **profile) as out:
        with contextlib.suppress(ValueError):  # no colour table: nothing to copy
            out.write_colormap(1, landcover.colormap(1))
        for r in range(0, view.height, SCAN_BLOCK):
            window = Window(0, r, view.width, min(SCAN_BLOCK, view.height - r))
            out.write(view.read(1, window=window), 1, window=window)


def _view_window(result: WhatIfResult, width: int, height: int) -> Window:
    """The part of the raster the preview shows: the regions, at least PREVIEW_MIN_VIEW a side."""
    view = result.extent
    grow = max(0, (PREVIEW_MIN_VIEW - min(view.width, view.height)) // 2)
    return _grow(view, grow, width, height)


def write_whatif_preview(imagery: str | Path, out: Path, result: WhatIfResult, png: Path,
                         model: LoadedModel, overwrite: bool = False,
                         max_size: int = PREVIEW_SIZE) -> Path:
    """PNG: real imagery | what-if imagery | what-if with the changed land cover outlined,
    zoomed to the changes (decimated reads: memory follows the preview, not the raster)."""
    from geospade.preview import imagery_rgb, preview_shape, side_by_side, write_png

    with open_raster(imagery, "imagery") as before_ds, open_raster(out, "what-if imagery") as ds:
        window = _view_window(result, ds.width, ds.height)
        h, w = preview_shape(int(window.width), int(window.height), max_size)
        panels = []
        for dataset in (before_ds, ds):
            pixels = dataset.read(window=window, out_shape=(dataset.count, h, w),
                                  resampling=Resampling.average, masked=True)
            panels.append(imagery_rgb(pixels, model.imagery))
    changed = _changed_on_preview(result, window, h, w)
    outlined = panels[1].copy()
    edge = _dilate(changed, True) & ~changed
    edge = _dilate(edge, True)
    outlined[:, edge] = np.array(OUTLINE, dtype=np.uint8)[:, None]
    return write_png(png, side_by_side([*panels, outlined]), overwrite=overwrite)


def _changed_on_preview(result: WhatIfResult, view: Window, h: int, w: int) -> np.ndarray:
    """The changed pixels of every region mapped onto the preview's pixels (a preview pixel
    is changed when any pixel it covers is)."""
    mask = np.zeros((h, w), dtype=bool)
    for window, changed in result.changed_masks:
        rows, cols = np.nonzero(changed)
        r = (rows + int(window.row_off - view.row_off)) * h // int(view.height)
        c = (cols + int(window.col_off - view.col_off)) * w // int(view.width)
        inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
        mask[r[inside], c[inside]] = True
    return mask
