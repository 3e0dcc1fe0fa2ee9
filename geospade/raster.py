"""Raster I/O shared by every stage: opening with clear errors, grid alignment, safe outputs.

Outputs are written under a temporary name beside the target and renamed into place only
when complete (:func:`atomic_file`, :func:`atomic_dir`), so an interrupted run never leaves
a half-written file under the user's name, and nothing is replaced without ``overwrite``.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TypeAlias

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.io import DatasetReader
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from geospade.errors import InputError, OutputError, OutputExistsError

#: A raster open for reading: a file, or a view of one warped onto another grid.
RasterReader: TypeAlias = DatasetReader | WarpedVRT


def open_raster(path: str | Path, what: str = "raster") -> DatasetReader:
    """Open a raster for reading, or raise InputError naming the file."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} not found", path=path, hint="Check the path.")
    try:
        return rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"cannot open {what} ({exc})", path=path,
                         hint="Give a raster GDAL can read (GeoTIFF, IMG, VRT...).") from None


def read_pixels(dataset: RasterReader, what: str = "raster", method: str = "read", **kwargs) -> np.ndarray:
    """``dataset.<method>(**kwargs)`` (``read``, ``read_masks``, ``dataset_mask``), or
    InputError naming the file when its pixels cannot be read (a header that opens over a
    truncated body)."""
    try:
        return getattr(dataset, method)(**kwargs)
    except rasterio.errors.RasterioError as exc:
        detail = exc.__cause__ or exc  # rasterio's "Read failed" hides GDAL's reason here
        first_line = (str(detail).strip().splitlines() or ["read failed"])[0]
        raise InputError(f"cannot read the pixels of this {what} ({first_line}): the file is "
                         "truncated or damaged", path=dataset.name,
                         hint="Write or copy it again.") from None


def check_landcover(dataset: RasterReader) -> None:
    """Land cover must be a single integer band: class values, never resampled reflectance."""
    if dataset.count != 1:
        raise InputError(
            f"land cover has {dataset.count} bands; a classified raster has one band of class "
            "values",
            path=dataset.name,
            hint="An RGB or multi-band image is imagery (export-chips --imagery), not land "
                 "cover: give the single-band classified raster, or extract its class band "
                 "(e.g. gdal_translate -b 1 IN OUT.tif).",
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


def require_crs(dataset: RasterReader, what: str) -> None:
    """Raise InputError when a raster has no coordinate reference system."""
    if dataset.crs is None:
        raise InputError(
            f"{what} has no coordinate reference system",
            path=dataset.name,
            hint="Assign one (e.g. gdal_edit.py -a_srs EPSG:26918 FILE) so it can be "
                 "placed against the land cover.",
        )


def same_grid(a: RasterReader, b: RasterReader) -> bool:
    """True when two rasters share CRS, transform and size pixel for pixel."""
    return (a.crs == b.crs and a.width == b.width and a.height == b.height
            and a.transform.almost_equals(b.transform))


def aligned_view(imagery: RasterReader, landcover: RasterReader,
                 resampling: Resampling = Resampling.bilinear) -> RasterReader:
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


def check_overlap(imagery: RasterReader, landcover: RasterReader) -> None:
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


#: The world-file name ArcGIS reads beside each chip format. GDAL's GTiff driver writes
#: ``.tfw`` itself; its PNG and JPEG drivers write ``.wld``, which ArcGIS does not read.
ESRI_WORLD_FILES = {".tif": ".tfw", ".tiff": ".tfw", ".png": ".pgw", ".jpg": ".jgw",
                    ".jpeg": ".jgw"}


def world_file_options(driver: str) -> dict[str, str]:
    """Creation options that make GDAL write an Esri world file beside a new raster.

    GDAL writes the six lines ArcGIS does (pixel size, rotation, the CENTRE of the top-left
    pixel, 10 decimals) and reads them back by itself when a chip has no georeference of its
    own. After writing a PNG or JPEG, call :func:`esri_world_file` to give the file its name.
    """
    return {"TFW": "YES"} if driver == "GTiff" else {"WORLDFILE": "YES"}


def esri_world_file(image_path: str | Path) -> Path:
    """The world file GDAL wrote beside ``image_path``, renamed as ArcGIS expects it.

    GDAL names PNG and JPEG world files ``.wld``; ArcGIS Pro's chips have ``.pgw`` and
    ``.jgw``, which GDAL reads as well. A GeoTIFF's ``.tfw`` keeps its name.
    """
    image_path = Path(image_path)
    world = image_path.with_suffix(ESRI_WORLD_FILES.get(image_path.suffix.lower(), ".wld"))
    written = image_path.with_suffix(".wld")
    if world != written and written.exists():
        written.replace(world)
    return world


def geotiff_profile(width: int, height: int, count: int, dtype: str, crs: CRS | None,
                    transform: Affine, *, nodata: float | None = None, block: int = 512) -> dict:
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


def output_exists(path: str | Path) -> bool:
    """True when ``path`` holds something an output there would replace.

    A file, or a folder with at least one entry; an empty folder is free to fill (a user
    makes one for the output, or ArcGIS Pro does).
    """
    path = Path(path)
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


def check_output(path: str | Path, overwrite: bool) -> Path:
    """Raise OutputExistsError if ``path`` exists (a non-empty folder) and not ``overwrite``."""
    path = Path(path)
    if output_exists(path) and not overwrite:
        raise OutputExistsError("output exists", path=path,
                                hint="Choose another output or pass --overwrite to replace it.")
    check_writable(path)
    return path


def check_output_file(path: str | Path, overwrite: bool) -> Path:
    """:func:`check_output` for an output that is one file: a folder there is an error."""
    path = Path(path)
    if path.is_dir():
        raise InputError("the output is a folder, and this output is one file", path=path,
                         hint=f"Give a file name, e.g. {path / 'output'}{path.suffix or ''}.")
    return check_output(path, overwrite)


def check_writable(path: str | Path) -> None:
    """Raise OutputError, before any work, when ``path`` cannot be created or replaced.

    Outputs are written beside their final name, so the folder that will hold ``path`` (or
    the nearest existing folder above it, where folders are still to be created) must be
    writable.
    """
    path = Path(path)
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise OutputError(f"{folder} is a file, not a folder", path=path,
                          hint="Choose an output in a folder.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write in {folder} (read-only or no permission)", path=path,
                          hint="Choose an output in a folder you can write to.")


# -- outputs never replace inputs ------------------------------------------------------------


#: An input as commands take it: a path, several, or glob patterns.
InputPaths = str | Path | Sequence[str | Path] | None


def check_not_input(outputs: Iterable[str | Path | None],
                    inputs: Mapping[str, InputPaths]) -> None:
    """Raise InputError when an output is one of the inputs, or a folder that holds one.

    Paths are compared resolved (symbolic links, ``..``) and with :func:`os.path.samefile`, so a
    hard link to an input counts as that input. A folder output is replaced as a whole, so an
    input inside it would be lost too.

    Args:
        outputs: paths a command is about to write (None entries are ignored).
        inputs: what each input is (e.g. "land cover") -> its path, a list of paths, or glob
            patterns as the multi-scene commands take them (None entries are ignored).
    """
    for output in outputs:
        if output is None:
            continue
        out = Path(output).resolve()
        for what, given in inputs.items():
            for source in _input_files(given):
                src = source.resolve()
                if _same_file(out, src):
                    raise InputError(f"the output would replace the {what} it is made from",
                                     path=output, hint="Choose another output path.")
                if out.is_dir() and src.is_relative_to(out):
                    raise InputError(f"the output folder holds the {what} ({source}); "
                                     "replacing the folder would delete it", path=output,
                                     hint="Choose another output folder.")


def _input_files(given: InputPaths) -> list[Path]:
    """The existing paths an input names: itself, each item of a list, a glob's matches.
    Only what exists can be lost (and a scheme name such as "chesapeake-7" is no file)."""
    if given is None:
        return []
    if not isinstance(given, str | Path):
        return [path for item in given for path in _input_files(item)]
    path = Path(given)
    if path.exists():
        return [path]
    if glob.has_magic(str(given)):
        return [Path(p) for p in glob.glob(str(given), recursive=True)]
    return []


def _same_file(a: Path, b: Path) -> bool:
    if a == b:
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet: not the same file
        return False


# -- temporary names: <hidden name>.<pid>-<host>.<random>.partial<suffix> ---------------------
# The owner is in the name so that a rerun can remove what a killed run left behind, and only
# that: a partial whose process still runs (or that another machine wrote) is never touched.

PARTIAL_RE = r"\.(?P<pid>\d+)-(?P<host>[0-9a-f]{8})\.[^.]+\.partial"


def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def partial_prefix(path: Path) -> str:
    """Start of this process's temporary names for ``path`` (hidden, beside it)."""
    return f".{path.name}.{os.getpid()}-{_host_tag()}."


def remove_stale_partials(path: str | Path) -> list[Path]:
    """Remove the temporary files and folders that dead processes left for ``path``.

    Only names made by :func:`partial_prefix` for this very output, written on this machine
    by a process that no longer runs, are removed. Returns what was removed.
    """
    path = Path(path)
    pattern = re.compile(re.escape(f".{path.name}") + PARTIAL_RE)
    removed: list[Path] = []
    try:
        candidates = list(path.parent.glob(f".{glob.escape(path.name)}.*.partial*"))
    except OSError:
        return removed
    for candidate in candidates:
        match = pattern.match(candidate.name)
        if (match is None or match["host"] != _host_tag()
                or _process_alive(int(match["pid"]))):
            continue
        with contextlib.suppress(OSError):
            if candidate.is_dir() and not candidate.is_symlink():
                shutil.rmtree(candidate)
            else:
                candidate.unlink()
            removed.append(candidate)
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process: it exists
        return True
    return True


# -- writes that fail loudly -------------------------------------------------------------------

#: errno values that mean "this output cannot be written here", as opposed to a bug.
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES,
                errno.EPERM, errno.EIO}
#: GDAL messages of a failed write, flush or close (they are logged, not always raised).
GDAL_WRITE_FAILURE = re.compile(r"write|seek|no space|flush|I/?O error|failed", re.IGNORECASE)
# A damaged INPUT read inside an output block ("Read failed", "IReadBlock failed") is the
# input's fault: it must reach the user as the input's error, not as a failed write.
GDAL_READ_FAILURE = re.compile(r"read", re.IGNORECASE)


def is_write_failure(message: str) -> bool:
    """True for a GDAL or rasterio message that means an output could not be written."""
    if GDAL_READ_FAILURE.search(message) and not re.search(r"write", message, re.IGNORECASE):
        return False
    return bool(GDAL_WRITE_FAILURE.search(message))
RASTER_SUFFIXES = {".tif", ".tiff", ".png", ".jpg", ".jpeg", ".img"}
LOW_SPACE = 64 * 2**20


class _GdalErrors(logging.Filter):
    """Collects the GDAL errors rasterio logs while outputs are being written.

    rasterio reports GDAL errors of a block-cache flush or a close only in its log (level
    INFO), and carries on; those are exactly the errors of a full disk.
    """

    LOGGERS = ("rasterio._env", "rasterio._err", "rasterio._io", "rasterio._base")
    _lock = threading.Lock()
    _active: list[list[str]] = []
    _saved: dict[str, int] = {}  # effective level of each logger before collecting
    _own: dict[str, int] = {}  # the level each logger had set itself

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "GDAL signalled an error" in message and is_write_failure(message):
            for errors in self._active:
                errors.append(message.split("msg=", 1)[-1].strip("'\""))
        # Pass on only what the logger would have shown without our lowered level.
        return record.levelno >= self._saved.get(record.name, logging.WARNING)

    @classmethod
    @contextlib.contextmanager
    def collect(cls) -> Iterator[list[str]]:
        errors: list[str] = []
        with cls._lock:
            if not cls._active:
                for name in cls.LOGGERS:
                    logger = logging.getLogger(name)
                    cls._saved[name] = logger.getEffectiveLevel()
                    cls._own[name] = logger.level
                    logger.setLevel(min(logging.INFO, cls._saved[name]))
                    logger.addFilter(_FILTER)
            cls._active.append(errors)
        try:
            yield errors
        finally:
            with cls._lock:
                cls._active.remove(errors)
                if not cls._active:
                    for name in cls.LOGGERS:
                        logger = logging.getLogger(name)
                        logger.removeFilter(_FILTER)
                        logger.setLevel(cls._own.get(name, logging.NOTSET))


_FILTER = _GdalErrors()


def free_space(path: str | Path) -> int | None:
    """Bytes free for this user on the file system holding ``path`` (None if unknown)."""
    try:
        stat = os.statvfs(Path(path))
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


def _size(n: int | None) -> str:
    if n is None:
        return "unknown space"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def write_failed(path: Path, why: str) -> OutputError:
    """The one-line error of an output that could not be written completely."""
    free = free_space(path.parent if path.parent.exists() else Path.cwd())
    return OutputError(
        f"could not be written ({why}; {_size(free)} free in {path.parent})", path=path,
        hint="Free some space or choose another disk or folder; nothing was left at the "
             "output path and an existing file there is unchanged.")


def _as_write_error(path: Path, exc: BaseException | None) -> OutputError | None:
    """An OutputError for an exception that means "cannot write here", else None.

    The exception's context counts too: torch.save, for one, hides the OSError of a full
    disk behind a RuntimeError of its own.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
            return write_failed(path, exc.strerror or str(exc))
        if isinstance(exc, rasterio.errors.RasterioError):
            text = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
            if is_write_failure(text) or "permission" in text.lower():
                return write_failed(path, text)
        exc = exc.__cause__ or exc.__context__
    return None


def _check_complete(tmp: Path, final: Path, gdal_errors: list[str]) -> None:
    """Raise OutputError unless the temporary output is whole and on disk."""
    if gdal_errors:
        raise write_failed(final, gdal_errors[0])
    if not tmp.exists():
        raise write_failed(final, "nothing was written")
    if tmp.is_file():
        try:  # a full disk on network or delayed-allocation file systems shows up here
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        except OSError as exc:
            raise write_failed(final, exc.strerror or str(exc)) from None
    free = free_space(tmp.parent)
    if free == 0:  # some writers swallow ENOSPC: a full disk after writing lost data
        raise write_failed(final, "the disk is full")
    # Where the disk is nearly full, a raster that does not read back is what a swallowed
    # write error leaves; elsewhere the check would only cost time.
    if (tmp.is_file() and tmp.suffix.lower() in RASTER_SUFFIXES and free is not None
            and free < LOW_SPACE):
        _check_raster_readable(tmp, final)


def _check_raster_readable(tmp: Path, final: Path) -> None:
    """Open the raster and read its last pixel: a truncated file fails here."""
    try:
        with rasterio.open(tmp) as ds:
            ds.read(window=Window(ds.width - 1, ds.height - 1, 1, 1))
    except rasterio.errors.RasterioError as exc:
        text = str(exc).splitlines()[0] if str(exc) else "unreadable"
        raise write_failed(final, f"the written raster is unreadable: {text}") from None


@contextlib.contextmanager
def _failing_loudly(final: Path) -> Iterator[list[str]]:
    """Collect GDAL write errors and turn "cannot write here" exceptions into OutputError."""
    with _GdalErrors.collect() as errors:
        try:
            yield errors
        except OutputError:
            raise
        except Exception as exc:
            error = _as_write_error(final, exc)
            if error is None:
                raise
            raise error from None


@contextlib.contextmanager
def atomic_file(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds.

    The temporary name keeps ``path``'s suffix (GDAL chooses the format by it). Before the
    rename the file must be complete: any GDAL write, flush or close error, a full disk or a
    raster that does not read back raises :class:`OutputError`. On any error the temporary
    file (and files named after it) is removed and an existing ``path`` is left untouched.
    Stale temporary files of killed runs for the same ``path`` are removed first.
    """
    path = check_output_file(path, overwrite)
    with _failing_loudly(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(path)
        fd, name = tempfile.mkstemp(prefix=partial_prefix(path), suffix=f".partial{path.suffix}",
                                    dir=path.parent)
        os.close(fd)
    tmp = Path(name)
    try:
        with _failing_loudly(path) as gdal_errors:
            yield tmp
            _check_complete(tmp, path, gdal_errors)
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs are for sharing
            os.replace(tmp, path)
    finally:
        for leftover in (tmp, *tmp.parent.glob(glob.escape(tmp.name) + ".*")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_dir(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; put it in place when the block succeeds.

    An existing ``path`` (with ``overwrite``) is replaced only after the new folder is complete;
    GDAL write errors and a full disk raise :class:`OutputError` and remove the new folder.
    """
    path = check_output(path, overwrite)
    with _failing_loudly(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(path)
        tmp = Path(tempfile.mkdtemp(prefix=partial_prefix(path), suffix=".partial",
                                    dir=path.parent))
    try:
        with _failing_loudly(path) as gdal_errors:
            yield tmp
            if gdal_errors:
                raise write_failed(path, gdal_errors[0])
            if free_space(tmp) == 0:
                raise write_failed(path, "the disk is full")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders
    old = None
    if path.exists():
        old = path.with_name(f"{partial_prefix(path)}old.partial")
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
