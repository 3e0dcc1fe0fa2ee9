"""Training objectives: what the discriminator and the generator minimise, one class each.

An objective turns one batch (labels, real chips, generated chips) into the named loss terms
of a discriminator step and of a generator step; the trainer only runs the steps, in order.
Each method returns a dict whose first entry is the total that is back-propagated
(``loss_d`` or ``loss_g``) followed by its parts, which the metrics log records.

- :class:`SpadeObjective` (Park et al. 2019): a multi-scale PatchGAN with hinge loss,
  discriminator feature matching, optionally a VGG19 perceptual loss and an L1 loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from geospade.models.losses import VGGLoss, feature_matching_loss, hinge_d_loss, hinge_g_loss
from geospade.training.config import TrainConfig

LossTerms = dict[str, torch.Tensor]


@dataclass
class Batch:
    """One training batch on the device.

    Attributes:
        labels: (B, H, W) model indices (``num_classes`` marks don't-care pixels).
        onehot: (B, num_classes + 1, H, W) float one-hot labels, as the networks read them.
        real: (B, bands, H, W) real chips in [-1, 1].
    """

    labels: torch.Tensor
    onehot: torch.Tensor
    real: torch.Tensor


class Objective(Protocol):
    """The losses of one GAN formulation (see the module docstring)."""

    def discriminator_loss(self, discriminator: nn.Module, batch: Batch,
                           fake: torch.Tensor) -> LossTerms:
        """Terms of the discriminator step; ``fake`` is detached from the generator."""
        ...

    def generator_loss(self, discriminator: nn.Module, batch: Batch,
                       fake: torch.Tensor) -> LossTerms:
        """Terms of the generator step; the discriminator's weights take no gradient."""
        ...


def split_halves(outputs: list[list[torch.Tensor]]) -> tuple[list, list]:
    """D's outputs on cat([real, fake]) -> (outputs on real, outputs on fake)."""
    first = [[f[: f.shape[0] // 2] for f in scale] for scale in outputs]
    second = [[f[f.shape[0] // 2:] for f in scale] for scale in outputs]
    return first, second


def predictions(outputs: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    """The patch predictions (last feature of each scale), in float32 for the losses."""
    return [scale[-1].float() for scale in outputs]


def detach_all(outputs: list[list[torch.Tensor]]) -> list[list[torch.Tensor]]:
    """Every feature of a discriminator output, detached."""
    return [[f.detach() for f in scale] for scale in outputs]


class SpadeObjective:
    """SPADE's objective: hinge adversarial loss + feature matching [+ VGG19] [+ L1].

    Real and generated chips go through the discriminator as one batch, as in SPADE.

    Args:
        lambda_fm: weight of the feature-matching loss.
        vgg: the VGG19 perceptual loss, or None.
        lambda_vgg: its weight.
        lambda_l1: weight of an L1 loss between generated and real chips (0 = off).
    """

    def __init__(self, lambda_fm: float, vgg: VGGLoss | None = None, lambda_vgg: float = 0.0,
                 lambda_l1: float = 0.0):
        self.lambda_fm = lambda_fm
        self.vgg = vgg
        self.lambda_vgg = lambda_vgg
        self.lambda_l1 = lambda_l1

    def discriminator_loss(self, discriminator: nn.Module, batch: Batch,
                           fake: torch.Tensor) -> LossTerms:
        """Hinge loss on real chips vs generated ones."""
        onehot = batch.onehot
        d_real, d_fake = split_halves(discriminator(torch.cat([onehot, onehot]),
                                                    torch.cat([batch.real, fake])))
        return {"loss_d": hinge_d_loss(predictions(d_real), predictions(d_fake))}

    def generator_loss(self, discriminator: nn.Module, batch: Batch,
                       fake: torch.Tensor) -> LossTerms:
        """Fool the discriminator and match its features on the real chips."""
        onehot, real = batch.onehot, batch.real
        d_real, d_fake = split_halves(discriminator(torch.cat([onehot, onehot]),
                                                    torch.cat([real, fake])))
        terms = {"loss_g_adv": hinge_g_loss(predictions(d_fake)),
                 "loss_g_fm": feature_matching_loss(detach_all(d_real), d_fake)}
        total = terms["loss_g_adv"] + self.lambda_fm * terms["loss_g_fm"]
        if self.vgg is not None:
            terms["loss_g_vgg"] = self.vgg(fake.float(), real)
            total = total + self.lambda_vgg * terms["loss_g_vgg"]
        if self.lambda_l1:
            terms["loss_g_l1"] = (fake.float() - real).abs().mean()
            total = total + self.lambda_l1 * terms["loss_g_l1"]
        return {"loss_g": total, **terms}


def build_objective(config: TrainConfig, device: torch.device) -> Objective:
    """The objective a training configuration asks for, on ``device``."""
    vgg = VGGLoss(config.vgg_weights).to(device) if config.vgg_weights else None
    return SpadeObjective(config.lambda_fm, vgg, config.lambda_vgg, config.lambda_l1)
