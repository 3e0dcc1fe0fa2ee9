"""Spatially adaptive normalisation: SPADE (per-pixel conv MLP) and CLADE (per-class lookup).

Both normalise activations without learned affine parameters, then modulate them with
``x * (1 + gamma) + beta`` where gamma and beta come from the label map (plus noise), resized
to the activation's size. The parameter-free norm decides whether tiles stitch: batch norm in
eval mode uses frozen running statistics (a pointwise affine map, the same for every tile),
while instance norm computes statistics per tile, which shows as seams.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from geospade.errors import InputError
from geospade.models.config import ModelConfig
from geospade.models.init import init_conv


def param_free_norm(kind: str, channels: int) -> nn.Module:
    """The normalisation SPADE modulates: batch, instance or none, never with affine terms.

    Args:
        kind: "batch", "instance" or "none".
        channels: channels of the activation.
    """
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=False, track_running_stats=True)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "none":
        return nn.Identity()
    raise InputError(f"unknown norm '{kind}'", hint="Use 'batch', 'instance' or 'none'.")


class SPADE(nn.Module):
    """SPADE: gamma and beta per pixel from a small conv net over the label map (and noise).

    Args:
        channels: channels of the activation being normalised.
        cond_channels: channels of the conditioning map (one-hot labels plus noise).
        norm: parameter-free norm kind.
        hidden: channels of the shared conv.
        kernel: kernel size of the convs.
    """

    def __init__(self, channels: int, cond_channels: int, norm: str = "batch",
                 hidden: int = 128, kernel: int = 3):
        super().__init__()
        self.norm = param_free_norm(norm, channels)
        pad = kernel // 2
        self.shared = nn.Sequential(init_conv(nn.Conv2d(cond_channels, hidden, kernel, padding=pad)),
                                    nn.ReLU(inplace=True))
        self.gamma = init_conv(nn.Conv2d(hidden, channels, kernel, padding=pad))
        self.beta = init_conv(nn.Conv2d(hidden, channels, kernel, padding=pad))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` and modulate it; ``cond`` is already at ``x``'s resolution."""
        hidden = self.shared(cond)
        return self.norm(x) * (1 + self.gamma(hidden)) + self.beta(hidden)


class CLADE(nn.Module):
    """CLADE: gamma and beta looked up per class (a 1x1 map of the one-hot labels).

    A 1x1 conv without bias over a one-hot map *is* a per-class table lookup; noise channels,
    if any, add a per-pixel linear term so the style still reaches every layer.

    Args:
        channels: channels of the activation being normalised.
        cond_channels: channels of the conditioning map (one-hot labels plus noise).
        norm: parameter-free norm kind.
    """

    def __init__(self, channels: int, cond_channels: int, norm: str = "batch"):
        super().__init__()
        self.norm = param_free_norm(norm, channels)
        self.gamma = init_conv(nn.Conv2d(cond_channels, channels, 1, bias=False))
        self.beta = init_conv(nn.Conv2d(cond_channels, channels, 1, bias=False))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` and modulate it; ``cond`` is already at ``x``'s resolution."""
        return self.norm(x) * (1 + self.gamma(cond)) + self.beta(cond)


def adaptive_norm(kind: str, channels: int, cond_channels: int, norm: str, hidden: int,
                  kernel: int) -> nn.Module:
    """SPADE or CLADE by name (``ModelConfig.adaptive``)."""
    if kind == "spade":
        return SPADE(channels, cond_channels, norm, hidden, kernel)
    if kind == "clade":
        return CLADE(channels, cond_channels, norm)
    raise InputError(f"unknown adaptive norm '{kind}'", hint="Use 'spade' or 'clade'.")


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The batch-norm layers of a model (including SyncBatchNorm)."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recompute_batchnorm_stats(generator: nn.Module, batches: Iterable,
                              noise_fn: Callable[[torch.Tensor], torch.Tensor | None] | None = None
                              ) -> int:
    """Replace the generator's batch-norm running statistics by fresh ones, then eval().

    Weights averaged by EMA do not match the running statistics gathered while training, so
    the EMA generator's statistics are recomputed over some training batches: reset, then a
    cumulative average (momentum None) over every batch, in train mode without gradients
    (:func:`torch.optim.swa_utils.update_bn`, fed one-hot batches and the noise).

    Args:
        generator: the generator (usually the EMA copy).
        batches: one-hot label maps (B, C, H, W), index maps (B, H, W) or dataset batches
            (dicts with "label" index maps).
        noise_fn: maps a one-hot batch to the noise to use, or None to let the generator
            draw random noise.

    Returns:
        The number of batches used (0 when the generator has no batch norm).
    """
    layers = batchnorm_layers(generator)
    if not layers:
        generator.eval()
        return 0
    from geospade.models.onehot import one_hot  # local: onehot imports nothing from here

    num_classes = _num_classes(generator)
    device = next(generator.parameters()).device
    count = 0

    def one_hot_batches() -> Iterator[torch.Tensor]:
        nonlocal count
        for batch in batches:
            labels = (batch["label"] if isinstance(batch, dict) else batch).to(device)
            yield one_hot(labels, num_classes) if labels.dim() == 3 else labels
            count += 1  # resumed once the generator has seen the batch

    momenta = [m.momentum for m in layers]
    try:
        update_bn(one_hot_batches(), _WithNoise(generator, noise_fn))
    finally:
        # update_bn restores the momenta itself, but not when a batch fails.
        for m, momentum in zip(layers, momenta, strict=True):
            m.momentum = momentum
        generator.eval()
    return count


class _WithNoise(nn.Module):
    """The generator as update_bn calls it: one argument (one-hot labels), noise added here."""

    def __init__(self, generator: nn.Module,
                 noise_fn: Callable[[torch.Tensor], torch.Tensor | None] | None):
        super().__init__()
        self.generator = generator
        self.noise_fn = noise_fn

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.generator(labels, self.noise_fn(labels) if self.noise_fn is not None else None)


def _num_classes(generator: nn.Module) -> int:
    """The land-cover classes of a generator's config (of its ``module`` when DDP-wrapped)."""
    config = getattr(getattr(generator, "module", generator), "config", None)
    if not isinstance(config, ModelConfig):
        raise TypeError(f"{type(generator).__name__} has no ModelConfig 'config' to tell "
                        "its number of classes")
    return config.num_classes
