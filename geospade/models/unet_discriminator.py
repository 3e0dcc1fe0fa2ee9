"""The OASIS discriminator: a U-Net that segments an image into the land-cover classes + "fake".

OASIS (Schoenfeld et al., ICLR 2021) replaces the PatchGAN's one real/fake score per patch by
a semantic segmentation over N + 1 classes: on a real chip the discriminator must recover the
land cover pixel by pixel, on a generated one it must call every pixel "fake" (class N). The
generator is then told, per pixel, whether its imagery reads as the class it was asked for.
Encoder and decoder are residual blocks with spectrally normalised convs and no norm layers,
joined by skip connections at every resolution. It sees the image only, never the labels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from geospade.errors import InputError
from geospade.models.config import ModelConfig


def _conv(fin: int, fout: int, kernel: int = 3) -> nn.Module:
    return spectral_norm(nn.Conv2d(fin, fout, kernel, padding=kernel // 2))


class ResidualBlockD(nn.Module):
    """Pre-activation residual block that halves (``down``) or doubles (``up``) the size.

    Args:
        fin, fout: input and output channels.
        resample: "down" (average pooling after the convs) or "up" (nearest upsampling first).
        first: the encoder's first block, which reads the image: no activation before it.
    """

    def __init__(self, fin: int, fout: int, resample: str, first: bool = False):
        super().__init__()
        self.resample, self.first = resample, first
        self.conv_0 = _conv(fin, fout)
        self.conv_1 = _conv(fout, fout)
        self.shortcut = _conv(fin, fout, 1) if fin != fout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample == "up":
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        h = self.conv_0(x if self.first else F.leaky_relu(x, 0.2))
        h = self.conv_1(F.leaky_relu(h, 0.2))
        out = self.shortcut(x) + h
        return F.avg_pool2d(out, 2) if self.resample == "down" else out


class UNetDiscriminator(nn.Module):
    """U-Net over ``d_layers`` resolutions: image (B, bands, H, W) -> logits (B, N + 1, H, W).

    Widths double per level from ``ndf`` (capped at 8 * ndf). H and W must be multiples of
    2 ** d_layers. Logit N is "fake", logits 0..N-1 are the land-cover classes.

    Args:
        cfg: the model config (out_channels, num_classes, ndf, d_layers).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        levels = cfg.d_layers
        widths = [cfg.ndf * min(2**i, 8) for i in range(levels)]
        self.encoder = nn.ModuleList(
            ResidualBlockD(cfg.out_channels if i == 0 else widths[i - 1], widths[i], "down",
                           first=i == 0) for i in range(levels))
        # Decoder block i goes from resolution 2**-(i+1) to 2**-i; below the deepest level it
        # reads the previous block's output concatenated with the encoder's at that level.
        self.decoder = nn.ModuleList(
            ResidualBlockD(widths[i] if i == levels - 1 else 2 * widths[i],
                           widths[max(i - 1, 0)], "up") for i in range(levels))
        self.head = _conv(widths[0], cfg.num_classes + 1, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Per-pixel logits over the classes and "fake" (last channel)."""
        cfg = self.config
        factor = 2**cfg.d_layers
        if image.dim() != 4 or image.shape[1] != cfg.out_channels or \
                image.shape[-2] % factor or image.shape[-1] % factor:
            raise InputError(f"U-Net discriminator got an image of shape {tuple(image.shape)}; "
                             f"expected {cfg.out_channels} bands and a size that is a multiple "
                             f"of {factor}", hint=f"Use chips whose size is a multiple of {factor}.")
        skips = []
        x = image
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        for i in reversed(range(cfg.d_layers)):
            if i < cfg.d_layers - 1:
                x = torch.cat([x, skips[i]], dim=1)
            x = self.decoder[i](x)
        return self.head(F.leaky_relu(x, 0.2))
