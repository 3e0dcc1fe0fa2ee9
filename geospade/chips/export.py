"""Chip export: land cover + imagery -> an ArcGIS Pro Classified_Tiles training folder.

Pass 1 decides from the land cover alone which tiles of the grid become chips (area of
interest, imagery extent, land-cover nodata, spatial train/val split) and checks every class
value before anything is written. Pass 2 reads exactly those windows (imagery through a
bilinear view onto the land-cover grid; labels are never resampled) and writes image and
label chips from worker threads, each with its own dataset handles. The metadata files go in
last, and the folder appears under its name only once complete.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import rasterio
import shapely
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.features import geometry_mask
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from geospade import __version__
from geospade.chips import aoi as aoi_mod
from geospade.chips import esri
from geospade.chips.split import Split, spatial_split
from geospade.classes import ClassScheme, resolve_scheme
from geospade.errors import InputError
from geospade.imagery import ImageryInfo, range_from_stats
from geospade.progress import ProgressArg, progress_bar
from geospade.raster import (
    aligned_view,
    atomic_dir,
    check_landcover,
    check_output,
    open_raster,
    require_crs,
    write_world_file,
)
from geospade.tiling import Tile, TileGrid, tile_grid

log = logging.getLogger(__name__)

FORMATS = {"tif": ("GTiff", ".tif"), "png": ("PNG", ".png")}
#: Why tiles of the grid did not become chips (keys of ``ExportResult.skipped``).
SKIP_REASONS = ("outside_aoi", "outside_imagery", "nodata", "imagery_nodata", "overlaps_val")
CLASS_SCHEME_JSON = "class_scheme.json"
EXPORT_JSON = "geospade_export.json"
CHIPS_GPKG = "chips.gpkg"
#: GDAL block cache during an export: enough for the blocks the worker threads are using.
GDAL_CACHE_BYTES = 32 * 2**20

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote.

    Attributes:
        out_dir: the chip folder.
        num_train, num_val: chips written per split.
        skipped: tiles of the grid not exported, by reason (see :data:`SKIP_REASONS`).
        num_tiles: tiles in the full grid.
        class_scheme: the scheme written into the metadata.
        seconds: wall-clock time of the export.
    """

    out_dir: Path
    num_train: int
    num_val: int
    skipped: dict[str, int]
    num_tiles: int
    class_scheme: ClassScheme
    seconds: float

    @property
    def num_chips(self) -> int:
        return self.num_train + self.num_val


@dataclass
class _Plan:
    """Pass 1's decisions: the chips to write, and the class values seen (in all, per chip)."""

    tiles: list[Tile]
    footprints: dict[int, shapely.Geometry]
    partial_imagery: set[int]
    values: dict[int, int]
    class_pixels: dict[int, dict[int, int]]
    skipped: collections.Counter = field(default_factory=collections.Counter)


@dataclass
class _Chip:
    """Pass 2's outcome for one tile: written (with its statistics) or skipped."""

    index: int
    written: bool
    nodata_fraction: float = 0.0
    class_pixels: dict[int, int] = field(default_factory=dict)
    band_stats: esri.BandStats | None = None


def default_workers() -> int:
    """Worker threads used when none are given: up to 4, never more than the CPUs."""
    return max(1, min(4, os.cpu_count() or 1))


def export_chips(
    landcover: str | Path,
    imagery: str | Path,
    out_dir: str | Path,
    *,
    tile_size: int = 256,
    stride: int | None = None,
    max_nodata: float = 0.0,
    aoi: str | Path | None = None,
    classes: str | Path | ClassScheme | None = None,
    val_fraction: float = 0.0,
    val_block: int | None = None,
    seed: int = 0,
    image_format: str = "tif",
    workers: int | None = None,
    overwrite: bool = False,
    progress: ProgressArg = True,
) -> ExportResult:
    """Tile a land-cover raster and its imagery into an ArcGIS Pro Classified_Tiles folder.

    Args:
        landcover: classified (integer, single band) raster; its grid is the chip grid.
        imagery: imagery of the same area, on any grid (read bilinearly onto the land cover's).
        out_dir: chip folder to create (must be absent or empty unless ``overwrite``).
        tile_size: chip side in pixels.
        stride: step between chips (default ``tile_size``: no overlap).
        max_nodata: largest share of nodata pixels (land cover nodata or imagery nodata)
            a chip may hold; 0.0 skips any chip touching nodata.
        aoi: polygon file; only chips the polygons cover entirely are exported.
        classes: ClassScheme, preset name or scheme JSON; default: from the raster's colour
            table / attribute table, else the values present.
        val_fraction: share of chips for validation, chosen by blocks of the grid.
        val_block: side in pixels of the split blocks (default about 4 tiles).
        seed: seed of the split.
        image_format: "tif" (GeoTIFF + .tfw) or "png" (+ .pgw, at most 3 bands).
        workers: writer threads (default :func:`default_workers`).
        overwrite: replace an existing, non-empty ``out_dir``.
        progress: True for a progress bar, False for none, or a callback.

    Raises:
        InputError: unusable inputs or options (float land cover, missing CRS, no overlap,
            tile larger than the raster, class values outside the scheme, unreadable AOI,
            no chip left to export). Nothing is written when this is raised.
        OutputExistsError: ``out_dir`` is not empty and ``overwrite`` is False.
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    workers = default_workers() if workers is None else int(workers)
    _check_options(tile_size, stride, max_nodata, val_fraction, image_format, workers)
    check_output(out_dir, overwrite)

    with contextlib.ExitStack() as stack:
        stack.enter_context(rasterio.Env(**_gdal_options()))
        lc = stack.enter_context(open_raster(landcover, "land cover"))
        check_landcover(lc)
        require_crs(lc, "land cover")
        img = stack.enter_context(open_raster(imagery, "imagery"))
        require_crs(img, "imagery")
        _check_format(image_format, img, lc)
        grid = tile_grid(lc.width, lc.height, tile_size, stride, edge="drop", source=landcover)
        view = aligned_view(img, lc)
        if view is not img:
            stack.callback(view.close)
        given = None if classes is None else resolve_scheme(classes, lc)
        area = None if aoi is None else aoi_mod.read_aoi(aoi, lc.crs)
        nodata = given.nodata if given is not None else _int_or_none(lc.nodata)
        outline = aoi_mod.raster_outline(img, lc.crs)

        with _Sources(landcover, imagery) as sources:
            plan = _plan_chips(sources, grid, lc.transform, area=area, imagery_outline=outline,
                               nodata=nodata, max_nodata=max_nodata, workers=workers,
                               progress=progress)
            if not plan.tiles:
                raise _nothing_left(grid, plan.skipped, landcover)
            scheme = given if given is not None else resolve_scheme(None, lc, counts=plan.values)
            scheme.check_values(plan.values, source=landcover)
            split = spatial_split(grid, plan.tiles, val_fraction=val_fraction,
                                  block_size=val_block, seed=seed)
            plan.skipped["overlaps_val"] += len(split.dropped)
            assignment = split.assignment()
            tiles = [t for t in plan.tiles if t.index in assignment]

            with atomic_dir(out_dir, overwrite) as tmp:
                writer = _ChipWriter(tmp, scheme, image_format, lc, view, max_nodata,
                                     outline, plan.partial_imagery, plan.class_pixels)
                chips = _write_chips(sources, writer, tiles, workers, progress)
                written = [c for c in chips if c.written]
                plan.skipped["imagery_nodata"] += len(chips) - len(written)
                if not written:
                    raise _nothing_left(grid, plan.skipped, landcover)
                counts = _write_metadata(
                    tmp, written, assignment, plan.footprints, scheme=scheme, grid=grid,
                    lc=lc, img=img, image_format=image_format, split=split,
                    val_fraction=val_fraction, seed=seed, landcover=landcover,
                    imagery=imagery,
                )

    skipped = {reason: int(plan.skipped.get(reason, 0)) for reason in SKIP_REASONS}
    result = ExportResult(out_dir, counts["train"], counts["val"], skipped, len(grid), scheme,
                          time.perf_counter() - start)
    log.info("exported %d chips (%d train, %d val) to %s; skipped %s", result.num_chips,
             result.num_train, result.num_val, out_dir, skipped)
    return result


# -- checks ------------------------------------------------------------------------------------


def _check_options(tile_size: int, stride: int | None, max_nodata: float, val_fraction: float,
                   image_format: str, workers: int) -> None:
    if not 0.0 <= max_nodata <= 1.0:
        raise InputError(f"maximum nodata fraction {max_nodata} is not in [0, 1]",
                         hint="Use e.g. --max-nodata 0.1 (10%); 0 skips any chip with nodata.")
    if not 0.0 <= val_fraction < 1.0:
        raise InputError(f"validation fraction {val_fraction} is not in [0, 1)",
                         hint="Use e.g. --val-fraction 0.1.")
    if image_format not in FORMATS:
        raise InputError(f"chip format '{image_format}' is not one of {sorted(FORMATS)}",
                         hint="Use --format tif or --format png.")
    if workers < 1:
        raise InputError(f"{workers} workers: need at least 1", hint="Use --workers 1 or more.")
    if stride is not None and stride > tile_size:
        log.warning("stride %d is larger than the tile size %d: pixels between chips are "
                    "never exported", stride, tile_size)


def _check_format(image_format: str, img, lc) -> None:
    """PNG holds at most 3 bands of 8 or 16-bit unsigned integers."""
    if image_format != "png":
        return
    if img.count > 3:
        raise InputError(
            f"imagery has {img.count} bands; PNG chips hold at most 3", path=img.name,
            hint="Use --format tif for multispectral imagery (e.g. NAIP's 4 bands).")
    for ds, what in ((img, "imagery"), (lc, "land cover")):
        if ds.dtypes[0] not in ("uint8", "uint16"):
            raise InputError(
                f"{what} has data type {ds.dtypes[0]}; PNG chips hold uint8 or uint16",
                path=ds.name, hint="Use --format tif.")


def _nothing_left(grid: TileGrid, skipped: collections.Counter, landcover) -> InputError:
    reasons = ", ".join(f"{n} {r.replace('_', ' ')}" for r, n in skipped.items() if n)
    return InputError(
        f"no chip left to export: of {len(grid)} tiles, {reasons or 'none qualified'}",
        path=landcover,
        hint="Check the area of interest and imagery extent, or allow some nodata with "
             "--max-nodata.")


def _int_or_none(value) -> int | None:
    return None if value is None else int(value)


# -- per-thread datasets -----------------------------------------------------------------------


class _Sources:
    """Dataset handles per thread: a GDAL handle must never be used by two threads at once."""

    def __init__(self, landcover: str | Path, imagery: str | Path):
        self._paths = (landcover, imagery)
        self._local = threading.local()
        self._opened: list = []
        self._lock = threading.Lock()

    def get(self):
        """This thread's (land cover, imagery on the land-cover grid) pair."""
        handles = getattr(self._local, "handles", None)
        if handles is None:
            lc = rasterio.open(self._paths[0])
            img = rasterio.open(self._paths[1])
            view = aligned_view(img, lc)
            handles = (lc, view)
            self._local.handles = handles
            with self._lock:
                self._opened += [view, img, lc] if view is not img else [img, lc]
        return handles

    def block_shape(self, imagery: bool = False) -> tuple[int, int]:
        """(rows, cols) of a storage block of the land cover, or of the imagery as read."""
        lc, view = self.get()
        # A warped view's blocks are not the file's; the land cover's grid is what it follows.
        source = view if imagery and not isinstance(view, WarpedVRT) else lc
        return tuple(source.block_shapes[0])

    def __enter__(self) -> _Sources:
        return self

    def __exit__(self, *exc) -> None:
        with self._lock:
            for ds in self._opened:
                ds.close()
            self._opened.clear()


def _ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int,
                 on_result: Callable[[R], None] | None = None) -> list[R]:
    """``[fn(x) for x in items]`` on ``workers`` threads, with a bounded queue of tasks.

    Results come back in order. On any error (or Ctrl-C) the queued tasks are cancelled at
    once instead of being run to completion.
    """
    results: list[R] = []

    def take(result: R) -> None:
        results.append(result)
        if on_result is not None:
            on_result(result)

    if workers <= 1:
        for item in items:
            take(fn(item))
        return results
    pending: collections.deque[Future] = collections.deque()
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="geospade-chips")
    try:
        for item in items:
            pending.append(executor.submit(fn, item))
            if len(pending) >= 4 * workers:
                take(pending.popleft().result())
        while pending:
            take(pending.popleft().result())
    finally:
        for future in pending:
            future.cancel()
        executor.shutdown(wait=True, cancel_futures=True)
    return results


def _map_by_block(fn: Callable[[Tile], R], tiles: Sequence[Tile], block: tuple[int, int],
                  workers: int, bar) -> list[R]:
    """``[fn(t) for t in tiles]``, running the tiles that share a source block together.

    Each group of tiles inside one block of the source raster runs on one thread, one tile
    after the other: the compressed block is decoded once while it sits in GDAL's (bounded)
    block cache, instead of once per thread or again after it was evicted.
    """
    rows, cols = max(int(block[0]), 1), max(int(block[1]), 1)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, tile in enumerate(tiles):
        groups.setdefault((tile.row_off // rows, tile.col_off // cols), []).append(i)
    members = list(groups.values())

    def run(group: list[int]) -> list[R]:
        return [fn(tiles[i]) for i in group]

    results: list = [None] * len(tiles)
    done = _ordered_map(run, members, workers, lambda group: bar.update(len(group)))
    for group, outcomes in zip(members, done, strict=True):
        for i, outcome in zip(group, outcomes, strict=True):
            results[i] = outcome
    return results


def _gdal_options() -> dict:
    """GDAL settings for the export: a bounded block cache, unless the caller set one.

    GDAL's default cache (5% of RAM) would keep every decoded block of a large raster, so
    memory would grow with the raster up to that cap.
    """
    if "GDAL_CACHEMAX" in os.environ or (
            rasterio.env.hasenv() and "GDAL_CACHEMAX" in rasterio.env.getenv()):
        return {}
    return {"GDAL_CACHEMAX": GDAL_CACHE_BYTES}


# -- pass 1: which tiles become chips ----------------------------------------------------------


def _plan_chips(sources: _Sources, grid: TileGrid, transform, *, area, imagery_outline,
                nodata: int | None, max_nodata: float, workers: int,
                progress: ProgressArg) -> _Plan:
    """Filter the grid by AOI, imagery extent and land-cover nodata; collect class values."""
    tiles = list(grid)
    shapes = aoi_mod.footprints(tiles, transform)
    skipped: collections.Counter = collections.Counter()
    keep = np.ones(len(tiles), dtype=bool)
    if area is not None:
        inside = aoi_mod.inside(area, shapes)
        skipped["outside_aoi"] = int((~inside).sum())
        keep &= inside
    shapely.prepare(imagery_outline)
    covered = shapely.covers(imagery_outline, shapes)
    touching = shapely.intersects(imagery_outline, shapes)
    skipped["outside_imagery"] = int((keep & ~touching).sum())
    keep &= touching
    candidates = [t for t, k in zip(tiles, keep, strict=True) if k]
    partial = {t.index for t, c in zip(tiles, covered, strict=True) if not c}
    limit = max_nodata * grid.tile_size * grid.tile_size
    values: collections.Counter = collections.Counter()
    kept: list[Tile] = []
    class_pixels: dict[int, dict[int, int]] = {}

    def scan(tile: Tile) -> tuple[int, dict[int, int]]:
        lc, _ = sources.get()
        data = lc.read(1, window=tile.window)
        valid = _landcover_valid(lc, tile.window, data, nodata)
        return int(valid.size - np.count_nonzero(valid)), _value_counts(data, valid)

    with progress_bar(progress, total=len(candidates), desc="scanning land cover",
                      unit="tile") as bar:
        scans = _map_by_block(scan, candidates, sources.block_shape(), workers, bar)
    for tile, (invalid, counts) in zip(candidates, scans, strict=True):
        values.update(counts)
        if invalid > limit:
            skipped["nodata"] += 1
        else:
            kept.append(tile)
            class_pixels[tile.index] = counts
    footprints = {t.index: shapes[t.index] for t in kept}
    return _Plan(kept, footprints, partial, dict(values), class_pixels, skipped)


def _landcover_valid(ds, window: Window, data: np.ndarray, nodata: int | None) -> np.ndarray:
    """True where a land-cover pixel holds a class: not masked, not a nodata value."""
    flags = ds.mask_flag_enums[0]
    if MaskFlags.per_dataset in flags or MaskFlags.alpha in flags:
        valid = ds.read_masks(1, window=window) > 0
    else:
        valid = np.ones(data.shape, dtype=bool)
    for value in {_int_or_none(ds.nodata), nodata} - {None}:
        valid &= data != value
    return valid


def _value_counts(data: np.ndarray, valid: np.ndarray) -> dict[int, int]:
    values = data[valid] if not valid.all() else data.ravel()
    if values.size == 0:
        return {}
    if data.dtype.kind == "u" and data.dtype.itemsize <= 2:
        counts = np.bincount(values)
        present = np.flatnonzero(counts)
        return dict(zip(present.tolist(), counts[present].tolist(), strict=True))
    uniq, counts = np.unique(values, return_counts=True)
    return dict(zip(uniq.tolist(), counts.tolist(), strict=True))


# -- pass 2: writing chips ---------------------------------------------------------------------


class _ChipWriter:
    """Reads one tile's windows and writes its image and label chips (thread-safe)."""

    def __init__(self, root: Path, scheme: ClassScheme, image_format: str, lc, view,
                 max_nodata: float, imagery_outline, partial_imagery: set[int],
                 class_pixels: dict[int, dict[int, int]]):
        self.driver, self.ext = FORMATS[image_format]
        self.images, self.labels = root / "images", root / "labels"
        self.images.mkdir()
        self.labels.mkdir()
        self.scheme = scheme
        self.transform, self.crs = lc.transform, lc.crs
        self.label_dtype = lc.dtypes[0]
        self.image_dtype, self.count = view.dtypes[0], view.count
        self.image_nodata = view.nodata
        self.max_nodata = max_nodata
        self.outline = imagery_outline
        self.partial = partial_imagery
        self.class_pixels = class_pixels
        self.colormap = _label_colormap(scheme, self.label_dtype)
        # RGB photometry lets any TIFF reader (PIL, ArcGIS) show 8-bit chips as colour.
        self.rgb = (self.image_dtype == "uint8" and self.count >= 3
                    and tuple(view.colorinterp[:3]) == (ColorInterp.red, ColorInterp.green,
                                                        ColorInterp.blue))

    def name(self, index: int) -> str:
        return f"{index:012d}{self.ext}"

    def __call__(self, sources: _Sources, tile: Tile) -> _Chip:
        lc, view = sources.get()
        window = tile.window
        labels = lc.read(1, window=window)
        valid = _landcover_valid(lc, window, labels, self.scheme.nodata)
        pixels = view.read(window=window)
        chip_transform = window_transform(window, self.transform)
        seen = self._imagery_valid(view, tile, pixels, chip_transform)
        counts = self.class_pixels.get(tile.index)  # pass 1 counted the same valid pixels
        if seen is not None:
            unseen = valid & ~seen  # land cover without imagery
            if np.count_nonzero(~valid | unseen) > self.max_nodata * valid.size:
                return _Chip(tile.index, written=False)
            if unseen.any():
                valid &= seen
                counts = None
        nodata_fraction = 1.0 - np.count_nonzero(valid) / valid.size
        if nodata_fraction and self.scheme.nodata is not None:
            # Pixels without imagery (or masked land cover) must not teach the model a class.
            labels = np.where(valid, labels, np.asarray(self.scheme.nodata, labels.dtype))
        self._write(self.labels / self.name(tile.index), labels[None], self.label_dtype,
                    self.scheme.nodata, chip_transform, colormap=self.colormap)
        self._write(self.images / self.name(tile.index), pixels, self.image_dtype,
                    self.image_nodata, chip_transform, rgb=self.rgb)
        if counts is None:
            counts = _value_counts(labels, valid)
        return _Chip(tile.index, True, nodata_fraction, counts,
                     esri.BandStats.of_pixels(pixels, valid))

    def _imagery_valid(self, view, tile: Tile, pixels: np.ndarray,
                       chip_transform) -> np.ndarray | None:
        """Where the imagery has data (None: everywhere), from its mask and its extent."""
        seen = None
        flags = view.mask_flag_enums
        if any(MaskFlags.per_dataset in f or MaskFlags.alpha in f for f in flags):
            seen = view.dataset_mask(window=tile.window) > 0
        elif self.image_nodata is not None:
            nodata = self.image_nodata
            equal = np.isnan(pixels) if np.isnan(nodata) else pixels == nodata
            seen = ~equal.all(axis=0)
        if tile.index in self.partial:
            # A warped view is "valid" outside the source's extent; clip it to the outline.
            inside = geometry_mask([self.outline], out_shape=pixels.shape[1:],
                                   transform=chip_transform, invert=True)
            seen = inside if seen is None else seen & inside
        return seen

    def _write(self, path: Path, data: np.ndarray, dtype: str, nodata, chip_transform,
               colormap: dict | None = None, rgb: bool = False) -> None:
        count, height, width = data.shape
        profile = {"driver": self.driver, "width": width, "height": height, "count": count,
                   "dtype": dtype, "crs": self.crs, "transform": chip_transform}
        if nodata is not None:
            profile["nodata"] = nodata
        if rgb and self.driver == "GTiff":
            profile["photometric"] = "RGB"
        with rasterio.open(path, "w", **profile) as dst:
            if colormap:  # before the pixels: GDAL cannot change the photometric tag after
                dst.write_colormap(1, colormap)
            dst.write(data)
        write_world_file(path, chip_transform)


def _label_colormap(scheme: ClassScheme, dtype: str) -> dict | None:
    """The scheme's colour table, for the label types GDAL can give one (Byte, UInt16)."""
    if dtype not in ("uint8", "uint16"):
        return None
    top = np.iinfo(dtype).max
    return {v: rgba for v, rgba in scheme.colormap().items() if 0 <= v <= top}


def _write_chips(sources: _Sources, writer: _ChipWriter, tiles: Sequence[Tile], workers: int,
                 progress: ProgressArg) -> list[_Chip]:
    with progress_bar(progress, total=len(tiles), desc="export-chips", unit="chip") as bar:
        return _map_by_block(lambda t: writer(sources, t), tiles,
                             sources.block_shape(imagery=True), workers, bar)


# -- metadata ----------------------------------------------------------------------------------


def _write_metadata(root: Path, chips: Sequence[_Chip], assignment: dict[int, str],
                    footprints: dict, *, scheme: ClassScheme, grid: TileGrid, lc, img,
                    image_format: str, split: Split, val_fraction: float, seed: int,
                    landcover, imagery) -> dict[str, int]:
    """Write map.txt, stats, .emd, class scheme, export record and chips.gpkg."""
    ext = FORMATS[image_format][1]
    names = [f"{c.index:012d}{ext}" for c in chips]
    esri.write_map_txt(root, [(f"images/{n}", f"labels/{n}") for n in names])

    band_stats = esri.BandStats(img.count)
    pixels_per_class: collections.Counter = collections.Counter()
    images_per_class: collections.Counter = collections.Counter()
    for chip in chips:
        band_stats.merge(chip.band_stats)
        pixels_per_class.update(chip.class_pixels)
        images_per_class.update(v for v, n in chip.class_pixels.items() if n)
    band_names = _band_names(img)
    resolution = (abs(lc.transform.a), abs(lc.transform.e))
    # Pro lists the classes of the exported data; a class without pixels would also give
    # arcgis.learn an infinite class weight. class_scheme.json keeps the whole scheme.
    present = [v for v in scheme.values if pixels_per_class.get(v)]
    esri_scheme = scheme.subset(present) if present else scheme
    stats = esri.accumulated_stats(
        scheme=esri_scheme, band_stats=band_stats, band_names=band_names, tile_size=grid.tile_size,
        num_tiles=len(chips), next_tile_index=len(grid), resolution=resolution, crs=lc.crs,
        pixels_per_class=pixels_per_class, images_per_class=images_per_class)
    esri.write_json(root, esri.ACCUMULATED_STATS, stats)
    esri.write_json(root, esri.MODEL_DEFINITION, esri.model_definition(stats))
    esri.write_stats_txt(root, stats)
    scheme.to_json(root / CLASS_SCHEME_JSON)

    counts = collections.Counter(assignment[c.index] for c in chips)
    info = _imagery_info(img, band_stats, band_names)
    esri.write_json(root, EXPORT_JSON, {
        "geospade_version": __version__,
        "tile_size": grid.tile_size,
        "stride": grid.stride,
        "format": image_format,
        "imagery": info.to_dict(),
        "crs_wkt": lc.crs.to_wkt(),
        "resolution": list(resolution),
        "crs_units": _crs_units(lc.crs),
        "landcover": str(landcover),
        "imagery_source": str(imagery),
        "split": {"val_fraction": val_fraction, "block_size": split.block_size, "seed": seed},
        "num_chips": {"train": counts.get("train", 0), "val": counts.get("val", 0)},
    })
    _write_index(root / CHIPS_GPKG, chips, names, assignment, footprints, scheme, lc.crs)
    return {"train": counts.get("train", 0), "val": counts.get("val", 0)}


def _band_names(img) -> list[str]:
    descriptions = list(img.descriptions)
    if all(descriptions):
        return [str(d) for d in descriptions]
    return list(ImageryInfo(img.count, img.dtypes[0]).band_names)


def _imagery_info(img, band_stats: esri.BandStats, band_names: list[str]) -> ImageryInfo:
    return range_from_stats(img.count, img.dtypes[0], band_stats.minimum.tolist(),
                            band_stats.maximum.tolist(), band_names)


def _crs_units(crs) -> str | None:
    try:
        units = crs.linear_units
    except Exception:  # a CRS pyproj cannot describe; units are informative only
        return None
    return units or None


def _write_index(path: Path, chips: Sequence[_Chip], names: Sequence[str],
                 assignment: dict[int, str], footprints: dict, scheme: ClassScheme,
                 crs) -> None:
    """chips.gpkg: each chip's footprint, files, split, nodata share and class pixel counts."""
    import geopandas

    columns: dict[str, list] = {
        "index": [c.index for c in chips],
        "image": [f"images/{n}" for n in names],
        "label": [f"labels/{n}" for n in names],
        "split": [assignment[c.index] for c in chips],
        "nodata_fraction": [float(c.nodata_fraction) for c in chips],
    }
    for value in scheme.values:
        columns[f"px_{value}"] = [int(c.class_pixels.get(value, 0)) for c in chips]
    frame = geopandas.GeoDataFrame(
        columns, geometry=[footprints[c.index] for c in chips], crs=crs.to_wkt())
    frame.to_file(path, layer="chips", driver="GPKG")
