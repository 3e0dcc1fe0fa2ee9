"""Quick-look PNGs of land cover and imagery, shared by every stage.

Label rasters are drawn with their class colours (nodata black); imagery shows its first three
bands (or red/green/blue by name), stretched when it is not 8-bit. Rasters are read decimated,
so a preview of a 100k x 100k mosaic costs no more memory than the preview itself.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning

from geospade.classes import ClassScheme, scheme_from_raster, value_counts
from geospade.errors import InputError
from geospade.imagery import ImageryInfo
from geospade.raster import atomic_file, open_raster


def landcover_rgb(labels: np.ndarray, scheme: ClassScheme) -> np.ndarray:
    """Class colours of a (H, W) label array as (3, H, W) uint8; nodata and unknown values black."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise InputError(f"land cover preview needs a (H, W) array, got shape {labels.shape}")
    top = max([*scheme.values, int(labels.max(initial=0))]) + 1
    lut = np.zeros((top, 3), dtype=np.uint8)
    for cls in scheme.classes:
        lut[cls.value] = cls.color
    if scheme.nodata is not None and 0 <= scheme.nodata < top:
        lut[scheme.nodata] = 0
    # Negative values cannot index the table; they are not classes, so they draw black.
    safe = np.where(labels < 0, 0, labels).astype(np.int64, copy=False)
    rgb = lut[safe]
    rgb[labels < 0] = 0
    return np.ascontiguousarray(rgb.transpose(2, 0, 1))


def imagery_rgb(pixels: np.ndarray, imagery_info: ImageryInfo | None = None) -> np.ndarray:
    """(bands, H, W) imagery as (3, H, W) uint8 for display.

    Shows the bands named red, green, blue in ``imagery_info`` (else the first three; one or
    two bands show as grey). uint8 is shown as is; other types get a 2-98 % stretch per band.
    Masked pixels (a numpy masked array) draw black.
    """
    mask = np.ma.getmaskarray(pixels) if np.ma.isMaskedArray(pixels) else None
    data = np.ma.getdata(pixels)
    if data.ndim == 2:
        data = data[None]
        mask = None if mask is None else mask[None]
    if data.ndim != 3:
        raise InputError(f"imagery preview needs a (bands, H, W) array, got shape {data.shape}")
    bands = _display_bands(data.shape[0], imagery_info)
    data = data[bands]
    invalid: np.ndarray | None = None if mask is None else np.any(mask[bands], axis=0)
    if data.dtype == np.uint8:
        rgb = data.copy()
    else:
        rgb = np.stack([_stretch(band, invalid) for band in data])
    if invalid is not None:
        rgb[:, invalid] = 0
    return np.ascontiguousarray(rgb)


def _display_bands(count: int, imagery_info: ImageryInfo | None) -> list[int]:
    """Indices of the bands to show as red, green, blue."""
    if imagery_info is not None and count == imagery_info.count:
        names = [n.lower() for n in imagery_info.band_names]
        if all(n in names for n in ("red", "green", "blue")):
            return [names.index("red"), names.index("green"), names.index("blue")]
    if count >= 3:
        return [0, 1, 2]
    return [0, 0, 0]


def _stretch(band: np.ndarray, invalid: np.ndarray | None) -> np.ndarray:
    """Linear 2-98 percentile stretch of one band to uint8 (NaN and masked pixels ignored)."""
    values = band.astype(np.float64)
    finite = np.isfinite(values)
    if invalid is not None:
        finite &= ~invalid
    if not finite.any():
        return np.zeros(band.shape, dtype=np.uint8)
    low, high = np.percentile(values[finite], [2, 98])
    scaled = (values - low) / max(high - low, 1e-12) * 255.0
    scaled = np.where(finite, scaled, 0.0)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def write_png(path: str | Path, rgb: np.ndarray, overwrite: bool = False) -> Path:
    """Write a (3, H, W) or (H, W) uint8 array as a PNG (GDAL's PNG driver, atomically)."""
    rgb = np.asarray(rgb)
    if rgb.ndim == 2:
        rgb = rgb[None]
    if rgb.ndim != 3 or rgb.shape[0] not in (1, 3) or rgb.dtype != np.uint8:
        raise InputError(f"a PNG needs (3, H, W) or (H, W) uint8 pixels, got shape {rgb.shape} "
                         f"and dtype {rgb.dtype}", path=path)
    path = Path(path)
    with atomic_file(path, overwrite) as tmp, warnings.catch_warnings():
        # A quick-look PNG carries no georeference on purpose.
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(tmp, "w", driver="PNG", width=rgb.shape[2], height=rgb.shape[1],
                           count=rgb.shape[0], dtype="uint8") as dst:
            dst.write(rgb)
    return path


def preview_shape(width: int, height: int, max_size: int) -> tuple[int, int]:
    """(height, width) of a preview at most ``max_size`` pixels a side, aspect kept."""
    scale = max(width, height) / max(int(max_size), 1)
    if scale <= 1:
        return height, width
    return max(1, round(height / scale)), max(1, round(width / scale))


def preview_raster(path: str | Path, out_png: str | Path, max_size: int = 1024,
                   scheme: ClassScheme | None = None, overwrite: bool = False) -> Path:
    """Write a PNG quick-look of a raster, at most ``max_size`` pixels a side.

    A label raster (``scheme`` given, or one integer band with a colour table) is read with
    nearest-neighbour decimation and drawn in class colours; anything else is read with
    averaging and drawn with :func:`imagery_rgb`.
    """
    return write_png(out_png, preview_array(path, max_size, scheme), overwrite=overwrite)


def preview_array(path: str | Path, max_size: int = 1024,
                  scheme: ClassScheme | None = None) -> np.ndarray:
    """The quick-look of :func:`preview_raster` as a (3, H, W) uint8 array."""
    with open_raster(path, "raster") as ds:
        height, width = preview_shape(ds.width, ds.height, max_size)
        if scheme is not None or _has_colour_table(ds):
            labels = ds.read(1, out_shape=(height, width), resampling=Resampling.nearest)
            if scheme is None:
                scheme = scheme_from_raster(ds, counts=value_counts(labels))
            rgb = landcover_rgb(labels, scheme)
        else:
            # Band descriptions (as GDAL stores band names) may say which band is red.
            names = tuple((d or "").lower() for d in ds.descriptions)
            info = ImageryInfo(ds.count, ds.dtypes[0], band_names=names) if any(names) else None
            bands = [i + 1 for i in _display_bands(ds.count, info)]
            pixels = ds.read(sorted(set(bands)), out_shape=(len(set(bands)), height, width),
                             resampling=Resampling.average, masked=True)
            order = [sorted(set(bands)).index(b) for b in bands]
            rgb = imagery_rgb(pixels[order])
    return rgb


def _has_colour_table(ds) -> bool:
    if ds.count != 1 or not np.issubdtype(np.dtype(ds.dtypes[0]), np.integer):
        return False
    try:
        return bool(ds.colormap(1))
    except ValueError:
        return False


def side_by_side(panels: Sequence[np.ndarray], gap: int = 8, fill: int = 255) -> np.ndarray:
    """Panels (3, H, W) or (H, W) uint8 in one row, ``gap`` pixels apart.

    Shorter panels are padded at the bottom to the tallest one's height with ``fill``.
    """
    if not panels:
        raise InputError("side_by_side needs at least one panel")
    rgbs = [np.repeat(p[None], 3, axis=0) if p.ndim == 2 else p for p in map(np.asarray, panels)]
    height = max(p.shape[1] for p in rgbs)
    width = sum(p.shape[2] for p in rgbs) + gap * (len(rgbs) - 1)
    out = np.full((3, height, width), fill, dtype=np.uint8)
    col = 0
    for panel in rgbs:
        out[:, : panel.shape[1], col: col + panel.shape[2]] = panel[:3]
        col += panel.shape[2] + gap
    return out
