"""Shared test set-up: one PyTorch thread, and the demo scenes and chip folders that many
test modules read, built once per session. Tests only read these; they write elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from geospade.demo import DemoScene, make_demo_scene


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """One intra-op PyTorch thread for the whole session: CI machines have few cores, and
    oversubscribed threads slow small models down many times over; it also keeps float
    results repeatable."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _export(scene: DemoScene, out: Path) -> Path:
    from geospade.chips.export import export_chips

    export_chips(scene.landcover, scene.imagery, out, tile_size=64, val_fraction=0.1,
                 max_nodata=1.0, progress=False)
    return out


@pytest.fixture(scope="session")
def small_scene(tmp_path_factory) -> DemoScene:
    """The 256 px demo scene of seed 1 (land cover + RGB imagery)."""
    return make_demo_scene(tmp_path_factory.mktemp("small_scene"), size=256, seed=1,
                           progress=False)


@pytest.fixture(scope="session")
def small_chips(small_scene, tmp_path_factory) -> Path:
    """16 chips of 64 px (14 train, 2 validation) from :func:`small_scene`."""
    return _export(small_scene, tmp_path_factory.mktemp("small_chips") / "chips")


@pytest.fixture(scope="session")
def demo_scene(tmp_path_factory) -> DemoScene:
    """The 512 px demo scene of seed 0."""
    return make_demo_scene(tmp_path_factory.mktemp("demo_scene"), size=512, seed=0,
                           progress=False)


@pytest.fixture(scope="session")
def demo_chips(demo_scene, tmp_path_factory) -> Path:
    """64 chips of 64 px (56 train, 8 validation) from :func:`demo_scene`."""
    return _export(demo_scene, tmp_path_factory.mktemp("demo_chips") / "chips")
