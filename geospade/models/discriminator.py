"""Multi-scale PatchGAN discriminator that returns its intermediate features.

Each scale sees the one-hot labels concatenated with an image (the second scale a 2x
average-pooled copy) and predicts real/fake per patch. Convs are spectrally normalised; the
middle layers use instance norm (the discriminator is never tiled, so per-image statistics
are harmless here). Every layer's activation is returned for the feature-matching loss.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from geospade.errors import InputError
from geospade.models.config import ModelConfig
from geospade.models.init import init_conv


class PatchDiscriminator(nn.Module):
    """One PatchGAN scale: ``layers`` strided 4x4 convs then a 1-channel patch prediction.

    Args:
        in_channels: label one-hot channels plus image bands.
        ndf: channels of the first layer (doubled per layer, capped at 512).
        layers: number of feature layers (the last has stride 1).
    """

    def __init__(self, in_channels: int, ndf: int = 64, layers: int = 4):
        super().__init__()
        pad = math.ceil((4 - 1) / 2)
        blocks: list[nn.Module] = [nn.Sequential(
            spectral_norm(init_conv(nn.Conv2d(in_channels, ndf, 4, stride=2, padding=pad))),
            nn.LeakyReLU(0.2))]
        channels = ndf
        for n in range(1, layers):
            previous, channels = channels, min(channels * 2, 512)
            stride = 1 if n == layers - 1 else 2
            blocks.append(nn.Sequential(
                spectral_norm(init_conv(nn.Conv2d(previous, channels, 4, stride=stride, padding=pad))),
                nn.InstanceNorm2d(channels, affine=False),
                nn.LeakyReLU(0.2)))
        blocks.append(spectral_norm(init_conv(nn.Conv2d(channels, 1, 4, stride=1, padding=pad))))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Features of every layer; the last is the patch prediction (B, 1, h, w)."""
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return features


class MultiScaleDiscriminator(nn.Module):
    """``num_d`` PatchGAN discriminators on successively 2x average-pooled inputs.

    Args:
        cfg: the model config (label channels, out_channels, ndf, num_d, d_layers).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        in_channels = cfg.label_channels + cfg.out_channels
        self.scales = nn.ModuleList(PatchDiscriminator(in_channels, cfg.ndf, cfg.d_layers)
                                    for _ in range(cfg.num_d))

    def forward(self, onehot: torch.Tensor, image: torch.Tensor) -> list[list[torch.Tensor]]:
        """Per scale, the list of features whose last entry is the patch prediction.

        Args:
            onehot: float (B, num_classes + 1, H, W), as for the generator.
            image: (B, out_channels, H, W) in [-1, 1], real or generated.
        """
        cfg = self.config
        if onehot.shape[1] not in (cfg.num_classes + 1, cfg.label_channels) or \
                image.shape[1] != cfg.out_channels or onehot.shape[-2:] != image.shape[-2:]:
            raise InputError(f"discriminator got labels {tuple(onehot.shape)} and image "
                             f"{tuple(image.shape)}; expected {cfg.num_classes + 1} label "
                             f"channels and {cfg.out_channels} bands of the same size")
        x = torch.cat([onehot[:, : cfg.label_channels].to(image.dtype), image], dim=1)
        outputs = []
        for i, scale in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            outputs.append(scale(x))
        return outputs


def build_discriminator(cfg: ModelConfig) -> nn.Module:
    """The discriminator described by ``cfg``: multi-scale PatchGAN or OASIS U-Net."""
    if cfg.discriminator == "unet":
        from geospade.models.unet_discriminator import UNetDiscriminator

        return UNetDiscriminator(cfg)
    return MultiScaleDiscriminator(cfg)
