"""Raster I/O shared by every stage: opening with clear errors, grid alignment, safe outputs.

Outputs are written under a temporary name beside the target and renamed into place only
when complete (:func:`atomic_file`, :func:`atomic_dir`), so an interrupted run never leaves
a half-written file under the user's name, and nothing is replaced without ``overwrite``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds

from geospade.errors import InputError, OutputExistsError


def open_raster(path: str | Path, what: str = "raster"):
    """Open a raster for reading, or raise InputError naming the file."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} not found", path=path, hint="Check the path.")
    try:
        return rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"cannot open {what} ({exc})", path=path,
                         hint="Give a raster GDAL can read (GeoTIFF, IMG, VRT...).") from None


def check_landcover(dataset) -> None:
    """Land cover must be a single integer band: class values, never resampled reflectance."""
    if dataset.count != 1:
        raise InputError(
            f"land cover has {dataset.count} bands; a classified raster has one band of class "
            "values",
            path=dataset.name,
            hint="An RGB or multi-band image is imagery (export-chips --imagery), not land "
                 "cover: give the single-band classified raster.",
        )
    dtype = dataset.dtypes[0]
    if not np.issubdtype(np.dtype(dtype), np.integer):
        raise InputError(
            f"land cover has data type {dtype} (continuous values); a classified raster stores "
            "integer class values",
            path=dataset.name,
            hint="Give the classified (integer) land-cover raster, or convert it with "
                 "gdal_translate -ot Byte.",
        )


def require_crs(dataset, what: str) -> None:
    """Raise InputError when a raster has no coordinate reference system."""
    if dataset.crs is None:
        raise InputError(
            f"{what} has no coordinate reference system",
            path=dataset.name,
            hint="Assign one (e.g. gdal_edit.py -a_srs EPSG:26918 FILE) so it can be "
                 "placed against the land cover.",
        )


def same_grid(a, b) -> bool:
    """True when two rasters share CRS, transform and size pixel for pixel."""
    return (a.crs == b.crs and a.width == b.width and a.height == b.height
            and a.transform.almost_equals(b.transform))


def aligned_view(imagery, landcover, resampling: Resampling = Resampling.bilinear):
    """Imagery as seen on the land cover's grid (a WarpedVRT when the grids differ).

    Raises InputError when the two rasters do not overlap. The caller closes the view when it
    is a WarpedVRT (it is returned as-is when the grids already match).
    """
    require_crs(imagery, "imagery")
    if same_grid(imagery, landcover):
        return imagery
    check_overlap(imagery, landcover)
    return WarpedVRT(imagery, crs=landcover.crs, transform=landcover.transform,
                     width=landcover.width, height=landcover.height, resampling=resampling)


def check_overlap(imagery, landcover) -> None:
    """Raise InputError when the rasters' extents do not intersect."""
    left, bottom, right, top = transform_bounds(imagery.crs, landcover.crs, *imagery.bounds)
    lb = landcover.bounds
    if left >= lb.right or right <= lb.left or bottom >= lb.top or top <= lb.bottom:
        raise InputError(
            f"imagery bounds {tuple(round(v, 1) for v in (left, bottom, right, top))} do not "
            f"overlap the land cover {landcover.name} bounds "
            f"{tuple(round(v, 1) for v in lb)} (in the land cover's CRS)",
            path=imagery.name,
            hint="Give imagery of the same area as the land cover.",
        )


def write_world_file(image_path: str | Path, transform: Affine) -> Path:
    """Write an Esri world file (.tfw/.pgw/.jgw) beside ``image_path``.

    Six lines: x pixel size, rotation terms, negative y pixel size, then the map coordinates
    of the CENTRE of the top-left pixel, with 10 decimals as ArcGIS writes them.
    """
    image_path = Path(image_path)
    ext = {".tif": ".tfw", ".tiff": ".tfw", ".png": ".pgw", ".jpg": ".jgw", ".jpeg": ".jgw"}
    world = image_path.with_suffix(ext.get(image_path.suffix.lower(), ".wld"))
    centre = transform @ Affine.translation(0.5, 0.5)
    values = (transform.a, transform.d, transform.b, transform.e, centre.c, centre.f)
    world.write_text("".join(f"{v:.10f}\n" for v in values))
    return world


def read_world_file(path: str | Path) -> Affine:
    """The pixel-corner transform described by a world file."""
    a, d, b, e, c, f = (float(line) for line in Path(path).read_text().split())
    return Affine(a, b, c, d, e, f) @ Affine.translation(-0.5, -0.5)


def geotiff_profile(width: int, height: int, count: int, dtype: str, crs, transform,
                    *, nodata=None, block: int = 512) -> dict:
    """A tiled, deflate-compressed (Big)GeoTIFF profile for windowed writing."""
    profile = {
        "driver": "GTiff", "width": width, "height": height, "count": count, "dtype": dtype,
        "crs": crs, "transform": transform, "nodata": nodata, "compress": "deflate",
        "BIGTIFF": "IF_SAFER",
    }
    if width >= block and height >= block:
        profile.update(tiled=True, blockxsize=block, blockysize=block)
    if np.issubdtype(np.dtype(dtype), np.integer):
        profile["predictor"] = 2
    return profile


def check_output(path: str | Path, overwrite: bool) -> Path:
    """Raise OutputExistsError if ``path`` exists (a non-empty folder) and not ``overwrite``."""
    path = Path(path)
    exists = path.exists() and (not path.is_dir() or any(path.iterdir()))
    if exists and not overwrite:
        raise OutputExistsError("output exists", path=path,
                                hint="Choose another output or pass --overwrite to replace it.")
    return path


@contextlib.contextmanager
def atomic_file(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds.

    On error the temporary file is removed and an existing ``path`` is left untouched.
    """
    path = check_output(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{path.suffix}",
                               dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs are for sharing
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, *tmp.parent.glob(tmp.name + ".*")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_dir(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; put it in place when the block succeeds.

    An existing ``path`` (with ``overwrite``) is replaced only after the new folder is complete.
    """
    path = check_output(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
