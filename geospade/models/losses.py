"""GAN losses: hinge adversarial, discriminator feature matching, optional VGG19 perceptual.

The adversarial and feature-matching losses take the discriminator's output as returned by
:class:`~geospade.models.discriminator.MultiScaleDiscriminator`: per scale, a list of
features whose last entry is the patch prediction. Each loss is averaged over scales; the
trainer applies the weights (feature matching and VGG: 10 in the paper).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from geospade.errors import CheckpointError, InputError

DOutput = Sequence[Sequence[torch.Tensor]] | Sequence[torch.Tensor] | torch.Tensor


def _predictions(output: DOutput) -> list[torch.Tensor]:
    """The patch predictions per scale from a D output, a list of predictions or one tensor."""
    if isinstance(output, torch.Tensor):
        return [output]
    # A multi-scale D gives each scale's features with its prediction last.
    return [scale if isinstance(scale, torch.Tensor) else scale[-1] for scale in output]


def hinge_d_loss(real_preds: DOutput, fake_preds: DOutput) -> torch.Tensor:
    """Discriminator hinge loss: mean(relu(1 - D(real))) + mean(relu(1 + D(fake))), per scale.

    Args:
        real_preds: discriminator output on real images.
        fake_preds: discriminator output on generated (detached) images.
    """
    real, fake = _predictions(real_preds), _predictions(fake_preds)
    losses = [F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real, fake, strict=True)]
    return torch.stack(losses).mean()


def hinge_g_loss(fake_preds: DOutput) -> torch.Tensor:
    """Generator hinge loss: -mean(D(fake)), averaged over scales.

    Args:
        fake_preds: discriminator output on generated images.
    """
    return torch.stack([-f.mean() for f in _predictions(fake_preds)]).mean()


def feature_matching_loss(real_feats: Sequence[Sequence[torch.Tensor]],
                          fake_feats: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
    """L1 between D features of real and fake images: summed over layers, averaged over scales.

    The final patch prediction of each scale is excluded; real features are detached.

    Args:
        real_feats: discriminator output on real images.
        fake_feats: discriminator output on generated images.
    """
    per_scale = []
    for real, fake in zip(real_feats, fake_feats, strict=True):
        layers = [F.l1_loss(f, r.detach()) for r, f in zip(real[:-1], fake[:-1], strict=True)]
        per_scale.append(torch.stack(layers).sum())
    return torch.stack(per_scale).mean()


# VGG19's convolutional part as in torchvision ("features.N"): channels, "M" = max pool.
_VGG19: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
          512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
# Indices in "features" of relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 and their weights.
_TAPS = (1, 6, 11, 20, 29)
_TAP_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)
_MISSING_WEIGHTS = ("perceptual loss needs VGG19 weights: pass --vgg-weights FILE (torchvision "
                    "vgg19 state_dict); geospade never downloads weights")


def vgg19_features(depth: int = _TAPS[-1] + 1) -> nn.Sequential:
    """VGG19's first ``depth`` feature layers, indexed like torchvision's ``vgg19().features``."""
    layers: list[nn.Module] = []
    channels = 3
    for item in _VGG19:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, int(item), 3, padding=1), nn.ReLU(inplace=False)]
            channels = int(item)
    return nn.Sequential(*layers[:depth])


class VGGLoss(nn.Module):
    """Perceptual loss: weighted L1 between VGG19 features of generated and real images.

    Weights come from a file the user gives (torchvision's ``vgg19`` state_dict; keys
    ``features.N.weight`` or ``N.weight``); geospade never downloads them. Images in [-1, 1]
    are mapped to ImageNet's normalisation; the bands given by ``rgb_bands`` feed VGG's three
    input channels (e.g. the RGB of an RGB+NIR image).

    Args:
        weights_path: the state_dict file.
        rgb_bands: indices of the image bands used as red, green, blue.
    """

    mean: torch.Tensor  # ImageNet's per-channel mean and std (buffers, follow the device)
    std: torch.Tensor

    def __init__(self, weights_path: str | Path | None, rgb_bands: Sequence[int] = (0, 1, 2)):
        super().__init__()
        if weights_path is None:
            raise InputError(_MISSING_WEIGHTS)
        path = Path(weights_path)
        if not path.is_file():
            raise InputError("VGG19 weights file not found", path=path, hint=_MISSING_WEIGHTS)
        self.features = vgg19_features()
        self._load(path)
        self.features.requires_grad_(False).eval()
        self.rgb_bands = list(rgb_bands)
        if len(self.rgb_bands) != 3:
            raise InputError(f"VGG loss needs 3 bands for red, green, blue, got {self.rgb_bands}")
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def _load(self, path: Path) -> None:
        from geospade.checkpoint import safe_load

        state = safe_load(path, "VGG19 weights file", hint=_MISSING_WEIGHTS)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise CheckpointError("VGG19 weights file holds no state_dict", path=path,
                                  hint=_MISSING_WEIGHTS)
        own = self.features.state_dict()
        picked = {}
        for key in own:
            for candidate in (f"features.{key}", key):
                if candidate in state:
                    picked[key] = state[candidate]
                    break
        missing = sorted(set(own) - set(picked))
        if missing:
            raise CheckpointError(f"VGG19 weights lack {len(missing)} tensors, e.g. "
                                  f"'features.{missing[0]}'", path=path, hint=_MISSING_WEIGHTS)
        bad = [k for k in own if own[k].shape != picked[k].shape]
        if bad:
            raise CheckpointError(f"VGG19 weight 'features.{bad[0]}' has shape "
                                  f"{tuple(picked[bad[0]].shape)}, expected "
                                  f"{tuple(own[bad[0]].shape)}", path=path, hint=_MISSING_WEIGHTS)
        self.features.load_state_dict(picked)

    def train(self, mode: bool = True) -> VGGLoss:
        # VGG stays a fixed feature extractor whatever mode the trainer sets.
        super().train(mode)
        self.features.eval()
        return self

    def _taps(self, image: torch.Tensor) -> list[torch.Tensor]:
        x = image[:, self.rgb_bands]
        x = ((x + 1) / 2 - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        taps = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in _TAPS:
                taps.append(x)
        return taps

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """Weighted L1 between the features of ``fake`` and (detached) ``real``, in [-1, 1]."""
        loss = fake.new_zeros(())
        with torch.no_grad():
            real_taps = self._taps(real)
        for weight, f, r in zip(_TAP_WEIGHTS, self._taps(fake), real_taps, strict=True):
            loss = loss + weight * F.l1_loss(f, r)
        return loss
