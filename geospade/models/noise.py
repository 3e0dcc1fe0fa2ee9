"""Generator noise that is a pure function of a seed and GLOBAL pixel coordinates.

Why this design (OASIS-style noise rather than SPADE's style encoder):
the noise is concatenated to the one-hot label map and read by every SPADE layer, which makes
outputs multimodal without an encoder (the encoder collapses on small datasets and needs a
reference image at inference). It has two parts:

- a *style* vector (``noise_dim`` channels) drawn from the seed alone and broadcast over
  every pixel: one look (season, sensor, sun) for a whole raster, a different look per seed;
- optional *spatial* noise (``noise_spatial`` channels) that varies per pixel, drawn by hashing
  (seed, channel, global row, global column).

Both come from a counter-based integer hash instead of a random generator's stream, so the
value at a pixel does not depend on which tile asked for it: two overlapping tiles see
identical noise where they overlap and the output does not depend on how a raster is tiled.
In training, the generator draws ordinary random noise of the same distribution instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from geospade.errors import InputError

_MASK32 = 0xFFFFFFFF
# Row tag of the style vector's hash stream (spatial noise uses the real global rows).
_STYLE_ROW = 0x5BD1E995

IntArg = int | Sequence[int]


def hash32(x: torch.Tensor) -> torch.Tensor:
    """Avalanching 32-bit integer hash of int64 values in [0, 2**32).

    Two xorshift-multiply rounds (constants from Wellons' hash-prospector). Both multipliers
    are below 2**31, so every product stays below 2**63: no int64 overflow on any device.
    """
    x = x ^ (x >> 16)
    x = (x * 0x21F0AAAD) & _MASK32
    x = x ^ (x >> 15)
    x = (x * 0x735A2D97) & _MASK32
    return x ^ (x >> 15)


def _combine(h: torch.Tensor, value: torch.Tensor | int) -> torch.Tensor:
    # Masking makes negative coordinates (halos left of / above the raster) valid keys.
    return hash32(h ^ (value & _MASK32))


def _gaussian(key: torch.Tensor) -> torch.Tensor:
    """Standard normal float32 values from hashed keys (inverse CDF of a 23-bit uniform)."""
    u = ((key >> 9).to(torch.float32) + 0.5) * 2.0**-23  # in (0, 1), exact in float32
    return math.sqrt(2.0) * torch.erfinv(2.0 * u - 1.0)


def _per_sample(value: IntArg, batch: int, name: str) -> list[int]:
    """One int per window from an int or a sequence (lists, tuples, arrays, tensors)."""
    many = isinstance(value, Sequence) or getattr(value, "ndim", 0) > 0
    values = [int(v) for v in value] if many else [int(value)] * batch
    if len(values) != batch:
        raise InputError(f"noise {name} has {len(values)} entries for a batch of {batch}",
                         hint="Give one value for all windows or one per window.")
    return values


def style_vector(seed: int, channels: int, device: torch.device | str | None = None) -> torch.Tensor:
    """The style vector (``channels`` standard normal values) of a seed."""
    key = hash32(torch.tensor([int(seed) & _MASK32], dtype=torch.int64, device=device))
    chan = torch.arange(channels, dtype=torch.int64, device=device)
    return _gaussian(_combine(_combine(key, chan), _STYLE_ROW))


def spatial_noise(seed: int, channels: int, height: int, width: int, row_off: int = 0,
                  col_off: int = 0, device: torch.device | str | None = None) -> torch.Tensor:
    """Per-pixel standard normal noise (channels, height, width) of a window of the raster.

    Args:
        seed: noise seed of the whole raster.
        channels: noise channels.
        height, width: window size in pixels.
        row_off, col_off: global pixel coordinates of the window's top-left corner (may be
            negative, e.g. for a halo beyond the raster's edge).
        device: where to compute.
    """
    key = hash32(torch.tensor([int(seed) & _MASK32], dtype=torch.int64, device=device))
    chan = torch.arange(channels, dtype=torch.int64, device=device).view(-1, 1, 1)
    rows = torch.arange(row_off, row_off + height, dtype=torch.int64, device=device).view(1, -1, 1)
    cols = torch.arange(col_off, col_off + width, dtype=torch.int64, device=device).view(1, 1, -1)
    # Hash channel and row on the small (C, H, 1) grid first; only the last step is per pixel.
    return _gaussian(_combine(_combine(_combine(key, chan), rows), cols))


def make_noise(batch: int, height: int, width: int, seed: IntArg, row_off: IntArg = 0,
               col_off: IntArg = 0, *, style_channels: int, spatial_channels: int = 0,
               device: torch.device | str | None = None) -> torch.Tensor | None:
    """Noise input (batch, style + spatial channels, height, width) for windows of a raster.

    Args:
        batch: number of windows.
        height, width: window size in pixels.
        seed: one seed for all windows, or one per window.
        row_off, col_off: global top-left pixel of the window(s); an int or one per window.
        style_channels: channels of the broadcast per-seed style vector.
        spatial_channels: channels of per-pixel hashed noise.
        device: where to build the tensor.

    Returns:
        The noise tensor, or None when the model has no noise input.
    """
    if style_channels + spatial_channels == 0:
        return None
    seeds = _per_sample(seed, batch, "seed")
    rows = _per_sample(row_off, batch, "row_off")
    cols = _per_sample(col_off, batch, "col_off")
    out = torch.empty(batch, style_channels + spatial_channels, height, width, device=device)
    for i in range(batch):  # a loop over windows, not pixels
        if style_channels:
            style = style_vector(seeds[i], style_channels, device)
            out[i, :style_channels] = style.view(-1, 1, 1)
        if spatial_channels:
            out[i, style_channels:] = spatial_noise(seeds[i], spatial_channels, height, width,
                                                    rows[i], cols[i], device)
    return out


def random_noise(batch: int, height: int, width: int, *, style_channels: int,
                 spatial_channels: int = 0, device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor | None:
    """Fresh random noise from torch's RNG, distributed like :func:`make_noise` (training)."""
    if style_channels + spatial_channels == 0:
        return None
    parts = []
    if style_channels:
        style = torch.randn(batch, style_channels, 1, 1, device=device, dtype=dtype)
        parts.append(style.expand(-1, -1, height, width))
    if spatial_channels:
        parts.append(torch.randn(batch, spatial_channels, height, width, device=device, dtype=dtype))
    return torch.cat(parts, dim=1)
