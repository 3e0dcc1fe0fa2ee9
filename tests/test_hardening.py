"""Hostile inputs and faults: every case below is built by its test and must fail safely.

What is tried, and what must happen (each row is a test here):

=========================================================  ====================================
Bad input or fault                                         Expected
=========================================================  ====================================
**Security**
checkpoint whose pickle calls ``os.system``: synthesize,   refused in one line; the code never
export-model, train --resume, evaluate, the segmenter,     runs (no marker file appears)
the .dlpk raster function
training checkpoint of the old format (numpy RNG state)    refused in one line
what train writes (optimisers, torch/numpy/python RNG)     loads with weights_only=True, RNG
                                                           restored exactly
**Nothing lost**
full disk (2 MB tmpfs): synthesize, export-model, a        exit 4, one line with the free
training checkpoint, demo-data, export-chips               space, nothing left on the disk
synthesize --overwrite on a full disk over a good output   the good output is unchanged
demo-data on a full disk, then rerun with space            all four files or none; rerun works
output == input: export-chips -o LC, -o folder holding     exit 2, one line, every input
LC; synthesize --preview LC, -o CKPT, -o hard link or      unchanged
symlink of LC; export-model -o hard link of CKPT;
train-segmenter -o CHIPS; evaluate -o folder holding
CKPT; train -o CHIPS (all with --overwrite)
partial file of a run killed with SIGKILL                  removed by the rerun; a live
                                                           process's and another output's kept
**One clear line**
read-only output folder: synthesize, export-model,         exit 4, one line, before any work
train-segmenter, demo-data, train
header opens, body truncated: seam-score; a chip in        one line naming the file
training
--model ngf=abc; YAML model: {ngf: x}; YAML syntax error   one line (file, line, column)
VGG weights that are not a PyTorch file                    one line, no torch advice
int16 land cover with negative values                      one line with the gdal_edit fix
demo-data OUT (a file); train -o FILE; train-segmenter     one line
-o DIR (a folder)
synthesize with an unknown class value                     hint names --map-unknown, not
                                                           --classes
**Bad values refused**
synthesize --tile-size 0 / -64, --batch-size 0 / -1        refused, no "feather" message
synthesize --resample on an EPSG:4326 land cover           refused: reproject first
land cover without CRS                                     a warning
seam-score: tile larger than the raster; all masked        refused, not ``nan``
**ArcGIS**
.dlpk raster function: file name == class name             tests/test_dlpk.py
**Disk**
train --keep-checkpoints 2, a checkpoint every step        last 2 step files, latest.pt,
                                                           generator.pt
slim generator.pt                                          synthesises exactly like latest.pt
export-model -o X.pt / X.dlpk --half                       float16 weights, smaller, run float32
files under umask 022                                      0644, not 0600
keep_checkpoints=-1                                        refused
=========================================================  ====================================

Export-chips' own reading (truncated chips, tile sizes, bands, AOI round-off, label nodata)
is covered by the chip export tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from helpers import random_model

from geospade.checkpoint import FORMAT, load_checkpoint
from geospade.classes import CHESAPEAKE_7
from geospade.cli import main as cli_main
from geospade.errors import CheckpointError
from geospade.imagery import ImageryInfo
from geospade.raster import free_space
from geospade.synthesis.model import save_model

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


# -- nothing lost: full disks, read-only folders -----------------------------------------------


def _mount_tmpfs(folder: Path, options: str) -> None:
    folder.mkdir()
    try:
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                                capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a tmpfs: {exc}")
    if result.returncode:
        pytest.skip(f"cannot mount a tmpfs (needs root): {result.stderr.strip()}")


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB file system; unmounted afterwards."""
    folder = tmp_path / "disk"
    _mount_tmpfs(folder, "size=2m")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture
def read_only(tmp_path):
    """A read-only file system (root writes anywhere else, whatever the permissions)."""
    folder = tmp_path / "ro"
    _mount_tmpfs(folder, "ro,size=1m")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` until only ``leave`` bytes are free."""
    free = free_space(disk)
    filler = disk / "filler"
    filler.write_bytes(os.urandom(max(0, free - leave)))
    return filler


def only_filler(disk: Path, *keep: str) -> bool:
    """Nothing but the filler (and ``keep``) is on the disk: no output, no partial file."""
    return sorted(p.name for p in disk.iterdir()) == sorted(["filler", *keep])


def assert_one_line(result: Result, code: int, *words: str) -> None:
    lines = [line for line in result.stderr.splitlines() if line.startswith("geospade ")]
    assert result.returncode == code, result.stderr
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture
def large_landcover(tmp_path) -> Path:
    """Incompressible enough that its synthesised imagery needs about 1 MB."""
    return write_landcover(tmp_path / "large.tif", blocky(512, 512))


def test_synthesize_on_a_full_disk_fails_and_leaves_nothing(small_disk, large_landcover,
                                                           checkpoint, run_cli):
    fill(small_disk, 200_000)
    result = run_cli("synthesize", large_landcover, "--checkpoint", checkpoint,
                     "-o", small_disk / "out.tif", "-q")
    assert_one_line(result, 4, "out.tif", "free", "could not be written")
    assert "wrote" not in result.stdout
    assert only_filler(small_disk)


def test_synthesize_overwrite_on_a_full_disk_keeps_the_good_output(small_disk, landcover,
                                                                  large_landcover, checkpoint,
                                                                  run_cli):
    good = small_disk / "out.tif"
    assert run_cli("synthesize", landcover, "--checkpoint", checkpoint, "-o", good,
                   "-q").returncode == 0
    before = good.read_bytes()
    fill(small_disk, 150_000)
    result = run_cli("synthesize", large_landcover, "--checkpoint", checkpoint, "-o", good,
                     "--overwrite", "-q")
    assert_one_line(result, 4, "out.tif")
    assert good.read_bytes() == before
    assert only_filler(small_disk, "out.tif")


def test_checkpoint_on_a_full_disk_keeps_the_previous_one(small_disk, model):
    from geospade.checkpoint import save_checkpoint
    from geospade.errors import OutputError

    latest = small_disk / "checkpoints" / "latest.pt"
    save_checkpoint(latest, model.card, {"step": 1})
    before = latest.read_bytes()
    fill(small_disk, 100_000)
    with pytest.raises(OutputError, match="latest.pt.*could not be written.*free"):
        save_checkpoint(latest, model.card, {"weights": torch.rand(300_000), "step": 2})
    assert latest.read_bytes() == before
    assert [p.name for p in latest.parent.iterdir()] == ["latest.pt"]


def test_export_model_on_a_full_disk(small_disk, checkpoint, run_cli):
    fill(small_disk, 20_000)
    result = run_cli("export-model", checkpoint, "-o", small_disk / "model.dlpk")
    assert_one_line(result, 4, "model.dlpk", "free")
    assert only_filler(small_disk)


def test_demo_data_on_a_full_disk_writes_all_or_nothing(small_disk, run_cli):
    filler = fill(small_disk, 150_000)
    result = run_cli("demo-data", small_disk / "scene", "--size", "256", "--no-progress")
    assert_one_line(result, 4, "free")
    scene = small_disk / "scene"
    assert not scene.exists() or not any(scene.iterdir())
    filler.unlink()  # space again: the rerun is not refused as "exists"
    result = run_cli("demo-data", small_disk / "scene", "--size", "256", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (small_disk / "scene").iterdir()) == [
        "imagery.png", "imagery.tif", "landcover.png", "landcover.tif"]


@pytest.mark.parametrize("command", ["synthesize", "export-model", "train-segmenter",
                                     "demo-data", "train"])
def test_read_only_output_folder_is_one_line(command, read_only, landcover, checkpoint,
                                             tmp_path, run_cli):
    args = {
        "synthesize": ["synthesize", landcover, "--checkpoint", checkpoint,
                       "-o", read_only / "out.tif"],
        "export-model": ["export-model", checkpoint, "-o", read_only / "m.dlpk"],
        "train-segmenter": ["train-segmenter", tmp_path, "-o", read_only / "seg.pt"],
        "demo-data": ["demo-data", read_only / "scene"],
        "train": ["train", tmp_path, "-o", read_only / "run"],
    }[command]
    assert_one_line(run_cli(*args), 4, "cannot write in", str(read_only))


# -- nothing lost: no command writes over its own inputs ---------------------------------------


@pytest.fixture
def inputs(tmp_path, landcover, checkpoint):
    """A land cover, imagery, a run folder with its checkpoint, and a chip-like folder."""
    imagery = tmp_path / "img.tif"
    profile = dict(driver="GTiff", width=128, height=96, count=3, dtype="uint8", crs=CRS,
                   transform=TRANSFORM)
    with rasterio.open(imagery, "w", **profile) as dst:
        dst.write(np.full((3, 96, 128), 100, np.uint8))
    latest = tmp_path / "run" / "checkpoints" / "latest.pt"
    latest.parent.mkdir(parents=True)
    latest.write_bytes(Path(checkpoint).read_bytes())
    chips = tmp_path / "chips"
    chips.mkdir()
    (chips / "map.txt").write_text("images/a.tif labels/a.tif\n")
    os.link(landcover, tmp_path / "hardlink.tif")
    os.symlink(landcover, tmp_path / "symlink.tif")
    os.link(latest, tmp_path / "hardlink.dlpk")
    return {"lc": landcover, "img": imagery, "run": latest.parents[1], "latest": latest,
            "chips": chips, "dir": tmp_path}


OVERWRITES = {
    "export-chips -o LC": lambda i: ["export-chips", i["lc"], "--imagery", i["img"],
                                     "-o", i["lc"]],
    "export-chips -o FOLDER-HOLDING-LC": lambda i: ["export-chips", i["lc"], "--imagery",
                                                    i["img"], "-o", i["dir"]],
    "synthesize --preview LC": lambda i: ["synthesize", i["lc"], "--checkpoint", i["latest"],
                                          "-o", i["dir"] / "o.tif", "--preview", i["lc"]],
    "synthesize -o CKPT": lambda i: ["synthesize", i["lc"], "--checkpoint", i["run"],
                                     "-o", i["latest"]],
    "synthesize -o HARDLINK-OF-LC": lambda i: ["synthesize", i["lc"], "--checkpoint",
                                               i["latest"], "-o", i["dir"] / "hardlink.tif"],
    "synthesize -o SYMLINK-TO-LC": lambda i: ["synthesize", i["lc"], "--checkpoint",
                                              i["latest"], "-o", i["dir"] / "symlink.tif"],
    "export-model -o HARDLINK-OF-CKPT": lambda i: ["export-model", i["latest"],
                                                   "-o", i["dir"] / "hardlink.dlpk"],
    "train-segmenter -o CHIPS": lambda i: ["train-segmenter", i["chips"], "-o", i["chips"]],
    "evaluate -o FOLDER-HOLDING-CKPT": lambda i: ["evaluate", "--checkpoint", i["latest"],
                                                  "--chips", i["chips"], "--segmenter",
                                                  i["latest"], "-o", i["run"]],
    "train -o CHIPS": lambda i: ["train", i["chips"], "-o", i["chips"]],
}


@pytest.mark.parametrize("case", sorted(OVERWRITES))
def test_no_command_writes_over_its_inputs(case, inputs, run_cli):
    before = {p: p.read_bytes() for p in inputs["dir"].rglob("*") if p.is_file()}
    result = run_cli(*OVERWRITES[case](inputs), "--overwrite")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and ("replace" in lines[0] or "holds" in lines[0]
                                or "is the chip folder" in lines[0] or "folder" in lines[0]), lines
    after = {p: p.read_bytes() for p in inputs["dir"].rglob("*") if p.is_file()}
    assert after == before


# -- nothing lost: debris of killed runs ---------------------------------------------------------


def test_rerun_removes_partials_of_a_killed_run_only(tmp_path):
    """A run killed with SIGKILL inside atomic_file leaves its partial; the rerun removes it,
    but not the partial of a process that still runs."""
    import signal

    from geospade.raster import atomic_file, partial_prefix

    target = tmp_path / "out.tif"
    code = ("import sys, time; from geospade.raster import atomic_file\n"
            "with atomic_file(sys.argv[1]) as tmp:\n"
            "    tmp.write_bytes(b'half'); print(tmp, flush=True); time.sleep(60)\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    killed = subprocess.Popen([sys.executable, "-c", code, str(target)], env=env,
                              stdout=subprocess.PIPE, text=True)
    stale = Path(killed.stdout.readline().strip())
    assert stale.exists()
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / partial_prefix(target).replace(str(os.getpid()), str(alive.pid))
        live = live.with_name(live.name + "abc.partial.tif")
        live.write_bytes(b"in progress")
        other = tmp_path / ".other.tif.1-00000000.abc.partial.tif"  # another output's
        other.write_bytes(b"x")
        with atomic_file(target) as tmp:
            tmp.write_bytes(b"whole")
        assert not stale.exists()
        assert live.exists() and other.exists()
        assert target.read_bytes() == b"whole"
    finally:
        alive.kill()
        alive.wait()


# -- one clear line instead of a traceback ------------------------------------------------------


def truncate(path: Path) -> Path:
    """Keep the header, lose the end of the pixels: GDAL opens it, reading fails."""
    os.truncate(path, path.stat().st_size // 2)
    return path


@pytest.fixture
def truncated_raster(tmp_path) -> Path:
    path = tmp_path / "broken.tif"
    profile = dict(driver="GTiff", width=256, height=256, count=3, dtype="uint8", crs=CRS,
                   transform=TRANSFORM)  # uncompressed strips, header first
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.random.default_rng(0).integers(0, 255, (3, 256, 256), dtype=np.uint8))
    truncate(path)
    with rasterio.open(path) as ds:  # the header still opens
        assert ds.width == 256
    return path


def test_truncated_raster_in_seam_score(truncated_raster, run_cli):
    result = run_cli("seam-score", truncated_raster, "--tile-size", "64", "--no-progress")
    assert_one_line(result, 2, "broken.tif", "truncated")


def test_damaged_chip_in_training_is_named(tmp_path):
    from test_folder import make_pro_folder

    from geospade.chips.dataset import ChipDataset
    from geospade.errors import InputError

    root = make_pro_folder(tmp_path / "chips", n_rows=1, n_cols=2)
    dataset = ChipDataset(root, split="all")
    damaged = dataset.records[1].image
    truncate(damaged)
    dataset[0]
    with pytest.raises(InputError) as exc:
        dataset[1]
    assert damaged.name in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("how", ["flag", "yaml", "yaml-syntax"])
def test_bad_model_options_are_one_line(how, tmp_path, run_cli):
    config = tmp_path / "options.yaml"
    config.write_text({"flag": "steps: 3\n", "yaml": "model: {ngf: x}\n",
                       "yaml-syntax": "steps: [3\nbatch_size: 2\n"}[how])
    args = ["train", tmp_path / "chips", "-o", tmp_path / "run", "--config", config]
    if how == "flag":
        args += ["--model", "ngf=abc"]
    result = run_cli(*args)
    words = {"flag": ["ngf='abc'", "whole number"], "yaml": ["options.yaml", "ngf='x'"],
             "yaml-syntax": ["options.yaml", "line 2"]}[how]
    assert_one_line(result, 2, *words)


def test_bad_vgg_weights_are_one_line(tmp_path):
    from geospade.models.losses import VGGLoss

    weights = tmp_path / "vgg.pth"
    weights.write_text("not weights")
    with pytest.raises(CheckpointError, match="vgg.pth: cannot read as a VGG19") as exc:
        VGGLoss(weights)
    assert "\n" not in str(exc.value) and "weights_only" not in str(exc.value)


def test_negative_land_cover_values_are_one_line(tmp_path):
    from geospade.classes import scheme_from_raster
    from geospade.errors import ClassSchemeError

    labels = blocky(64, 64).astype(np.int16)
    labels[:8, :8] = -5
    path = write_landcover(tmp_path / "int16.tif", labels, nodata=None)
    with rasterio.open(path) as ds, pytest.raises(ClassSchemeError,
                                                  match=r"negative values \[-5\]") as exc:
        scheme_from_raster(ds)
    assert "-a_nodata -5" in str(exc.value)


def test_output_kinds_are_one_line(tmp_path, landcover, run_cli):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    a_folder = tmp_path / "a-folder"
    a_folder.mkdir()
    assert_one_line(run_cli("demo-data", a_file), 4, "is a file, not a folder")
    assert_one_line(run_cli("train", tmp_path, "-o", a_file), 3, "run folder is a file")
    assert_one_line(run_cli("train-segmenter", tmp_path, "-o", a_folder, "--overwrite"), 2,
                    "is a folder")


def test_synthesize_unknown_class_hint_names_its_own_options(tmp_path, checkpoint, run_cli):
    labels = blocky(64, 64)
    labels[0, 0] = 42
    path = write_landcover(tmp_path / "lc42.tif", labels)
    result = run_cli("synthesize", path, "--checkpoint", checkpoint, "-o", tmp_path / "o.tif")
    assert_one_line(result, 2, "[42]", "--map-unknown")
    assert "--classes" not in result.stderr


# -- bad values refused, not accepted silently ------------------------------------------------


@pytest.mark.parametrize("option,value,words", [
    ("--tile-size", "0", ["tile size 0"]),
    ("--tile-size", "-64", ["tile size -64"]),
    ("--batch-size", "0", ["batch size 0"]),
    ("--batch-size", "-1", ["batch size -1"]),
])
def test_synthesize_refuses_bad_sizes(option, value, words, landcover, checkpoint, tmp_path,
                                      run_cli):
    result = run_cli("synthesize", landcover, "--checkpoint", checkpoint,
                     "-o", tmp_path / "o.tif", option, value)
    assert_one_line(result, 2, *words)
    assert "feather" not in result.stderr
    assert not (tmp_path / "o.tif").exists()


def test_resample_in_degrees_is_refused(tmp_path, checkpoint, run_cli):
    path = write_landcover(tmp_path / "wgs84.tif", blocky(64, 64), crs="EPSG:4326",
                           transform=Affine(1e-5, 0, -76, 0, -1e-5, 39))
    result = run_cli("synthesize", path, "--checkpoint", checkpoint, "-o", tmp_path / "o.tif",
                     "--resample")
    assert_one_line(result, 2, "--resample", "degrees", "gdalwarp")


def test_land_cover_without_crs_warns(tmp_path, checkpoint):
    from geospade.synthesis import ResolutionWarning, synthesize

    path = write_landcover(tmp_path / "nocrs.tif", blocky(64, 64), crs=None)
    with pytest.warns(ResolutionWarning, match="no coordinate reference system"):
        synthesize(path, checkpoint, tmp_path / "o.tif", progress=False)


@pytest.mark.parametrize("case", ["tile larger than the raster", "all masked"])
def test_seam_score_refuses_instead_of_nan(case, tmp_path, run_cli):
    path = tmp_path / "img.tif"
    profile = dict(driver="GTiff", width=64, height=64, count=3, dtype="uint8", crs=CRS,
                   transform=TRANSFORM, nodata=0 if case == "all masked" else None)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.zeros((3, 64, 64), np.uint8) if case == "all masked"
                  else np.random.default_rng(0).integers(1, 255, (3, 64, 64), dtype=np.uint8))
    tile = "128" if case == "tile larger than the raster" else "16"
    result = run_cli("seam-score", path, "--tile-size", tile, "--no-progress")
    assert_one_line(result, 2, "no seam score")
    assert "nan" not in result.stdout


# -- disk: how many checkpoints, how large, with which permissions ------------------------------


@pytest.fixture(scope="module")
def pruned_run(tmp_path_factory):
    """5 steps, a checkpoint at each, the last 2 kept; written under umask 022."""
    from test_folder import make_pro_folder

    from geospade.training import TrainConfig, train

    root = tmp_path_factory.mktemp("pruned")
    chips = make_pro_folder(root / "chips", size=16)
    old_mask = os.umask(0o022)
    try:
        train(chips, root / "run", TrainConfig(
            preset="tiny", model={"ngf": 4}, steps=5, batch_size=2, checkpoint_every=1,
            sample_every=1000, keep_checkpoints=2, bn_batches=1, num_samples=1, device="cpu"),
            progress=False)
    finally:
        os.umask(old_mask)
    return root / "run"


def test_keep_checkpoints_keeps_the_last_n_and_latest(pruned_run):
    names = sorted(p.name for p in (pruned_run / "checkpoints").iterdir())
    assert names == ["generator.pt", "latest.pt", "step_000004.pt", "step_000005.pt"]
    assert load_checkpoint(pruned_run / "checkpoints" / "step_000004.pt")["step"] == 4


def test_files_respect_the_umask(pruned_run):
    for path in [*pruned_run.rglob("*.pt"), pruned_run / "config.yaml"]:
        assert path.stat().st_mode & 0o777 == 0o644, path


def test_slim_generator_checkpoint_synthesizes_like_latest(pruned_run, tmp_path, run_cli):
    # The chips' classes (1, 2) at their resolution (0.5 m).
    landcover = write_landcover(tmp_path / "lc12.tif", (blocky(64, 64) % 2 + 1).astype(np.uint8),
                                transform=Affine(0.5, 0, 360000, 0, -0.5, 4310000), nodata=0)
    checkpoints = pruned_run / "checkpoints"
    slim, latest = checkpoints / "generator.pt", checkpoints / "latest.pt"
    assert slim.stat().st_size < latest.stat().st_size / 2
    payload = load_checkpoint(slim)
    assert payload["inference_only"] and "discriminator" not in payload
    outputs = {}
    for name, ckpt in (("slim", slim), ("latest", latest)):
        assert run_cli("synthesize", landcover, "--checkpoint", ckpt, "-o",
                       tmp_path / f"{name}.tif", "-q").returncode == 0
        with rasterio.open(tmp_path / f"{name}.tif") as ds:
            outputs[name] = ds.read()
    assert np.array_equal(outputs["slim"], outputs["latest"])


def test_half_precision_export(pruned_run, tmp_path, run_cli):
    half = tmp_path / "half.pt"
    assert run_cli("export-model", pruned_run, "-o", half, "--half").returncode == 0
    payload = load_checkpoint(half)
    assert payload["precision"] == "float16"
    weights = [t for t in payload["generator_ema"].values() if t.is_floating_point()]
    assert weights and all(t.dtype == torch.float16 for t in weights)
    dlpk = tmp_path / "half.dlpk"
    assert run_cli("export-model", pruned_run, "-o", dlpk, "--half").returncode == 0
    full = tmp_path / "full.dlpk"
    assert run_cli("export-model", pruned_run, "-o", full).returncode == 0
    assert dlpk.stat().st_size < full.stat().st_size
    from geospade.synthesis import load_model

    model = load_model(half, "cpu")  # float16 weights run as float32
    assert all(p.dtype == torch.float32 for p in model.generator.parameters())


def test_keep_checkpoints_must_not_be_negative():
    from geospade.errors import InputError
    from geospade.training import TrainConfig

    with pytest.raises(InputError, match="keep_checkpoints=-1"):
        TrainConfig(keep_checkpoints=-1).validate()


def test_export_chips_on_a_full_disk(small_disk, tmp_path, run_cli):
    """Export-chips' folder goes through the same atomic_dir: a full disk is exit 4."""
    labels = blocky(256, 256)
    landcover = write_landcover(tmp_path / "lc.tif", labels)
    imagery = tmp_path / "img.tif"
    profile = dict(driver="GTiff", width=256, height=256, count=3, dtype="uint8", crs=CRS,
                   transform=TRANSFORM)
    with rasterio.open(imagery, "w", **profile) as dst:
        dst.write(np.random.default_rng(0).integers(0, 255, (3, 256, 256), dtype=np.uint8))
    fill(small_disk, 100_000)
    result = run_cli("export-chips", landcover, "--imagery", imagery, "-o",
                     small_disk / "chips", "--tile-size", "64", "--max-nodata", "1",
                     "--no-progress")
    assert_one_line(result, 4, "chips")
    assert only_filler(small_disk)
