"""Evaluation: how good a generator is, measured without downloading anything.

:func:`train_segmenter` trains a small land-cover U-Net on real chips; :func:`evaluate` scores a
generator checkpoint with it (segmentation consistency, a Fréchet distance of its features,
per-class colours, a synthesised raster's seams) and writes a JSON report, a table and a panel.
"""

from geospade.evaluation.evaluate import evaluate
from geospade.evaluation.metrics import (
    ColourStats,
    confusion_matrix,
    frechet_distance,
    frechet_distance_of,
    iou_per_class,
    mean_iou,
    pixel_accuracy,
)
from geospade.evaluation.report import format_table
from geospade.evaluation.segmenter import Segmenter, UNet, load_segmenter, train_segmenter

__all__ = [
    "ColourStats",
    "Segmenter",
    "UNet",
    "confusion_matrix",
    "evaluate",
    "format_table",
    "frechet_distance",
    "frechet_distance_of",
    "iou_per_class",
    "load_segmenter",
    "mean_iou",
    "pixel_accuracy",
    "train_segmenter",
]
