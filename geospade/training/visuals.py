"""Sample grids for watching training: one row per chip, label colours | real | generated.

Each grid has a heading over its columns (geospade's own bitmap font); the trainer writes it
with :func:`geospade.preview.write_png`, as every stage writes its PNGs.
"""

from __future__ import annotations

import numpy as np
import torch

from geospade.classes import ClassScheme
from geospade.font import heading_strip

SAMPLE_HEADINGS = ("land cover", "real", "generated")


def label_colors(labels: torch.Tensor, scheme: ClassScheme) -> np.ndarray:
    """(B, H, W) model indices -> (B, H, W, 3) uint8 class colours (don't-care black)."""
    palette = scheme.palette()
    return palette[labels.clamp(0, scheme.ignore_index).cpu().numpy()]


def display_rgb(images: torch.Tensor) -> np.ndarray:
    """(B, bands, H, W) model values in [-1, 1] -> (B, H, W, 3) uint8 for viewing.

    The first three bands are shown as red, green, blue; one-band imagery as grey; a fourth
    (near-infrared) band is not shown.
    """
    images = images.detach().float().cpu()
    rgb = images[:, :3] if images.shape[1] >= 3 else images[:, :1].expand(-1, 3, -1, -1)
    pixels = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).numpy()


def sample_grid(labels: torch.Tensor, real: torch.Tensor, fake: torch.Tensor,
                scheme: ClassScheme, gap: int = 2, headings: bool = True) -> np.ndarray:
    """(heading + rows*H + gaps, 3*W + gaps, 3) uint8: label colours | real | generated, one
    chip per row, under a heading naming the columns.

    Args:
        labels: (B, H, W) model indices.
        real: (B, bands, H, W) real imagery in [-1, 1].
        fake: (B, bands, H, W) generated imagery in [-1, 1].
        scheme: class scheme giving the label colours.
        gap: white pixels between panels.
        headings: draw the column names above the grid.
    """
    columns = [label_colors(labels, scheme), display_rgb(real), display_rgb(fake)]
    batch, height, width = labels.shape
    grid = np.full((batch * (height + gap) - gap, 3 * (width + gap) - gap, 3), 255, np.uint8)
    for row in range(batch):
        for col, panel in enumerate(columns):
            y, x = row * (height + gap), col * (width + gap)
            grid[y:y + height, x:x + width] = panel[row]
    if not headings:
        return grid
    strip = heading_strip(SAMPLE_HEADINGS, [width] * 3, gap).transpose(1, 2, 0)
    return np.concatenate([strip, grid], axis=0)
