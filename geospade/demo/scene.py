"""The demo scene as files or arrays: one seeded generator lays the scene out
(:mod:`~geospade.demo.layout`), rasterizes it and renders its imagery
(:mod:`~geospade.demo.render`); this module writes the georeferenced rasters and previews.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS

from geospade.classes import CHESAPEAKE_7
from geospade.demo.layout import layout_scene, rasterize_layout
from geospade.demo.render import render_imagery
from geospade.errors import InputError
from geospade.imagery import ImageryInfo
from geospade.preview import preview_raster
from geospade.progress import ProgressArg, progress_bar
from geospade.raster import atomic_file, check_output, geotiff_profile

DEMO_CRS = "EPSG:32618"  # UTM 18N, where Chesapeake land cover is commonly delivered
# Upper-left corner, central Maryland, on whole multiples of 512 m so that the scene starts
# on synthesis's world-anchored 512 px tile grid (a 2048 px scene is then 4 x 4 tiles).
DEMO_ORIGIN = (359936.0, 4310016.0)
# About 2 GB of memory at 4096.
MIN_SIZE, MAX_SIZE = 256, 4096
NODATA = cast(int, CHESAPEAKE_7.nodata)  # the Chesapeake 7-class scheme has one



@dataclass(frozen=True)
class DemoScene:
    """Paths of a demo scene written by :func:`make_demo_scene`."""

    landcover: Path
    imagery: Path
    landcover_preview: Path
    imagery_preview: Path

    def paths(self) -> list[Path]:
        """Every file of the scene, land cover first."""
        return [self.landcover, self.imagery, self.landcover_preview, self.imagery_preview]


def make_demo_scene(out_dir: str | Path, size: int = 2048, seed: int = 0, bands: int = 3,
                    overwrite: bool = False, progress: ProgressArg = True) -> DemoScene:
    """Write ``landcover.tif``, ``imagery.tif`` and their PNG previews into ``out_dir``.

    Args:
        out_dir: folder for the scene (created if needed; other files in it are left alone).
        size: scene width and height in pixels (1 m each), 256 to 4096.
        seed: the same seed always gives byte-identical rasters.
        bands: 3 (RGB) or 4 (RGB + near infrared, as NAIP).
        overwrite: replace existing scene files; without it they raise OutputExistsError.
        progress: True for a progress bar, False for none, or a callback.

    Returns:
        The paths written.
    """
    size, bands = _check_args(size, bands)
    out_dir = Path(out_dir)
    scene = DemoScene(out_dir / "landcover.tif", out_dir / "imagery.tif",
                      out_dir / "landcover.png", out_dir / "imagery.png")
    for path in scene.paths():  # fail before any work, and before writing anything
        check_output(path, overwrite)
    with progress_bar(progress, total=5, desc="demo scene", unit="step") as bar, \
            contextlib.ExitStack() as files:
        labels, pixels = _scene_arrays(size, seed, bands, bar.update)
        # All four files appear together or not at all (a full disk, Ctrl-C): a half scene
        # would make the rerun refuse the files that were written.
        tmp = [files.enter_context(atomic_file(path, overwrite)) for path in scene.paths()]
        _write_landcover(tmp[0], labels)
        _write_imagery(tmp[1], pixels)
        bar.update()
        preview_raster(tmp[0], tmp[2], 1024, scheme=CHESAPEAKE_7, overwrite=True)
        preview_raster(tmp[1], tmp[3], 1024, overwrite=True)
        bar.update()
    return scene


def demo_arrays(size: int = 512, seed: int = 0, bands: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """The demo scene's land cover (H, W) and imagery (bands, H, W) in memory, nothing written."""
    size, bands = _check_args(size, bands)
    return _scene_arrays(size, seed, bands, lambda: None)


def _scene_arrays(size: int, seed: int, bands: int,
                  step: Callable[[], object]) -> tuple[np.ndarray, np.ndarray]:
    """Lay out, rasterize and render a scene; ``step`` is called after each of the three."""
    rng = np.random.default_rng(seed)  # the one source of randomness: same seed, same scene
    layout = layout_scene(rng, size)
    step()
    maps = rasterize_layout(layout, size)
    step()
    pixels = render_imagery(rng, maps, bands)
    step()
    labels = maps.labels.copy()
    labels[maps.nodata] = NODATA
    return labels, pixels


def demo_transform() -> Affine:
    """The demo scene's georeference: 1 m pixels from :data:`DEMO_ORIGIN`."""
    return Affine(1.0, 0.0, DEMO_ORIGIN[0], 0.0, -1.0, DEMO_ORIGIN[1])


def _check_args(size: int, bands: int) -> tuple[int, int]:
    if not MIN_SIZE <= int(size) <= MAX_SIZE:
        raise InputError(f"demo scene size {size} is outside {MIN_SIZE}..{MAX_SIZE} pixels",
                         hint=f"Pick a size from {MIN_SIZE} to {MAX_SIZE}.")
    if int(bands) not in (3, 4):
        raise InputError(f"demo imagery has 3 (RGB) or 4 (RGBN) bands, not {bands}",
                         hint="Use --bands 3 or --bands 4.")
    return int(size), int(bands)

# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def _write_landcover(path: Path, labels: np.ndarray) -> None:
    h, w = labels.shape
    profile = geotiff_profile(w, h, 1, "uint8", CRS.from_string(DEMO_CRS), demo_transform(),
                              nodata=NODATA)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write_colormap(1, CHESAPEAKE_7.colormap())  # before the pixels (photometric tag)
        dst.write(labels, 1)
        dst.set_band_description(1, "land cover (Chesapeake 7-class)")


def _write_imagery(path: Path, pixels: np.ndarray) -> None:
    count, h, w = pixels.shape
    profile = geotiff_profile(w, h, count, "uint8", CRS.from_string(DEMO_CRS), demo_transform())
    profile["photometric"] = "RGB"
    info = ImageryInfo(count)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(pixels)
        dst.colorinterp = info.colorinterp()
        for i, name in enumerate(info.band_names, start=1):
            dst.set_band_description(i, name)
