"""Tiling invariance of the generator: a crop's generation equals the crop of a generation.

Synthesis stitches tiles, so in eval mode no statistic may be computed per tile. With batch
norm's frozen running statistics and noise drawn from global coordinates, generating a window
of a larger label map must give the same pixels as generating the whole map and cropping,
everywhere further than the receptive field from the window's border. Instance norm (per-tile
statistics) must fail the same comparison, which shows the test measures what it claims.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from geospade.models import build_generator, model_config, one_hot
from geospade.models.generator import FieldScale, TextureScale

NUM_CLASSES = 5
SEED = 1234
SIZE = 320            # the "whole raster"
ROW, COL = 64, 96     # crop offset: multiples of 2**k (8 for the tiny preset)
CROP = 192


def blob_labels(size: int, num_classes: int, seed: int = 0) -> torch.Tensor:
    """A (1, size, size) land-cover-like index map: smooth random blobs plus a nodata patch."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, num_classes, size // 16, size // 16, generator=gen)
    logits = F.interpolate(logits, size=(size, size), mode="bilinear", align_corners=False)
    labels = logits.argmax(1)
    labels[:, 40:70, 200:260] = num_classes  # don't care
    return labels


def lively_generator(**overrides) -> nn.Module:
    """A tiny generator with non-trivial weights and running statistics, in eval mode.

    The published init (gain 0.02) makes SPADE's gamma/beta nearly zero, which would make the
    comparison easy to pass; O(1) weights make every layer's label dependence visible.
    """
    torch.manual_seed(0)
    cfg = model_config("tiny", NUM_CLASSES, 3, noise_spatial=2, **overrides)
    G = build_generator(cfg)
    for module in G.modules():
        if isinstance(module, nn.Conv2d) and not parametrize.is_parametrized(module, "weight"):
            fan_in = module.weight[0].numel()
            nn.init.normal_(module.weight, std=1.5 / math.sqrt(fan_in))
        elif isinstance(module, (TextureScale, FieldScale)):  # noise on (starts at zero)
            nn.init.normal_(module.weight, std=0.1)
    G.train()
    with torch.no_grad():
        for i in range(3):  # running statistics away from their (0, 1) start
            labels = one_hot(blob_labels(64, NUM_CLASSES, seed=10 + i), NUM_CLASSES)
            G(labels.expand(2, -1, -1, -1))
    return G.eval()


def crop_vs_whole(G: nn.Module, row: int = ROW, col: int = COL) -> tuple[float, float]:
    """(max abs difference in the valid interior, std of the whole output)."""
    labels = one_hot(blob_labels(SIZE, NUM_CLASSES), NUM_CLASSES)
    with torch.no_grad():
        whole = G(labels, G.make_noise(1, SIZE, SIZE, SEED))
        crop = G(labels[..., row:row + CROP, col:col + CROP],
                 G.make_noise(1, CROP, CROP, SEED, row_off=row, col_off=col))
    r = G.receptive_field
    assert CROP - 2 * r >= 32, "receptive field too large for this test's crop"
    inner_crop = crop[..., r:CROP - r, r:CROP - r]
    inner_whole = whole[..., row + r:row + CROP - r, col + r:col + CROP - r]
    return (inner_crop - inner_whole).abs().max().item(), whole.std().item()


@pytest.mark.parametrize("adaptive", ["spade", "clade"])
def test_batchnorm_eval_generation_is_tiling_invariant(adaptive):
    diff, spread = crop_vs_whole(lively_generator(norm="batch", adaptive=adaptive))
    assert spread > 0.1  # the output really varies, so equality is not trivial
    assert diff < 1e-4


def test_instance_norm_fails_the_same_comparison():
    """Negative control: per-tile statistics make the crop's colours depend on its content."""
    diff, spread = crop_vs_whole(lively_generator(norm="instance"))
    assert spread > 0.1
    assert diff > 1e-2


def test_offsets_off_the_coarse_grid_break_invariance():
    """Tile origins must be multiples of 2**k: otherwise the coarse grid shifts."""
    G = lively_generator(norm="batch")
    diff, _ = crop_vs_whole(G, row=ROW + 4, col=COL)
    assert diff > 1e-2


@pytest.mark.parametrize("adaptive", ["spade", "clade"])
def test_receptive_field_bounds_the_dependence(adaptive):
    """The gradient of one output pixel is zero beyond G.receptive_field, and reaches near it."""
    G = lively_generator(norm="batch", adaptive=adaptive)
    size, centre = 160, 77  # the pixel is not aligned to the coarse grid on purpose
    labels = one_hot(blob_labels(size, NUM_CLASSES, seed=3), NUM_CLASSES).requires_grad_(True)
    noise = G.make_noise(1, size, size, SEED).requires_grad_(True)
    G(labels, noise)[0, :, centre, centre].sum().backward()
    support = (labels.grad.abs().sum((0, 1)) + noise.grad.abs().sum((0, 1))) > 0
    rows, cols = torch.nonzero(support, as_tuple=True)
    reach = max((rows - centre).abs().max().item(), (cols - centre).abs().max().item())
    r = G.receptive_field
    assert reach <= r
    assert reach >= r - 2 * G.downsampling_factor  # the bound is not loose


# The smooth variant: bilinear upsampling, area-averaged labels, a field of slow noise.
SMOOTH = dict(upsample="bilinear", noise_field=2, noise_field_spacing=24)


@pytest.mark.parametrize("upsample", ["bilinear", "smooth"])
@pytest.mark.parametrize("adaptive", ["spade", "clade"])
def test_smooth_generator_is_tiling_invariant(adaptive, upsample):
    G = lively_generator(norm="batch", adaptive=adaptive, **{**SMOOTH, "upsample": upsample})
    diff, spread = crop_vs_whole(G)
    assert spread > 0.1
    assert diff < 1e-4


@pytest.mark.parametrize("upsample", ["bilinear", "smooth"])
@pytest.mark.parametrize("adaptive", ["spade", "clade"])
def test_receptive_field_bounds_the_smooth_generator(adaptive, upsample):
    G = lively_generator(norm="batch", adaptive=adaptive, upsample=upsample)
    size, centre = 192, 93
    labels = one_hot(blob_labels(size, NUM_CLASSES, seed=3), NUM_CLASSES).requires_grad_(True)
    noise = G.make_noise(1, size, size, SEED).requires_grad_(True)
    G(labels, noise)[0, :, centre, centre].sum().backward()
    support = (labels.grad.abs().sum((0, 1)) + noise.grad.abs().sum((0, 1))) > 0
    rows, cols = torch.nonzero(support, as_tuple=True)
    reach = max((rows - centre).abs().max().item(), (cols - centre).abs().max().item())
    assert G.downsampling_factor * 2 < G.receptive_field - 2 * G.downsampling_factor <= reach
    assert reach <= G.receptive_field


def test_class_noise_generator_is_tiling_invariant():
    """Per-class noise maps are pointwise in the pixel: tiles still stitch exactly."""
    G = lively_generator(norm="batch", adaptive="clade", class_noise=True, **SMOOTH)
    diff, spread = crop_vs_whole(G)
    assert spread > 0.1
    assert diff < 1e-4


@pytest.mark.parametrize("upsample", ["nearest", "smooth"])
def test_texture_noise_generator_is_tiling_invariant(upsample):
    """Texture noise added at the two finest resolutions (pooled in globally anchored cells)
    keeps tiles stitching exactly."""
    G = lively_generator(norm="batch", adaptive="clade", class_noise=True, noise_texture=2,
                         **{**SMOOTH, "upsample": upsample})
    assert all(len(s) for s in G.texture_scales[-2:]) and not len(G.texture_scales[0])
    diff, spread = crop_vs_whole(G)
    assert spread > 0.1
    assert diff < 1e-4


@pytest.mark.parametrize("upsample", ["nearest", "smooth"])
def test_field_noise_added_to_the_features_keeps_tiling_exact(upsample):
    """Field noise in the "features" mode, pooled into the coarse resolutions' cells and
    mapped per class, is pointwise in those cells: tiles still stitch exactly."""
    G = lively_generator(norm="batch", adaptive="clade", class_noise=True, noise_texture=2,
                         noise_field_mode="features", **{**SMOOTH, "upsample": upsample})
    assert all(len(s) for s in G.field_scales[:2]) and not any(len(s) for s in G.field_scales[2:])
    diff, spread = crop_vs_whole(G)
    assert spread > 0.1
    assert diff < 1e-4


@pytest.mark.parametrize("field_pool", ["cell", "class"])
def test_segment_tones_keep_tiling_exact(field_pool):
    """Field tones spread through each class's pixels for a bounded number of steps: with the
    receptive field widened by it, tiles still stitch exactly (pooled per cell or per class
    into the coarse resolutions' globally anchored cells)."""
    G = lively_generator(norm="batch", adaptive="clade", class_noise=True, noise_texture=2,
                         upsample="smooth", noise_field=3, noise_field_spacing=12,
                         noise_field_mode="segments", field_pool=field_pool)
    diff, spread = crop_vs_whole(G)
    assert spread > 0.1
    assert diff < 1e-4


def test_receptive_field_bounds_the_texture_noise_generator():
    G = lively_generator(norm="batch", adaptive="clade", upsample="smooth", noise_texture=3)
    size, centre = 192, 93
    labels = one_hot(blob_labels(size, NUM_CLASSES, seed=3), NUM_CLASSES)
    noise = G.make_noise(1, size, size, SEED).requires_grad_(True)
    G(labels, noise)[0, :, centre, centre].sum().backward()
    texture = noise.grad[0, -3:].abs().sum(0) > 0
    assert texture.any()  # the output reads the texture noise
    rows, cols = torch.nonzero(texture, as_tuple=True)
    reach = max((rows - centre).abs().max().item(), (cols - centre).abs().max().item())
    assert reach <= G.receptive_field
