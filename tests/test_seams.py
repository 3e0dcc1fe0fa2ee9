"""The seam score: steps at tile boundaries score far above 1, seamless images about 1."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine

from geospade.cli import main as cli_main
from geospade.errors import InputError
from geospade.synthesis import seam_score
from geospade.synthesis import seams as seams_module


def smooth_image(size: int = 256, seed: int = 0) -> np.ndarray:
    """Three bands of white noise: every adjacent pair alike, wherever it lies."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (3, size, size)).astype(np.uint8)


def stepped_image(size: int = 256, tile: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth gradient whose level jumps at every tile boundary (a visible seam)."""
    rng = np.random.default_rng(seed)
    offsets = rng.integers(0, 120, (size // tile, size // tile))
    ramp = np.add.outer(np.arange(size), np.arange(size)) / (4 * size) * 60
    steps = offsets.repeat(tile, 0).repeat(tile, 1)
    return np.stack([ramp + steps] * 3).astype(np.float32)


def test_steps_at_tile_boundaries_score_high():
    assert seam_score(stepped_image(), 64) > 10


def test_seamless_image_scores_about_one():
    assert seam_score(smooth_image(), 64) == pytest.approx(1.0, abs=0.05)


def test_wrong_tile_size_does_not_see_the_seams():
    # Boundaries of 64 px tiles are not boundaries of a 48 px grid (except where they meet).
    assert seam_score(stepped_image(), 64) > 4 * seam_score(stepped_image(), 48)


def test_masked_pixels_are_excluded():
    image = smooth_image().astype(np.float32)
    image[:, :, 64:] += 500  # a huge step at column 64 ...
    mask = np.ones(image.shape[1:], bool)
    mask[:, 64] = False      # ... hidden behind masked pixels
    assert seam_score(image, 64, mask=mask) == pytest.approx(1.0, abs=0.05)
    assert seam_score(image, 64) > 1.5  # one boundary of six, unmasked


def test_file_equals_array_and_reads_in_strips(tmp_path, monkeypatch):
    image = (stepped_image(256, 64) % 256).astype(np.uint8)
    mask = np.ones((256, 256), bool)
    mask[100:150, 30:90] = False
    path = tmp_path / "img.tif"
    profile = dict(driver="GTiff", width=256, height=256, count=3, dtype="uint8",
                   crs="EPSG:32618", transform=Affine(1, 0, 0, 0, -1, 0))
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "w", **profile) as dst:
        dst.write(image)
        dst.write_mask(np.where(mask, 255, 0).astype(np.uint8))
    expected = seam_score(image, 64, mask=mask)
    monkeypatch.setattr(seams_module, "STRIP_BYTES", 256 * 3 * 10)  # 10 rows per strip
    assert seam_score(path, 64) == pytest.approx(expected, rel=1e-9)
    assert seam_score(str(path), 64) == pytest.approx(expected, rel=1e-9)


def test_offset_moves_the_boundaries():
    image = np.roll(stepped_image(256, 64), 16, axis=(1, 2))
    assert seam_score(image, 64, offset=16) > 4 * seam_score(image, 64)


def test_bad_tile_size():
    with pytest.raises(InputError, match="tile size 0"):
        seam_score(smooth_image(), 0)


def test_cli_prints_the_score(tmp_path, capsys):
    path = tmp_path / "img.tif"
    image = stepped_image(128, 32) % 256
    with rasterio.open(path, "w", driver="GTiff", width=128, height=128, count=3,
                       dtype="uint8") as dst:
        dst.write(image.astype(np.uint8))
    assert cli_main.main(["seam-score", str(path), "--tile-size", "32"]) == 0
    assert float(capsys.readouterr().out) > 5
    assert cli_main.main(["seam-score", str(tmp_path / "missing.tif"), "--tile-size", "32"]) == 2
    assert "not found" in capsys.readouterr().err


def test_period_tells_seams_from_the_generators_periodic_texture():
    rng = np.random.default_rng(0)
    cols = np.arange(256)
    # a texture repeating every 16 px (as 2^k upsampling leaves), strongest at its phase 0
    texture = np.where(cols % 16 == 0, 30.0, 0.0)[None, :] + rng.normal(0, 2, (256, 256))
    image = np.broadcast_to(texture, (256, 256)).astype(np.float32)
    plain = seam_score(image, 64)
    matched = seam_score(image, 64, period=16)
    assert plain > 2.0  # every boundary sits on the texture's phase 0
    assert matched == pytest.approx(1.0, abs=0.1)  # compared with the same phase: no seam
    seamed = image.copy()
    seamed[:, 64:] += 25.0  # a real step at the first tile boundary
    assert seam_score(seamed, 64, period=16) > 1.2


def test_period_must_divide_the_tile_size():
    with pytest.raises(InputError):
        seam_score(np.zeros((32, 32)), 16, period=5)
