"""Weight initialisation shared by the generator and discriminator."""

from __future__ import annotations

from torch import nn


def init_conv(conv: nn.Conv2d, gain: float = 0.02) -> nn.Conv2d:
    """Xavier-normal weights with a small gain and zero bias, as the published SPADE trains.

    Call it before wrapping the conv in spectral norm, so the power iteration's vectors are
    estimated for the final weights.
    """
    nn.init.xavier_normal_(conv.weight, gain=gain)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv
