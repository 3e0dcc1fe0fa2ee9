"""Training objectives: what the discriminator and the generator minimise, one class each.

An objective turns one batch (labels, real chips, generated chips) into the named loss terms
of a discriminator step and of a generator step; the trainer only runs the steps, in order.
Each method returns a dict whose first entry is the total that is back-propagated
(``loss_d`` or ``loss_g``) followed by its parts, which the metrics log records.

- :class:`SpadeObjective` (Park et al. 2019): a multi-scale PatchGAN with hinge loss,
  discriminator feature matching, optionally a VGG19 perceptual loss and an L1 loss.
- :class:`OasisObjective` (Schoenfeld et al. 2021): a U-Net discriminator that segments real
  chips into the N land-cover classes and generated ones into class N ("fake"), with
  class-balanced cross-entropy and LabelMix; the generator is supervised per pixel by the
  same segmentation and needs no perceptual loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from geospade.models.losses import VGGLoss, feature_matching_loss, hinge_d_loss, hinge_g_loss
from geospade.models.noise import segment_keys
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


@dataclass
class Anchors:
    """The generator's terms that compare it with the real chips directly, beside the
    adversarial ones: VGG19 perceptual, L1, and class moments (each off at weight 0).

    Args:
        num_classes: land-cover classes N (for the class moments).
        vgg: the VGG19 perceptual loss, or None.
        lambda_vgg: its weight.
        lambda_l1: weight of an L1 loss between generated and real chips.
        lambda_moments: weight of :func:`class_moments_loss`.
        moments_per_chip: split its spread into within- and between-chip parts.
        lambda_variety: weight of :func:`field_variety_loss`.
    """

    num_classes: int
    vgg: VGGLoss | None = None
    lambda_vgg: float = 0.0
    lambda_l1: float = 0.0
    lambda_moments: float = 0.0
    moments_per_chip: bool = False
    lambda_variety: float = 0.0

    def __call__(self, batch: Batch, fake: torch.Tensor, terms: LossTerms) -> torch.Tensor:
        """Their weighted sum (0 when all are off); each one is also added to ``terms``."""
        total = torch.zeros((), device=fake.device)
        if self.vgg is not None:
            terms["loss_g_vgg"] = self.vgg(fake.float(), batch.real)
            total = total + self.lambda_vgg * terms["loss_g_vgg"]
        if self.lambda_l1:
            terms["loss_g_l1"] = (fake.float() - batch.real).abs().mean()
            total = total + self.lambda_l1 * terms["loss_g_l1"]
        if self.lambda_moments:
            classes = batch.onehot[:, : self.num_classes]  # without don't-care
            terms["loss_g_moments"] = class_moments_loss(fake.float(), batch.real, classes,
                                                           self.moments_per_chip)
            total = total + self.lambda_moments * terms["loss_g_moments"]
        if self.lambda_variety:
            terms["loss_g_variety"] = field_variety_loss(fake.float(), batch.real, batch.labels,
                                                         self.num_classes)
            total = total + self.lambda_variety * terms["loss_g_variety"]
        return total


#: Fields smaller than this many pixels count for no class's variety (as in the realism
#: measures: a sliver at a chip's edge says little about its field's colour).
MIN_FIELD = 32


def chip_fields(labels: torch.Tensor) -> torch.Tensor:
    """(B, H, W) class labels -> (B, H, W) int64 field number of every pixel: pixels of one
    class connected through same-class neighbours (4-connected) inside one chip share it."""
    b, h, w = labels.shape
    keys = torch.arange(h * w, dtype=torch.float32, device=labels.device)
    keys = keys.view(1, 1, h, w).expand(b, 1, h, w)
    while True:  # spread the largest key until every field holds one (at most H * W steps)
        spread = segment_keys(keys, labels, max(h, w))
        if torch.equal(spread, keys):
            break
        keys = spread
    chip = torch.arange(b, device=labels.device).view(b, 1, 1) * (h * w)
    return keys[:, 0].long() + chip


def field_variety_loss(fake: torch.Tensor, real: torch.Tensor, labels: torch.Tensor,
                       num_classes: int) -> torch.Tensor:
    """How far the generated fields' variety is from the real: per class and band, the
    standard deviation across the batch's fields of that class (:func:`chip_fields`, at
    least :data:`MIN_FIELD` pixels) of each field's mean colour, generated vs real on the
    same fields; mean |difference| over the bands and the classes with two fields or more.

    The class-moment loss compares pixels pooled over the batch, which one look shared by
    every field can meet; this compares the fields' looks with each other, as the realism
    measure "variety" does. labels: (B, H, W) model indices (``num_classes``: don't care).
    """
    fields, inverse = torch.unique(chip_fields(labels).flatten(), return_inverse=True)
    size = torch.bincount(inverse, minlength=len(fields))
    kind = torch.zeros_like(fields).scatter_(0, inverse, labels.flatten())
    kept = (size >= MIN_FIELD) & (kind < num_classes)

    def field_means(images: torch.Tensor) -> torch.Tensor:
        pixels = images.permute(0, 2, 3, 1).reshape(-1, images.shape[1])
        sums = pixels.new_zeros(len(fields), images.shape[1]).index_add_(0, inverse, pixels)
        return sums / size.clamp(min=1)[:, None].to(pixels.dtype)

    fake_means, real_means = field_means(fake), field_means(real.to(fake.dtype))
    gaps = []
    for c in range(num_classes):
        chosen = kept & (kind == c)
        if int(chosen.sum()) >= 2:
            spread_fake = fake_means[chosen].var(dim=0).add(1e-6).sqrt()
            spread_real = real_means[chosen].var(dim=0).add(1e-6).sqrt()
            gaps.append((spread_fake - spread_real).abs().mean())
    return torch.stack(gaps).mean() if gaps else fake.sum() * 0


def class_moments(images: torch.Tensor, onehot: torch.Tensor,
                  count: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per class and band, over the whole batch: the mean and standard deviation of the
    pixels of that class. images (B, C, H, W), onehot (B, N, H, W), count (N,) -> (N, C) x 2."""
    n = count.clamp(min=1)[:, None]
    mean = torch.einsum("bchw,bnhw->nc", images, onehot) / n
    square = torch.einsum("bchw,bnhw->nc", images * images, onehot) / n
    return mean, (square - mean * mean).clamp(min=0).add(1e-6).sqrt()


def class_texture(images: torch.Tensor,
                  onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per class and band, over the whole batch: the mean absolute difference between
    neighbouring pixels (across and down) that both belong to that class, so class borders
    do not count. images (B, C, H, W), onehot (B, N, H, W) -> (N, C), and whether each class
    has such pairs, (N,)."""
    total = images.new_zeros(onehot.shape[1], images.shape[1])
    pairs = images.new_zeros(onehot.shape[1])
    for dim in (-1, -2):
        n = onehot.shape[dim]
        inside = onehot.narrow(dim, 1, n - 1) * onehot.narrow(dim, 0, n - 1)
        total = total + torch.einsum("bchw,bnhw->nc", images.diff(dim=dim).abs(), inside)
        pairs = pairs + inside.sum((0, 2, 3))
    return total / pairs.clamp(min=1)[:, None], pairs > 0


def chip_moments(images: torch.Tensor, onehot: torch.Tensor,
                 count: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per class and band: the mean over the batch (as :func:`class_moments`) and the spread
    of the batch's pixels split in two, the standard deviation inside each chip (averaged
    over the chips, weighted by the class's pixels in each) and the standard deviation
    across the chips of each chip's class mean (weighted the same way). The squares of the
    two add up to the pooled variance of :func:`class_moments`.
    images (B, C, H, W), onehot (B, N, H, W), count (N,) -> (N, C) x 3."""
    per_chip = onehot.sum((2, 3))                                       # (B, N)
    n = per_chip.clamp(min=1)[..., None]
    mean = torch.einsum("bchw,bnhw->bnc", images, onehot) / n           # (B, N, C)
    square = torch.einsum("bchw,bnhw->bnc", images * images, onehot) / n
    weight = per_chip[..., None] / count.clamp(min=1)[None, :, None]    # sums to 1 per class
    within = (weight * (square - mean * mean).clamp(min=0)).sum(0)
    pooled = (weight * mean).sum(0)
    between = (weight * (mean - pooled) ** 2).sum(0)
    return pooled, within.add(1e-6).sqrt(), between.add(1e-6).sqrt()


def class_moments_loss(fake: torch.Tensor, real: torch.Tensor, onehot: torch.Tensor,
                       per_chip: bool = False) -> torch.Tensor:
    """How far each class's look in the generated batch is from the real batch's: mean
    |difference| of the per-class, per-band mean colour, its standard deviation
    (:func:`class_moments`) and the texture (:func:`class_texture`), over the classes present.

    ``onehot``: (B, N, H, W), the batch's one-hot land cover without the don't-care channel
    (don't-care pixels then count for no class).

    Pooled over the whole batch, not per chip, so a field may take any colour its class
    takes in the real chips (one field greener, the next browner) as long as the batch's
    mix of colours, their spread and their texture are the real ones: it anchors colours
    without pulling every pixel to its class's mean as L1 does.

    With ``per_chip`` the standard deviation is split into the spread inside the chips and
    the spread of the chips' class means (:func:`chip_moments`), each compared on its own:
    the pooled spread alone can be met by pixel noise inside every field (speckle) where the
    real imagery has calm fields of different tones.
    """
    onehot = onehot.to(fake.dtype)
    count = onehot.sum((0, 2, 3))
    present = count > 0
    if not present.any():
        return fake.sum() * 0
    real = real.to(fake.dtype)
    # per class and band: the mean, then one or two spreads (pooled, or within and between)
    moments = chip_moments if per_chip else class_moments
    gaps = [(f - r).abs() for f, r in zip(moments(fake, onehot, count),
                                          moments(real, onehot, count), strict=True)]
    colour = torch.stack(gaps).sum(0)[present].mean()
    fake_texture, textured = class_texture(fake, onehot)
    real_texture, _ = class_texture(real, onehot)
    if not textured.any():
        return colour
    return colour + (fake_texture - real_texture).abs()[textured].mean()


class SpadeObjective:
    """SPADE's objective: hinge adversarial loss + feature matching [+ VGG19] [+ L1].

    Real and generated chips go through the discriminator as one batch, as in SPADE.

    Args:
        lambda_fm: weight of the feature-matching loss.
        vgg: the VGG19 perceptual loss, or None.
        lambda_vgg: its weight.
        anchors: the generator's direct comparisons with the real chips (default: none).
    """

    def __init__(self, lambda_fm: float, anchors: Anchors | None = None):
        self.lambda_fm = lambda_fm
        self.anchors = anchors or Anchors(0)

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
        return {"loss_g": total + self.anchors(batch, fake, terms), **terms}


def class_balance(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per-pixel weights (B, H, W) that give every class present in the batch equal weight.

    A class covering a share p of the batch's labelled pixels gets 1 / (p * classes present),
    so the weights average 1 over labelled pixels; don't-care pixels get 0. Without it the
    discriminator could ignore small classes (buildings, roads) at little cost.
    """
    valid = labels < num_classes
    counts = torch.bincount(labels[valid].reshape(-1), minlength=num_classes).float()
    present = (counts > 0).sum().clamp(min=1)
    weights = valid.sum().float() / (present * counts.clamp(min=1))
    table = torch.cat([weights, weights.new_zeros(1)])  # index num_classes: don't care
    return table[labels.clamp(max=num_classes)]


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Class-balanced cross-entropy of (B, N + 1, H, W) logits against land-cover labels."""
    target = torch.where(labels < num_classes, labels, torch.zeros_like(labels))
    per_pixel = F.cross_entropy(logits, target, reduction="none")
    return (class_balance(labels, num_classes) * per_pixel).mean()


def fake_loss(logits: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Cross-entropy of every pixel against the "fake" class (index N)."""
    target = torch.full((logits.shape[0], *logits.shape[2:]), num_classes, dtype=torch.long,
                        device=logits.device)
    return F.cross_entropy(logits, target)


def labelmix_mask(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, 1, H, W) float mask: for each image and class, all 1 or all 0 at random.

    LabelMix mixes a real and a generated chip along class boundaries, so the discriminator
    must judge each region by its content, not by where real and fake meet.
    """
    batch = labels.shape[0]
    bits = torch.randint(0, 2, (batch, num_classes + 1), device=labels.device)
    mask = bits.gather(1, labels.reshape(batch, -1).long())
    return mask.reshape(batch, 1, *labels.shape[1:]).float()


class OasisObjective:
    """OASIS: N+1-class segmentation discriminator with LabelMix, per-pixel generator loss.

    Discriminator: class-balanced cross-entropy on real chips (their land cover) + cross-
    entropy to "fake" on generated chips + ``lambda_labelmix`` * LabelMix (its output on a
    class-wise mix of real and generated chips must equal the same mix of its outputs).
    Generator: class-balanced cross-entropy of the discriminator's output on the generated
    chips against the land cover asked for [+ VGG19] [+ L1] [+ class colour moments].

    Args:
        num_classes: land-cover classes N.
        lambda_labelmix: weight of the LabelMix loss.
        anchors: the generator's direct comparisons with the real chips (default: none,
            the usual OASIS setting).
    """

    def __init__(self, num_classes: int, lambda_labelmix: float = 10.0,
                 anchors: Anchors | None = None):
        self.num_classes = num_classes
        self.lambda_labelmix = lambda_labelmix
        self.anchors = anchors or Anchors(num_classes)

    def discriminator_loss(self, discriminator: nn.Module, batch: Batch,
                           fake: torch.Tensor) -> LossTerms:
        """Segment real chips, call generated ones fake, keep LabelMix mixes consistent."""
        n, real = self.num_classes, batch.real
        mask = labelmix_mask(batch.labels, n).to(real.dtype)
        mixed = mask * real + (1 - mask) * fake
        # One pass over real, fake and mixed: the U-Net has no batch statistics.
        out_real, out_fake, out_mixed = discriminator(torch.cat([real, fake, mixed])).float() \
            .chunk(3)
        terms = {"loss_d_real": segmentation_loss(out_real, batch.labels, n),
                 "loss_d_fake": fake_loss(out_fake, n),
                 "loss_d_labelmix": F.mse_loss(out_mixed,
                                               mask * out_real + (1 - mask) * out_fake)}
        total = (terms["loss_d_real"] + terms["loss_d_fake"]
                 + self.lambda_labelmix * terms["loss_d_labelmix"])
        return {"loss_d": total, **terms}

    def generator_loss(self, discriminator: nn.Module, batch: Batch,
                       fake: torch.Tensor) -> LossTerms:
        """Make every generated pixel read as the class it was asked for."""
        terms = {"loss_g_adv": segmentation_loss(discriminator(fake).float(), batch.labels,
                                                 self.num_classes)}
        return {"loss_g": terms["loss_g_adv"] + self.anchors(batch, fake, terms), **terms}


#: The discriminator each objective trains (ModelConfig.discriminator).
DISCRIMINATOR_OF = {"spade": "multiscale", "oasis": "unet"}


def build_objective(config: TrainConfig, num_classes: int, device: torch.device) -> Objective:
    """The objective a training configuration (after :meth:`TrainConfig.resolved`) asks for."""
    if (config.lambda_l1 is None or config.lambda_moments is None
            or config.moments_per_chip is None or config.lambda_variety is None):
        raise RuntimeError("build_objective needs TrainConfig.resolved(): a recipe option is "
                           "unset")
    vgg = VGGLoss(config.vgg_weights).to(device) if config.vgg_weights else None
    anchors = Anchors(num_classes, vgg, config.lambda_vgg, config.lambda_l1,
                      config.lambda_moments, config.moments_per_chip, config.lambda_variety)
    if config.objective == "oasis":
        return OasisObjective(num_classes, config.lambda_labelmix, anchors)
    return SpadeObjective(config.lambda_fm, anchors)
