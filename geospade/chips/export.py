"""Chip export: land cover + imagery -> an ArcGIS Pro Classified_Tiles training folder.

Several land covers (scenes, see :mod:`geospade.chips.scenes`) make one folder: each keeps its
grid and CRS, chip numbers run on from one scene to the next, and the metadata cover all.

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
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import rasterio
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.features import geometry_mask
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from geospade import __version__
from geospade.chips import aoi as aoi_mod
from geospade.chips import esri
from geospade.chips import scenes as scenes_mod
from geospade.chips.merge import merge_schemes
from geospade.chips.split import Split, spatial_split
from geospade.chips.threads import Sources, block_groups, landcover_view, map_by_block, ordered_map
from geospade.classes import ClassScheme, resolve_scheme, value_counts
from geospade.errors import InputError
from geospade.imagery import ImageryInfo, range_from_stats
from geospade.progress import ProgressArg, progress_bar
from geospade.raster import (
    RasterReader,
    aligned_view,
    atomic_dir,
    check_landcover,
    check_output,
    esri_world_file,
    open_raster,
    require_crs,
    world_file_options,
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
#: Chip sides must be multiples of this: the size step (2**num_upsampling) of the smallest
#: generator, the "tiny" preset of geospade.models.config (a test keeps the two in step).
CHIP_SIZE_STEP = 8
#: The validation fraction is at least 0 and below this (every front end checks against it).
MAX_VAL_FRACTION = 1.0
#: A chip is inside the AOI when the AOI covers it to within this fraction of a pixel:
#: an AOI drawn in another CRS along the chip borders comes back with round-off.
AOI_TOLERANCE_PIXELS = 0.01


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
        num_scenes: land covers exported (each with its imagery).
    """

    out_dir: Path
    num_train: int
    num_val: int
    skipped: dict[str, int]
    num_tiles: int
    class_scheme: ClassScheme
    seconds: float
    num_scenes: int = 1

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
    scene: int = 0
    nodata_fraction: float = 0.0
    class_pixels: dict[int, int] = field(default_factory=dict)
    band_stats: esri.BandStats | None = None


def default_workers() -> int:
    """Worker threads used when none are given: up to 4, never more than the CPUs."""
    return max(1, min(4, os.cpu_count() or 1))


def export_chips(
    landcover: str | Path | Sequence[str | Path],
    imagery: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    *,
    tile_size: int = 256,
    stride: int | None = None,
    max_nodata: float = 0.0,
    aoi: str | Path | None = None,
    classes: str | Path | ClassScheme | None = None,
    val_fraction: float = 0.0,
    val_block: int | None = None,
    val_scenes: int | str | Sequence[str] | None = None,
    resolution: float | None = None,
    skip_unpaired: bool = False,
    seed: int = 0,
    image_format: str = "tif",
    workers: int | None = None,
    overwrite: bool = False,
    progress: ProgressArg = True,
) -> ExportResult:
    """Tile land-cover rasters and their imagery into one ArcGIS Pro Classified_Tiles folder.

    Each land cover is a *scene* (see :mod:`geospade.chips.scenes`): it is paired with the
    imagery files overlapping it (several are read as one mosaic) and keeps its own grid and
    CRS. Scenes are planned one at a time, then their chips written through one bounded
    pipeline, each scene's datasets open only while its chips are read, so memory does not
    grow with their number. All scenes share one class scheme and one band layout.

    Args:
        landcover: classified (integer, single band) raster(s): files, glob patterns or
            folders; each one's grid is its chips' grid.
        imagery: imagery of the same areas, on any grid (read bilinearly onto each land
            cover's): files, glob patterns or folders.
        out_dir: chip folder to create (must be absent or empty unless ``overwrite``).
        tile_size: chip side in pixels (a multiple of :data:`CHIP_SIZE_STEP`).
        stride: step between chips (default ``tile_size``: no overlap).
        max_nodata: largest share of nodata pixels (land cover nodata or imagery nodata)
            a chip may hold; 0.0 skips any chip touching nodata. Nodata label pixels are
            written as 0 (ArcGIS's NoData) unless 0 is a class value.
        aoi: polygon file; only chips the polygons cover entirely are exported.
        classes: ClassScheme, preset name or scheme JSON; default: from the rasters' colour
            tables / attribute tables, else the values present, merged over all scenes.
        val_fraction: share of each scene's chips for validation, chosen by blocks of its grid.
        val_block: side in pixels of the split blocks (default about 4 tiles).
        val_scenes: hold out whole scenes for validation instead: a number of scenes (chosen
            by ``seed``) or scene names (land-cover file names, with or without suffix).
        resolution: pixel size (in each scene's CRS units) to resample every scene to:
            imagery bilinearly, land cover by nearest neighbour. Default: each land cover's.
        skip_unpaired: leave out land covers that no imagery overlaps (default: an error).
        seed: seed of the split.
        image_format: "tif" (GeoTIFF + .tfw) or "png" (+ .pgw, at most 3 bands).
        workers: writer threads (default :func:`default_workers`).
        overwrite: replace an existing, non-empty ``out_dir``.
        progress: True for progress bars (scene by scene), False for none, or a callback.

    Raises:
        InputError: unusable inputs or options (float or multi-band land cover, missing CRS,
            no overlap, tile larger than a raster, class values outside the scheme, class
            names or band layouts that differ between scenes, damaged rasters, unreadable
            AOI, no chip left to export). Nothing is written when this is raised.
        OutputExistsError: ``out_dir`` is not empty and ``overwrite`` is False.
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    workers = default_workers() if workers is None else int(workers)
    _check_options(tile_size, stride, max_nodata, val_fraction, image_format, workers)
    if val_scenes is not None and val_fraction > 0:
        raise InputError("both a validation fraction and validation scenes were given",
                         hint="Use --val-fraction (blocks within each scene) or --val-scenes "
                              "(whole scenes), not both.")
    if resolution is not None and not resolution > 0:
        raise InputError(f"resolution {resolution} must be positive",
                         hint="Give the pixel size in the land cover's CRS units, e.g. 1.0.")
    check_output(out_dir, overwrite)
    landcovers = scenes_mod.expand_inputs(landcover, "land cover")
    scenes, _ = scenes_mod.pair_scenes(landcovers, scenes_mod.expand_inputs(imagery, "imagery"),
                                       skip_unpaired=skip_unpaired)
    options = _Options(tile_size, stride, max_nodata, image_format, workers, resolution,
                       progress, num_scenes=len(scenes))

    with contextlib.ExitStack() as stack:
        stack.enter_context(rasterio.Env(**_gdal_options()))
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="geospade-")))
        given = None
        if classes is not None:
            with open_raster(scenes[0].landcover, "land cover") as first:
                given = resolve_scheme(classes, first)
        areas = _AreaOfInterest(aoi)
        plans = [_plan_scene(n, scene, work, given, areas, options)
                 for n, scene in enumerate(scenes)]
        _check_scenes(plans, resolution)
        num_tiles = sum(len(p.grid) for p in plans)
        skipped: collections.Counter[str] = collections.Counter()
        for p in plans:
            skipped.update(p.plan.skipped)
        if not any(p.plan.tiles for p in plans):
            raise _nothing_left(num_tiles, skipped, scenes[0].landcover)
        scheme = given if given is not None else merge_schemes(
            [(p.scene.landcover, p.scheme) for p in plans if p.scheme is not None])
        for p in plans:
            scheme.check_values(p.plan.values, source=p.scene.landcover)
        label_nodata = _label_nodata(scheme, max_nodata)
        _split_scenes(plans, val_fraction, val_block, val_scenes, seed)
        for p in plans:
            skipped["overlaps_val"] += len(p.assigned_split.dropped)

        with atomic_dir(out_dir, overwrite) as tmp:
            (tmp / "images").mkdir()
            (tmp / "labels").mkdir()
            chips = _write_scenes(tmp, plans, scheme, label_nodata, options)
            written = [c for c in chips if c.written]
            skipped["imagery_nodata"] += len(chips) - len(written)
            if not written:
                raise _nothing_left(num_tiles, skipped, scenes[0].landcover)
            counts = _write_metadata(
                tmp, written, plans, scheme=scheme, label_nodata=label_nodata,
                tile_size=tile_size, num_tiles=num_tiles, image_format=image_format,
                val_fraction=val_fraction, val_scenes=val_scenes, seed=seed)

    skipped_out = {reason: int(skipped.get(reason, 0)) for reason in SKIP_REASONS}
    result = ExportResult(out_dir, counts["train"], counts["val"], skipped_out, num_tiles,
                          scheme, time.perf_counter() - start, len(scenes))
    log.info("exported %d chips (%d train, %d val) of %d scene(s) to %s; skipped %s",
             result.num_chips, result.num_train, result.num_val, len(scenes), out_dir,
             skipped_out)
    return result


@dataclass(frozen=True)
class _Options:
    """The export options every scene uses."""

    tile_size: int
    stride: int | None
    max_nodata: float
    image_format: str
    workers: int
    resolution: float | None
    progress: ProgressArg
    num_scenes: int


@dataclass
class _ScenePlan:
    """One scene after pass 1: its grid, georeference, chips to write and split."""

    number: int
    scene: scenes_mod.Scene
    imagery: Path  # the file to read: the scene's one imagery file or its mosaic VRT
    grid: TileGrid
    transform: Affine
    crs: CRS
    width: int
    height: int
    count: int
    dtype: str
    band_names: list[str]
    plan: _Plan
    outline: shapely.Geometry
    scheme: ClassScheme | None
    lc_meta: SimpleNamespace
    view_meta: SimpleNamespace
    write_block: tuple[int, int]
    offset: int = 0
    split: Split | None = None

    @property
    def assigned_split(self) -> Split:
        """The scene's train/val split, which :func:`_split_scenes` gives after pass 1."""
        if self.split is None:
            raise RuntimeError(f"scene {self.scene.name} has no split yet")
        return self.split

    @property
    def label(self) -> str:
        """How progress bars name the scene."""
        return self.scene.name

    @property
    def resolution(self) -> tuple[float, float]:
        return abs(self.transform.a), abs(self.transform.e)


class _AreaOfInterest:
    """The AOI polygons, read once and reprojected once per CRS."""

    def __init__(self, path: str | Path | None):
        self.path = path
        self._by_crs: dict[str, shapely.Geometry] = {}

    def get(self, crs: CRS) -> shapely.Geometry | None:
        if self.path is None:
            return None
        key = crs.to_wkt()
        if key not in self._by_crs:
            self._by_crs[key] = aoi_mod.read_aoi(self.path, crs)
        return self._by_crs[key]


def _plan_scene(number: int, scene: scenes_mod.Scene, work: Path, given: ClassScheme | None,
                areas: _AreaOfInterest, options: _Options) -> _ScenePlan:
    """Pass 1 for one scene: check its rasters, lay its grid and choose its chips."""
    source = scenes_mod.imagery_source(scene, work, number)
    with contextlib.ExitStack() as stack:
        raw = stack.enter_context(open_raster(scene.landcover, "land cover"))
        check_landcover(raw)
        require_crs(raw, "land cover")
        lc = landcover_view(raw, options.resolution)
        if lc is not raw:
            stack.callback(lc.close)
        img = stack.enter_context(open_raster(source, "imagery"))
        require_crs(img, "imagery")
        _check_format(options.image_format, img, lc)
        grid = tile_grid(lc.width, lc.height, options.tile_size, options.stride, edge="drop",
                         source=scene.landcover)
        view = aligned_view(img, lc)
        if view is not img:
            stack.callback(view.close)
        # What pass 2 needs of the datasets, kept so that it opens them only in its threads.
        lc_meta, view_meta = _meta(lc), _meta(view)
        # A warped view's blocks are not the file's; the land cover's grid is what it follows.
        write_block = tuple((lc if isinstance(view, WarpedVRT) else view).block_shapes[0])
        nodata = given.nodata if given is not None else _int_or_none(raw.nodata)
        outline = _imagery_outline(scene, lc.crs, img if len(scene.imagery) == 1 else None)
        with Sources(scene.landcover, source, options.resolution) as sources:
            plan = _plan_chips(sources, grid, lc.transform, tuple(lc.block_shapes[0]),
                               area=areas.get(lc.crs),
                               imagery_outline=outline, nodata=nodata,
                               max_nodata=options.max_nodata, workers=options.workers,
                               progress=options.progress,
                               desc=_desc("scanning land cover", number, scene, options))
        scheme = None
        if given is None and plan.values:
            scheme = resolve_scheme(None, raw, counts=plan.values)
        return _ScenePlan(number, scene, Path(source), grid, lc.transform, lc.crs, lc.width,
                          lc.height, img.count, img.dtypes[0], _band_names(img), plan,
                          outline, scheme, lc_meta, view_meta, write_block)


def _meta(ds: RasterReader) -> SimpleNamespace:
    """The properties of a dataset that :class:`_ChipWriter` reads, without the handle."""
    return SimpleNamespace(transform=ds.transform, crs=ds.crs, dtypes=ds.dtypes,
                           count=ds.count, nodata=ds.nodata, colorinterp=ds.colorinterp)


def _desc(what: str, number: int, scene: scenes_mod.Scene, options: _Options) -> str:
    if options.num_scenes == 1:
        return what
    return f"scene {number + 1}/{options.num_scenes} ({scene.name}): {what}"


def _imagery_outline(scene: scenes_mod.Scene, crs: CRS,
                     opened: RasterReader | None = None) -> shapely.Geometry:
    """Where the scene's imagery files have pixels, in the land cover's CRS (their union).

    ``opened``: the scene's one imagery file, already open.
    """
    if opened is not None:
        return aoi_mod.raster_outline(opened, crs)
    outlines = []
    for path in scene.imagery:
        with open_raster(path, "imagery") as ds:
            outlines.append(aoi_mod.raster_outline(ds, crs))
    return outlines[0] if len(outlines) == 1 else shapely.union_all(outlines)


def _check_scenes(plans: Sequence[_ScenePlan], resolution: float | None) -> None:
    """One band layout for all scenes; a warning when their resolutions differ."""
    first = plans[0]
    for p in plans[1:]:
        if (p.count, p.dtype) != (first.count, first.dtype):
            raise InputError(
                f"imagery has {p.count} band(s) of {p.dtype} but the imagery of "
                f"{first.scene.landcover} has {first.count} of {first.dtype}",
                path=p.scene.imagery[0],
                hint="Give imagery with one band layout (the same bands and data type) for "
                     "every scene.")
    if resolution is None:
        for p in plans[1:]:
            if not np.allclose(p.resolution, first.resolution, rtol=1e-6):
                log.warning("%s has %s m pixels but %s has %s: chips of one size cover "
                            "different ground; --resolution resamples every scene to one",
                            p.scene.landcover, _fmt(p.resolution), first.scene.landcover,
                            _fmt(first.resolution))
                break


def _fmt(resolution: tuple[float, float]) -> str:
    return "x".join(f"{v:g}" for v in resolution)


def _label_nodata(scheme: ClassScheme, max_nodata: float) -> int | None:
    """The value label chips hold where there is no class.

    ArcGIS (Pro's own export, arcgis.learn) reads 0 in a label chip as NoData, so chips that
    may hold nodata use 0, unless 0 is a class value.
    """
    if max_nodata <= 0:
        return scheme.nodata
    if 0 in scheme.values:
        if scheme.nodata is not None:
            log.warning("0 is a class of the scheme, so nodata label pixels stay %d; "
                        "arcgis.learn reads 0 as NoData and will ignore class 0",
                        scheme.nodata)
        return scheme.nodata
    return 0


def _split_scenes(plans: Sequence[_ScenePlan], val_fraction: float, val_block: int | None,
                  val_scenes, seed: int) -> None:
    """Give every scene its split: spatial blocks within it, or whole scenes held out."""
    offset = 0
    for p in plans:
        p.offset = offset
        offset += len(p.grid)
    if val_scenes is not None:
        held = _held_out_scenes([p for p in plans if p.plan.tiles], val_scenes, seed)
        for p in plans:
            ids = tuple(t.index for t in p.plan.tiles)
            p.split = (Split((), ids, (), 0) if p.number in held else Split(ids, (), (), 0))
        return
    for p in plans:
        try:
            p.split = spatial_split(p.grid, p.plan.tiles, val_fraction=val_fraction,
                                    block_size=val_block, seed=seed)
        except InputError:
            if len(plans) == 1:
                raise
            # One small scene among many: its few chips train; the others give validation.
            log.warning("%s: too few chips to hold some out for validation; all train",
                        p.scene.landcover)
            p.split = Split(tuple(t.index for t in p.plan.tiles), (), (), 0)


def _held_out_scenes(plans: Sequence[_ScenePlan], val_scenes, seed: int) -> set[int]:
    """Scene numbers held out for validation: ``val_scenes`` of them, or those named."""
    if isinstance(val_scenes, str) and val_scenes.strip().isdigit():
        val_scenes = int(val_scenes)
    if isinstance(val_scenes, int):
        if not 0 < val_scenes < len(plans):
            raise InputError(
                f"--val-scenes {val_scenes}: need at least one and fewer than the "
                f"{len(plans)} scene(s) with chips", hint="Hold out fewer scenes, or give more.")
        order = np.random.default_rng(seed).permutation(len(plans))[:val_scenes]
        return {plans[i].number for i in order}
    names = [val_scenes] if isinstance(val_scenes, str) else list(val_scenes)
    names = [n.strip() for item in names for n in str(item).split(",") if n.strip()]
    held: set[int] = set()
    for name in names:
        found = [p for p in plans if name in (p.scene.name, p.scene.landcover.name,
                                              f"{p.scene.name}{p.scene.landcover.suffix}",
                                              str(p.scene.landcover))]
        if not found:
            raise InputError(
                f"--val-scenes names '{name}', which is no scene with chips (scenes: "
                f"{', '.join(p.scene.name for p in plans)})",
                hint="Name scenes as listed: land-cover file names (with their folder where "
                     "names repeat), comma-separated.")
        held.update(p.number for p in found)
    if len(held) == len(plans):
        raise InputError("--val-scenes holds out every scene: nothing is left to train on",
                         hint="Hold out fewer scenes.")
    return held


def _write_scenes(root: Path, plans: Sequence[_ScenePlan], scheme: ClassScheme,
                  label_nodata: int | None, options: _Options) -> list[_Chip]:
    """Pass 2: write every scene's chips (numbered from the scene's offset), in grid order.

    All scenes go through one bounded queue of tasks, so the threads never wait at the end
    of a scene for the next one to start; a scene's datasets are open only while its tasks
    run, so open files do not grow with the number of scenes.
    """
    jobs = [_SceneJob(p, [t for t in p.plan.tiles if t.index in p.assigned_split.assignment()])
            for p in plans]
    jobs = [job for job in jobs if job.tiles]
    total = sum(len(job.tiles) for job in jobs)

    def tasks():
        for job in jobs:
            job.open(root, scheme, label_nodata, options)
            for group in job.groups:
                yield job, group

    def run(task) -> list[_Chip]:
        job, group = task
        return [job.writer(job.sources, job.tiles[i]) for i in group]

    chips: list[_Chip] = []
    shown = [""]
    with progress_bar(options.progress, total=total, desc="export-chips", unit="chip") as bar:
        def take(task_and_result) -> None:
            (job, group), result = task_and_result
            if shown[0] != job.desc(options):  # the bar names the scene being written
                shown[0] = job.desc(options)
                bar.set_description(shown[0], refresh=False)
            chips.extend(result)
            bar.update(len(group))
            job.remaining -= 1
            if job.remaining == 0:  # its last task is done: no thread reads it any more
                job.close()

        try:
            ordered_map(lambda task: (task, run(task)), tasks(), options.workers, take)
        finally:
            for job in jobs:
                job.close()
    return sorted(chips, key=lambda c: c.index)


class _SceneJob:
    """One scene's chips to write, grouped by source block, with its datasets and writer."""

    def __init__(self, plan: _ScenePlan, tiles: list[Tile]):
        self.plan, self.tiles = plan, tiles
        self.sources: Sources | None = None
        self.writer: _ChipWriter | None = None
        self.groups: list[list[int]] = []
        self.remaining = 0

    def desc(self, options: _Options) -> str:
        return _desc("export-chips", self.plan.number, self.plan.scene, options)

    def open(self, root: Path, scheme: ClassScheme, label_nodata: int | None,
             options: _Options) -> None:
        p = self.plan
        self.sources = Sources(p.scene.landcover, p.imagery, options.resolution)
        self.writer = _ChipWriter(root, scheme, options.image_format, p.lc_meta, p.view_meta,
                                  options.max_nodata, p.outline, p.plan.partial_imagery,
                                  p.plan.class_pixels, offset=p.offset,
                                  label_nodata=label_nodata, scene=p.number)
        self.groups = block_groups(self.tiles, p.write_block)
        self.remaining = len(self.groups)

    def close(self) -> None:
        if self.sources is not None:
            self.sources.__exit__(None, None, None)
            self.sources = None


# -- checks ------------------------------------------------------------------------------------


def _check_options(tile_size: int, stride: int | None, max_nodata: float, val_fraction: float,
                   image_format: str, workers: int) -> None:
    if tile_size < CHIP_SIZE_STEP or tile_size % CHIP_SIZE_STEP:
        raise InputError(
            f"tile size {tile_size} px is not a multiple of {CHIP_SIZE_STEP}: the generator "
            "halves chips several times, so train cannot use these chips",
            hint=f"Use a multiple of {CHIP_SIZE_STEP} (of 32 for every model preset), "
                 "e.g. --tile-size 256.")
    if not 0.0 <= max_nodata <= 1.0:
        raise InputError(f"maximum nodata fraction {max_nodata} is not in [0, 1]",
                         hint="Use e.g. --max-nodata 0.1 (10%); 0 skips any chip with nodata.")
    if not 0.0 <= val_fraction < MAX_VAL_FRACTION:
        raise InputError(f"validation fraction {val_fraction} is not in [0, {MAX_VAL_FRACTION:g})",
                         hint="Use e.g. --val-fraction 0.1.")
    if image_format not in FORMATS:
        raise InputError(f"chip format '{image_format}' is not one of {sorted(FORMATS)}",
                         hint="Use --format tif or --format png.")
    if workers < 1:
        raise InputError(f"{workers} workers: need at least 1", hint="Use --workers 1 or more.")
    if stride is not None and stride > tile_size:
        log.warning("stride %d is larger than the tile size %d: pixels between chips are "
                    "never exported", stride, tile_size)


def _check_format(image_format: str, img: RasterReader, lc: RasterReader) -> None:
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


def _nothing_left(num_tiles: int, skipped: collections.Counter, landcover: Path) -> InputError:
    reasons = ", ".join(f"{n} {r.replace('_', ' ')}" for r, n in skipped.items() if n)
    return InputError(
        f"no chip left to export: of {num_tiles} tiles, {reasons or 'none qualified'}",
        path=landcover,
        hint="Check the area of interest and imagery extent, or allow some nodata with "
             "--max-nodata.")


def _int_or_none(value) -> int | None:
    return None if value is None else int(value)


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


def _plan_chips(sources: Sources, grid: TileGrid, transform, block: tuple[int, int], *,
                area, imagery_outline,
                nodata: int | None, max_nodata: float, workers: int,
                progress: ProgressArg, desc: str = "scanning land cover") -> _Plan:
    """Filter the grid by AOI, imagery extent and land-cover nodata; collect class values."""
    tiles = list(grid)
    shapes = aoi_mod.footprints(tiles, transform)
    skipped: collections.Counter = collections.Counter()
    keep = np.ones(len(tiles), dtype=bool)
    if area is not None:
        pixel = min(abs(transform.a), abs(transform.e))
        inside = aoi_mod.inside(area, shapes, tolerance=AOI_TOLERANCE_PIXELS * pixel)
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
        data = sources.read("landcover", tile.window, indexes=1)
        valid = _landcover_valid(lc, tile.window, data, nodata)
        return int(valid.size - np.count_nonzero(valid)), value_counts(data, valid)

    with progress_bar(progress, total=len(candidates), desc=desc, unit="tile") as bar:
        scans = map_by_block(scan, candidates, block, workers, bar)
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


# -- pass 2: writing chips ---------------------------------------------------------------------


class _ChipWriter:
    """Reads one tile's windows and writes its image and label chips (thread-safe)."""

    def __init__(self, root: Path, scheme: ClassScheme, image_format: str, lc, view,
                 max_nodata: float, imagery_outline, partial_imagery: set[int],
                 class_pixels: dict[int, dict[int, int]], *, offset: int = 0,
                 label_nodata: int | None = None, scene: int = 0):
        self.driver, self.ext = FORMATS[image_format]
        self.images, self.labels = root / "images", root / "labels"
        self.scheme = scheme
        self.offset, self.scene = offset, scene
        self.label_nodata = label_nodata
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
        """File name of the chip of grid tile ``index`` (numbered from the scene's offset)."""
        return f"{self.offset + index:012d}{self.ext}"

    def __call__(self, sources: Sources, tile: Tile) -> _Chip:
        lc, view = sources.get()
        window = tile.window
        labels = sources.read("landcover", window, indexes=1)
        valid = _landcover_valid(lc, window, labels, self.scheme.nodata)
        pixels = sources.read("imagery", window)
        chip_transform = window_transform(window, self.transform)
        seen = self._imagery_valid(view, tile, pixels, chip_transform)
        counts = self.class_pixels.get(tile.index)  # pass 1 counted the same valid pixels
        if seen is not None:
            unseen = valid & ~seen  # land cover without imagery
            if np.count_nonzero(~valid | unseen) > self.max_nodata * valid.size:
                return _Chip(self.offset + tile.index, written=False, scene=self.scene)
            if unseen.any():
                valid &= seen
                counts = None
        nodata_fraction = 1.0 - np.count_nonzero(valid) / valid.size
        if nodata_fraction and self.label_nodata is not None:
            # Pixels without imagery (or masked land cover) must not teach the model a class.
            labels = np.where(valid, labels, np.asarray(self.label_nodata, labels.dtype))
        self._write(self.labels / self.name(tile.index), labels[None], self.label_dtype,
                    self.label_nodata, chip_transform, colormap=self.colormap)
        self._write(self.images / self.name(tile.index), pixels, self.image_dtype,
                    self.image_nodata, chip_transform, rgb=self.rgb)
        if counts is None:
            counts = value_counts(labels, valid)
        return _Chip(self.offset + tile.index, True, self.scene, nodata_fraction, counts,
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
        profile.update(world_file_options(self.driver))
        with rasterio.open(path, "w", **profile) as dst:
            if colormap:  # before the pixels: GDAL cannot change the photometric tag after
                dst.write_colormap(1, colormap)
            dst.write(data)
        esri_world_file(path)


def _label_colormap(scheme: ClassScheme, dtype: str) -> dict | None:
    """The scheme's colour table, for the label types GDAL can give one (Byte, UInt16)."""
    if dtype not in ("uint8", "uint16"):
        return None
    top = np.iinfo(dtype).max
    return {v: rgba for v, rgba in scheme.colormap().items() if 0 <= v <= top}


# -- metadata ----------------------------------------------------------------------------------


def _write_metadata(root: Path, chips: Sequence[_Chip], plans: Sequence[_ScenePlan], *,
                    scheme: ClassScheme, label_nodata: int | None, tile_size: int,
                    num_tiles: int, image_format: str, val_fraction: float, val_scenes,
                    seed: int) -> dict[str, int]:
    """Write map.txt, stats, .emd, class scheme, export record and chips.gpkg."""
    ext = FORMATS[image_format][1]
    names = [f"{c.index:012d}{ext}" for c in chips]
    esri.write_map_txt(root, [(f"images/{n}", f"labels/{n}") for n in names])
    first = plans[0]
    assignment = {p.offset + i: split for p in plans for i, split in p.assigned_split.assignment().items()}

    band_stats = esri.BandStats(first.count)
    pixels_per_class: collections.Counter = collections.Counter()
    images_per_class: collections.Counter = collections.Counter()
    for chip in chips:
        if chip.band_stats is not None:  # every written chip has its statistics
            band_stats.merge(chip.band_stats)
        pixels_per_class.update(chip.class_pixels)
        images_per_class.update(v for v, n in chip.class_pixels.items() if n)
    band_names = first.band_names
    common = _common_georeference(plans)
    resolution = common["resolution"] or first.resolution
    # Pro lists the classes of the exported data; a class without pixels would also give
    # arcgis.learn an infinite class weight. class_scheme.json keeps the whole scheme.
    present = [v for v in scheme.values if pixels_per_class.get(v)]
    esri_scheme = scheme.subset(present) if present else scheme
    stats = esri.accumulated_stats(
        scheme=esri_scheme, band_stats=band_stats, band_names=band_names, tile_size=tile_size,
        num_tiles=len(chips), next_tile_index=num_tiles, resolution=resolution,
        crs=common["crs"] or first.crs, pixels_per_class=pixels_per_class,
        images_per_class=images_per_class)
    esri.write_json(root, esri.ACCUMULATED_STATS, stats)
    esri.write_json(root, esri.MODEL_DEFINITION, esri.model_definition(stats))
    esri.write_stats_txt(root, stats)
    scheme.to_json(root / CLASS_SCHEME_JSON)

    counts = collections.Counter(assignment[c.index] for c in chips)
    per_scene = collections.Counter(c.scene for c in chips)
    info = range_from_stats(first.count, first.dtype, band_stats.minimum.tolist(),
                            band_stats.maximum.tolist(), band_names)
    crs = common["crs"]
    esri.write_json(root, EXPORT_JSON, {
        "geospade_version": __version__,
        "tile_size": tile_size,
        "stride": first.grid.stride,
        "format": image_format,
        "imagery": info.to_dict(),
        "crs_wkt": None if crs is None else crs.to_wkt(),
        "resolution": None if common["resolution"] is None else list(common["resolution"]),
        "crs_units": _crs_units(crs if crs is not None else first.crs),
        "label_nodata": label_nodata,
        "landcover": str(first.scene.landcover) if len(plans) == 1
        else [str(p.scene.landcover) for p in plans],
        "imagery_source": _imagery_paths(first) if len(plans) == 1
        else [_imagery_paths(p) for p in plans],
        "scenes": [{"landcover": str(p.scene.landcover),
                    "imagery": [str(i) for i in p.scene.imagery],
                    "crs_wkt": p.crs.to_wkt(), "resolution": list(p.resolution),
                    "chip_index_start": p.offset, "num_chips": per_scene.get(p.number, 0)}
                   for p in plans],
        "split": _split_record(plans, val_fraction, val_scenes, seed),
        "num_chips": {"train": counts.get("train", 0), "val": counts.get("val", 0)},
    })
    _write_index(root / CHIPS_GPKG, chips, names, assignment, plans, scheme, crs)
    return {"train": counts.get("train", 0), "val": counts.get("val", 0)}


def _split_record(plans: Sequence[_ScenePlan], val_fraction: float, val_scenes,
                  seed: int) -> dict:
    if val_scenes is None:
        return {"val_fraction": val_fraction, "block_size": plans[0].assigned_split.block_size,
                "seed": seed}
    held = sorted(p.scene.name for p in plans if p.assigned_split.val and not p.assigned_split.train)
    return {"val_scenes": held, "seed": seed}


def _imagery_paths(p: _ScenePlan) -> str:
    return ";".join(str(i) for i in p.scene.imagery)


def _common_georeference(plans: Sequence[_ScenePlan]) -> dict:
    """The CRS and resolution all scenes share (None for either where they differ)."""
    first = plans[0]
    same_crs = all(p.crs == first.crs for p in plans)
    same_res = all(np.allclose(p.resolution, first.resolution, rtol=1e-6) for p in plans)
    return {"crs": first.crs if same_crs else None,
            "resolution": first.resolution if same_res else None}


def _band_names(img: RasterReader) -> list[str]:
    descriptions = list(img.descriptions)
    if all(descriptions):
        return [str(d) for d in descriptions]
    return list(ImageryInfo(img.count, img.dtypes[0]).band_names)


def _crs_units(crs: CRS) -> str | None:
    try:
        units = crs.linear_units
    except Exception:  # a CRS pyproj cannot describe; units are informative only
        return None
    return units or None


def _write_index(path: Path, chips: Sequence[_Chip], names: Sequence[str],
                 assignment: dict[int, str], plans: Sequence[_ScenePlan], scheme: ClassScheme,
                 crs: CRS | None) -> None:
    """chips.gpkg: each chip's footprint, files, scene, split, nodata share and class pixels.

    Footprints are in the scenes' CRS when they share one, else in EPSG:4326; the
    ``native_crs`` column holds each chip's own CRS (that of its scene).
    """
    import geopandas

    by_number = {p.number: p for p in plans}
    crs_names = {p.number: _crs_name(p.crs) for p in plans}
    columns: dict[str, list] = {
        "index": [c.index for c in chips],
        "image": [f"images/{n}" for n in names],
        "label": [f"labels/{n}" for n in names],
        "split": [assignment[c.index] for c in chips],
        "nodata_fraction": [float(c.nodata_fraction) for c in chips],
        "scene": [by_number[c.scene].scene.name for c in chips],
        "landcover_source": [str(by_number[c.scene].scene.landcover) for c in chips],
        "imagery_source": [_imagery_paths(by_number[c.scene]) for c in chips],
        "native_crs": [crs_names[c.scene] for c in chips],
    }
    for value in scheme.values:
        columns[f"px_{value}"] = [int(c.class_pixels.get(value, 0)) for c in chips]
    geometry = []
    for c in chips:
        p = by_number[c.scene]
        shape = p.plan.footprints[c.index - p.offset]
        geometry.append(shape if crs is not None else _to_lonlat(shape, p.crs))
    layer_crs = crs.to_wkt() if crs is not None else "EPSG:4326"
    frame = geopandas.GeoDataFrame(columns, geometry=geometry, crs=layer_crs)
    frame.to_file(path, layer="chips", driver="GPKG")


def _crs_name(crs: CRS) -> str:
    """``EPSG:nnnn`` when the CRS has such a code, else its WKT."""
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


def _to_lonlat(shape: shapely.Geometry, crs: CRS) -> shapely.Geometry:
    """A footprint in EPSG:4326, its edges densified so that they follow the reprojection."""
    from rasterio.warp import transform_geom

    dense = shapely.segmentize(shape, shape.length / 64)
    return shapely.geometry.shape(transform_geom(crs, "EPSG:4326", shapely.geometry.mapping(dense)))
