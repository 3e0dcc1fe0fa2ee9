"""The SPADE residual block: (adaptive norm -> LeakyReLU -> 3x3 conv) twice, plus a shortcut.

As published: spectral norm on the block's convs (both 3x3 convs and the learned 1x1 shortcut),
not on the convs inside SPADE; the learned shortcut (with its own adaptive norm) exists only
where the channel count changes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from geospade.models.init import init_conv
from geospade.models.norm import adaptive_norm


class SpadeResBlock(nn.Module):
    """SPADE residual block.

    Args:
        fin: input channels.
        fout: output channels.
        cond_channels: channels of the conditioning map (one-hot labels plus noise).
        norm: parameter-free norm kind ("batch", "instance", "none").
        adaptive: "spade" or "clade".
        hidden: SPADE's hidden channels.
        kernel: SPADE's conv kernel size.
    """

    def __init__(self, fin: int, fout: int, cond_channels: int, norm: str = "batch",
                 adaptive: str = "spade", hidden: int = 128, kernel: int = 3):
        super().__init__()
        fmiddle = min(fin, fout)
        self.learned_shortcut = fin != fout
        self.norm_0 = adaptive_norm(adaptive, fin, cond_channels, norm, hidden, kernel)
        self.conv_0 = spectral_norm(init_conv(nn.Conv2d(fin, fmiddle, 3, padding=1)))
        self.norm_1 = adaptive_norm(adaptive, fmiddle, cond_channels, norm, hidden, kernel)
        self.conv_1 = spectral_norm(init_conv(nn.Conv2d(fmiddle, fout, 3, padding=1)))
        if self.learned_shortcut:
            self.norm_s = adaptive_norm(adaptive, fin, cond_channels, norm, hidden, kernel)
            self.conv_s = spectral_norm(init_conv(nn.Conv2d(fin, fout, 1, bias=False)))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """``cond`` is the conditioning map at ``x``'s resolution."""
        shortcut = self.conv_s(self.norm_s(x, cond)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, cond), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, cond), 0.2))
        return shortcut + dx
