"""The SPADE model: config, generator, discriminator, losses and the noise they share.

Typical use::

    cfg = model_config("cpu", num_classes=7, out_channels=4)
    G, D = build_generator(cfg), build_discriminator(cfg)
    onehot = one_hot(batch["label"], cfg.num_classes)
    fake = G(onehot)                                  # training: random noise
    G.eval(); tile = G(onehot, G.make_noise(1, h, w, seed, row_off, col_off))  # synthesis
"""

from geospade.models.config import PRESETS, ModelConfig, model_config
from geospade.models.discriminator import MultiScaleDiscriminator, build_discriminator
from geospade.models.generator import (
    SpadeGenerator,
    build_generator,
    receptive_field,
    seamless_halo,
)
from geospade.models.losses import VGGLoss, feature_matching_loss, hinge_d_loss, hinge_g_loss
from geospade.models.norm import recompute_batchnorm_stats
from geospade.models.onehot import one_hot

__all__ = [
    "PRESETS",
    "ModelConfig",
    "MultiScaleDiscriminator",
    "SpadeGenerator",
    "VGGLoss",
    "build_discriminator",
    "build_generator",
    "feature_matching_loss",
    "hinge_d_loss",
    "hinge_g_loss",
    "model_config",
    "one_hot",
    "receptive_field",
    "recompute_batchnorm_stats",
    "seamless_halo",
]
