"""Evaluation metrics on hand-made inputs: confusion matrices, IoU, Fréchet distance, colours."""

from __future__ import annotations

import math

import numpy as np
import pytest

from geospade.errors import InputError
from geospade.evaluation.metrics import (
    ColourStats,
    classes_without_truth,
    confusion_matrix,
    frechet_distance,
    frechet_distance_of,
    iou_per_class,
    mean_iou,
    pixel_accuracy,
    sqrt_psd,
    trace_sqrt_product,
)


def test_confusion_matrix_rows_are_truth_and_ignore_index_is_left_out():
    truth = np.array([[0, 0, 1], [1, 2, 3]])  # 3 = ignore index (nodata)
    pred = np.array([[0, 1, 1], [1, 0, 2]])
    matrix = confusion_matrix(pred, truth, num_classes=3, ignore_index=3)
    expected = np.array([[1, 1, 0],
                         [0, 2, 0],
                         [1, 0, 0]])
    np.testing.assert_array_equal(matrix, expected)
    assert matrix.sum() == 5  # the nodata pixel predicted as class 2 is not counted


def test_iou_miou_and_accuracy_of_a_hand_made_matrix():
    matrix = np.array([[3, 1, 0],
                       [1, 4, 0],
                       [0, 0, 0]])  # class 2 absent from truth and predictions
    ious = iou_per_class(matrix)
    assert ious[0] == pytest.approx(3 / (3 + 1 + 1))
    assert ious[1] == pytest.approx(4 / (4 + 1 + 1))
    assert math.isnan(ious[2])
    # The absent class does not count in the mean (as 0 it would drag it down to 0.47).
    assert mean_iou(matrix) == pytest.approx((0.6 + 4 / 6) / 2)
    assert pixel_accuracy(matrix) == pytest.approx(7 / 9)


def test_class_predicted_but_absent_from_truth_is_left_out_of_the_mean():
    matrix = np.array([[2, 2],
                       [0, 0]])  # class 1 never true but predicted twice
    ious = iou_per_class(matrix)
    assert ious[1] == 0.0
    # The error already halves class 0's IoU; counting class 1 as 0 too would punish it twice.
    assert mean_iou(matrix) == pytest.approx(0.5)
    assert classes_without_truth(matrix) == [1]


def test_empty_matrix_has_no_scores():
    matrix = np.zeros((3, 3), dtype=np.int64)
    assert math.isnan(mean_iou(matrix))
    assert math.isnan(pixel_accuracy(matrix))


def test_confusion_matrix_rejects_predictions_outside_the_classes():
    with pytest.raises(InputError, match="outside"):
        confusion_matrix(np.array([5]), np.array([0]), num_classes=3)


def test_frechet_distance_of_identical_gaussians_is_zero():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 6))
    cov = np.cov(a, rowvar=False)
    assert frechet_distance(a.mean(0), cov, a.mean(0), cov) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance_of(a, a) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_of_shifted_means_is_the_squared_shift():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(400, 5))
    shift = np.array([1.0, -2.0, 0.5, 0.0, 3.0])
    assert frechet_distance_of(a, a + shift) == pytest.approx(float(shift @ shift), rel=1e-9)


def test_frechet_distance_of_scaled_covariances_matches_the_closed_form():
    # N(0, s1^2 I) vs N(0, s2^2 I) in d dims: d * (s1 - s2)^2.
    d, s1, s2 = 4, 1.0, 3.0
    value = frechet_distance(np.zeros(d), s1**2 * np.eye(d), np.zeros(d), s2**2 * np.eye(d))
    assert value == pytest.approx(d * (s1 - s2) ** 2)


def test_trace_sqrt_product_of_non_commuting_covariances():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    cov1, cov2 = a @ a.T, b @ b.T
    # tr(sqrt(cov1 cov2)) = sum of square roots of the (real, positive) eigenvalues of cov1 cov2.
    expected = np.sqrt(np.linalg.eigvals(cov1 @ cov2).real).sum()
    assert trace_sqrt_product(cov1, cov2) == pytest.approx(expected, rel=1e-8)
    root = sqrt_psd(cov1)
    np.testing.assert_allclose(root @ root, cov1, atol=1e-9)


def test_frechet_distance_with_fewer_samples_than_dimensions_is_finite():
    rng = np.random.default_rng(3)
    value = frechet_distance_of(rng.normal(size=(5, 32)), rng.normal(size=(5, 32)) + 1)
    assert np.isfinite(value) and value > 0


def test_colour_stats_per_class_and_band():
    labels = np.array([[0, 0], [1, 3]])  # 3 = don't care: not counted; class 2 never seen
    pixels = np.array([[[10, 20], [100, 7]],
                       [[1, 3], [50, 7]]], dtype=np.uint8)
    stats = ColourStats(num_classes=3, bands=2)
    stats.add(pixels, labels)
    np.testing.assert_array_equal(stats.count, [2, 1, 0])
    np.testing.assert_allclose(stats.mean[0], [15, 2])
    np.testing.assert_allclose(stats.std[0], [5, 1])
    np.testing.assert_allclose(stats.mean[1], [100, 50])
    assert np.isnan(stats.mean[2]).all()


def test_colour_stats_accumulate_like_one_pass_and_keep_16_bit_precision():
    rng = np.random.default_rng(4)
    pixels = (rng.normal(size=(3, 2, 16, 16)) * 3 + 60000).astype(np.uint16)
    labels = rng.integers(0, 2, size=(3, 16, 16))
    stats = ColourStats(2, 2)
    stats.add(pixels, labels)  # a batch
    for c in range(2):
        values = pixels.transpose(1, 0, 2, 3)[:, labels == c].astype(np.float64)
        np.testing.assert_allclose(stats.mean[c], values.mean(axis=1), rtol=1e-12)
        np.testing.assert_allclose(stats.std[c], values.std(axis=1), rtol=1e-9)
