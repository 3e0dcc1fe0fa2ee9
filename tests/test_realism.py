"""Realism measures: real imagery against itself scores 1.0, per-class flat paint about 0."""

from __future__ import annotations

import numpy as np
import pytest

from geospade.evaluation.realism import (
    RealismStats,
    compare,
    connected_segments,
    gradient_magnitude,
    interior_mask,
    realism_of,
)

NUM_CLASSES = 4


def field_scene(seed: int = 0, size: int = 128, cell: int = 16):
    """Labels of square fields of 4 classes, and imagery with per-field colours and texture."""
    rng = np.random.default_rng(seed)
    cells = size // cell
    labels = np.kron(rng.integers(0, NUM_CLASSES, (cells, cells)), np.ones((cell, cell), int))
    field_colour = np.kron(rng.normal(0, 15, (3, cells, cells)), np.ones((1, cell, cell)))
    texture = rng.normal(0, 8, (3, size, size))
    image = 100 + 20 * labels[None] + field_colour + texture
    labels[:8, :8] = -1  # nodata is not counted
    return labels, np.clip(image, 0, 255)


def flat_paint(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Every class in its mean colour."""
    flat = np.zeros_like(image)
    for c in range(NUM_CLASSES):
        flat[:, labels == c] = image[:, labels == c].mean(axis=1, keepdims=True)
    return flat


def test_real_against_itself_scores_one():
    labels, image = field_scene()
    result = realism_of(image, image, labels, NUM_CLASSES)
    for key in ("texture_ratio", "spread_ratio", "variety_ratio"):
        assert result[key] == pytest.approx(1.0)
    assert result["colour_error"] == pytest.approx(0.0, abs=1e-9)
    assert all(row["segments_real"] >= 2 for row in result["classes"])


def test_flat_paint_scores_about_zero():
    labels, image = field_scene()
    result = realism_of(image, flat_paint(image, labels), labels, NUM_CLASSES)
    for key in ("texture_ratio", "spread_ratio", "variety_ratio"):
        assert result[key] < 1e-6
    assert result["colour_error"] < 1e-6  # the right mean colours, and still flat


def test_each_measure_sees_its_own_property():
    labels, image = field_scene()
    rng = np.random.default_rng(1)
    # Per-field colours kept, in-field texture removed: variety stays, texture goes.
    smooth = image.copy()
    segments = connected_segments(labels)
    for s in np.unique(segments[labels >= 0]):
        smooth[:, segments == s] = image[:, segments == s].mean(axis=1, keepdims=True)
    result = realism_of(image, smooth, labels, NUM_CLASSES)
    assert result["texture_ratio"] < 0.05 and result["variety_ratio"] > 0.95
    # Per-pixel texture kept, field colours all alike: texture stays, variety goes.
    alike = flat_paint(image, labels) + rng.normal(0, 8, image.shape)
    result = realism_of(image, alike, labels, NUM_CLASSES)
    assert result["texture_ratio"] > 0.7 and result["variety_ratio"] < 0.2


def test_connected_segments_are_four_connected():
    classes = np.array([[0, 0, 1],
                        [1, 0, 1],
                        [1, 1, 0]])
    seg = connected_segments(classes)
    assert seg[0, 0] == seg[0, 1] == seg[1, 1]
    assert seg[0, 2] == seg[1, 2] and seg[1, 0] == seg[2, 0] == seg[2, 1]
    assert seg[2, 2] != seg[1, 1]  # diagonal only
    assert len(np.unique(seg)) == 4
    spiral = np.ones((9, 9), int)
    spiral[1:8, 1] = spiral[1, 1:8] = spiral[1:8, 7] = spiral[7, 3:8] = 0
    spiral[3:7, 3] = spiral[3, 3:6] = 0
    seg = connected_segments(spiral)
    assert len(np.unique(seg[spiral == 0])) == 1


def test_texture_ignores_class_edges():
    labels = np.zeros((32, 32), int)
    labels[:, 16:] = 1
    image = np.where(labels == 0, 50.0, 200.0)[None].repeat(3, axis=0)
    assert gradient_magnitude(image).max() > 100  # the boundary has a huge gradient
    stats = RealismStats(2, 3)
    stats.add(image, labels)
    np.testing.assert_allclose(stats.texture, [0.0, 0.0])
    inner = interior_mask(labels, 2)
    assert not inner[:, 14:18].any() and inner[5:27, 5:12].all()


def test_batches_and_valid_masks():
    labels, image = field_scene()
    one = RealismStats(NUM_CLASSES, 3)
    one.add(np.stack([image, image]), np.stack([labels, labels]))
    valid = labels >= 0
    two = RealismStats(NUM_CLASSES, 3)
    two.add(image, np.where(valid, labels, 0), valid)
    two.add(image, labels)
    result = compare(one, two)
    assert result["texture_ratio"] == pytest.approx(1.0)
    assert result["variety_ratio"] == pytest.approx(1.0)


def test_segmenter_class_weights_favour_small_classes(small_chips):
    from geospade.chips.dataset import ChipDataset
    from geospade.evaluation.segmenter import class_weights

    dataset = ChipDataset(small_chips, "train")
    weights = class_weights(dataset).numpy()
    counts = np.zeros(len(weights), np.int64)
    for record in dataset.records:
        labels = dataset.read(record)[0]
        counts += np.bincount(labels[labels < len(weights)], minlength=len(weights))
    present = counts > 0
    assert (weights[~present] == 0).all()
    assert weights[present].mean() == pytest.approx(1.0)
    order = np.argsort(counts[present])
    assert (np.diff(weights[present][order]) <= 1e-6).all()  # rarer class, larger weight
    share = counts[present] / counts.sum()
    np.testing.assert_allclose(weights[present] * np.sqrt(share),
                               (weights[present] * np.sqrt(share))[0], rtol=1e-5)
