"""Segment tones: field noise that is constant over each field and changes at its border."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import random_model

from geospade.classes import CHESAPEAKE_7
from geospade.errors import InputError
from geospade.imagery import ImageryInfo
from geospade.models import build_generator, model_config, one_hot
from geospade.models.noise import segment_keys, segment_tones, spatial_noise
from geospade.synthesis import synthesize_array
from geospade.synthesis.plan import MAX_DEFAULT_HALO, round_up


def reachable_max(keys: torch.Tensor, classes: torch.Tensor, reach: int) -> torch.Tensor:
    """segment_keys by brute force: walk every pixel's same-class paths of ``reach`` steps,
    each step a vertical move (or none) then a horizontal one (or none)."""
    _, height, width = classes.shape
    out = keys.clone()
    for i in range(height):
        for j in range(width):
            seen = {(i, j)}
            for _ in range(reach):
                for di, dj in ((1, 0), (0, 1)):
                    seen |= {(a + s * di, b + s * dj) for a, b in seen for s in (-1, 1)
                             if 0 <= a + s * di < height and 0 <= b + s * dj < width
                             and classes[0, a + s * di, b + s * dj] == classes[0, a, b]}
            out[0, 0, i, j] = max(float(keys[0, 0, a, b]) for a, b in seen)
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_keys_spread_along_same_class_paths_only(seed):
    gen = torch.Generator().manual_seed(seed)
    classes = torch.randint(0, 2, (1, 11, 13), generator=gen)
    keys = torch.randn(1, 1, 11, 13, generator=gen)
    for reach in (0, 1, 2, 5):
        assert torch.equal(segment_keys(keys, classes, reach), reachable_max(keys, classes, reach))


def two_fields(size: int = 64) -> torch.Tensor:
    """Class 0 everywhere but a one-pixel diagonal line of class 1 cutting it in two."""
    classes = torch.zeros(1, size, size, dtype=torch.long)
    rows = torch.arange(size)
    classes[0, rows, (size - 1 - rows)] = 1
    return classes


def test_each_field_gets_one_tone_and_a_line_one_pixel_wide_separates_two():
    classes = two_fields()
    keys = spatial_noise(5, 1, 64, 64)[None]
    tones = segment_tones(keys, classes, 128, 3)
    above = classes[0].cumsum(1) == 0  # left of the line
    below = (classes[0].flip(1).cumsum(1) == 0).flip(1)
    for side in (above, below):
        values = tones[0][:, side]
        assert torch.equal(values, values[:, :1].expand_as(values))  # one tone per field
    assert not torch.equal(tones[0][:, above][:, 0], tones[0][:, below][:, 0])
    other = segment_tones(spatial_noise(6, 1, 64, 64)[None], classes, 128, 3)
    assert not torch.equal(other[0][:, above][:, 0], tones[0][:, above][:, 0])  # a new seed


def test_tones_are_standard_normal_across_fields():
    """Over many one-pixel fields (a checkerboard of classes) the tones are N(0, 1)."""
    rows, cols = torch.meshgrid(torch.arange(128), torch.arange(128), indexing="ij")
    classes = ((rows + cols) % 2)[None]
    tones = segment_tones(spatial_noise(9, 1, 128, 128)[None], classes, 16, 4)
    assert abs(float(tones.mean())) < 0.05 and 0.95 < float(tones.std()) < 1.05


def test_a_window_with_a_margin_of_reach_agrees_with_the_whole():
    gen = torch.Generator().manual_seed(3)
    classes = torch.randint(0, 3, (1, 12, 12), generator=gen)
    classes = classes.repeat_interleave(8, 1).repeat_interleave(8, 2)  # 96 x 96, 8 px blocks
    keys = spatial_noise(2, 1, 96, 96)[None]
    reach = 20
    whole = segment_tones(keys, classes, reach, 2)
    window = segment_tones(keys[..., 10:90, 6:80], classes[..., 10:90, 6:80], reach, 2)
    inner = window[..., reach:-reach, reach:-reach]
    assert torch.equal(inner, whole[..., 10 + reach:90 - reach, 6 + reach:80 - reach])
    assert segment_keys(keys, classes, 0).equal(keys)
    with pytest.raises(InputError, match="reach"):
        segment_keys(keys, classes, -1)


def test_the_segments_mode_takes_one_key_channel_and_widens_the_receptive_field():
    plain = model_config("tiny", 3, 3, noise_dim=2, noise_texture=1)
    cfg = model_config("tiny", 3, 3, noise_dim=2, noise_texture=1, noise_field=4,
                       noise_field_spacing=24, noise_field_mode="segments")
    assert cfg.field_input_channels == 1 and cfg.noise_channels == 2 + 1 + 1
    assert cfg.cond_noise_channels == 2
    G, G0 = build_generator(cfg), build_generator(plain)
    assert G.receptive_field == G0.receptive_field + 24
    noise = G.make_noise(2, 32, 32, seed=[1, 2])
    assert noise is not None and noise.shape == (2, 4, 32, 32)
    labels = one_hot(torch.zeros(2, 32, 32, dtype=torch.long), 3)
    with torch.no_grad():
        assert G(labels).shape == (2, 3, 32, 32)  # training noise: drawn inside


def test_segment_tones_start_silent_and_then_give_each_field_its_look():
    """Zero maps at the start (a new generator ignores the tones); once learned, two fields
    of one class apart a one-pixel line look different, and a new seed changes them."""
    torch.manual_seed(0)
    cfg = model_config("tiny", 2, 3, noise_dim=0, noise_field=2, noise_field_spacing=96,
                       noise_field_mode="segments", upsample="bilinear")
    G = build_generator(cfg).eval()
    onehot = one_hot(two_fields(), 2)
    noise, other = G.make_noise(1, 64, 64, seed=1), G.make_noise(1, 64, 64, seed=2)
    with torch.no_grad():
        assert torch.equal(G(onehot, noise), G(onehot, other))
        for stage in G.field_scales:
            for scale in stage:
                scale.weight.normal_(0, 0.1)
        a, b = G(onehot, noise), G(onehot, other)
    assert (a - b).abs().mean() > 1e-3
    corner_a, corner_b = a[0, :, :12, :12].mean((1, 2)), a[0, :, -12:, -12:].mean((1, 2))
    assert (corner_a - corner_b).abs().max() > 1e-3  # the two fields differ


@pytest.mark.parametrize(("field_pool", "roof_keeps_its_look"), [("cell", False),
                                                                   ("class", True)])
def test_a_roof_smaller_than_a_cell_keeps_its_own_tone_when_pooled_by_class(field_pool,
                                                                          roof_keeps_its_look):
    """A 6 px roof inside a field: with the tones mapped for the roof's class only, pooling per
    class makes the output independent of the field's tone; pooling per cell mixes the
    field's tone into the roof's."""
    torch.manual_seed(0)
    cfg = model_config("tiny", 2, 3, noise_dim=0, noise_field=2, noise_field_spacing=64,
                       noise_field_mode="segments", upsample="smooth", field_pool=field_pool)
    G = build_generator(cfg).eval()
    with torch.no_grad():
        for stage in G.field_scales:
            for scale in stage:  # weights (channels, classes * fields): class 1's only
                scale.weight[:, 2:4].normal_(0, 1.0)
    classes = torch.zeros(1, 32, 32, dtype=torch.long)
    classes[0, 13:19, 9:15] = 1
    onehot = one_hot(classes, 2)

    def generate(field_key: float) -> torch.Tensor:
        keys = torch.where(classes == 1, 0.25, field_key)[:, None]
        with torch.no_grad():
            return G(onehot, keys)

    change = (generate(-0.5) - generate(0.75)).abs().max().item()
    assert (change < 1e-6) == roof_keeps_its_look
    assert not torch.equal(generate(0.75), G(onehot, torch.full((1, 1, 32, 32), 0.75)))


def test_the_default_halo_covers_the_tones_reach_so_no_tile_splits_a_field():
    """A field wider than a tile gets one tone across every tile it spans: the default halo
    is the tones' reach plus the (capped) rest of the receptive field, where capping the whole
    receptive field at 128 px lets neighbouring tiles decide the same field's tone apart."""
    reach = 160
    model = random_model(CHESAPEAKE_7, ImageryInfo(3, "uint8"), preset="tiny", noise_dim=0,
                         noise_field=4, noise_field_spacing=reach, noise_field_mode="segments")
    with torch.no_grad():
        for stage in model.generator.field_scales:
            for scale in stage:
                scale.weight.normal_(0, 0.5)
    factor, field = model.downsampling_factor, model.receptive_field
    assert field > MAX_DEFAULT_HALO and model.generator.field_reach == reach
    assert model.default_halo == round_up(reach + min(MAX_DEFAULT_HALO, field - reach), factor)
    labels = np.full((192, 384), CHESAPEAKE_7.values[1], dtype=np.uint8)  # fields of one class
    labels[:, 250] = CHESAPEAKE_7.values[0]  # split by a one-pixel line
    labels[100, :250] = CHESAPEAKE_7.values[0]

    def synth(halo: int | None) -> np.ndarray:
        return synthesize_array(labels, None, model, tile_size=64, halo=halo, seed=3,
                                device="cpu").image.astype(np.float64)

    exact = synth(model.generator.seamless_halo)
    assert np.abs(synth(None) - exact).max() <= 1.0  # uint8 rounding at most
    assert np.abs(synth(MAX_DEFAULT_HALO) - exact).max() > 10  # a field split between tiles
