"""The SPADE model package: config, generator, discriminator, noise, losses."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from geospade.errors import CheckpointError, InputError
from geospade.models import (
    PRESETS,
    ModelConfig,
    VGGLoss,
    build_discriminator,
    build_generator,
    feature_matching_loss,
    hinge_d_loss,
    hinge_g_loss,
    model_config,
    one_hot,
    receptive_field,
    recompute_batchnorm_stats,
    seamless_halo,
)
from geospade.models.losses import vgg19_features
from geospade.models.norm import CLADE, SPADE

NUM_CLASSES = 7


def random_onehot(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return one_hot(torch.randint(0, NUM_CLASSES + 1, (batch, height, width), generator=gen),
                   NUM_CLASSES)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# -- config ---------------------------------------------------------------------------------
def test_presets_and_round_trip():
    assert {"paper", "cpu", "tiny"} <= set(PRESETS)
    cfg = model_config("cpu", NUM_CLASSES, 4, adaptive="clade")
    assert cfg.preset == "cpu" and cfg.adaptive == "clade" and cfg.out_channels == 4
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    paper = model_config("paper", NUM_CLASSES, 3)
    assert (paper.ngf, paper.num_upsampling, paper.spade_hidden, paper.ndf) == (64, 5, 128, 64)
    assert paper.downsampling_factor == 32


def test_config_errors_name_the_value():
    with pytest.raises(InputError, match="preset 'huge'"):
        model_config("huge", NUM_CLASSES, 3)
    with pytest.raises(InputError, match="colour"):
        model_config("tiny", NUM_CLASSES, 3, colour=1)
    with pytest.raises(InputError, match="norm 'group'"):
        model_config("tiny", NUM_CLASSES, 3, norm="group")
    with pytest.raises(InputError, match="unknown fields"):
        ModelConfig.from_dict({**model_config("tiny", 3, 3).to_dict(), "future": 1})


# -- one-hot --------------------------------------------------------------------------------
def test_one_hot_with_dont_care():
    idx = torch.tensor([[[0, 2], [3, 3]]])
    oh = one_hot(idx, 3)
    assert oh.shape == (1, 4, 2, 2) and oh.dtype == torch.float32
    assert torch.equal(oh.sum(1), torch.ones(1, 2, 2))
    assert oh[0, 3, 1, 0] == 1 and oh[0, 0, 0, 0] == 1 and oh[0, 2, 0, 1] == 1
    assert one_hot(idx[0], 3).shape == (1, 4, 2, 2)
    with pytest.raises(InputError, match="outside 0..3"):
        one_hot(torch.tensor([[[4]]]), 3)


# -- generator ------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(64, 64), (96, 160), (24, 40)])
def test_generator_is_fully_convolutional(size):
    G = build_generator(model_config("tiny", NUM_CLASSES, 4))
    out = G(random_onehot(2, *size))
    assert out.shape == (2, 4, *size)
    assert out.abs().max() <= 1.0


def test_generator_rejects_sizes_off_the_grid():
    G = build_generator(model_config("tiny", NUM_CLASSES, 3))
    assert G.downsampling_factor == 8
    with pytest.raises(InputError, match="multiple of 8"):
        G(random_onehot(1, 60, 64))
    with pytest.raises(InputError, match="one-hot"):
        G(torch.zeros(1, NUM_CLASSES, 64, 64))


def test_paper_parameter_counts():
    """The published generator (ngf 64, k 5, 7 classes + don't care, 256 px): 92.2 M; D 5.5 M."""
    with torch.device("meta"):
        exact = build_generator(model_config("paper", NUM_CLASSES, 3, noise_dim=0,
                                             noise_field=0, noise_texture=0))
        preset = build_generator(model_config("paper", NUM_CLASSES, 3))
        D = build_discriminator(model_config("paper", NUM_CLASSES, 3))
    assert n_params(exact) == 92_209_347
    # + a 32-d style vector in every SPADE layer, the texture-noise weights (8 one-hot
    # channels x 256 + 128 + 64 features) and the field noise's per-class maps (8 classes x 16
    # channels -> the 1024 + 2 x 1024 + 512 features of the three coarse resolutions' blocks)
    assert n_params(preset) == 93_167_811 + 8 * (256 + 128 + 64) + 8 * 16 * (3 * 1024 + 512)
    assert n_params(D) == 5_545_858
    assert abs(n_params(exact) / 92.2e6 - 1) < 0.02
    assert abs(n_params(preset) / 92.2e6 - 1) < 0.02
    assert abs(n_params(D) / 5.5e6 - 1) < 0.02


def test_clade_is_far_smaller_than_spade():
    spade = build_generator(model_config("cpu", NUM_CLASSES, 3, adaptive="spade"))
    clade = build_generator(model_config("cpu", NUM_CLASSES, 3, adaptive="clade"))
    spade_norm = sum(n_params(m) for m in spade.modules() if isinstance(m, SPADE))
    clade_norm = sum(n_params(m) for m in clade.modules() if isinstance(m, CLADE))
    assert clade_norm < 0.1 * spade_norm
    assert n_params(clade) < n_params(spade)
    assert clade(random_onehot(1, 32, 32)).shape == (1, 3, 32, 32)


def test_dont_care_channel_can_be_left_out():
    cfg = model_config("tiny", NUM_CLASSES, 3, dont_care=False, noise_dim=0)
    G = build_generator(cfg).eval()
    a = random_onehot(1, 32, 32)
    b = a.clone()
    b[:, -1] = 1 - b[:, -1]  # only the don't-care channel differs
    assert torch.equal(G(a), G(b))


def test_receptive_field_is_exposed():
    cfg = model_config("tiny", NUM_CLASSES, 3)
    G = build_generator(cfg)
    assert G.receptive_field == receptive_field(cfg) > 0
    assert G.seamless_halo == seamless_halo(cfg) >= G.receptive_field
    assert G.seamless_halo % G.downsampling_factor == 0
    assert receptive_field(model_config("paper", 7, 3)) > receptive_field(cfg)


# -- noise ----------------------------------------------------------------------------------
def test_noise_is_a_function_of_seed_and_global_pixels():
    G = build_generator(model_config("tiny", NUM_CLASSES, 3, noise_spatial=3))
    a = G.make_noise(1, 64, 64, seed=7)
    assert a.shape == (1, G.noise_channels, 64, 64) == (1, 7, 64, 64)
    assert torch.equal(a, G.make_noise(1, 64, 64, seed=7))
    # overlapping windows agree where they overlap (also for negative, halo-like offsets)
    b = G.make_noise(1, 48, 40, seed=7, row_off=16, col_off=-8)
    assert torch.equal(a[..., 16:64, :32], b[..., :48, 8:])
    # per-window offsets in one batch
    batch = G.make_noise(2, 32, 32, seed=7, row_off=[0, 32], col_off=[0, 16])
    assert torch.equal(batch[1], a[0, :, 32:, 16:48])
    # the style part is constant over space, the spatial part is not
    assert torch.equal(a[:, :4], a[:, :4, :1, :1].expand(-1, -1, 64, 64))
    assert a[:, 4:].std() > 0.5
    # different seeds differ
    assert not torch.allclose(a, G.make_noise(1, 64, 64, seed=8))
    with pytest.raises(InputError, match="2 entries for a batch of 3"):
        G.make_noise(3, 32, 32, seed=7, row_off=[0, 32])
    with pytest.raises(InputError, match="noise of shape"):
        G(random_onehot(1, 32, 32), a)
    big = G.make_noise(1, 256, 256, seed=1)[:, 4:]
    assert abs(big.mean()) < 0.05 and abs(big.std() - 1) < 0.05


def test_noise_drives_multimodal_outputs():
    G = build_generator(model_config("tiny", NUM_CLASSES, 3)).eval()
    labels = random_onehot(1, 32, 32)
    same = G(labels, G.make_noise(1, 32, 32, seed=1))
    assert torch.equal(same, G(labels, G.make_noise(1, 32, 32, seed=1)))
    assert not torch.allclose(same, G(labels, G.make_noise(1, 32, 32, seed=2)))
    assert not torch.allclose(G(labels), G(labels))  # noise=None: fresh random noise


def test_model_without_noise():
    G = build_generator(model_config("tiny", NUM_CLASSES, 3, noise_dim=0))
    assert G.make_noise(1, 32, 32, seed=0) is None
    G.eval()
    labels = random_onehot(1, 32, 32)
    assert torch.equal(G(labels), G(labels, None))


def test_recompute_batchnorm_stats():
    G = build_generator(model_config("tiny", NUM_CLASSES, 3))
    batches = [torch.randint(0, NUM_CLASSES + 1, (2, 32, 32), generator=torch.Generator().manual_seed(i))
               for i in range(3)]
    noise_fn = lambda oh: G.make_noise(oh.shape[0], 32, 32, seed=0)  # noqa: E731
    assert recompute_batchnorm_stats(G, batches, noise_fn) == 3
    assert not G.training
    bn = next(m for m in G.modules() if isinstance(m, nn.BatchNorm2d))
    first = bn.running_mean.clone()
    assert int(bn.num_batches_tracked) == 3 and bn.momentum == 0.1
    assert first.abs().sum() > 0
    recompute_batchnorm_stats(G, [{"label": b} for b in batches], noise_fn)
    assert torch.allclose(bn.running_mean, first)  # reset, not accumulated
    no_bn = build_generator(model_config("tiny", NUM_CLASSES, 3, norm="instance"))
    assert recompute_batchnorm_stats(no_bn, batches) == 0


def _reference_batchnorm_stats(generator: nn.Module, batches, noise_fn=None) -> None:
    """The statistics written out in full: reset, a cumulative average over every batch in
    train mode, without gradients, then eval()."""
    layers = [m for m in generator.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None
    generator.train()
    with torch.no_grad():
        for batch in batches:
            labels = batch["label"] if isinstance(batch, dict) else batch
            if labels.dim() == 3:
                labels = one_hot(labels, NUM_CLASSES)
            generator(labels, noise_fn(labels) if noise_fn is not None else None)
    for m, momentum in zip(layers, momenta, strict=True):
        m.momentum = momentum
    generator.eval()


@pytest.mark.parametrize("noise", ["fixed", "drawn"])
def test_recompute_batchnorm_stats_match_the_reference_bit_for_bit(noise):
    torch.manual_seed(3)
    G = build_generator(model_config("tiny", NUM_CLASSES, 3))
    with torch.no_grad():  # statistics far from the reset values, so a reset that is missed shows
        G.train()(random_onehot(2, 32, 32, seed=9), G.make_noise(2, 32, 32, seed=1))
    ref = copy.deepcopy(G)
    index_maps = [torch.randint(0, NUM_CLASSES + 1, (2, 32, 32),
                                generator=torch.Generator().manual_seed(i)) for i in range(3)]
    batches = [index_maps[0], {"label": index_maps[1]}, one_hot(index_maps[2], NUM_CLASSES)]

    def noise_fn_of(model):
        if noise == "drawn":
            return None  # the generator draws its own: the same global RNG stream for both
        return lambda oh: model.make_noise(oh.shape[0], 32, 32, seed=[4, 5])

    torch.manual_seed(11)
    assert recompute_batchnorm_stats(G, batches, noise_fn_of(G)) == 3
    torch.manual_seed(11)
    _reference_batchnorm_stats(ref, batches, noise_fn_of(ref))
    layers = [m for m in G.modules() if isinstance(m, nn.BatchNorm2d)]
    ref_layers = [m for m in ref.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(layers) == len(ref_layers) > 0
    for ours, theirs in zip(layers, ref_layers, strict=True):
        assert torch.equal(ours.running_mean, theirs.running_mean)
        assert torch.equal(ours.running_var, theirs.running_var)
        assert torch.equal(ours.num_batches_tracked, theirs.num_batches_tracked)
        assert ours.momentum == theirs.momentum == 0.1
    assert not G.training and not ref.training


def test_training_steps_reduce_a_simple_loss():
    """Gradients reach SPADE's gamma/beta and a few Adam steps fit a label-dependent target."""
    torch.manual_seed(0)
    G = build_generator(model_config("tiny", NUM_CLASSES, 3)).train()
    labels = random_onehot(4, 32, 32)
    target = labels[:, :3] * 1.6 - 0.8  # colour = function of class
    opt = torch.optim.Adam(G.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = (G(labels) - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        losses.append(loss.item())
        opt.step()
    spade = next(m for m in G.modules() if isinstance(m, SPADE))
    assert spade.gamma.weight.grad.abs().sum() > 0 and spade.beta.weight.grad.abs().sum() > 0
    assert losses[-1] < 0.8 * losses[0]


# -- discriminator --------------------------------------------------------------------------
def test_discriminator_returns_features_per_scale():
    cfg = model_config("tiny", NUM_CLASSES, 4)
    D = build_discriminator(cfg)
    out = D(random_onehot(2, 64, 64), torch.rand(2, 4, 64, 64) * 2 - 1)
    assert len(out) == cfg.num_d == 2
    for scale in out:
        assert len(scale) == cfg.d_layers + 1
        assert scale[-1].shape[:2] == (2, 1)
    assert out[1][-1].shape[-1] < out[0][-1].shape[-1]
    with pytest.raises(InputError, match="bands"):
        D(random_onehot(2, 64, 64), torch.zeros(2, 3, 64, 64))


# -- losses ---------------------------------------------------------------------------------
def test_hinge_losses_on_constant_predictions():
    ones, zeros = torch.ones(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)
    # confident and right: no loss; undecided: 1 per term
    assert hinge_d_loss([[ones]], [[-ones]]).item() == 0.0
    assert hinge_d_loss([[zeros], [zeros]], [[zeros], [zeros]]).item() == 2.0
    assert hinge_d_loss([[3 * ones]], [[ones]]).item() == 2.0  # fake rated real: 1 + 1
    assert hinge_g_loss([[0.5 * ones], [1.5 * ones]]).item() == -1.0
    assert hinge_g_loss(-ones).item() == 1.0


def test_feature_matching_loss():
    real = [[torch.ones(1, 2, 4, 4), torch.ones(1, 2, 2, 2), torch.zeros(1, 1, 2, 2)]]
    assert feature_matching_loss(real, real).item() == 0.0
    fake = [[torch.zeros(1, 2, 4, 4), torch.ones(1, 2, 2, 2) * 3, torch.ones(1, 1, 2, 2) * 9]]
    # L1 per layer summed (1 + 2), prediction layer excluded
    assert feature_matching_loss(real, fake).item() == pytest.approx(3.0)
    x = torch.zeros(1, 2, 4, 4, requires_grad=True)
    feature_matching_loss(real, [[x, real[0][1], real[0][2]]]).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_vgg_loss_needs_a_weights_file(tmp_path):
    with pytest.raises(InputError, match="--vgg-weights FILE"):
        VGGLoss(None)
    with pytest.raises(InputError, match="never downloads"):
        VGGLoss(tmp_path / "missing.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a state dict")
    with pytest.raises(CheckpointError, match="cannot read as a VGG19 weights"):
        VGGLoss(bad)
    partial = tmp_path / "partial.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, partial)
    with pytest.raises(CheckpointError, match="lack"):
        VGGLoss(partial)


def test_vgg_loss_with_torchvision_style_weights(tmp_path):
    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in vgg19_features().state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(1)  # torchvision's head is ignored
    path = tmp_path / "vgg19.pth"
    torch.save(state, path)
    loss_fn = VGGLoss(path, rgb_bands=(0, 1, 2))
    real = torch.rand(1, 4, 32, 32) * 2 - 1
    fake = (torch.rand(1, 4, 32, 32) * 2 - 1).requires_grad_(True)
    assert loss_fn(real, real).item() == 0.0
    loss = loss_fn(fake, real)
    assert loss.item() > 0
    loss.backward()
    assert fake.grad[:, :3].abs().sum() > 0 and fake.grad[:, 3].abs().sum() == 0
    assert not any(p.requires_grad for p in loss_fn.parameters())
