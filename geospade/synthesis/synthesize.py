"""Synthesise imagery for a whole land-cover raster (a file) or a numpy array.

:func:`synthesize` writes one seamless GeoTIFF on the land cover's own grid (optionally a
Cloud Optimized GeoTIFF and a PNG quick-look); :func:`synthesize_array` does the same in
memory for notebooks. Both check the input against the checkpoint's model card (class values,
resolution) before generating anything, then run :func:`geospade.synthesis.pipeline.run_synthesis`.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT

from geospade.checkpoint import checkpoint_input
from geospade.classes import ClassScheme, raster_values
from geospade.errors import ClassSchemeError, GridError, InputError
from geospade.progress import ProgressArg
from geospade.raster import (
    atomic_file,
    check_landcover,
    check_not_input,
    check_output_file,
    geotiff_profile,
    open_raster,
)
from geospade.synthesis.model import LoadedModel
from geospade.synthesis.pipeline import (
    ArrayLabels,
    ArraySink,
    RasterLabels,
    RasterSink,
    RunStats,
    run_synthesis,
)
from geospade.synthesis.plan import (
    DEFAULT_FEATHER,
    SynthesisPlan,
    default_tile_size,
    plan_tiles,
    round_up,
    world_offset,
)

log = logging.getLogger(__name__)

GEOTIFF_SUFFIXES = (".tif", ".tiff")
RESOLUTION_TOLERANCE = 0.05  # relative pixel-size difference accepted without a warning
PREVIEW_SIZE = 1024


class ResolutionWarning(UserWarning):
    """The land cover's pixel size (or CRS unit) differs from the training data's, or it has
    no CRS (so neither will the output)."""


@dataclass
class SynthesisResult:
    """What :func:`synthesize` wrote.

    Attributes:
        path: the output GeoTIFF.
        width, height: its size in pixels.
        crs, transform: its georeferencing (the land cover's, or the resampled grid's).
        tile_size, halo, feather, seed: how it was generated.
        downsampling_factor: the generator's 2^k (tile grids and seam phases align to it).
        resampled: True when the land cover was resampled to the training resolution.
        preview: the PNG quick-look, if one was written.
        stats: counts and timings (tiles generated and skipped, seconds...).
    """

    path: Path
    width: int
    height: int
    crs: object
    transform: Affine
    tile_size: int
    halo: int
    feather: int
    seed: int
    resampled: bool = False
    preview: Path | None = None
    stats: RunStats = field(default_factory=RunStats)
    downsampling_factor: int = 1

    @property
    def megapixels_per_second(self) -> float:
        """Output pixels per second of the synthesis loop, in millions."""
        return self.width * self.height / 1e6 / max(self.stats.seconds, 1e-9)


class SynthesizedArray(NamedTuple):
    """Output of :func:`synthesize_array`: pixels (bands, H, W) and validity (H, W)."""

    image: np.ndarray
    mask: np.ndarray


# -- checks against the model card ---------------------------------------------------------


def load_model(checkpoint: str | Path | LoadedModel, device: str = "auto") -> LoadedModel:
    """A :class:`LoadedModel` from a checkpoint path (or the given one, unchanged)."""
    if isinstance(checkpoint, LoadedModel):
        return checkpoint
    return LoadedModel.from_checkpoint(checkpoint, device)


def make_plan(model: LoadedModel, width: int, height: int, *, tile_size: int | None = None,
              halo: int | None = None, feather: int | None = None,
              source: str | None = None, transform: Affine | None = None) -> SynthesisPlan:
    """The tile plan for a raster, filling in defaults from the model.

    Defaults: tiles of 512 px, a halo of the generator's receptive field (at most 128 px), a
    feather of 32 px (narrower if the halo is small). ``transform`` anchors the tile grid
    and the noise in the world (see :mod:`geospade.synthesis.plan`); None anchors them at
    the raster's own corner.
    """
    factor = model.downsampling_factor
    if tile_size is not None and int(tile_size) <= 0:  # 0 must not quietly mean "default"
        raise GridError(f"tile size {tile_size} must be a positive multiple of {factor}, the "
                        "generator's downsampling factor", path=source,
                        hint=f"Use e.g. --tile-size {round_up(512, factor)}, or leave it out.")
    tile_size = tile_size or default_tile_size(width, height, factor)
    halo = model.default_halo if halo is None else int(halo)
    if feather is None:
        feather = min(DEFAULT_FEATHER, 2 * halo, tile_size // 2) // 2 * 2
    return plan_tiles(width, height, tile_size=int(tile_size), halo=halo, feather=int(feather),
                      multiple_of=factor, source=source, world=world_offset(transform))


UNKNOWN_CLASS_HINT = ("Map them to a class the model knows with --map-unknown VALUE, "
                      "reclassify the land cover, or use a model trained on these classes.")


def check_classes(values, scheme: ClassScheme, map_unknown: int | None, source=None) -> None:
    """Fail before generating when land-cover values are not classes of the model's scheme.

    Args:
        values: the distinct values present (nodata excluded).
        scheme: the model's class scheme.
        map_unknown: class value that unknown values become; must itself be a class.
        source: file name for messages.
    """
    if map_unknown is not None:
        if int(map_unknown) not in scheme.values:
            raise ClassSchemeError(
                f"--map-unknown {map_unknown} is not a class of scheme '{scheme.name}' "
                f"(classes {scheme.values})", path=source, hint="Give one of those values.")
        return
    scheme.check_values(values, source=source, hint=UNKNOWN_CLASS_HINT)


def resolution_differs(resolution: tuple[float, float], card) -> bool:
    """True when a pixel size differs from the card's training resolution by more than
    :data:`RESOLUTION_TOLERANCE` (False when the card records none)."""
    if card.resolution is None:
        return False
    return any(want and abs(abs(have) - abs(want)) / abs(want) > RESOLUTION_TOLERANCE
               for have, want in zip(resolution, card.resolution, strict=True))


def resolution_mismatch(resolution: tuple[float, float], crs_units: str | None, card,
                        source=None) -> str | None:
    """What differs from the training data (pixel size, CRS unit), as one message, or None."""
    problems = []
    if resolution_differs(resolution, card):
        problems.append(f"pixel size {_fmt_res(resolution)} differs from the training "
                        f"resolution {_fmt_res(card.resolution)}")
    if crs_units and card.crs_units and _unit(crs_units) != _unit(card.crs_units):
        problems.append(f"CRS unit '{crs_units}' differs from the training data's "
                        f"'{card.crs_units}'")
    if not problems:
        return None
    where = f"{source}: " if source else ""
    return where + "; ".join(problems)


def _unit(name: str) -> str:
    return name.lower().replace("meter", "metre").rstrip("s")


def _fmt_res(res) -> str:
    return f"{abs(res[0]):g} x {abs(res[1]):g}"


def training_grid(dataset, resolution: tuple[float, float]) -> tuple[Affine, int, int]:
    """(transform, width, height) covering ``dataset``'s bounds at ``resolution``."""
    left, bottom, right, top = dataset.bounds
    xres, yres = abs(resolution[0]), abs(resolution[1])
    width = max(1, math.ceil((right - left) / xres - 1e-6))
    height = max(1, math.ceil((top - bottom) / yres - 1e-6))
    return Affine(xres, 0.0, left, 0.0, -yres, top), width, height


# -- files ----------------------------------------------------------------------------------


def synthesize(
    landcover: str | Path,
    checkpoint: str | Path | LoadedModel,
    out: str | Path,
    *,
    tile_size: int | None = None,
    halo: int | None = None,
    feather: int | None = None,
    batch_size: int = 4,
    device: str = "auto",
    seed: int = 0,
    map_unknown: int | None = None,
    resample: bool = False,
    cog: bool = False,
    preview: str | Path | None = None,
    overwrite: bool = False,
    progress: ProgressArg = True,
    client=None,
    block_size: int | None = None,
    output_format: str = "gtiff",
    resume: bool = False,
) -> SynthesisResult:
    """Generate imagery for a land-cover raster and write it as one georeferenced GeoTIFF.

    The output has the land cover's CRS, transform and size, the training imagery's band
    count, data type and colour interpretation, and an internal mask that is 0 wherever the
    land cover is nodata. It is written window by window (memory does not grow with the
    raster) under a temporary name, and renamed when complete.

    Args:
        landcover: single-band integer land-cover raster.
        checkpoint: checkpoint file, run folder, or a :class:`LoadedModel`.
        out: output GeoTIFF path.
        tile_size: tile core side in pixels (multiple of the generator's 2**k; default 512).
            Tiles lie on a grid fixed in the CRS (multiples of ``tile_size`` pixels from its
            origin), so runs over overlapping or adjacent areas with the same tile size and
            seed agree where they overlap.
        halo: context pixels on every side of a tile (default: from the receptive field).
        feather: width of the cosine cross-fade at tile boundaries (default 32).
        batch_size: tiles per generator forward pass.
        device: "auto", "cpu", "cuda" or "cuda:N".
        seed: noise seed: one style for the whole raster; the same seed gives the same output.
        map_unknown: class value that land-cover values outside the model's scheme become
            (default: such values are an error listing them).
        resample: resample the land cover (nearest) to the training resolution when it
            differs; the output is then on that resampled grid.
        cog: write a Cloud Optimized GeoTIFF with overviews (average resampling).
        preview: write a PNG quick-look (land-cover colours beside the output) to this path.
        overwrite: replace existing outputs.
        progress: progress bar (True), silent (False), or a callback(done, total, message).
        client: a ``distributed.Client``: synthesise on its Dask cluster, one task per block
            of tiles, with the same pixels as without it (see
            :mod:`geospade.synthesis.distributed`). None (default): in this process.
        block_size: side of a cluster task's output block in pixels, a multiple of the tile
            size (default: 2048, smaller to give each worker two blocks). Needs ``client``.
        output_format: "gtiff" (one GeoTIFF, or a COG with ``cog``) or "vrt" (a VRT over the
            block GeoTIFFs, for rasters too large for one file). "vrt" needs ``client``.
        resume: continue an interrupted cluster run, keeping the blocks its manifest
            records as complete. Needs ``client``.

    Returns:
        A :class:`SynthesisResult`.

    Raises:
        OutputExistsError: ``out`` (or ``preview``) exists and ``overwrite`` is False.
        ClassSchemeError: values that are not classes of the model (and no ``map_unknown``).
        InputError, GridError, CheckpointError: unusable inputs, sizes or checkpoint.
    """
    out = check_output_file(out, overwrite)
    if client is None and (block_size is not None or resume or output_format != "gtiff"):
        raise InputError("block size, resume and the VRT output are options of a cluster run",
                         hint="Add --workers N, --scheduler ADDRESS or --scheduler-file FILE.")
    if preview is not None:
        preview = check_output_file(preview, overwrite)
    check_not_input([out, preview], {"land cover": landcover,
                                     "checkpoint": checkpoint_input(checkpoint)})
    suffixes = (".vrt",) if output_format == "vrt" else GEOTIFF_SUFFIXES
    if out.suffix.lower() not in suffixes:
        ending = f"ends in '{out.suffix}'" if out.suffix else "has no extension"
        kind = "a VRT" if output_format == "vrt" else "a GeoTIFF"
        raise InputError(f"output name {ending}, but synthesize writes {kind}", path=out,
                         hint=f"Use a {suffixes[0]} name (e.g. "
                              f"{out.with_suffix(suffixes[0]).name}); --preview writes a PNG "
                              "quick-look beside it.")
    check_batch_size(batch_size)
    model = load_model(checkpoint, device)
    with open_raster(landcover, "land cover") as dataset:
        check_landcover(dataset)
        source_ds, resampled = _training_view(dataset, model, resample)
        try:
            plan = make_plan(model, source_ds.width, source_ds.height, tile_size=tile_size,
                             halo=halo, feather=feather, source=str(landcover),
                             transform=source_ds.transform)
            check_classes(raster_values(source_ds), model.scheme, map_unknown, landcover)
            if client is not None:
                from geospade.synthesis.distributed import ClusterRun, write_on_cluster

                run = ClusterRun(landcover, checkpoint, device, resample, seed, batch_size,
                                 map_unknown, block_size, output_format, cog, resume)
                stats: RunStats = write_on_cluster(client, run, model, plan, out,
                                                   source_ds.crs, source_ds.transform,
                                                   overwrite=overwrite, progress=progress)
            else:
                stats = _write_geotiff(RasterLabels(source_ds), model, plan, out,
                                       source_ds.crs, source_ds.transform, seed=seed,
                                       batch_size=batch_size, map_unknown=map_unknown,
                                       cog=cog, overwrite=overwrite, progress=progress)
            result = SynthesisResult(out, source_ds.width, source_ds.height, source_ds.crs,
                                     source_ds.transform, plan.tile_size, plan.halo,
                                     plan.feather, seed, resampled, None, stats,
                                     plan.multiple_of)
            if preview is not None:
                result.preview = write_preview(source_ds, out, preview, model.scheme, overwrite)
        finally:
            if source_ds is not dataset:
                source_ds.close()
    log.info("synthesised %s: %d of %d tiles generated (%d all nodata) in %.1f s, %.2f Mpx/s",
             out, stats.generated, stats.tiles, stats.skipped, stats.seconds,
             result.megapixels_per_second)
    return result


def check_batch_size(batch_size: int) -> None:
    """InputError unless at least one tile goes through the generator per pass."""
    if int(batch_size) < 1:
        raise InputError(f"batch size {batch_size} must be at least 1 (tiles per generator "
                         "pass)", hint="Use --batch-size 4, or 1 to save memory.")


def _training_view(dataset, model: LoadedModel, resample: bool):
    """The land cover as synthesis reads it, and whether that is a resampled view.

    Warns (:class:`ResolutionWarning`) when the pixel size differs from the training data's;
    with ``resample``, returns a nearest-neighbour WarpedVRT at the training resolution.
    """
    if dataset.crs is None:
        warnings.warn(f"{dataset.name}: the land cover has no coordinate reference system, so "
                      "the output will have none either. Assign one first (gdal_edit.py -a_srs "
                      "EPSG:CODE FILE) to place the imagery on a map", ResolutionWarning,
                      stacklevel=3)
    units = dataset.crs.linear_units if dataset.crs is not None else None
    message = resolution_mismatch(dataset.res, units, model.card, dataset.name)
    if message is None:
        return dataset, False
    # Resampling to the training pixel size only makes sense in the same unit.
    same_unit = not (units and model.card.crs_units) or _unit(units) == _unit(model.card.crs_units)
    if resample and not same_unit:
        raise InputError(
            f"--resample cannot bring pixels in "
            f"{'degrees' if dataset.crs.is_geographic else repr(units) + ' units'} to the "
            "training resolution "
            f"{_fmt_res(model.card.resolution)} in {model.card.crs_units}", path=dataset.name,
            hint=f"Reproject the land cover to a CRS in {model.card.crs_units} first, e.g. "
                 "gdalwarp -t_srs EPSG:CODE -tr X Y -r near IN OUT.")
    can_resample = resolution_differs(dataset.res, model.card) and same_unit
    if not resample or not can_resample:
        hint = (" Pass --resample to resample it (nearest) to the training resolution."
                if can_resample else "")
        warnings.warn(message + "." + hint, ResolutionWarning, stacklevel=3)
        return dataset, False
    # can_resample holds only when the card records a resolution (resolution_differs).
    assert model.card.resolution is not None
    transform, width, height = training_grid(dataset, model.card.resolution)
    warnings.warn(f"{message}; resampling the land cover (nearest) to "
                  f"{_fmt_res(model.card.resolution)}: the output is on that grid "
                  f"({width} x {height} pixels)", ResolutionWarning, stacklevel=3)
    vrt = WarpedVRT(dataset, crs=dataset.crs, transform=transform, width=width, height=height,
                    resampling=Resampling.nearest)
    return vrt, True


def _write_geotiff(source, model: LoadedModel, plan: SynthesisPlan, out: Path, crs, transform,
                   *, seed: int, batch_size: int, map_unknown: int | None, cog: bool,
                   overwrite: bool, progress: ProgressArg) -> RunStats:
    """Run the pipeline into a tiled GeoTIFF (then a COG copy), atomically at ``out``."""
    imagery = model.imagery
    profile = imagery_profile(imagery, plan.width, plan.height, crs, transform)
    with atomic_file(out, overwrite) as tmp:
        tiled = tmp.with_name(tmp.name + ".tiled.tif") if cog else tmp
        # An internal mask (not a nodata colour: 0 is a real colour in imagery). A block
        # cache sized for the rows of blocks in progress, not GDAL's default share of RAM,
        # which it would fill with finished blocks as the raster grows.
        env = rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True,
                           GDAL_CACHEMAX=block_cache_bytes(plan.width, imagery))
        with env, rasterio.open(tiled, "w", **profile) as dst:
            describe_bands(dst, imagery)
            stats = run_synthesis(source, RasterSink(dst), model, plan, seed=seed,
                                  batch_size=batch_size, map_unknown=map_unknown,
                                  progress=progress)
        if cog:
            to_cog(tiled, tmp)
            tiled.unlink()
    return stats


def imagery_profile(imagery, width: int, height: int, crs, transform) -> dict:
    """The GeoTIFF profile of synthesised imagery (also of each shard of a distributed run)."""
    profile = geotiff_profile(width, height, imagery.count, imagery.dtype, crs, transform)
    if imagery.count in (3, 4) and imagery.dtype == "uint8":
        profile["photometric"] = "RGB"  # so viewers show it in colour; NIR is an extra band
    return profile


def describe_bands(dst, imagery) -> None:
    """Colour interpretation and band names of the training imagery, on an open output."""
    dst.colorinterp = imagery.colorinterp()
    for band, name in enumerate(imagery.band_names, start=1):
        dst.set_band_description(band, name)


def block_cache_bytes(width: int, imagery, block: int = 512) -> int:
    """GDAL block cache for writing: twice a row of output blocks (pixels + mask) and of
    land-cover blocks, at least 64 MiB. Blocks wait there until every tile touching them is
    blended; a smaller cache would write partial blocks twice (a larger, slower file)."""
    itemsize = np.dtype(imagery.dtype).itemsize
    row = width * block * (imagery.count * itemsize + 1 + 2)
    return max(64 * 2**20, 2 * row)


def to_cog(src: Path, dst: Path) -> None:
    """Copy a complete tiled GeoTIFF to a Cloud Optimized GeoTIFF with average overviews."""
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        rasterio.shutil.copy(src, dst, driver="COG", compress="deflate", predictor="2",
                             overview_resampling="average", blocksize=512,
                             BIGTIFF="IF_SAFER")


def write_preview(landcover_ds, image: Path, out_png: Path, scheme: ClassScheme,
                  overwrite: bool = False, max_size: int = PREVIEW_SIZE) -> Path:
    """PNG quick-look: land-cover colours beside the synthesised imagery (decimated reads)."""
    from geospade.preview import imagery_rgb, landcover_rgb, preview_shape, side_by_side, write_png

    height, width = preview_shape(landcover_ds.width, landcover_ds.height, max_size)
    labels = landcover_ds.read(1, out_shape=(height, width), resampling=Resampling.nearest)
    valid = landcover_ds.read_masks(1, out_shape=(height, width),
                                    resampling=Resampling.nearest) > 0
    left = landcover_rgb(np.where(valid, labels.astype(np.int64), -1), scheme)  # nodata black
    with open_raster(image, "synthesised imagery") as ds:
        pixels = ds.read(out_shape=(ds.count, height, width), resampling=Resampling.average,
                         masked=True)
    return write_png(out_png, side_by_side([left, imagery_rgb(pixels)]), overwrite=overwrite)


# -- arrays ---------------------------------------------------------------------------------


def synthesize_array(
    labels: np.ndarray,
    transform: Affine | None,
    checkpoint: str | Path | LoadedModel,
    *,
    nodata: int | None = None,
    crs=None,
    tile_size: int | None = None,
    halo: int | None = None,
    feather: int | None = None,
    batch_size: int = 4,
    device: str = "auto",
    seed: int = 0,
    map_unknown: int | None = None,
    progress: ProgressArg = False,
) -> SynthesizedArray:
    """Generate imagery for a land-cover array in memory (same code path as :func:`synthesize`).

    Args:
        labels: (H, W) integer class values (a masked array's mask counts as nodata).
        transform: the array's affine transform: it anchors the tile grid and the noise in
            the world, so the result equals :func:`synthesize` over the same area of a larger
            raster (away from the array's edges), and it checks the pixel size against the
            training resolution. None: the array's corner anchors them, no check.
        checkpoint: checkpoint path or a :class:`LoadedModel` (load it once for many calls).
        nodata: value meaning nodata (the class scheme's nodata counts too).
        crs: the array's CRS, to check its unit against the training data's (optional).
        tile_size, halo, feather, batch_size, device, seed, map_unknown, progress: as for
            :func:`synthesize`. The result does not depend on the tile size (away from
            borders) and matches :func:`synthesize` for the same inputs and settings.

    Returns:
        ``(image, mask)``: (bands, H, W) pixels of the training imagery's dtype, and a bool
        (H, W) mask, False where the land cover is nodata.
    """
    labels = np.ma.asanyarray(labels) if np.ma.isMaskedArray(labels) else np.asarray(labels)
    if labels.ndim != 2:
        raise InputError(f"land cover array must be (H, W), got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"land cover array has dtype {labels.dtype}; class values are integers",
                         hint="Pass the classified (integer) land cover.")
    check_batch_size(batch_size)
    model = load_model(checkpoint, device)
    if transform is not None:
        units = getattr(crs, "linear_units", None) if crs is not None else None
        message = resolution_mismatch((transform.a, transform.e), units, model.card)
        if message:
            warnings.warn(message, ResolutionWarning, stacklevel=2)
    source = ArrayLabels(labels, nodata)
    present = np.unique(np.ma.compressed(labels) if np.ma.isMaskedArray(labels) else labels)
    if nodata is not None:
        present = present[present != nodata]
    check_classes(present.tolist(), model.scheme, map_unknown, "array")
    plan = make_plan(model, source.width, source.height, tile_size=tile_size, halo=halo,
                     feather=feather, transform=transform)
    sink = ArraySink(model.imagery.count, source.height, source.width, model.imagery.dtype)
    run_synthesis(source, sink, model, plan, seed=seed, batch_size=batch_size,
                  map_unknown=map_unknown, progress=progress)
    return SynthesizedArray(sink.image, sink.mask)
