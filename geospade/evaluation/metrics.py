"""Numbers that say how good synthesised imagery is: segmentation scores, Fréchet distance, colours.

Segmentation consistency (the SPADE paper's protocol) compares a segmenter's predictions on
synthesised images with the label maps they were made from, through a confusion matrix.
The Fréchet distance compares two Gaussians fitted to feature vectors (as FID does); its
matrix square root uses numpy eigendecompositions only. Colour statistics accumulate the mean
and standard deviation of every band within every class, chip by chip, in bounded memory.
"""

from __future__ import annotations

import numpy as np

from geospade.errors import InputError

# -- segmentation scores ------------------------------------------------------------------------


def confusion_matrix(pred: np.ndarray, truth: np.ndarray, num_classes: int,
                     ignore_index: int | None = None) -> np.ndarray:
    """Pixel counts (num_classes, num_classes): row = true class, column = predicted class.

    Args:
        pred: predicted model indices, any shape, values in 0..num_classes-1.
        truth: true model indices, the same shape as ``pred``.
        num_classes: number of real classes.
        ignore_index: truth value of pixels to leave out (nodata / don't care); truth values
            outside 0..num_classes-1 are left out as well.
    """
    pred = np.asarray(pred).reshape(-1).astype(np.int64, copy=False)
    truth = np.asarray(truth).reshape(-1).astype(np.int64, copy=False)
    if pred.shape != truth.shape:
        raise InputError(f"prediction has {pred.size} pixels but the labels have {truth.size}")
    keep = (truth >= 0) & (truth < num_classes)
    if ignore_index is not None:
        keep &= truth != ignore_index
    pred, truth = pred[keep], truth[keep]
    if pred.size and (pred.min() < 0 or pred.max() >= num_classes):
        raise InputError(f"predicted classes {int(pred.min())}..{int(pred.max())} are outside "
                         f"0..{num_classes - 1}")
    counts = np.bincount(truth * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def iou_per_class(matrix: np.ndarray) -> np.ndarray:
    """Intersection over union of every class from a confusion matrix.

    A class absent from both the truth and the predictions has no IoU: it is NaN (not 0, which
    would punish a model for a class the data does not contain, nor 1, which would reward it).
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    tp = np.diag(matrix)
    union = matrix.sum(axis=0) + matrix.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.where(union > 0, union, 1.0), np.nan)


def mean_iou(matrix: np.ndarray) -> float:
    """Mean IoU over the classes with true pixels (rows of the matrix with a count).

    A class the truth does not contain is left out even when it was predicted: its IoU
    would be 0 whatever the model does, and those wrong pixels already lower the IoU of the
    classes they truly belong to. NaN when no class has true pixels (an empty matrix).
    """
    ious = iou_per_class(matrix)
    present = np.asarray(matrix).sum(axis=1) > 0
    return float(np.mean(ious[present])) if present.any() else float("nan")


def classes_without_truth(matrix: np.ndarray) -> list[int]:
    """Indices of the classes with no true pixels: those :func:`mean_iou` leaves out."""
    return [int(i) for i in np.flatnonzero(np.asarray(matrix).sum(axis=1) == 0)]


def pixel_accuracy(matrix: np.ndarray) -> float:
    """Share of counted pixels whose predicted class is the true class (NaN when none)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    total = matrix.sum()
    return float(np.trace(matrix) / total) if total > 0 else float("nan")


# -- Fréchet distance ---------------------------------------------------------------------------


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of feature vectors (N, D), in float64.

    The covariance uses N - 1 (as FID does); a single vector gives a zero covariance.
    """
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] == 0:
        raise InputError(f"feature statistics need a non-empty (N, D) array, got shape "
                         f"{features.shape}")
    mu = features.mean(axis=0)
    if features.shape[0] < 2:
        return mu, np.zeros((features.shape[1], features.shape[1]))
    return mu, np.cov(features, rowvar=False).reshape(features.shape[1], features.shape[1])


def sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (negative rounding clipped)."""
    sym = (np.asarray(matrix, dtype=np.float64) + np.asarray(matrix, dtype=np.float64).T) / 2
    values, vectors = np.linalg.eigh(sym)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def trace_sqrt_product(cov1: np.ndarray, cov2: np.ndarray) -> float:
    """tr(sqrt(cov1 @ cov2)) for covariance matrices, without a general matrix square root.

    cov1 @ cov2 is similar to sqrt(cov1) @ cov2 @ sqrt(cov1), which is symmetric PSD, so its
    eigenvalues are real and non-negative and their square roots sum to the trace wanted.
    """
    root1 = sqrt_psd(cov1)
    inner = root1 @ np.asarray(cov2, dtype=np.float64) @ root1
    values = np.linalg.eigvalsh((inner + inner.T) / 2)
    return float(np.sqrt(np.clip(values, 0.0, None)).sum())


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray,
                     cov2: np.ndarray) -> float:
    """Fréchet distance between the Gaussians N(mu1, cov1) and N(mu2, cov2).

    d^2 = |mu1 - mu2|^2 + tr(cov1) + tr(cov2) - 2 tr(sqrt(cov1 cov2)); this is FID when the
    statistics are those of Inception features. Returned as d^2 (FID's convention).
    """
    mu1, mu2 = np.asarray(mu1, dtype=np.float64), np.asarray(mu2, dtype=np.float64)
    if mu1.shape != mu2.shape:
        raise InputError(f"feature means have different sizes: {mu1.shape} and {mu2.shape}")
    diff = mu1 - mu2
    value = (diff @ diff + np.trace(cov1) + np.trace(cov2)
             - 2.0 * trace_sqrt_product(cov1, cov2))
    return max(float(value), 0.0)  # rounding can push identical distributions just below 0


def frechet_distance_of(features1: np.ndarray, features2: np.ndarray) -> float:
    """Fréchet distance between the Gaussians fitted to two sets of feature vectors (N, D)."""
    return frechet_distance(*feature_statistics(features1), *feature_statistics(features2))


# -- per-class colour statistics --------------------------------------------------------------


class ColourStats:
    """Running per-class, per-band pixel counts, means and standard deviations.

    Sums are float64 and shifted by the first value seen per band, which keeps the variance
    accurate for 16-bit imagery with a large offset.

    Args:
        num_classes: real classes (model indices 0..num_classes-1; others are not counted).
        bands: imagery bands.
    """

    def __init__(self, num_classes: int, bands: int):
        self.num_classes = int(num_classes)
        self.bands = int(bands)
        self.count = np.zeros(num_classes, dtype=np.int64)
        self.sum = np.zeros((num_classes, bands), dtype=np.float64)
        self.sum_sq = np.zeros((num_classes, bands), dtype=np.float64)
        self.shift: np.ndarray | None = None

    def add(self, pixels: np.ndarray, labels: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Count the pixels (bands, H, W) of one image under its labels (H, W) of model indices.

        Args:
            pixels: imagery in any numeric type (e.g. the imagery's own pixel units).
            labels: model indices; values outside 0..num_classes-1 are skipped.
            valid: optional bool (H, W), False pixels skipped.
        """
        pixels = np.asarray(pixels)
        if pixels.ndim == 4:  # a batch: add image by image
            for p, lab, *v in zip(pixels, labels, *([valid] if valid is not None else []),
                                  strict=True):
                self.add(p, lab, v[0] if v else None)
            return
        if pixels.shape[0] != self.bands or pixels.shape[1:] != np.shape(labels):
            raise InputError(f"colour statistics of {self.bands} bands got pixels of shape "
                             f"{pixels.shape} and labels of shape {np.shape(labels)}")
        labels = np.asarray(labels).reshape(-1).astype(np.int64, copy=False)
        data = pixels.reshape(self.bands, -1).astype(np.float64)
        keep = (labels >= 0) & (labels < self.num_classes)
        if valid is not None:
            keep &= np.asarray(valid, bool).reshape(-1)
        labels, data = labels[keep], data[:, keep]
        if labels.size == 0:
            return
        if self.shift is None:
            self.shift = data[:, 0].copy()
        data = data - self.shift[:, None]
        self.count += np.bincount(labels, minlength=self.num_classes)
        for band in range(self.bands):
            self.sum[:, band] += np.bincount(labels, data[band], minlength=self.num_classes)
            self.sum_sq[:, band] += np.bincount(labels, data[band] ** 2,
                                                minlength=self.num_classes)

    @property
    def mean(self) -> np.ndarray:
        """(num_classes, bands) mean per class and band; NaN for classes never seen."""
        shift = np.zeros(self.bands) if self.shift is None else self.shift
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sum / self.count[:, None] + shift[None, :]

    @property
    def std(self) -> np.ndarray:
        """(num_classes, bands) population standard deviation; NaN for classes never seen."""
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = self.sum / self.count[:, None]
            var = self.sum_sq / self.count[:, None] - mean**2
        return np.sqrt(np.clip(var, 0.0, None))
