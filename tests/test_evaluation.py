"""Evaluation end to end on the demo scene: a fitted generator must score clearly better than
an untrained one, the real imagery must be the ceiling, and the report must say so on disk."""

from __future__ import annotations

import argparse
import json
import sys
import types

import numpy as np
import pytest
import rasterio
import torch
from helpers import random_model

from geospade.chips.dataset import ChipDataset
from geospade.chips.export import export_chips
from geospade.classes import CHESAPEAKE_13
from geospade.cli import evaluate as evaluate_cli
from geospade.cli import train_segmenter as train_segmenter_cli
from geospade.errors import CheckpointError, ClassSchemeError, InputError, OutputExistsError
from geospade.evaluation import UNet, evaluate, load_segmenter, train_segmenter
from geospade.imagery import ImageryInfo
from geospade.models import one_hot
from geospade.synthesis import synthesize
from geospade.synthesis.model import save_model

CHIP = 64


def fitted_generator(chips, seed: int = 1, steps: int = 100):
    """A narrow CLADE generator fitted by L1 regression to the real training chips.

    It learns roughly each class's colour and texture from its neighbourhood: a fair stand-in
    for a trained GAN that fits in a test's time budget. Returns (fitted, untrained) models of
    the same architecture and initial weights.
    """
    train = ChipDataset(chips, split="train")
    labels = torch.stack([train[i]["label"] for i in range(len(train))])
    images = torch.stack([train[i]["image"] for i in range(len(train))])
    scheme = train.class_scheme

    def fresh():
        return random_model(scheme, train.imagery, preset="tiny", chip_size=CHIP,
                            adaptive="clade", ngf=4, seed=seed)

    untrained, model = fresh(), fresh()
    generator = model.generator.train()
    optimiser = torch.optim.Adam(generator.parameters(), lr=1e-2)
    rng = torch.Generator().manual_seed(0)
    for _ in range(steps):
        pick = torch.randint(0, len(train), (8,), generator=rng)
        valid = (labels[pick] != scheme.ignore_index).unsqueeze(1)
        out = generator(one_hot(labels[pick], scheme.num_classes))
        loss = ((out - images[pick]).abs() * valid).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    generator.eval()
    return model, untrained


@pytest.fixture(scope="module")
def setup(tmp_path_factory, one_thread, demo_scene):
    root = tmp_path_factory.mktemp("evaluation")
    scene = demo_scene
    chips = export_chips(scene.landcover, scene.imagery, root / "chips", tile_size=CHIP,
                         val_fraction=0.2, progress=False).out_dir
    # A small, short judge; plain cross-entropy (no class balance) keeps its pixel accuracy
    # on real chips the ceiling that the comparisons below assume.
    segmenter = train_segmenter(chips, root / "segmenter.pt", steps=150, batch_size=8,
                                base_channels=8, depth=3, class_balance=False, device="cpu",
                                progress=False)
    good, untrained = fitted_generator(chips)
    return {"root": root, "scene": scene, "chips": chips, "segmenter": segmenter,
            "good": save_model(good, root / "good.pt"),
            "untrained": save_model(untrained, root / "untrained.pt")}


@pytest.fixture(scope="module")
def reports(setup):
    out = {}
    for name in ("good", "untrained"):
        out[name] = evaluate(setup[name], setup["chips"], setup["root"] / f"report_{name}",
                             segmenter=setup["segmenter"], device="cpu", progress=False)
    return out


def test_unet_takes_chips_of_any_size():
    net = UNet(4, 5, base_channels=4, depth=3).eval()
    logits, features = net(torch.zeros(2, 4, 50, 70), return_features=True)
    assert logits.shape == (2, 5, 50, 70)
    assert features.shape == (2, net.feature_channels) == (2, 32)


def test_segmenter_learns_the_land_cover(setup):
    scores = load_segmenter(setup["segmenter"], "cpu").card.extra["validation"]
    assert scores["split"] == "val" and scores["chips"] > 0
    assert scores["pixel_accuracy"] > 0.7  # majority class (low vegetation) is about 0.5


def test_fitted_generator_scores_clearly_better_than_untrained(reports):
    good, untrained = reports["good"], reports["untrained"]
    assert good["synthetic"]["miou"] > untrained["synthetic"]["miou"] + 0.1
    assert good["synthetic"]["pixel_accuracy"] > untrained["synthetic"]["pixel_accuracy"] + 0.15
    assert (good["frechet"]["segmenter_features"]
            < 0.5 * untrained["frechet"]["segmenter_features"])
    # Real imagery is the ceiling; both runs score the same real chips identically.
    assert good["real"] == untrained["real"]
    assert good["real"]["miou"] >= good["synthetic"]["miou"]
    assert good["real"]["pixel_accuracy"] >= good["synthetic"]["pixel_accuracy"]


def test_fitted_generator_colours_are_closer_to_real(reports):
    def colour_error(report):
        errors = [np.abs(np.subtract(c["colour_synthetic"]["mean"], c["colour_real"]["mean"]))
                  for c in report["classes"] if c["pixels"]]
        return float(np.mean(errors))

    assert colour_error(reports["good"]) < 0.5 * colour_error(reports["untrained"])


def test_real_colour_statistics_are_in_pixel_units(setup, reports):
    dataset = ChipDataset(setup["chips"], split="val")
    pixels, labels = [], []
    for record in dataset.records:
        with rasterio.open(record.image) as ds:
            pixels.append(ds.read())
        labels.append(dataset.read(record)[0])
    pixels, labels = np.stack(pixels), np.stack(labels)
    for c, entry in enumerate(reports["good"]["classes"]):
        selected = pixels.transpose(1, 0, 2, 3)[:, labels == c].astype(np.float64)
        assert entry["pixels"] == selected.shape[1]
        if selected.shape[1]:
            np.testing.assert_allclose(entry["colour_real"]["mean"], selected.mean(axis=1))
            np.testing.assert_allclose(entry["colour_real"]["std"], selected.std(axis=1))


def test_report_files(setup, reports):
    folder = setup["root"] / "report_good"
    saved = json.loads((folder / "report.json").read_text())
    assert saved["synthetic"]["miou"] == pytest.approx(reports["good"]["synthetic"]["miou"])
    assert saved["split"] == "val" and saved["num_chips"] == len(saved["chips_by_synthetic_accuracy"])
    # Aberdeen Proving Ground is absent from the demo scene: no IoU (null, not 0).
    absent = [c for c in saved["classes"] if c["pixels"] == 0]
    assert absent and all(c["iou_real"] is None and c["iou_synthetic"] is None for c in absent)
    table = (folder / "report.txt").read_text()
    assert "IoU real" in table and "IoU synth" in table and "Water" in table and "mIoU" in table
    with rasterio.open(folder / "panel.png") as png:
        # 4 worst + 4 best rows of 6 pictures, 64 px chips shown at 128 px.
        assert png.width == 6 * 128 + 5 * 8
        assert png.height == 8 * 128 + 6 * 8 + 24 + 13  # + the column heading
        heading = png.read()[:, :13]
    for col in range(6):  # dark text over each picture's column, on white
        over = heading[:, :, col * 136:col * 136 + 128]
        assert (over == 0).any() and (over == 255).mean() > 0.5


def test_realism_measures_in_the_report(setup, reports):
    from geospade.evaluation.realism import RealismStats

    dataset = ChipDataset(setup["chips"], split="val")
    real = RealismStats(dataset.class_scheme.num_classes, 3)
    for record in dataset.records:
        with rasterio.open(record.image) as ds:
            real.add(ds.read(), dataset.read(record)[0])
    realism = reports["good"]["realism"]
    measured = [i for i, c in enumerate(realism["classes"]) if np.isfinite(c["texture_real"])]
    assert len(measured) >= 4
    np.testing.assert_allclose([realism["classes"][i]["texture_real"] for i in measured],
                               real.texture[measured])
    measured = [realism["classes"][i] for i in measured]
    for c in measured:
        assert c["texture_ratio"] == pytest.approx(c["texture_synthetic"] / c["texture_real"])
    assert realism["texture_ratio"] > 0 and realism["variety_ratio"] > 0
    table = (setup["root"] / "report_good" / "report.txt").read_text()
    assert "texture" in table and "variety" in table and "colour error" in table


def test_existing_report_needs_overwrite(setup, reports):
    with pytest.raises(OutputExistsError):
        evaluate(setup["good"], setup["chips"], setup["root"] / "report_good",
                 segmenter=setup["segmenter"], device="cpu", progress=False)


def test_seam_score_and_colours_of_a_synthesised_raster(setup):
    out = setup["root"] / "synthetic.tif"
    synthesize(setup["scene"].landcover, setup["good"], out, tile_size=128, device="cpu",
               progress=False)
    report = evaluate(setup["good"], setup["chips"], setup["root"] / "report_raster",
                      segmenter=setup["segmenter"], synthetic=out, tile_size=128,
                      landcover=setup["scene"].landcover, device="cpu", panel_chips=0,
                      progress=False)
    seams = report["seams"]
    assert 0.5 < seams["score"] < 2.0
    water = next(c for c in seams["classes"] if c["name"] == "Water")
    assert water["pixels"] > 0 and len(water["mean"]) == 3
    assert not (setup["root"] / "report_raster" / "panel.png").exists()


def test_synthetic_raster_needs_its_tile_size(setup):
    with pytest.raises(InputError, match="tile size"):
        evaluate(setup["good"], setup["chips"], setup["root"] / "r_no_tile",
                 segmenter=setup["segmenter"], synthetic=setup["scene"].imagery, device="cpu")
    with pytest.raises(InputError, match="without the raster"):
        evaluate(setup["good"], setup["chips"], setup["root"] / "r_no_raster",
                 segmenter=setup["segmenter"], landcover=setup["scene"].landcover, device="cpu")


def test_swapped_checkpoints_are_named(setup):
    with pytest.raises(CheckpointError, match="segmenter, not a generator"):
        evaluate(setup["segmenter"], setup["chips"], setup["root"] / "r_swap1",
                 segmenter=setup["segmenter"], device="cpu")
    with pytest.raises(CheckpointError, match="not a land-cover segmenter"):
        evaluate(setup["good"], setup["chips"], setup["root"] / "r_swap2",
                 segmenter=setup["good"], device="cpu")


def test_model_of_other_classes_is_refused(setup):
    other = random_model(CHESAPEAKE_13, ImageryInfo(3, "uint8"), preset="tiny", ngf=4,
                         adaptive="clade")
    with pytest.raises(ClassSchemeError, match="generator knows classes"):
        evaluate(other, setup["chips"], setup["root"] / "r_classes",
                 segmenter=setup["segmenter"], device="cpu")


def test_inception_fid_without_torchvision_says_what_to_install(setup, tmp_path, monkeypatch):
    weights = tmp_path / "inception.pth"
    weights.write_bytes(b"not used")
    monkeypatch.setitem(sys.modules, "torchvision", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "torchvision.models", None)
    with pytest.raises(InputError, match="torchvision's inception_v3"):
        evaluate(setup["good"], setup["chips"], tmp_path / "r", segmenter=setup["segmenter"],
                 inception_weights=weights, device="cpu")
    with pytest.raises(InputError, match="not found"):
        evaluate(setup["good"], setup["chips"], tmp_path / "r", segmenter=setup["segmenter"],
                 inception_weights=tmp_path / "missing.pth", device="cpu")


class _StandInInception(torch.nn.Module):
    """Stands in for torchvision's inception_v3 (same call, far smaller): pooled conv features
    then ``fc``, which geospade replaces to read the features before the classifier."""

    def __init__(self, weights=None, aux_logits=True, init_weights=False):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=4)
        self.fc = torch.nn.Linear(8, 1000)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def test_inception_fid_from_a_weights_file(setup, tmp_path, monkeypatch):
    models = types.ModuleType("torchvision.models")
    models.inception_v3 = _StandInInception
    package = types.ModuleType("torchvision")
    package.models = models
    monkeypatch.setitem(sys.modules, "torchvision", package)
    monkeypatch.setitem(sys.modules, "torchvision.models", models)
    torch.manual_seed(0)
    weights = tmp_path / "inception.pth"
    torch.save(_StandInInception().state_dict(), weights)
    good = evaluate(setup["good"], setup["chips"], tmp_path / "good", device="cpu",
                    segmenter=setup["segmenter"], inception_weights=weights, progress=False)
    untrained = evaluate(setup["untrained"], setup["chips"], tmp_path / "untrained", device="cpu",
                   segmenter=setup["segmenter"], inception_weights=weights, progress=False)
    assert np.isfinite(good["inception_fid"]) and good["inception_fid"] >= 0
    assert good["inception_fid"] < untrained["inception_fid"]
    assert "Inception FID" in (tmp_path / "good" / "report.txt").read_text()
    incomplete = tmp_path / "incomplete.pth"
    torch.save({"fc.weight": torch.zeros(1000, 8)}, incomplete)
    with pytest.raises(CheckpointError, match="lack"):
        evaluate(setup["good"], setup["chips"], tmp_path / "r2", segmenter=setup["segmenter"],
                 inception_weights=incomplete, device="cpu")


def test_folder_without_validation_chips_falls_back_to_all(setup):
    chips = export_chips(setup["scene"].landcover, setup["scene"].imagery,
                         setup["root"] / "chips_noval", tile_size=CHIP, val_fraction=0.0,
                         progress=False).out_dir
    with pytest.warns(UserWarning, match="no validation chips"):
        report = evaluate(setup["good"], chips, setup["root"] / "r_all",
                          segmenter=setup["segmenter"], device="cpu", panel_chips=1,
                          progress=False)
    assert report["split"] == "all" and report["split_requested"] == "val"
    assert report["num_chips"] == 58


def _parse(module, argv):
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return parser.parse_args(argv)


def test_cli_train_segmenter_and_evaluate(setup, capsys):
    seg = setup["root"] / "cli_segmenter.pt"
    args = _parse(train_segmenter_cli, [str(setup["chips"]), "-o", str(seg), "--steps", "3",
                                        "--batch-size", "4", "--base-channels", "4",
                                        "--depth", "2", "--device", "cpu"])
    assert train_segmenter_cli.run(args) == 0
    assert "pixel accuracy" in capsys.readouterr().out
    with pytest.raises(OutputExistsError):
        train_segmenter_cli.run(args)

    report_dir = setup["root"] / "cli_report"
    args = _parse(evaluate_cli, ["--checkpoint", str(setup["good"]), "--chips",
                                 str(setup["chips"]), "--segmenter", str(setup["segmenter"]),
                                 "-o", str(report_dir), "--device", "cpu"])
    assert evaluate_cli.run(args) == 0
    out = capsys.readouterr().out
    assert "IoU synth" in out and "Frechet distance" in out
    assert (report_dir / "report.json").exists()


def test_miou_leaves_out_classes_without_true_pixels_and_says_so(setup, reports):
    report = reports["good"]
    absent = [c for c in report["classes"] if c["pixels"] == 0]
    assert absent and report["miou_left_out"] == [c["name"] for c in absent]
    present = [c["iou_synthetic"] for c in report["classes"] if c["pixels"] > 0]
    assert report["synthetic"]["miou"] == pytest.approx(np.mean(present))
    table = (setup["root"] / "report_good" / "report.txt").read_text()
    assert f"left out: {absent[0]['name']}" in table
    row = next(line for line in table.splitlines() if absent[0]["name"] in line
               and "left out" not in line)
    assert row.split()[-4:-2] == ["-", "-"]  # no IoU shown, real or synthetic


def test_frechet_distance_over_few_chips_warns(setup, reports):
    from geospade.evaluation.evaluate import MIN_FRECHET_CHIPS

    report = reports["good"]
    assert report["frechet"]["samples"] < MIN_FRECHET_CHIPS
    assert f"fewer than {MIN_FRECHET_CHIPS}" in report["frechet"]["note"]
    with pytest.warns(UserWarning, match="Frechet distance over only"):
        evaluate(setup["good"], setup["chips"], setup["root"] / "report_few",
                 segmenter=setup["segmenter"], device="cpu", panel_chips=0, progress=False)
    assert "note: Frechet distance over only" in (
        setup["root"] / "report_few" / "report.txt").read_text()


def test_segmenter_defaults_are_sized_for_the_chips():
    from geospade.evaluation.segmenter import default_schedule

    assert default_schedule(64, 1000) == (500, 16)
    steps, batch = default_schedule(256, 1000)
    assert batch == 16 and steps == 125  # 16x the pixels per chip: 4x the work of 64 px
    assert default_schedule(512, 1000)[1] == 4  # smaller batches for large chips
    assert default_schedule(64, 20) == (50 * 1, 16)  # at most 50 passes over 20 chips


def test_segmenter_prints_an_estimate_and_shows_time_left(setup, tmp_path, capsys):
    train_segmenter(setup["chips"], tmp_path / "seg.pt", steps=8, batch_size=2,
                    base_channels=4, depth=2, device="cpu", progress=True)
    err = capsys.readouterr().err
    assert "train segmenter: 8 steps of 2 chips of 64 px; about" in err
    assert "<" in err  # tqdm's [elapsed<remaining]
