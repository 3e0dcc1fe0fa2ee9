"""Realism measures that catch "flat paint": texture, spread and variety of each class.

A generator that paints every field of a class in its mean colour can score well on
segmentation consistency and per-class mean colours. Three statistics per class, compared
between synthetic and real imagery of the same land cover as synthetic / real ratios (real
imagery scores 1.0, a per-class constant image 0), say whether it does:

- texture: mean gradient magnitude of pixels inside the class, at least ``edge_margin``
  pixels away from any other class (so class boundaries do not count as texture);
- spread: per-band standard deviation of the class's pixels, averaged over bands;
- variety: standard deviation, across the connected segments of the class (fields, woods),
  of each segment's mean colour, averaged over bands;

plus the per-class mean-colour error (mean absolute difference of the band means, in pixel
units). Accumulators work image by image in bounded memory (segment means are kept, one
vector per segment).
"""

from __future__ import annotations

import math

import numpy as np

from geospade.errors import InputError
from geospade.evaluation.metrics import ColourStats

EDGE_MARGIN = 2  # pixels kept away from class boundaries when measuring texture
MIN_SEGMENT = 32  # segments smaller than this many pixels are left out of the variety


def connected_segments(classes: np.ndarray) -> np.ndarray:
    """Label of the 4-connected segment of equal values each pixel belongs to (H, W) int64.

    Each segment is labelled by the smallest flat index of its pixels. Union-find over the
    edges between equal neighbours, vectorised: hook every root to the smallest root it
    touches, compress paths, repeat until no edge joins two roots.
    """
    classes = np.asarray(classes)
    if classes.ndim != 2:
        raise InputError(f"segments need a 2-D class map, got shape {classes.shape}")
    height, width = classes.shape
    index = np.arange(height * width, dtype=np.int64).reshape(height, width)
    across = classes[:, 1:] == classes[:, :-1]
    down = classes[1:, :] == classes[:-1, :]
    a = np.concatenate([index[:, :-1][across], index[:-1, :][down]])
    b = np.concatenate([index[:, 1:][across], index[1:, :][down]])
    parent = index.reshape(-1).copy()
    while True:
        root_a, root_b = parent[a], parent[b]
        joined = root_a != root_b
        if not joined.any():
            break
        low, high = np.minimum(root_a, root_b)[joined], np.maximum(root_a, root_b)[joined]
        np.minimum.at(parent, high, low)
        while True:  # path compression: every pixel points at its root
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
        a, b = a[joined], b[joined]  # edges inside one root stay inside it
    return parent.reshape(height, width)


def interior_mask(labels: np.ndarray, margin: int = EDGE_MARGIN) -> np.ndarray:
    """True where every pixel within ``margin`` (a square) has the same label (H, W)."""
    labels = np.asarray(labels)
    height, width = labels.shape
    keep = np.zeros((height, width), bool)
    if height <= 2 * margin or width <= 2 * margin:
        return keep
    centre = labels[margin:height - margin, margin:width - margin]
    inner = np.ones(centre.shape, bool)
    for dy in range(-margin, margin + 1):
        for dx in range(-margin, margin + 1):
            inner &= labels[margin + dy:height - margin + dy,
                            margin + dx:width - margin + dx] == centre
    keep[margin:height - margin, margin:width - margin] = inner
    return keep


def gradient_magnitude(pixels: np.ndarray) -> np.ndarray:
    """Per-pixel gradient magnitude (H, W) of an image (bands, H, W), root mean over bands.

    Forward differences; the last row and column repeat their neighbours' differences.
    """
    data = np.asarray(pixels, dtype=np.float64)
    gx = np.diff(data, axis=2, append=data[:, :, -1:])
    gy = np.diff(data, axis=1, append=data[:, -1:, :])
    gx[:, :, -1] = gx[:, :, -2] if data.shape[2] > 1 else 0.0
    gy[:, -1, :] = gy[:, -2, :] if data.shape[1] > 1 else 0.0
    return np.sqrt((gx**2 + gy**2).mean(axis=0))


class RealismStats:
    """Per-class texture, spread, variety and colour of images accumulated one by one.

    Args:
        num_classes: real classes (model indices 0..num_classes-1; others are not counted).
        bands: imagery bands.
        edge_margin: distance from other classes below which pixels do not count as texture.
        min_segment: smallest segment (pixels) whose mean colour counts for the variety.
    """

    def __init__(self, num_classes: int, bands: int, edge_margin: int = EDGE_MARGIN,
                 min_segment: int = MIN_SEGMENT):
        self.num_classes, self.bands = int(num_classes), int(bands)
        self.edge_margin, self.min_segment = int(edge_margin), int(min_segment)
        self.colours = ColourStats(num_classes, bands)
        self.texture_sum = np.zeros(num_classes, np.float64)
        self.texture_count = np.zeros(num_classes, np.int64)
        self.segment_means: list[list[np.ndarray]] = [[] for _ in range(num_classes)]

    def add(self, pixels: np.ndarray, labels: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Add one image (bands, H, W) (or a batch (B, bands, H, W)) under its model indices.

        Args:
            pixels: imagery in its pixel units.
            labels: (H, W) model indices (or (B, H, W)); values outside 0..num_classes-1
                (nodata) are skipped.
            valid: optional bool (H, W) (or (B, H, W)); False pixels are treated as nodata.
        """
        pixels = np.asarray(pixels)
        if pixels.ndim == 4:
            for i in range(pixels.shape[0]):
                self.add(pixels[i], labels[i], None if valid is None else valid[i])
            return
        labels = np.asarray(labels).astype(np.int64, copy=True)
        if pixels.shape[0] != self.bands or pixels.shape[1:] != labels.shape:
            raise InputError(f"realism statistics of {self.bands} bands got pixels of shape "
                             f"{pixels.shape} and labels of shape {labels.shape}")
        outside = (labels < 0) | (labels >= self.num_classes)
        if valid is not None:
            outside |= ~np.asarray(valid, bool)
        labels[outside] = -1
        self.colours.add(pixels, labels)
        self._add_texture(pixels, labels)
        self._add_segments(pixels, labels)

    def _add_texture(self, pixels: np.ndarray, labels: np.ndarray) -> None:
        inside = interior_mask(labels, self.edge_margin) & (labels >= 0)
        if not inside.any():
            return
        magnitude = gradient_magnitude(pixels)[inside]
        classes = labels[inside]
        self.texture_sum += np.bincount(classes, magnitude, minlength=self.num_classes)
        self.texture_count += np.bincount(classes, minlength=self.num_classes)

    def _add_segments(self, pixels: np.ndarray, labels: np.ndarray) -> None:
        segments = connected_segments(labels).reshape(-1)
        flat_labels = labels.reshape(-1)
        keep = flat_labels >= 0
        ids, inverse, sizes = np.unique(segments[keep], return_inverse=True, return_counts=True)
        data = pixels.reshape(self.bands, -1)[:, keep].astype(np.float64)
        sums = np.stack([np.bincount(inverse, data[b], minlength=len(ids))
                         for b in range(self.bands)], axis=1)
        classes = flat_labels[ids]  # a segment's id is the flat index of one of its pixels
        for s in np.flatnonzero(sizes >= self.min_segment):
            self.segment_means[classes[s]].append(sums[s] / sizes[s])

    # -- results ----------------------------------------------------------------------------
    @property
    def texture(self) -> np.ndarray:
        """(num_classes,) mean gradient magnitude inside each class; NaN where unmeasured."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.texture_count > 0,
                            self.texture_sum / np.maximum(self.texture_count, 1), np.nan)

    @property
    def spread(self) -> np.ndarray:
        """(num_classes,) per-band standard deviation in each class, averaged over bands."""
        std = self.colours.std
        return np.where(self.colours.count > 1, std.mean(axis=1), np.nan)

    @property
    def variety(self) -> np.ndarray:
        """(num_classes,) std across segments of their mean colour, averaged over bands."""
        out = np.full(self.num_classes, np.nan)
        for c, means in enumerate(self.segment_means):
            if len(means) >= 2:
                out[c] = float(np.stack(means).std(axis=0).mean())
        return out

    @property
    def segments(self) -> np.ndarray:
        """(num_classes,) number of segments counted for the variety."""
        return np.array([len(m) for m in self.segment_means], np.int64)

    @property
    def mean(self) -> np.ndarray:
        """(num_classes, bands) mean colour per class."""
        return self.colours.mean


def _ratio(synthetic: float, real: float) -> float:
    if not (math.isfinite(synthetic) and math.isfinite(real)) or real <= 0:
        return float("nan")
    return synthetic / real


def compare(real: RealismStats, synthetic: RealismStats) -> dict:
    """Per-class synthetic / real ratios and colour errors, and their means over classes.

    Returns:
        {"classes": [{"texture_real", "texture_synthetic", "texture_ratio", "spread_...",
        "variety_...", "segments_real", "segments_synthetic", "colour_error"}, ...],
        "texture_ratio", "spread_ratio", "variety_ratio", "colour_error"} where the summary
        values are means over the classes that have the statistic (NaN when none has).
    """
    classes = []
    for c in range(real.num_classes):
        row = {}
        for name in ("texture", "spread", "variety"):
            r, s = float(getattr(real, name)[c]), float(getattr(synthetic, name)[c])
            row.update({f"{name}_real": r, f"{name}_synthetic": s,
                        f"{name}_ratio": _ratio(s, r)})
        row["segments_real"] = int(real.segments[c])
        row["segments_synthetic"] = int(synthetic.segments[c])
        row["colour_error"] = float(np.abs(synthetic.mean[c] - real.mean[c]).mean())
        classes.append(row)
    summary = {}
    for key in ("texture_ratio", "spread_ratio", "variety_ratio", "colour_error"):
        values = [row[key] for row in classes if math.isfinite(row[key])]
        summary[key] = float(np.mean(values)) if values else float("nan")
    return {"classes": classes, **summary}


def realism_of(real: np.ndarray, synthetic: np.ndarray, labels: np.ndarray, num_classes: int,
               valid: np.ndarray | None = None) -> dict:
    """:func:`compare` of a real and a synthetic image (or batch) under the same labels."""
    stats = []
    for image in (real, synthetic):
        s = RealismStats(num_classes, np.asarray(image).shape[-3])
        s.add(image, labels, valid)
        stats.append(s)
    return compare(*stats)
