"""One-hot label maps: model class indices -> the float channels the networks read."""

from __future__ import annotations

import torch

from geospade.errors import InputError


def one_hot(indices: torch.Tensor, num_classes: int, check: bool = True) -> torch.Tensor:
    """One-hot encode model indices, with a last channel for don't-care (nodata) pixels.

    Args:
        indices: int tensor (B, H, W) or (H, W) of model indices in 0..num_classes, where
            ``num_classes`` (the class scheme's ``ignore_index``) marks nodata/unknown pixels.
        num_classes: number of real classes.
        check: verify the index range (a device sync on GPU; the trainer may skip it for
            batches from ChipDataset, which are encoded already).

    Returns:
        float32 (B, num_classes + 1, H, W) (batch dimension added for a 2-D input).
    """
    if indices.dim() == 2:
        indices = indices.unsqueeze(0)
    if indices.dim() != 3:
        raise InputError(f"label indices must be (B, H, W), got shape {tuple(indices.shape)}")
    indices = indices.long()
    if check and indices.numel():
        low, high = int(indices.min()), int(indices.max())
        if low < 0 or high > num_classes:
            raise InputError(
                f"label indices range {low}..{high} is outside 0..{num_classes} "
                f"({num_classes} classes + don't-care)",
                hint="Encode raster values with ClassScheme.encode before one-hot encoding.")
    # Scatter straight into float NCHW: F.one_hot would build an int64 (B, H, W, C) copy first.
    b, h, w = indices.shape
    out = torch.zeros(b, num_classes + 1, h, w, dtype=torch.float32, device=indices.device)
    return out.scatter_(1, indices.unsqueeze(1), 1.0)
