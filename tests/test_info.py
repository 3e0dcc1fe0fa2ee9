"""``geospade info``: a checkpoint's model card, a chip folder's and a raster's summary."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from affine import Affine
from helpers import random_model

from geospade.classes import CHESAPEAKE_7
from geospade.cli.main import main
from geospade.errors import InputError
from geospade.imagery import ImageryInfo
from geospade.info import describe, format_info
from geospade.synthesis.model import save_model

TRANSFORM = Affine(0.6, 0.0, 360000.0, 0.0, -0.6, 4310000.0)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model = random_model(CHESAPEAKE_7, ImageryInfo(4, "uint16", (0.0,) * 4, (4000.0,) * 4),
                         preset="tiny", ngf=4, chip_size=128, resolution=(0.6, 0.6))
    model.card.step = 1234
    return save_model(model, tmp_path_factory.mktemp("ckpt") / "model.pt")


def write(path, data, dtype, count=1, transform=TRANSFORM, nodata=None):
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[-1], height=data.shape[-2],
                       count=count, dtype=dtype, crs="EPSG:26918", transform=transform,
                       nodata=nodata) as dst:
        dst.write(data.reshape(count, *data.shape[-2:]))
    return path


def test_checkpoint_card(checkpoint):
    info = describe(checkpoint)
    assert info["kind"] == "generator checkpoint"
    assert [c["value"] for c in info["classes"]] == list(CHESAPEAKE_7.values)
    assert info["classes"][0]["name"] == CHESAPEAKE_7.classes[0].name
    assert info["resolution"] == [0.6, 0.6] and info["crs_units"] == "metre"
    assert info["bands"]["count"] == 4 and info["bands"]["dtype"] == "uint16"
    assert info["bands"]["high"] == [4000.0] * 4  # the normalisation range
    assert info["chip_size"] == 128 and info["step"] == 1234 and info["preset"] == "tiny"
    assert info["parameters"] > 1000
    assert info["model"]["texture_gain"] == 30 and info["model"]["discriminator"] == "multiscale"
    assert info["model"]["field_pool"] == "cell"
    text = format_info(info)
    assert "normalisation:" in text and "0..4000" in text and "Water" in text


def test_run_folder_resolves_to_its_latest_checkpoint(checkpoint, tmp_path):
    run = tmp_path / "run" / "checkpoints"
    run.mkdir(parents=True)
    (run / "latest.pt").write_bytes(checkpoint.read_bytes())
    assert describe(tmp_path / "run")["path"] == str(run / "latest.pt")


def test_land_cover_raster_lists_its_classes(tmp_path):
    labels = np.array([[1, 1, 2], [5, 5, 15]], np.uint8)
    info = describe(write(tmp_path / "lc.tif", labels, "uint8", nodata=15))
    assert info["width"] == 3 and info["height"] == 2 and info["crs"] == "EPSG:26918"
    assert info["transform"] == [0.6, 0.0, 360000.0, 0.0, -0.6, 4310000.0]
    assert info["nodata"] == 15
    assert [(c["value"], c["pixels"]) for c in info["classes"]] == [(1, 2), (2, 1), (5, 2)]


def test_rgb_raster_is_not_called_a_land_cover(tmp_path):
    rgb = np.zeros((3, 4, 4), np.uint8)
    info = describe(write(tmp_path / "rgb.tif", rgb, "uint8", count=3))
    assert info["bands"] == 3 and "classes" not in info
    assert info["land_cover"].startswith("no: 3 bands")


def test_chip_folder_summary(small_chips):
    info = describe(small_chips)
    assert info["kind"] == "chip folder" and info["chip_size"] == 64
    assert info["chips"] == sum(info["splits"].values()) > 0
    assert info["splits"].get("val", 0) > 0
    assert info["bands"]["count"] == 3 and len(info["classes"]) >= 2


def test_cli_json_and_text(checkpoint, capsys):
    assert main(["info", str(checkpoint), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["chip_size"] == 128
    assert main(["info", str(checkpoint)]) == 0
    assert "chip size:" in capsys.readouterr().out


def test_unknown_path_is_one_clear_error(tmp_path, capsys):
    with pytest.raises(InputError):
        describe(tmp_path / "nope.tif")
    (tmp_path / "empty").mkdir()
    assert main(["info", str(tmp_path / "empty")]) == 2
    assert "neither a training run nor a chip folder" in capsys.readouterr().err
