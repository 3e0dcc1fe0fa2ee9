"""Test and benchmark helpers that are not part of geospade's API: a generator with random
weights saved as a checkpoint would be, and large rasters made by repeating a small one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.windows import Window

from geospade.checkpoint import ModelCard
from geospade.device import resolve_device
from geospade.errors import InputError
from geospade.imagery import ImageryInfo
from geospade.progress import ProgressArg, progress_bar
from geospade.raster import atomic_file, geotiff_profile, open_raster
from geospade.synthesis.model import LoadedModel
from geospade.tiling import tile_grid

# -- a generator that needs no training ------------------------------------------------------


def random_model(scheme, imagery, *, preset: str = "tiny", chip_size: int = 64,
                 resolution: tuple[float, float] | None = (1.0, 1.0),
                 crs_units: str | None = "metre", seed: int = 0,
                 device: str | torch.device = "cpu", **overrides) -> LoadedModel:
    """An untrained generator with a complete model card, for tests and benchmarks.

    Its batch-norm running statistics come from a few training-mode passes over random
    label maps, so it behaves like a trained model in eval mode (no per-tile statistics).

    Args:
        scheme: class scheme of the card.
        imagery: ImageryInfo of the output bands.
        preset: model preset ("tiny", "cpu", "paper").
        chip_size: chip size recorded in the card (and used for the warm-up passes).
        resolution, crs_units: training resolution and unit recorded in the card.
        seed: torch seed of the initial weights.
        device: where the generator runs.
        **overrides: ModelConfig fields.
    """
    from geospade.models import build_generator, model_config, one_hot

    cfg = model_config(preset, scheme.num_classes, imagery.count, **overrides)
    torch.manual_seed(seed)
    generator = build_generator(cfg)
    _vivid_init(generator)
    generator.train()
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for _ in range(3):
            # Blocky random label maps: like land cover, classes come in patches.
            coarse = rng.integers(0, scheme.num_classes, (2, chip_size // 8, chip_size // 8))
            labels = torch.from_numpy(coarse.repeat(8, axis=1).repeat(8, axis=2))
            generator(one_hot(labels, scheme.num_classes))
    card = ModelCard(cfg.to_dict(), scheme, imagery, chip_size, resolution=resolution,
                     crs_units=crs_units)
    return LoadedModel(generator.eval().to(resolve_device(device)), card,
                       resolve_device(device))


def _vivid_init(generator: torch.nn.Module) -> None:
    """Unit-gain weights: training's small initial gain makes an untrained generator's output
    a flat grey, which would hide any seam a test or benchmark is meant to reveal."""
    for module in generator.modules():
        if isinstance(module, torch.nn.Conv2d):
            parametrized = getattr(module, "parametrizations", None)
            weight = parametrized.weight.original if parametrized is not None else module.weight
            with torch.no_grad():
                torch.nn.init.xavier_normal_(weight, gain=1.0)
                if module.bias is not None:
                    torch.nn.init.normal_(module.bias, std=0.1)


# -- large rasters from small ones -----------------------------------------------------------



def tile_raster(src: str | Path, dst: str | Path, reps: int, overwrite: bool = False,
                progress: ProgressArg = True) -> Path:
    """Write ``dst``: ``src`` repeated ``reps`` x ``reps`` times (same CRS, origin, pixels).

    Written block by block (512 x 512 output windows), so memory stays bounded whatever the
    output size; tiled, deflate-compressed, BigTIFF when needed. Colour table, colour
    interpretation, band descriptions and nodata are kept.
    """
    reps = int(reps)
    if reps < 1:
        raise InputError(f"repetitions must be at least 1, got {reps}", hint="Use reps >= 1.")
    with open_raster(src, "raster to repeat") as ds:
        width, height = ds.width * reps, ds.height * reps
        profile = geotiff_profile(width, height, ds.count, ds.dtypes[0], ds.crs, ds.transform,
                                  nodata=ds.nodata)
        if ds.count >= 3 and ds.colorinterp[:3] == ImageryInfo(3).colorinterp():
            profile["photometric"] = "RGB"
        try:
            colormap = ds.colormap(1)
        except ValueError:
            colormap = None
        grid = tile_grid(width, height, 512, edge="pad")
        with atomic_file(dst, overwrite) as tmp, rasterio.open(tmp, "w", **profile) as out, \
                progress_bar(progress, total=len(grid), desc="tile raster", unit="block") as bar:
            if colormap:
                out.write_colormap(1, colormap)
            out.colorinterp = ds.colorinterp
            for i, desc in enumerate(ds.descriptions, start=1):
                if desc:
                    out.set_band_description(i, desc)
            for tile in grid:
                window = tile.clipped(width, height)
                out.write(_wrapped_read(ds, window), window=window)
                bar.update()
    return Path(dst)


def _wrapped_read(ds, window: Window) -> np.ndarray:
    """Read ``window`` of the infinitely repeated ``ds`` (pieces wrap at its edges)."""
    row0, col0 = int(window.row_off), int(window.col_off)
    h, w = int(window.height), int(window.width)
    out = np.empty((ds.count, h, w), dtype=ds.dtypes[0])
    r = 0
    while r < h:
        src_row = (row0 + r) % ds.height
        rh = min(h - r, ds.height - src_row)
        c = 0
        while c < w:
            src_col = (col0 + c) % ds.width
            cw = min(w - c, ds.width - src_col)
            out[:, r:r + rh, c:c + cw] = ds.read(window=Window(src_col, src_row, cw, rh))
            c += cw
        r += rh
    return out
