"""The end-to-end pipelines run on small stand-in data, so they cannot rot."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geospade.cli.main import main
from geospade.demo import make_demo_scene
from geospade.errors import OutputExistsError
from geospade.quickstart import QuickstartSettings, run_quickstart

ROOT = Path(__file__).resolve().parents[1]


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "pipelines" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TINY = QuickstartSettings(scene_size=256, tile_size=64, preset="tiny", steps=4, batch_size=2,
                          segmenter_steps=4, synth_tile_size=128, device="cpu")


def test_quickstart_writes_every_stage(tmp_path):
    result = run_quickstart(tmp_path / "qs", TINY, progress=False)
    for path in (result.landcover, result.imagery, result.checkpoint, result.synthetic,
                 result.picture, result.report, result.evaluation / "report.json"):
        assert path.exists(), path
    with rasterio.open(result.landcover) as lc, rasterio.open(result.synthetic) as syn:
        assert syn.crs == lc.crs
        assert syn.transform == lc.transform
        assert (syn.width, syn.height) == (lc.width, lc.height)
        nodata = lc.read(1) == lc.nodata
        assert nodata.any()
        assert (syn.dataset_mask()[nodata] == 0).all()
    with rasterio.open(result.picture) as png:
        # three 256 px panels side by side
        assert png.height == 256 and png.width > 3 * 256
    figures = json.loads((result.out_dir / "figures.json").read_text())
    assert 0.0 <= figures["miou_synthetic"] <= 1.0
    assert figures["chips"]["train"] > 0
    assert "mIoU" in result.report.read_text()


def test_quickstart_refuses_a_used_folder(tmp_path):
    (tmp_path / "qs").mkdir()
    (tmp_path / "qs" / "mine.txt").write_text("keep me")
    with pytest.raises(OutputExistsError):
        run_quickstart(tmp_path / "qs", TINY, progress=False)
    assert (tmp_path / "qs" / "mine.txt").read_text() == "keep me"


def test_quickstart_script_is_the_demo_command(tmp_path, capsys):
    script = _load_script("quickstart")
    assert script.main is main  # the script is only a front for `geospade demo`
    # Every stage at the TINY sizes, so the command line's whole run takes seconds.
    code = main(["demo", str(tmp_path / "qs"), "--device", "cpu", "--steps", "2",
                 "--preset", "tiny", "--batch-size", "2", "--size", "256", "--tile-size", "64",
                 "--segmenter-steps", "4", "--synth-tile-size", "128", "--no-progress"])
    assert code == 0
    figures = json.loads((tmp_path / "qs" / "figures.json").read_text())
    assert (figures["recipe"]["steps"], figures["recipe"]["batch_size"]) == (2, 2)
    assert (tmp_path / "qs" / "quickstart.png").exists()
    assert "segmentation consistency" in capsys.readouterr().out


@pytest.fixture(scope="module")
def naip_like(tmp_path_factory):
    """A 4-band (RGBN) stand-in for NAIP over a stand-in Chesapeake land cover."""
    return make_demo_scene(tmp_path_factory.mktemp("chesapeake"), size=256, bands=4,
                           progress=False)


@pytest.mark.slow  # every stage of the recipe, a minute on a loaded machine
def test_chesapeake_recipe_runs_on_stand_in_files(tmp_path, naip_like):
    recipe = _load_script("chesapeake")
    out = tmp_path / "run"
    code = recipe.main(["--landcover", str(naip_like.landcover), "--naip", str(naip_like.imagery),
                        "-o", str(out), "--tile-size", "64", "--preset", "tiny", "--steps", "2",
                        "--batch-size", "2", "--gpus", "0", "--workers", "0",
                        "--val-fraction", "0.1", "--synth-tile-size", "128"])
    assert code == 0
    with rasterio.open(out / "synthetic.tif") as syn, rasterio.open(naip_like.landcover) as lc:
        assert syn.count == 4  # RGBN, like the training imagery
        assert syn.crs == lc.crs and syn.transform == lc.transform
        assert syn.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"  # --cog
        assert np.issubdtype(np.dtype(syn.dtypes[0]), np.uint8)


def test_chesapeake_recipe_launches_torchrun_for_several_gpus(tmp_path, capsys):
    recipe = _load_script("chesapeake")
    code = recipe.main(["--landcover", "lc.vrt", "--naip", "naip.vrt", "-o", str(tmp_path),
                        "--gpus", "4", "--dry-run"])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    train = next(line for line in lines if " train " in line)
    assert "torch.distributed.run" in train and "--nproc_per_node=4" in train
    assert any("export-chips" in line for line in lines)
    assert any("--cog" in line for line in lines)


def test_chesapeake_help_documents_every_option(capsys):
    recipe = _load_script("chesapeake")
    with pytest.raises(SystemExit):
        recipe.parse_args(["--help"])
    text = capsys.readouterr().out
    assert "(default: None)" not in text and "(default: False)" not in text
    parser_actions = [line for line in text.splitlines() if line.startswith("  -")]
    assert len(parser_actions) >= 20
    # argparse puts a help text on the option's line or on the next, indented line.
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("  -") and not line.startswith("  -h"):
            rest = line.split("  ")[2:] if len(line) > 24 else []
            following = lines[i + 1] if i + 1 < len(lines) else ""
            assert any(part.strip() for part in rest) or following.startswith(" " * 24), line
