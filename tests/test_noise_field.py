"""Field noise: smooth at the scale of its lattice, a pure function of seed and global pixels."""

from __future__ import annotations

import pytest
import torch

from geospade.errors import InputError
from geospade.models.noise import field_noise, make_noise, random_noise


def test_a_window_equals_the_same_pixels_of_the_whole():
    whole = field_noise(7, 3, 200, 260, row_off=-40, col_off=16, spacing=32)
    window = field_noise(7, 3, 77, 91, row_off=-40 + 50, col_off=16 + 33, spacing=32)
    assert torch.equal(window, whole[:, 50:127, 33:124])


def test_varies_smoothly_at_the_lattice_scale_and_with_the_seed():
    a = field_noise(1, 4, 512, 512, spacing=64)
    assert abs(float(a.mean())) < 0.3 and 0.7 < float(a.std()) < 1.3
    neighbours = (a[:, :, 1:] - a[:, :, :-1]).abs().mean()
    far = (a[:, :, 64:] - a[:, :, :-64]).abs().mean()
    assert neighbours < 0.1 * far  # smooth between nodes, different a lattice cell away
    b = field_noise(2, 4, 512, 512, spacing=64)
    assert torch.corrcoef(torch.stack([a.reshape(-1), b.reshape(-1)]))[0, 1].abs() < 0.2


def test_make_noise_and_training_noise_have_the_field_channels():
    noise = make_noise(2, 64, 64, seed=[3, 4], row_off=[0, 64], col_off=0, style_channels=2,
                       spatial_channels=1, field_channels=3, field_spacing=16)
    assert noise.shape == (2, 6, 64, 64)
    assert torch.equal(noise[0, 3:], field_noise(3, 3, 64, 64, 0, 0, 16))
    assert torch.equal(noise[1, 3:], field_noise(4, 3, 64, 64, 64, 0, 16))
    torch.manual_seed(0)
    drawn = random_noise(8, 64, 64, style_channels=0, field_channels=2, field_spacing=16)
    assert drawn.shape == (8, 2, 64, 64) and 0.6 < float(drawn.std()) < 1.4
    assert not torch.equal(drawn[0], drawn[1])


def test_bad_spacing_is_refused():
    with pytest.raises(InputError, match="spacing"):
        field_noise(0, 1, 8, 8, spacing=0)


def test_class_noise_gives_each_class_its_own_map_of_the_noise():
    """The noise a pixel feeds the network is its class's linear map of the raw noise."""
    from geospade.models import build_generator, model_config, one_hot

    torch.manual_seed(0)
    G = build_generator(model_config("tiny", 3, 3, noise_field=2, class_noise=True))
    labels = torch.tensor([[[0, 1], [2, 3]]])  # 3 = don't care
    onehot = one_hot(labels, 3)
    noise = torch.randn(1, G.noise_channels, 2, 2)
    mapped = G._noise_by_class(onehot, noise)
    weight = G.class_noise.weight.view(4, G.noise_channels, G.noise_channels)
    for row, col in [(0, 0), (0, 1), (1, 0), (1, 1)]:
        cls = labels[0, row, col]
        expected = weight[cls] @ noise[0, :, row, col]
        assert torch.allclose(mapped[0, :, row, col], expected, atol=1e-6)
    # One noise vector reads differently in two classes: the map is not shared.
    same = noise[:, :, :1, :1].expand(1, -1, 2, 2)
    out = G._noise_by_class(onehot, same)
    assert (out[0, :, 0, 0] - out[0, :, 0, 1]).abs().max() > 1e-3
    # Without class_noise the noise passes unchanged.
    plain = build_generator(model_config("tiny", 3, 3, noise_field=2))
    assert plain.class_noise is None
    assert torch.equal(plain._noise_by_class(onehot, noise), noise)


def test_texture_noise_is_hashed_per_pixel_and_independent_of_the_spatial_noise():
    from geospade.models.noise import spatial_noise

    whole = make_noise(1, 64, 64, seed=5, style_channels=0, spatial_channels=1,
                       texture_channels=2)
    window = make_noise(1, 32, 32, seed=5, row_off=16, col_off=32, style_channels=0,
                        spatial_channels=1, texture_channels=2)
    assert whole.shape == (1, 3, 64, 64)
    assert torch.equal(window[0], whole[0, :, 16:48, 32:64])  # a pure function of the pixel
    assert not torch.equal(whole[0, 1], spatial_noise(5, 1, 64, 64)[0])  # not the spatial
    assert abs(float(torch.corrcoef(whole[0].reshape(3, -1))[0, 1])) < 0.05
    torch.manual_seed(0)
    drawn = random_noise(2, 32, 32, style_channels=1, texture_channels=2)
    assert drawn.shape == (2, 3, 32, 32) and 0.8 < float(drawn[:, 1:].std()) < 1.2


def test_texture_noise_starts_silent_and_is_scaled_per_class():
    """The texture weights start at zero (a new generator ignores the noise); once learned,
    a class whose weight is zero stays smooth while another gets per-pixel detail."""
    from geospade.models import build_generator, model_config, one_hot

    torch.manual_seed(0)
    G = build_generator(model_config("tiny", 2, 3, noise_dim=0, noise_texture=1)).eval()
    labels = torch.zeros(1, 32, 32, dtype=torch.long)
    labels[:, :, 16:] = 1
    onehot = one_hot(labels, 2)
    noise = G.make_noise(1, 32, 32, seed=1)
    other = G.make_noise(1, 32, 32, seed=2)
    with torch.no_grad():
        assert torch.equal(G(onehot, noise), G(onehot, other))
        scale = G.texture_scales[-1][-1].weight  # the last block's (fout, classes + 1, 1, 1)
        scale[:, 1] = 0.5 / G.texture_scales[-1][-1].gain  # class 1 only
        a, b = G(onehot, noise), G(onehot, other)
    assert (a - b)[..., 4:28, 20:28].abs().mean() > 1e-3  # class 1: the noise shows
    assert (a - b)[..., 4:28, 4:12].abs().max() < 1e-6  # class 0 (beyond the 3x3 reach)


def test_texture_and_field_gains_scale_the_used_weights_not_the_stored_ones():
    """texture_gain is the factor between the stored texture weights and those used (one
    Adam step moves the used weights ``gain`` times as far; 0 is refused); field_gain the
    same for the field noise's per-class maps."""
    from geospade.models import build_generator, model_config

    for gain in (8, 30):
        G = build_generator(model_config("tiny", 2, 3, noise_texture=1, texture_gain=gain))
        scale = G.texture_scales[-1][-1]
        with torch.no_grad():
            scale.weight.fill_(0.01)
        labels = torch.ones(1, 3, 2, 2)
        assert scale.gain == gain
        assert torch.allclose(scale(labels), torch.full_like(scale(labels), 0.03 * gain))
    with pytest.raises(InputError, match="texture_gain"):
        model_config("tiny", 2, 3, noise_texture=1, texture_gain=0)
    G = build_generator(model_config("tiny", 2, 3, noise_field=2, noise_field_mode="features",
                                     field_gain=4))
    assert {scale.gain for stage in G.field_scales for scale in stage} == {4}


def test_noise_texture_is_bounded_by_the_resolutions():
    from geospade.models import model_config

    with pytest.raises(InputError, match="noise_texture"):
        model_config("tiny", 2, 3, noise_texture=5)


def test_field_noise_on_the_features_starts_silent_and_varies_a_class_within_its_fields():
    """In the "features" mode the norms do not read the field noise; its per-class maps start
    at zero (a new generator ignores it), and once learned a class whose map is zero stays
    the same under a new field while another class's look changes."""
    from geospade.models import build_generator, model_config, one_hot

    torch.manual_seed(0)
    cfg = model_config("tiny", 2, 3, noise_dim=0, noise_field=2, noise_field_spacing=16,
                       noise_field_mode="features")
    assert cfg.cond_noise_channels == 0 and cfg.noise_channels == 2
    G = build_generator(cfg).eval()
    labels = torch.zeros(1, 64, 256, dtype=torch.long)
    labels[:, :, 128:] = 1
    onehot = one_hot(labels, 2)
    noise, other = G.make_noise(1, 64, 256, seed=1), G.make_noise(1, 64, 256, seed=2)
    with torch.no_grad():
        assert torch.equal(G(onehot, noise), G(onehot, other))
        for stage in G.field_scales:
            for scale in stage:  # weight (fout, classes * fields, 1, 1), class-major
                scale.weight[:, 2:4] = torch.randn_like(scale.weight[:, 2:4])
        a, b = G(onehot, noise), G(onehot, other)
    far = G.receptive_field
    assert (a - b)[..., 128 + far:].abs().mean() > 1e-3  # class 1: a new look
    assert (a - b)[..., : 128 - far].abs().max() < 1e-6  # class 0 untouched


def test_an_unknown_field_mode_is_refused():
    from geospade.models import model_config

    with pytest.raises(InputError, match="noise_field_mode"):
        model_config("tiny", 2, 3, noise_field_mode="everywhere")
