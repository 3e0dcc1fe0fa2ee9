"""Rendering the demo scene's imagery from its rasterized layout: per-class colour and
texture, per-object variation, shadows cast away from the sun, paint, illumination and noise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from geospade.demo.layout import (
    BARREN,
    LOW_VEG,
    RIDGE,
    ROOF_UNIT,
    SUN,
    TREES,
    WATER,
    WHITE_PAINT,
    YELLOW_PAINT,
    SceneMaps,
)

# ---------------------------------------------------------------------------------------------
# Rendering imagery from the rasterized layout
# ---------------------------------------------------------------------------------------------


def render_imagery(rng: np.random.Generator, maps: SceneMaps, bands: int = 3) -> np.ndarray:
    """Aerial-looking uint8 imagery (bands, H, W) for rasterized demo maps.

    The look is a function of the land cover with per-object variation: each class has its
    own colour and texture, fields their own tint and row direction, roofs their own colour
    and lit/shaded facets, roads paint; buildings and trees cast shadows to the north-west;
    a smooth illumination field and sensor noise keep it from being a lookup table.
    """
    labels = maps.labels
    h, w = labels.shape
    img = np.zeros((4, h, w), dtype=np.float32)  # R, G, B, NIR; NIR dropped for RGB output
    mottle = _value_noise(rng, h, w, 7.0) + 0.5 * _value_noise(rng, h, w, 2.5)
    broad = _value_noise(rng, h, w, 90.0)

    _render_water(img, labels == WATER, mottle, broad)
    _render_trees(rng, img, labels == TREES, broad)
    _render_fields(rng, img, maps, mottle, broad)
    _render_surfaces(rng, img, maps, mottle)

    # Shadows: roofs cast long ones, tree crowns short ones, onto lower ground to the NW.
    roof, tree = maps.roof, labels == TREES
    shadow = np.ones((h, w), dtype=np.float32)
    cast = _cast(roof, 6) & ~roof
    shadow[cast] = 0.5
    cast = _cast(tree, 3) & ~tree & ~roof
    shadow[cast] = np.minimum(shadow[cast], 0.62)
    img *= shadow

    # Smooth illumination / haze so equal classes differ slightly across the scene.
    light = 1.0 + 0.05 * _value_noise(rng, h, w, h / 3) + 0.025 * broad
    img *= light
    for b in range(4):
        img[b] = 0.6 * img[b] + 0.4 * _box_blur(img[b], 1)  # optics: a slightly soft image
    img += rng.standard_normal(img.shape, dtype=np.float32) * 1.8
    out = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return out[:3] if bands == 3 else out


def _assign(img: np.ndarray, mask: np.ndarray, rgbn: Iterable[np.ndarray | float]) -> None:
    for b, value in enumerate(rgbn):
        img[b][mask] = value


def _render_water(img, mask, mottle, broad) -> None:
    """Dark blue-green, almost flat; lighter and browner in the shallows near the shore."""
    if not mask.any():
        return
    depth = _box_blur(mask.astype(np.float32), 4)[mask]  # < 1 near the shore
    shallow = np.clip((1 - depth) * 2.2, 0, 1)
    m, b = mottle[mask] * 1.5, broad[mask] * 5
    deep, shore = np.array([34, 58, 66, 16]), np.array([72, 88, 70, 40])
    base = deep[:, None] * (1 - shallow) + shore[:, None] * shallow
    _assign(img, mask, (base[0] + m + b, base[1] + m + b, base[2] + m + 1.2 * b, base[3] + m))


def _render_trees(rng, img, mask, broad) -> None:
    """Tree crowns: lit on the sun side, dark gaps between them, species tint varies slowly."""
    if not mask.any():
        return
    rows, cols = np.nonzero(mask)
    dome, facing = _crowns(rng, mask.shape[0], rows, cols, cell=4.5)
    bright = np.where(dome > 0, 0.55 + 0.45 * dome + 0.3 * dome * facing, 0.38)
    hue = np.clip(broad[rows, cols] * 1.6, -1, 1)  # -1 blue-green conifers, +1 yellow-green
    r = 52 + 14 * hue
    g = 84 + 10 * hue
    b = 44 - 6 * hue
    nir = 120 + 90 * bright
    _assign(img, mask, (r * bright, g * bright, b * bright, nir))


def _render_fields(rng, img, maps: SceneMaps, mottle, broad) -> None:
    """Low vegetation and bare soil: per-parcel tint; crop rows and plough furrows."""
    labels, parcel = maps.labels, maps.parcel
    n = len(maps.parcel_kind)
    crop_palette = np.array([(120, 146, 74), (140, 154, 84), (162, 158, 98), (100, 136, 66),
                             (178, 168, 112), (128, 150, 92), (150, 140, 90)], np.float32)
    tint = crop_palette[rng.integers(0, len(crop_palette), n)] + rng.uniform(-7, 7, (n, 3))
    nir = rng.uniform(175, 225, n)
    angle = rng.uniform(0, math.pi, n)
    period = rng.uniform(3.2, 6.0, n)
    strength = rng.uniform(0.05, 0.12, n)
    soil = np.array([126, 102, 82], np.float32) + rng.uniform(-12, 12, (n, 1))

    veg = labels == LOW_VEG
    if veg.any():
        rows, cols = np.nonzero(veg)
        pid = parcel[rows, cols]
        kind = maps.parcel_kind[pid]
        crop, hay = kind == 1, kind == 2
        stripes = np.sin(2 * math.pi * (cols * np.cos(angle[pid]) + rows * np.sin(angle[pid]))
                         / period[pid])
        shade = 1 + np.where(crop, strength[pid] * stripes, 0.0)
        # Mowing swaths in hay: wide, faint bands.
        shade += np.where(hay, 0.035 * np.sign(np.sin(2 * math.pi * (
            cols * np.cos(angle[pid]) + rows * np.sin(angle[pid])) / (4 * period[pid]))), 0.0)
        shade += mottle[rows, cols] * np.where(crop, 0.03, 0.07)
        grass = np.array([98, 128, 64, 170], np.float32)
        colour = np.where((crop | hay)[:, None], np.c_[tint[pid], nir[pid]], grass)
        colour[:, :3] += broad[rows, cols, None] * np.array([6, 4, 2])
        _assign(img, veg, (colour[:, b] * shade for b in range(4)))

    bare = labels == BARREN
    if bare.any():
        rows, cols = np.nonzero(bare)
        pid = parcel[rows, cols]
        plowed = maps.parcel_kind[pid] == 3
        furrows = np.sin(2 * math.pi * (cols * np.cos(angle[pid]) + rows * np.sin(angle[pid]))
                         / (0.7 * period[pid]))
        shade = 1 + np.where(plowed, 0.1 * furrows, 0.0) + mottle[rows, cols] * 0.06
        dirt = np.array([170, 150, 120], np.float32)  # tracks, yards, building sites
        colour = np.where(plowed[:, None], soil[pid], dirt)
        nir_bare = np.where(plowed, 95.0, 120.0)
        _assign(img, bare, (*(colour[:, b] * shade for b in range(3)), nir_bare * shade))


def _render_surfaces(rng, img, maps: SceneMaps, mottle) -> None:
    """Roads, lots and roofs from their own colours, with paint, ridges and roof units."""
    mask = maps.surface > 0
    if not mask.any():
        return
    colour = maps.surface_colour[maps.surface[mask]]
    grain = mottle[mask] * 3 + rng.standard_normal(colour.shape[0], dtype=np.float32) * 2.5
    _assign(img, mask, (colour[:, b] + grain for b in range(4)))
    paint = maps.paint
    for code, rgbn, alpha in ((WHITE_PAINT, (222, 222, 214, 90), 0.75),
                              (YELLOW_PAINT, (214, 188, 96, 90), 0.75)):
        m = (paint == code) & mask & ~maps.roof
        for b in range(4):
            img[b][m] = (1 - alpha) * img[b][m] + alpha * rgbn[b]
    ridge = (paint == RIDGE) & maps.roof
    unit = (paint == ROOF_UNIT) & maps.roof
    img[:, ridge] = np.minimum(img[:, ridge] * 1.25 + 8, 255)
    img[:, unit] *= 0.55


# ---------------------------------------------------------------------------------------------
# Cheap texture tools (numpy only)
# ---------------------------------------------------------------------------------------------


def _value_noise(rng, height: int, width: int, cell: float) -> np.ndarray:
    """Smooth noise (about unit range) with features ``cell`` pixels across: upsampled grid."""
    gh, gw = int(height / cell) + 3, int(width / cell) + 3
    grid = rng.standard_normal((gh, gw), dtype=np.float32)

    def axis(n: int) -> tuple[np.ndarray, np.ndarray]:
        t = (np.arange(n, dtype=np.float32) + 0.5) / cell
        i = np.floor(t).astype(np.intp)
        f = t - i
        return i, f * f * (3 - 2 * f)  # smoothstep: no visible grid lines

    ri, rf = axis(height)
    ci, cf = axis(width)
    rows = grid[ri] * (1 - rf)[:, None] + grid[ri + 1] * rf[:, None]
    return rows[:, ci] * (1 - cf) + rows[:, ci + 1] * cf


def _box_blur(a: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2r+1)^2 window (edges repeated): separable sums of shifted slices."""
    k = 2 * radius + 1
    h, w = a.shape
    padded = np.pad(a.astype(np.float32, copy=False), radius, mode="edge")
    rows = padded[0:h].copy()
    for i in range(1, k):
        rows += padded[i:i + h]
    out = rows[:, 0:w].copy()
    for j in range(1, k):
        out += rows[:, j:j + w]
    return out / (k * k)


def _shift(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``mask`` moved by (dy, dx) pixels, zeros shifted in."""
    h, w = mask.shape
    out = np.zeros_like(mask)
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        mask[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def _cast(mask: np.ndarray, length: int) -> np.ndarray:
    """Pixels a tall ``mask`` shades, the sun being to the south-east (see :data:`SUN`)."""
    out = np.zeros_like(mask)
    for k in range(1, length + 1):
        out |= _shift(mask, -k, -round(0.75 * k))
    return out


def _crowns(rng, size: int, rows: np.ndarray, cols: np.ndarray,
            cell: float) -> tuple[np.ndarray, np.ndarray]:
    """Tree crowns at jittered grid points (cellular noise) for the given pixels.

    Returns ``dome`` (1 at a crown's centre, 0 at its edge and in gaps) and ``facing`` (-1 on
    the side away from the sun, +1 on the side towards it).
    """
    n = int(size / cell) + 3
    jitter = rng.random((2, n, n), dtype=np.float32)
    radius = rng.uniform(0.6, 0.95, (n, n)).astype(np.float32) * cell
    gy, gx = rows / cell, cols / cell
    iy, ix = np.floor(gy).astype(np.intp), np.floor(gx).astype(np.intp)
    best = np.full(rows.shape, np.inf, dtype=np.float32)
    oy = np.zeros(rows.shape, dtype=np.float32)
    ox = np.zeros(rows.shape, dtype=np.float32)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            j, i = iy + dy + 1, ix + dx + 1  # +1: the grid has a border of one cell
            r = radius[j, i]
            py = rows - (iy + dy + jitter[0, j, i]) * cell
            px = cols - (ix + dx + jitter[1, j, i]) * cell
            d = np.sqrt(py * py + px * px) / r
            closer = d < best
            best = np.where(closer, d, best)
            oy = np.where(closer, py / r, oy)
            ox = np.where(closer, px / r, ox)
    dome = np.sqrt(np.clip(1 - best * best, 0, 1))
    facing = np.clip(ox * SUN[0] + oy * SUN[1], -1, 1)
    return dome, facing
