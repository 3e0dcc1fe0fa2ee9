"""How imagery values map to the model's [-1, 1] range, and back.

:class:`ImageryInfo` is written into chip metadata and checkpoints so that training and
synthesis scale pixels the same way, and synthesis writes the training imagery's band count,
data type and colour interpretation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from geospade.errors import InputError


@dataclass(frozen=True)
class ImageryInfo:
    """Band count, data type and per-band value range of the training imagery.

    ``low`` and ``high`` per band map to -1 and +1 in the model (for uint8 imagery, 0 and 255).
    """

    count: int
    dtype: str = "uint8"
    low: tuple[float, ...] = field(default=())
    high: tuple[float, ...] = field(default=())
    band_names: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.low:
            lo, hi = default_range(self.dtype)
            object.__setattr__(self, "low", (lo,) * self.count)
            object.__setattr__(self, "high", (hi,) * self.count)
        if not self.band_names:
            names = ("red", "green", "blue", "nir")
            object.__setattr__(self, "band_names",
                               tuple(names[i] if i < 4 else f"band_{i + 1}"
                                     for i in range(self.count)))
        if len(self.low) != self.count or len(self.high) != self.count:
            raise InputError(f"imagery range has {len(self.low)} low and {len(self.high)} high values "
                             f"for {self.count} bands")

    def to_model(self, pixels: np.ndarray) -> np.ndarray:
        """(bands, H, W) pixels -> float32 in [-1, 1]."""
        lo, hi = self._bounds(pixels.ndim)
        scaled = (pixels.astype(np.float32) - lo) / (hi - lo) * 2.0 - 1.0
        return np.clip(scaled, -1.0, 1.0)

    def from_model(self, values: np.ndarray) -> np.ndarray:
        """float values in [-1, 1], shape (bands, H, W) -> pixels of ``dtype``."""
        lo, hi = self._bounds(values.ndim)
        pixels = (np.clip(values, -1.0, 1.0) + 1.0) / 2.0 * (hi - lo) + lo
        if np.issubdtype(np.dtype(self.dtype), np.integer):
            info = np.iinfo(self.dtype)
            pixels = np.clip(np.rint(pixels), info.min, info.max)
        return pixels.astype(self.dtype)

    def _bounds(self, ndim: int) -> tuple[np.ndarray, np.ndarray]:
        shape = (-1,) + (1,) * (ndim - 1)
        lo = np.asarray(self.low, dtype=np.float32).reshape(shape)
        hi = np.asarray(self.high, dtype=np.float32).reshape(shape)
        return lo, np.maximum(hi, lo + 1e-6)

    def colorinterp(self):
        """GDAL colour interpretation for the bands (RGB, then undefined for NIR and others)."""
        from rasterio.enums import ColorInterp

        if self.count < 3:
            return [ColorInterp.gray] * self.count
        rgb = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
        return rgb + [ColorInterp.undefined] * (self.count - 3)

    def to_dict(self) -> dict:
        return {"count": self.count, "dtype": self.dtype, "low": list(self.low),
                "high": list(self.high), "band_names": list(self.band_names)}

    @classmethod
    def from_dict(cls, data: Mapping) -> ImageryInfo:
        return cls(int(data["count"]), str(data.get("dtype", "uint8")),
                   tuple(float(v) for v in data.get("low", ())),
                   tuple(float(v) for v in data.get("high", ())),
                   tuple(str(v) for v in data.get("band_names", ())))


def default_range(dtype: str) -> tuple[float, float]:
    """Value range that maps to [-1, 1] when no statistics say otherwise."""
    dt = np.dtype(dtype)
    if dt == np.uint8:
        return 0.0, 255.0
    if np.issubdtype(dt, np.integer):
        return 0.0, float(np.iinfo(dt).max)
    return 0.0, 1.0


def range_from_stats(count: int, dtype: str, minimum: Sequence[float],
                     maximum: Sequence[float], band_names: Sequence[str] = ()) -> ImageryInfo:
    """ImageryInfo for imagery whose range comes from band statistics (uint8 keeps 0..255)."""
    if np.dtype(dtype) == np.uint8:
        return ImageryInfo(count, dtype, band_names=tuple(band_names))
    return ImageryInfo(count, dtype, tuple(map(float, minimum)), tuple(map(float, maximum)),
                       tuple(band_names))
