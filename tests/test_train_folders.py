"""Training on several chip folders: one dataset, one class scheme, one value range."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from geospade.checkpoint import load_checkpoint, read_card
from geospade.chips.dataset import ChipDataset
from geospade.chips.export import export_chips
from geospade.chips.folder import read_chip_folder, read_chip_folders
from geospade.cli.main import main
from geospade.demo import make_demo_scene
from geospade.errors import ClassSchemeError, InputError

TILE = 64


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """Chips of two demo scenes (seeds 0 and 1), and the second as ArcGIS Pro would leave it
    (no geospade metadata: classes from the Esri statistics, split held out spatially)."""
    root = tmp_path_factory.mktemp("folders")
    out = {}
    for name, seed in (("a", 0), ("b", 1)):
        scene = make_demo_scene(root / f"scene_{name}", size=256, seed=seed, progress=False)
        export_chips(scene.landcover, scene.imagery, root / name, tile_size=TILE,
                     val_fraction=0.2, max_nodata=0.5, progress=False)
        out[name] = root / name
    pro = root / "pro"
    shutil.copytree(out["b"], pro)
    for name in ("chips.gpkg", "class_scheme.json", "geospade_export.json"):
        (pro / name).unlink()
    out["pro"] = pro
    return out


def test_two_folders_make_one_dataset(folders):
    a, b = read_chip_folder(folders["a"]), read_chip_folder(folders["b"])
    merged = read_chip_folders([folders["a"], folders["b"]])
    assert merged.roots == (folders["a"], folders["b"])
    assert len(merged.records) == len(a.records) + len(b.records)
    assert len({r.index for r in merged.records}) == len(merged.records)
    assert {r.image for r in merged.records} == {r.image for r in a.records + b.records}
    train = ChipDataset([folders["a"], folders["b"]], "train")
    assert len(train) == len(a.select("train")) + len(b.select("train"))
    item = train[len(train) - 1]  # a chip of the second folder
    assert item["image"].shape == (3, TILE, TILE)


def test_geospade_and_arcgis_folders_reconcile_classes_by_value(folders):
    pro = read_chip_folder(folders["pro"])
    assert pro.source == "arcgis" and pro.class_scheme.nodata == 0
    merged = read_chip_folders([folders["a"], folders["pro"]])
    a = read_chip_folder(folders["a"])
    assert set(a.class_scheme.values) | set(pro.class_scheme.values) == set(
        merged.class_scheme.values)
    assert merged.class_scheme.nodata == 15 and merged.source == "mixed"
    # 0 (ArcGIS's NoData) in a label chip is don't-care in either folder.
    dataset = ChipDataset([folders["a"], folders["pro"]], "all")
    assert all(r.nodata == 0 for r in dataset.records)


def test_class_names_that_disagree_between_folders_are_an_error(folders, tmp_path):
    renamed = tmp_path / "renamed"
    shutil.copytree(folders["b"], renamed)
    scheme = json.loads((renamed / "class_scheme.json").read_text())
    scheme["classes"][0]["name"] = "Lake"
    (renamed / "class_scheme.json").write_text(json.dumps(scheme))
    value = scheme["classes"][0]["value"]
    with pytest.raises(ClassSchemeError, match=f"class value {value} is 'Lake'") as info:
        read_chip_folders([folders["a"], renamed])
    assert str(renamed) in str(info.value) and str(folders["a"]) in str(info.value)
    merged = read_chip_folders([folders["a"], renamed], classes="chesapeake-7")
    assert merged.class_scheme.name == "chesapeake-7"


def test_folders_of_other_chip_sizes_or_bands_are_an_error(folders, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(folders["b"], other)
    info = json.loads((other / "geospade_export.json").read_text())
    info["imagery"] = {**info["imagery"], "count": 4, "low": [0.0] * 4, "high": [255.0] * 4,
                       "band_names": ["r", "g", "b", "n"]}
    (other / "geospade_export.json").write_text(json.dumps(info))
    with pytest.raises(InputError, match="4 band"):
        read_chip_folders([folders["a"], other])


def test_value_range_covers_every_folder(folders, tmp_path):
    wide = []
    for name, (low, high) in (("x", (0.0, 0.4)), ("y", (0.1, 0.9))):
        copy = tmp_path / name
        shutil.copytree(folders["a"], copy)
        info = json.loads((copy / "geospade_export.json").read_text())
        info["imagery"] = {**info["imagery"], "dtype": "float32", "low": [low] * 3,
                           "high": [high] * 3}
        (copy / "geospade_export.json").write_text(json.dumps(info))
        wide.append(copy)
    merged = read_chip_folders(wide)
    assert merged.imagery.low == (0.0,) * 3 and merged.imagery.high == (0.9,) * 3


def test_train_on_two_folders_lists_them_in_the_model_card(folders, tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["train", str(folders["a"]), str(folders["pro"]), "-o", str(run),
                 "--preset", "tiny", "--steps", "2", "--batch-size", "2", "--device", "cpu",
                 "--checkpoint-every", "1000", "--sample-every", "1000", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    payload = load_checkpoint(run)
    card = read_card(payload)
    assert card.extra["chips_dirs"] == [str(folders["a"].resolve()),
                                        str(folders["pro"].resolve())]
    assert card.class_scheme == read_chip_folders([folders["a"], folders["pro"]]).class_scheme
    assert int(payload["step"]) == 2
