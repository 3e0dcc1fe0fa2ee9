"""Generator noise that is a pure function of a seed and GLOBAL pixel coordinates.

Why this design (OASIS-style noise rather than SPADE's style encoder):
the noise is concatenated to the one-hot label map and read by every SPADE layer, which makes
outputs multimodal without an encoder (the encoder collapses on small datasets and needs a
reference image at inference). It has up to four parts, in this channel order:

- a *style* vector (``noise_dim`` channels) drawn from the seed alone and broadcast over
  every pixel: one look (season, sensor, sun) for a whole raster, a different look per seed;
- optional *spatial* noise (``noise_spatial`` channels) that varies per pixel, drawn by hashing
  (seed, channel, global row, global column);
- an optional *field* of slowly varying noise (``noise_field`` channels): standard normal
  vectors hashed at the nodes of a coarse lattice (``noise_field_spacing`` pixels, anchored at
  global pixel 0) and smoothly interpolated between them, so neighbouring pixels share a look
  and places a few parcels apart get different ones (field-to-field variety). In the
  generator's "segments" mode the field input is instead one channel of per-pixel keys, from
  which :func:`segment_tones` gives every field of the label map its own tone;
- optional *texture* noise (``noise_texture`` channels, one per resolution that uses it):
  per-pixel hashed noise like the spatial noise, but not read by the normalisation layers:
  the generator adds it to its features at the finest resolutions (StyleGAN's noise inputs).
  Inside a field the label map is constant, so this is the only source of pixel-scale
  detail there (crop rows, tree crowns).

All come from a counter-based integer hash instead of a random generator's stream, so the
value at a pixel does not depend on which tile asked for it: two overlapping tiles see
identical noise where they overlap and the output does not depend on how a raster is tiled.
In training, the generator draws ordinary random noise of the same distribution instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from geospade.errors import InputError

_MASK32 = 0xFFFFFFFF
# Row tag of the style vector's hash stream (spatial noise uses the real global rows).
_STYLE_ROW = 0x5BD1E995
# Channel tag of the field noise's lattice (keeps it independent of the spatial noise).
_FIELD_TAG = 0x27D4EB2F
# Channel tag of the segment tones hashed from a field's key.
_TONE_TAG = 0x3C6EF372
# Seed tag of the texture noise (independent of the spatial noise of the same seed).
_TEXTURE_TAG = 0x165667B1

#: One int for every window, or one per window (a list, tuple, array or tensor of ints).
IntArg = int | Sequence[int] | np.ndarray | torch.Tensor


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
    if isinstance(value, Sequence) or (not isinstance(value, int)
                                       and getattr(value, "ndim", 0) > 0):
        values = [int(v) for v in value]
    else:
        values = [int(value)] * batch
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


def _lattice_weights(start: int, size: int, spacing: int, device) -> tuple[torch.Tensor, ...]:
    """First lattice node, node index and smoothstep weight of each pixel along one axis."""
    pixels = torch.arange(start, start + size, dtype=torch.int64, device=device)
    node = torch.div(pixels, spacing, rounding_mode="floor")
    t = (pixels - node * spacing).to(torch.float32) / spacing
    return node, t * t * (3.0 - 2.0 * t)  # smoothstep: no kinks at lattice lines


def field_noise(seed: int, channels: int, height: int, width: int, row_off: int = 0,
                col_off: int = 0, spacing: int = 64,
                device: torch.device | str | None = None) -> torch.Tensor:
    """Slowly varying standard normal noise (channels, height, width) of a window.

    Values at the nodes of a lattice with ``spacing`` pixels (nodes at global pixel multiples
    of it) are hashed from (seed, channel, node row, node column); between nodes they are
    blended with smoothstep weights and rescaled so every pixel has unit variance. A pure
    function of the seed and global pixel coordinates, like :func:`spatial_noise`.

    Args:
        seed: noise seed of the whole raster.
        channels: noise channels.
        height, width: window size in pixels.
        row_off, col_off: global pixel coordinates of the window's top-left corner.
        spacing: lattice spacing in pixels (the scale of the variation).
        device: where to compute.
    """
    if spacing < 1:
        raise InputError(f"noise field spacing {spacing} must be at least 1 pixel")
    rows, wy = _lattice_weights(row_off, height, spacing, device)
    cols, wx = _lattice_weights(col_off, width, spacing, device)
    r0, c0 = int(rows[0]), int(cols[0])
    node_rows = torch.arange(r0, int(rows[-1]) + 2, dtype=torch.int64, device=device)
    node_cols = torch.arange(c0, int(cols[-1]) + 2, dtype=torch.int64, device=device)
    key = hash32(torch.tensor([(int(seed) ^ _FIELD_TAG) & _MASK32], dtype=torch.int64,
                              device=device))
    chan = torch.arange(channels, dtype=torch.int64, device=device).view(-1, 1, 1)
    nodes = _gaussian(_combine(_combine(_combine(key, chan), node_rows.view(1, -1, 1)),
                               node_cols.view(1, 1, -1)))  # (C, node rows, node cols)
    iy, ix = (rows - r0).view(-1, 1), (cols - c0).view(1, -1)
    wy, wx = wy.view(-1, 1), wx.view(1, -1)
    corners = ((iy, ix, (1 - wy) * (1 - wx)), (iy, ix + 1, (1 - wy) * wx),
               (iy + 1, ix, wy * (1 - wx)), (iy + 1, ix + 1, wy * wx))
    value = sum(w * nodes[:, y, x] for y, x, w in corners)
    squares = [w * w for _, _, w in corners]
    norm = torch.sqrt(sum(squares[1:], squares[0]))  # independent nodes: unit variance
    return value / norm


def segment_keys(keys: torch.Tensor, classes: torch.Tensor, reach: int) -> torch.Tensor:
    """Each pixel's largest key among the pixels of its class it can reach in ``reach`` steps.

    A step moves to the left or right neighbour and then to the upper or lower one, and only
    onto pixels of the same class, so a key spreads through a field but not across its border
    (a line of another class one pixel wide, diagonal lines included, stops it). A field that
    fits within ``reach`` of each of its pixels ends up with one key; a larger one splits into
    parts about ``reach`` across.

    The result at a pixel depends only on the keys and classes within ``reach`` pixels of it
    (in rows and in columns), so two windows that overlap by that much more agree on it.

    Args:
        keys: (B, 1, H, W) float keys, e.g. per-pixel noise (ties are harmless: equal keys
            give equal tones).
        classes: (B, H, W) integer class of every pixel.
        reach: number of steps.

    Returns:
        (B, 1, H, W) float32.
    """
    if reach < 0:
        raise InputError(f"segment reach {reach} must be at least 0 pixels")
    key = keys[:, 0].to(torch.float32).clone()
    blocked = float("-inf")
    across = torch.zeros(classes[..., :, 1:].shape, dtype=torch.float32, device=key.device)
    across[classes[..., :, 1:] != classes[..., :, :-1]] = blocked
    down = torch.zeros(classes[..., 1:, :].shape, dtype=torch.float32, device=key.device)
    down[classes[..., 1:, :] != classes[..., :-1, :]] = blocked
    for _ in range(reach):
        _spread(key, across, dim=-1)
        _spread(key, down, dim=-2)
    return key[:, None]


def _spread(key: torch.Tensor, penalty: torch.Tensor, dim: int) -> None:
    """One step of :func:`segment_keys` along ``dim``, in place: each pixel takes the larger
    of its key and its two neighbours' (those not blocked by ``penalty``)."""
    n = key.shape[dim]
    first, last = key.narrow(dim, 0, n - 1), key.narrow(dim, 1, n - 1)
    from_next, from_prev = last + penalty, first + penalty  # both from the old keys
    torch.maximum(first, from_next, out=first)
    torch.maximum(last, from_prev, out=last)


def segment_tones(keys: torch.Tensor, classes: torch.Tensor, reach: int,
                  channels: int) -> torch.Tensor:
    """Standard normal tones (B, channels, H, W), constant over each field of a class.

    Every pixel takes the key of :func:`segment_keys` and hashes its bits into ``channels``
    normal values, so all pixels of a field that share a key share a tone, neighbouring fields
    of one class get independent tones, and a new set of keys (a new seed) gives every field a
    new one. A pure function of the keys and classes within ``reach`` pixels.

    Args:
        keys: (B, 1, H, W) per-pixel keys (float).
        classes: (B, H, W) integer class of every pixel.
        reach: steps a key spreads (the scale in pixels of the largest uniform field).
        channels: tone channels.
    """
    with torch.no_grad():
        spread = segment_keys(keys, classes, reach).contiguous()
        bits = spread.view(torch.int32).to(torch.int64) & _MASK32  # (B, 1, H, W)
        chan = torch.arange(channels, dtype=torch.int64, device=bits.device).view(1, -1, 1, 1)
        return _gaussian(_combine(_combine(hash32(bits ^ _TONE_TAG), chan), _TONE_TAG))


def make_noise(batch: int, height: int, width: int, seed: IntArg, row_off: IntArg = 0,
               col_off: IntArg = 0, *, style_channels: int, spatial_channels: int = 0,
               field_channels: int = 0, field_spacing: int = 64, texture_channels: int = 0,
               device: torch.device | str | None = None) -> torch.Tensor | None:
    """Noise input (batch, style + spatial + field + texture channels, height, width) for
    windows of a raster, in that channel order.

    Args:
        batch: number of windows.
        height, width: window size in pixels.
        seed: one seed for all windows, or one per window.
        row_off, col_off: global top-left pixel of the window(s); an int or one per window.
        style_channels: channels of the broadcast per-seed style vector.
        spatial_channels: channels of per-pixel hashed noise.
        field_channels: channels of slowly varying noise (:func:`field_noise`).
        field_spacing: its lattice spacing in pixels.
        texture_channels: channels of per-pixel texture noise (independent of the spatial).
        device: where to build the tensor.

    Returns:
        The noise tensor, or None when the model has no noise input.
    """
    if style_channels + spatial_channels + field_channels + texture_channels == 0:
        return None
    seeds = _per_sample(seed, batch, "seed")
    rows = _per_sample(row_off, batch, "row_off")
    cols = _per_sample(col_off, batch, "col_off")
    field_start = style_channels + spatial_channels
    texture_start = field_start + field_channels
    out = torch.empty(batch, texture_start + texture_channels, height, width, device=device)
    for i in range(batch):  # a loop over windows, not pixels
        if style_channels:
            style = style_vector(seeds[i], style_channels, device)
            out[i, :style_channels] = style.view(-1, 1, 1)
        if spatial_channels:
            out[i, style_channels:field_start] = spatial_noise(
                seeds[i], spatial_channels, height, width, rows[i], cols[i], device)
        if field_channels:
            out[i, field_start:texture_start] = field_noise(
                seeds[i], field_channels, height, width, rows[i], cols[i], field_spacing, device)
        if texture_channels:
            out[i, texture_start:] = spatial_noise(seeds[i] ^ _TEXTURE_TAG, texture_channels,
                                                   height, width, rows[i], cols[i], device)
    return out


def random_noise(batch: int, height: int, width: int, *, style_channels: int,
                 spatial_channels: int = 0, field_channels: int = 0, field_spacing: int = 64,
                 texture_channels: int = 0, device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor | None:
    """Fresh random noise from torch's RNG, distributed like :func:`make_noise` (training).

    The field channels are :func:`field_noise` of a random seed at a random place, so the
    generator sees the lattice at every phase.
    """
    if style_channels + spatial_channels + field_channels + texture_channels == 0:
        return None
    parts = []
    if style_channels:
        style = torch.randn(batch, style_channels, 1, 1, device=device, dtype=dtype)
        parts.append(style.expand(-1, -1, height, width))
    if spatial_channels:
        parts.append(torch.randn(batch, spatial_channels, height, width, device=device, dtype=dtype))
    if field_channels and field_spacing == 1:  # a lattice node per pixel: white noise
        parts.append(torch.randn(batch, field_channels, height, width, device=device, dtype=dtype))
    elif field_channels:
        draws = torch.randint(0, 2**31 - 1, (batch, 3)).tolist()
        parts.append(torch.stack([field_noise(seed, field_channels, height, width, row, col,
                                              field_spacing, device)
                                  for seed, row, col in draws]).to(dtype))
    if texture_channels:
        parts.append(torch.randn(batch, texture_channels, height, width, device=device, dtype=dtype))
    return torch.cat(parts, dim=1)
