"""Esri model packages: what export-model writes, and the raster function inside it fed pixel
blocks as ArcGIS Pro's "Translate Pixels Using Deep Learning" feeds them."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from affine import Affine
from helpers import random_model
from rasterio.crs import CRS

from geospade.arcgis import raster_function
from geospade.checkpoint import load_checkpoint, read_card, save_checkpoint
from geospade.classes import CHESAPEAKE_7
from geospade.cli import export_model as cli_export_model
from geospade.dlpk import RASTER_FUNCTION, export_model
from geospade.errors import InputError, OutputExistsError
from geospade.imagery import ImageryInfo
from geospade.synthesis import synthesize_array

NODATA = CHESAPEAKE_7.nodata
TILE = 64


@pytest.fixture(scope="module")
def model():
    """A tiny untrained generator with per-pixel noise, so a block's place in the raster
    changes its output."""
    return random_model(CHESAPEAKE_7, ImageryInfo(3, "uint8"), preset="tiny", ngf=4,
                        adaptive="clade", noise_spatial=2, chip_size=TILE)


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory):
    """A full training checkpoint (discriminator, optimiser...) in a run folder."""
    run_dir = tmp_path_factory.mktemp("run")
    card = dataclasses.replace(model.card, crs_wkt=CRS.from_epsg(32618).to_wkt(), step=123)
    weights = {k: v.clone() for k, v in model.generator.state_dict().items()}
    state = {"generator": weights, "generator_ema": weights,
             "discriminator": {"w": torch.zeros(2)}, "optimizer_g": {"state": {}},
             "optimizer_d": {"state": {}}, "step": 123, "rng": [b"x"]}
    save_checkpoint(run_dir / "checkpoints" / "latest.pt", card, state)
    return run_dir


@pytest.fixture(scope="module")
def package(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("pkg") / "landcover2image.dlpk"
    assert export_model(checkpoint, out) == out
    folder = out.parent / "extracted"
    with zipfile.ZipFile(out) as zf:
        zf.extractall(folder)
    return out, folder


@pytest.fixture(scope="module")
def shipped(package):
    """The raster function module as Pro imports it: from the extracted package."""
    path = package[1] / RASTER_FUNCTION
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_function(shipped, package, **scalars):
    # Pro looks the class up by the file's name: they must be the same.
    function = getattr(shipped, Path(RASTER_FUNCTION).stem)()
    assert type(function).__name__ == Path(RASTER_FUNCTION).stem
    function.initialize(model=str(package[1] / "landcover2image.emd"), device=-1)
    function.getParameterInfo()
    config = function.getConfiguration(**scalars)
    function.updateRasterInfo(output_info={}, raster_info={"bandCount": 1, "pixelType": "u1"})
    return function, config


def blocky_labels(size: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(1, 8, (size // 16, size // 16))
    labels = coarse.repeat(16, 0).repeat(16, 1).astype(np.uint8)
    labels[size // 2 - 10:size // 2 + 10, size // 2:size // 2 + 30] = NODATA
    return labels


# -- the package ---------------------------------------------------------------------------------


def test_package_holds_emd_weights_and_raster_function(package, model):
    out, folder = package
    with zipfile.ZipFile(out) as zf:
        assert sorted(zf.namelist()) == sorted(["landcover2image.emd", "landcover2image.pt",
                                                RASTER_FUNCTION])
    emd = json.loads((folder / "landcover2image.emd").read_text())
    assert emd["Framework"] == "PyTorch" and emd["ModelFormat"] == "NCHW"
    assert emd["InferenceFunction"] == RASTER_FUNCTION
    assert emd["ModelFile"] == "landcover2image.pt"
    assert emd["ModelType"] == "ImageTranslation"
    assert (emd["ImageHeight"], emd["ImageWidth"]) == (TILE, TILE)
    assert emd["ExtractBands"] == [0]
    assert emd["SupportsVariableTileSize"] is True
    assert emd["Classes"] == [{"Value": c.value, "Name": c.name, "Color": list(c.color)}
                              for c in CHESAPEAKE_7.classes]
    assert emd["MinCellSize"] == emd["MaxCellSize"] == {
        "x": 1.0, "y": 1.0, "spatialReference": {"wkid": 32618, "latestWkid": 32618}}
    halo = model.default_halo
    assert emd["ModelParameters"] == {"tile_size": TILE, "padding": halo, "seed": 0,
                                      "batch_size": 4}
    assert emd["GeoSPADE"]["step"] == 123 and emd["GeoSPADE"]["nodata"] == NODATA
    assert (folder / RASTER_FUNCTION).read_bytes() == Path(raster_function.__file__).read_bytes()


def test_package_weights_are_the_slimmed_checkpoint(package, model):
    payload = load_checkpoint(package[1] / "landcover2image.pt")
    assert not {"discriminator", "optimizer_g", "optimizer_d", "rng"} & set(payload)
    assert read_card(payload).step == 123
    for key, value in model.generator.state_dict().items():
        assert torch.equal(payload["generator_ema"][key], value)


def test_export_model_refuses_to_overwrite_and_needs_dlpk(checkpoint, package, tmp_path):
    with pytest.raises(OutputExistsError):
        export_model(checkpoint, package[0])
    before = package[0].read_bytes()
    export_model(checkpoint, package[0], overwrite=True, seed=7)
    with zipfile.ZipFile(package[0]) as zf:
        assert json.loads(zf.read("landcover2image.emd"))["ModelParameters"]["seed"] == 7
    assert package[0].read_bytes() != before
    with pytest.raises(InputError, match="dlpk"):
        export_model(checkpoint, tmp_path / "model.zip")
    with pytest.raises(InputError, match="multiple of 8"):
        export_model(checkpoint, tmp_path / "model.dlpk", tile_size=60)
    assert not list(tmp_path.iterdir())


def test_cli_export_model(checkpoint, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    cli_export_model.add_arguments(parser)
    out = tmp_path / "model.dlpk"
    args = parser.parse_args([str(checkpoint), "-o", str(out), "--seed", "3"])
    assert cli_export_model.run(args) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    with zipfile.ZipFile(out) as zf:
        assert json.loads(zf.read("model.emd"))["ModelParameters"]["seed"] == 3
    with pytest.raises(OutputExistsError):
        cli_export_model.run(args)
    args = parser.parse_args([str(checkpoint), "-o", str(out), "--overwrite"])
    assert cli_export_model.run(args) == 0


# -- the raster function, fed as Pro feeds it ---------------------------------------------------


def test_raster_function_interface(shipped, package, model):
    function, config = make_function(shipped, package, padding=30, batch_size=2, seed=4)
    names = [p["name"] for p in function.getParameterInfo()]
    assert names[:2] == ["raster", "model"]
    assert {"padding", "batch_size", "seed", "device"} <= set(names[2:])
    assert function.getParameterInfo()[0]["dataType"] == "raster"
    assert config["extractBands"] == (0,)
    assert config["padding"] == 32  # rounded up to the generator's factor, 8
    assert (config["ty"], config["tx"]) == (TILE, 2 * TILE)  # a block of 1 x 2 tiles
    assert config["inputMask"] is True
    assert function.device == "cpu"
    info = function.updateRasterInfo(output_info={}, raster_info={"pixelType": "u1"})
    assert info["output_info"]["bandCount"] == 3
    assert info["output_info"]["pixelType"] == "u1"
    assert info["output_info"]["statistics"][0] == {"minimum": 0.0, "maximum": 255.0}


def test_update_pixels_returns_imagery_for_the_block(shipped, package, model):
    function, config = make_function(shipped, package, batch_size=1)
    pad = config["padding"]
    size = TILE + 2 * pad
    labels = blocky_labels(size)[None]  # bands x H x W, padding included
    mask = (labels != NODATA).astype(np.uint8)
    blocks = {"raster_pixels": labels.copy(), "raster_mask": mask}
    out = function.updatePixels((0.0, 0.0), (TILE, TILE), {"pixelType": "u1"}, **blocks)
    image, out_mask = out["output_pixels"], out["output_mask"]
    assert image.shape == (3, TILE, TILE) and image.dtype == np.uint8
    assert out_mask.shape == image.shape
    core = (slice(pad, pad + TILE), slice(pad, pad + TILE))
    nodata = labels[0][core] == NODATA
    assert nodata.any() and np.all(out_mask[:, nodata] == 0) and np.all(out_mask[:, ~nodata] == 1)
    assert np.all(image[:, nodata] == 0) and image[:, ~nodata].std() > 0

    # The same generation as synthesize_array on that block (no logic of its own).
    expected = synthesize_array(np.ma.masked_equal(labels[0], NODATA), None, model,
                                tile_size=size, halo=0, feather=0, seed=0)
    assert np.array_equal(image, expected.image[(slice(None), *core)])


def pro_blocks(labels: np.ndarray, tile: int, pad: int, transform: Affine):
    """The padded blocks Pro would hand over for ``labels``: outside the raster is masked."""
    height, width = labels.shape
    extent = (transform.c, transform.f + height * transform.e,
              transform.c + width * transform.a, transform.f)
    props = {"extent": extent, "cellSize": (transform.a, -transform.e), "pixelType": "u1",
             "width": width, "height": height}
    padded = np.full((height + 2 * pad + tile, width + 2 * pad + tile), NODATA, labels.dtype)
    padded[pad:pad + height, pad:pad + width] = labels
    for row in range(0, height, tile):
        for col in range(0, width, tile):
            block = padded[row:row + tile + 2 * pad, col:col + tile + 2 * pad][None].copy()
            tlc = (transform.c + col * transform.a, transform.f + row * transform.e)
            yield row, col, tlc, props, {"raster_pixels": block,
                                         "raster_mask": (block != NODATA).astype(np.uint8)}


def test_blocks_join_into_the_whole_raster(shipped, package, model):
    """Blocks generated with their place in the raster match generating it all at once."""
    function, config = make_function(shipped, package, batch_size=1, seed=9)
    labels = blocky_labels(2 * TILE, seed=3)
    transform = Affine(1.0, 0.0, 360000.0, 0.0, -1.0, 4310000.0)
    mosaic = np.zeros((3, *labels.shape), np.uint8)
    unplaced = np.zeros_like(mosaic)
    for row, col, tlc, props, blocks in pro_blocks(labels, TILE, config["padding"], transform):
        image = function.updatePixels(tlc, (TILE, TILE), props, **dict(blocks))["output_pixels"]
        mosaic[:, row:row + TILE, col:col + TILE] = image
        unplaced[:, row:row + TILE, col:col + TILE] = function.updatePixels(
            None, (TILE, TILE), {}, **dict(blocks))["output_pixels"]
    whole = synthesize_array(np.ma.masked_equal(labels, NODATA), None, model, seed=9).image
    diff = np.abs(mosaic.astype(int) - whole.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01  # float rounding only
    # Without its place, each block draws the noise of the raster's corner: not the same.
    assert np.abs(unplaced.astype(int) - whole.astype(int)).mean() > 1


def test_initialize_takes_the_emd_as_json_text(shipped, package):
    text = (package[1] / "landcover2image.emd").read_text()
    function = shipped.GeoSPADERasterFunction()
    function.initialize(model=text)  # ModelFile is then beside the raster function
    assert function.model is not None and function.padding > 0


def test_raster_function_errors(shipped, package):
    function, _ = make_function(shipped, package)
    with pytest.raises(InputError, match="multiple of 8"):
        function.getConfiguration(tile_size=100)
    with pytest.raises(InputError, match="integer"):
        function.updateRasterInfo(output_info={}, raster_info={"pixelType": "f4"})
    with pytest.raises(Exception, match="ModelFile|no model"):
        shipped.GeoSPADERasterFunction().updatePixels(None, (8, 8), {})


@pytest.mark.parametrize("value, device", [(-1, "cpu"), (0, "cuda:0"), ("1", "cuda:1"),
                                           (-2, "auto"), ("", "auto"), ("cpu", "cpu")])
def test_pro_device_ids(value, device):
    assert raster_function.pro_device(value) == device


@pytest.mark.parametrize("batch, shape", [(1, (1, 1)), (4, (2, 2)), (6, (2, 3)), (7, (1, 7))])
def test_tile_rectangle(batch, shape):
    assert raster_function.tile_rectangle(batch) == shape
