"""Hostile inputs and faults: every case below is built by its test and must fail safely.

What is tried, and what must happen (each row is a test here):

=====================================================================  ===========================
Bad input or fault                                                     Expected
=====================================================================  ===========================
Security
checkpoint whose pickle runs ``os.system`` (synthesize, export-model,   refused in one line, the
train --resume, evaluate's segmenter, the .dlpk raster function)       code never runs
checkpoint of the old format (numpy objects in its RNG state)          refused in one line
Nothing lost
synthesize / export-model / train checkpoint / demo-data onto a full   exit 4, one line, no file
disk (tmpfs of 2 MB)                                                   left, old output intact
synthesize --overwrite onto a full disk over a good output             good output unchanged
export-chips/synthesize/--preview/export-model/train-segmenter/        refused (exit 2), inputs
evaluate writing over one of their own inputs (same path, symlink,     unchanged
hard link, folder holding the input)
partials left by a killed run beside an output                         removed by the rerun;
                                                                       a live process's kept
One clear line
read-only output folder (synthesize, export-model, train-segmenter,    exit 4, one line
demo-data)
seam-score / training on a raster whose body is truncated              one line naming the file
--model ngf=abc, YAML ``model: {ngf: x}``, YAML syntax error           one line
int16 land cover with negative values                                  one line
train-segmenter -o DIR (a folder); demo-data OUT (a file);             one line
train -o FILE
synthesize unknown-class hint; --tile-size -64; bad --vgg-weights      a hint that fits
Bad values refused
synthesize --tile-size 0/-64, --batch-size 0/-1                        refused
--resample on an EPSG:4326 land cover; land cover without CRS          a warning
seam-score with a tile larger than the raster, or all masked           refused, not ``nan``
ArcGIS
.dlpk raster function: file name == class name                         (tests/test_dlpk.py)
Disk
train --keep-checkpoints N keeps the last N step files + latest.pt     only those remain
slim generator.pt (EMA + card, half precision optional)                synthesize/export-model
                                                                       read it
checkpoint and output files respect the umask                          not 0600
=====================================================================  ===========================

Export-chips' own reading (truncated chips, tile sizes, bands, AOI round-off, label nodata)
is covered by the chip export tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine

from geospade.checkpoint import FORMAT, load_checkpoint
from geospade.classes import CHESAPEAKE_7
from geospade.cli import main as cli_main
from geospade.errors import CheckpointError
from geospade.imagery import ImageryInfo
from geospade.synthesis.model import random_model, save_model

CRS = "EPSG:32618"
TRANSFORM = Affine(1.0, 0.0, 360000.0, 0.0, -1.0, 4310000.0)


# -- helpers -----------------------------------------------------------------------------------


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run_cli(capsys):
    """Run the command line in this process (as ``geospade ARGS``); returns a Result."""
    def run(*args: str) -> Result:
        capsys.readouterr()
        code = cli_main.main([str(a) for a in args])
        out, err = capsys.readouterr()
        return Result(code, out, err)
    return run


def write_landcover(path: Path, labels: np.ndarray, crs=CRS, transform=TRANSFORM,
                    nodata=CHESAPEAKE_7.nodata) -> Path:
    profile = dict(driver="GTiff", width=labels.shape[1], height=labels.shape[0], count=1,
                   dtype=labels.dtype.name, crs=crs, transform=transform, nodata=nodata)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(labels, 1)
    return path


def blocky(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(1, 8, (height // 16 + 1, width // 16 + 1)).repeat(16, 0).repeat(
        16, 1)[:height, :width].astype(np.uint8)


@pytest.fixture(scope="module")
def model():
    return random_model(CHESAPEAKE_7, ImageryInfo(3, "uint8"), preset="tiny", ngf=4,
                        adaptive="clade")


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory) -> Path:
    return save_model(model, tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture
def landcover(tmp_path) -> Path:
    return write_landcover(tmp_path / "lc.tif", blocky(96, 128))


# -- security: no code runs from a checkpoint --------------------------------------------------


class RunsCode:
    """Pickles as a call of os.system: loading it with plain pickle would create ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def malicious(tmp_path) -> tuple[Path, Path]:
    """A file that looks like a geospade checkpoint but whose pickle calls os.system."""
    marker = tmp_path / "code-ran"
    path = tmp_path / "run" / "checkpoints" / "latest.pt"
    path.parent.mkdir(parents=True)
    torch.save({"format": FORMAT, "version": 2, "card": {}, "generator": RunsCode(marker)},
               path)
    assert not marker.exists()
    return path, marker


def test_malicious_checkpoint_is_refused_without_running_code(malicious):
    path, marker = malicious
    with pytest.raises(CheckpointError, match="not a safe geospade checkpoint") as exc:
        load_checkpoint(path)
    assert "system" in str(exc.value) and "\n" not in str(exc.value)
    assert not marker.exists()


@pytest.mark.parametrize("command", ["synthesize", "export-model", "train", "evaluate"])
def test_malicious_checkpoint_in_every_command(command, malicious, landcover, tmp_path, run_cli):
    path, marker = malicious
    args = {
        "synthesize": ["synthesize", str(landcover), "--checkpoint", str(path),
                       "-o", str(tmp_path / "out.tif")],
        "export-model": ["export-model", str(path), "-o", str(tmp_path / "m.dlpk")],
        "train": ["train", str(tmp_path), "-o", str(path.parents[1]), "--resume"],
        "evaluate": ["evaluate", "--checkpoint", str(path), "--chips", str(tmp_path),
                     "--segmenter", str(path), "-o", str(tmp_path / "report")],
    }[command]
    result = run_cli(*args)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a safe geospade checkpoint" in lines[0], result.stderr
    assert not marker.exists()


def test_malicious_segmenter_and_raster_function(malicious, tmp_path):
    from geospade.arcgis.raster_function import GeoSPADERasterFunction
    from geospade.evaluation.segmenter import load_segmenter

    path, marker = malicious
    with pytest.raises(CheckpointError, match="not a safe"):
        load_segmenter(path, "cpu")
    emd = tmp_path / "model.emd"
    emd.write_text(f'{{"ModelFile": "{path}"}}')
    with pytest.raises(CheckpointError, match="not a safe"):
        GeoSPADERasterFunction().initialize(model=str(emd), device=-1)
    assert not marker.exists()


def test_old_format_with_numpy_objects_gets_one_line(tmp_path):
    path = tmp_path / "old.pt"
    torch.save({"format": FORMAT, "version": 1, "card": {},
                "rng": [{"numpy": np.random.get_state()}]}, path)
    with pytest.raises(CheckpointError, match="not a safe geospade checkpoint") as exc:
        load_checkpoint(path)
    assert "older geospade" in str(exc.value)


def test_training_checkpoint_loads_safely_and_resumes_rng(tmp_path):
    """What train writes (optimisers, RNG of torch/numpy/python) loads with weights_only."""
    import random

    from geospade.checkpoint import ModelCard, save_checkpoint
    from geospade.training import distributed

    net = torch.nn.Linear(2, 2)
    optimizer = torch.optim.Adam(net.parameters())
    net(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    card = ModelCard({"preset": "tiny"}, CHESAPEAKE_7, ImageryInfo(3), 64)
    state = distributed.rng_state()
    expected = (torch.rand(1).item(), np.random.rand(), random.random())
    path = save_checkpoint(tmp_path / "latest.pt", card,
                           {"optimizer_g": optimizer.state_dict(), "rng": [state]})
    payload = torch.load(path, weights_only=True)  # raises if anything needs unpickling
    distributed.set_rng_state(payload["rng"][0])
    assert (torch.rand(1).item(), np.random.rand(), random.random()) == expected
    assert payload["optimizer_g"]["state"][0]["step"] == optimizer.state_dict()["state"][0]["step"]
