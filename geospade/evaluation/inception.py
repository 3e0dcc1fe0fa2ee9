"""Inception features for FID, from a weights file the user gives (never downloaded).

FID is defined on the 2048-d pool3 features of torchvision's ``inception_v3`` architecture.
geospade builds that architecture through torchvision (an optional dependency: GPU machines
usually have it) and loads the user's state dict into it, e.g. torchvision's
``inception_v3_google`` weights or pytorch-fid's ``pt_inception`` converted to that layout.
Images are the model's [-1, 1] chips: the first three bands (RGB), resized to 299 px, with
ImageNet normalisation.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from geospade.checkpoint import safe_load
from geospade.errors import CheckpointError, InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INPUT_SIZE = 299


class InceptionFeatures:
    """pool3 features (2048-d) of InceptionV3 for batches of [-1, 1] images.

    Args:
        weights: path of an ``inception_v3`` state dict (torchvision key names).
        device: where the network runs.
    """

    def __init__(self, weights: str | Path, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.network = _build(Path(weights)).to(self.device).eval()
        shape = (1, 3, 1, 1)
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(shape)
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(shape)

    @torch.no_grad()
    def __call__(self, images: np.ndarray | torch.Tensor) -> np.ndarray:
        """(B, bands, H, W) in [-1, 1] -> (B, 2048) float64 features."""
        x = torch.as_tensor(np.asarray(images), dtype=torch.float32, device=self.device)
        if x.shape[1] < 3:  # grey imagery: the same band as R, G and B
            x = x[:, :1].expand(-1, 3, -1, -1)
        x = (x[:, :3] + 1.0) / 2.0
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear",
                          align_corners=False)
        features = self.network((x - self._mean) / self._std)
        return features.flatten(1).double().cpu().numpy()


def _build(weights: Path) -> torch.nn.Module:
    if not weights.exists():
        raise InputError("Inception weights file not found", path=weights,
                         hint="Check the path, or drop --inception-weights.")
    try:
        models = importlib.import_module("torchvision.models")
    except ImportError:
        raise InputError(
            "Inception FID needs torchvision's inception_v3 architecture, which is not installed",
            path=weights,
            hint="pip install the torchvision that matches your torch, or drop "
                 "--inception-weights (the segmenter's Frechet distance needs nothing).") from None
    network = models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    state = safe_load(weights, "inception_v3 weights file",
                      hint="Give torchvision's inception_v3 weights.")
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    try:
        network.load_state_dict(state, strict=False)
        missing = [k for k in network.state_dict() if k not in state and "AuxLogits" not in k
                   and not k.startswith("fc.")]
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"not an inception_v3 state dict ({exc})", path=weights,
                              hint="Give torchvision's inception_v3 weights.") from None
    if missing:
        raise CheckpointError(f"inception_v3 weights lack {len(missing)} tensors "
                              f"(e.g. {missing[0]})", path=weights,
                              hint="Give torchvision's inception_v3 weights.")
    network.fc = torch.nn.Identity()  # pool3 features, not class logits
    return network
