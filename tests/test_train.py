"""geospade train: options, run folder, checkpoint contents, divergence guard, and learning."""

from __future__ import annotations

import importlib.util
import json
import shutil
import time
from pathlib import Path

import pytest
import rasterio
import torch
import yaml

from geospade.checkpoint import load_checkpoint, read_card
from geospade.chips.dataset import ChipDataset
from geospade.cli import main as cli_main
from geospade.errors import CheckpointError, InputError, OutputExistsError, TrainingDivergedError
from geospade.models import (
    ModelConfig,
    build_discriminator,
    build_generator,
    one_hot,
    recompute_batchnorm_stats,
)
from geospade.preview import write_png
from geospade.training import TrainConfig, train
from geospade.training import loss as loss_module
from geospade.training.distributed import epoch_order, seed_everything
from geospade.training.visuals import sample_grid

# Small, fast runs: checkpoints and samples at the end only unless a test asks otherwise.
TINY = dict(preset="tiny", batch_size=4, device="cpu", log_every=1, checkpoint_every=1000,
            sample_every=1000)


@pytest.fixture(scope="module")
def short_run(demo_chips, tmp_path_factory) -> Path:
    """A 4-step run with a checkpoint and a sample grid at step 2 and at the end."""
    run = tmp_path_factory.mktemp("runs") / "short"
    train(demo_chips, run, TrainConfig(steps=4, checkpoint_every=2, sample_every=2,
                                       **{k: v for k, v in TINY.items()
                                          if k not in ("checkpoint_every", "sample_every")}),
          progress=False)
    return run


# ---- options --------------------------------------------------------------------------------


def test_config_defaults_follow_spade():
    cfg = TrainConfig()
    paper = TrainConfig(preset="paper").resolved()
    assert (paper.lr_g, paper.lr_d, paper.beta1, paper.beta2) == (1e-4, 4e-4, 0.0, 0.9)
    assert cfg.resolved().lr_g == 2e-4  # the cpu preset's recipe
    assert cfg.lambda_fm == 10.0
    assert TrainConfig(preset="paper").total_steps(100) == 5000
    assert cfg.total_steps(100) == 1500  # the cpu preset's recipe
    assert TrainConfig(epochs=3).total_steps(100) == 300


def test_config_yaml_round_trip_and_types(tmp_path):
    path = tmp_path / "cfg.yaml"
    # PyYAML reads 1e-4 as a string: it must still become a float.
    path.write_text("preset: tiny\nlr_g: 1e-4\nsteps: 12\nmodel: {ngf: 4}\namp: false\n")
    cfg = TrainConfig.from_yaml(path)
    assert cfg.lr_g == 1e-4 and cfg.steps == 12 and cfg.model == {"ngf": 4} and cfg.amp is False
    cfg.to_yaml(tmp_path / "back.yaml")
    assert TrainConfig.from_yaml(tmp_path / "back.yaml") == cfg


def test_config_unknown_yaml_keys_are_named(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("steps: 10\nlearning_rate: 0.1\nbatchsize: 2\n")
    with pytest.raises(InputError) as exc:
        TrainConfig.from_yaml(path)
    message = str(exc.value)
    assert "learning_rate" in message and "batchsize" in message and str(path) in message


@pytest.mark.parametrize("changes, name", [
    ({"batch_size": 0}, "batch_size"),
    ({"steps": 10, "epochs": 2}, "epochs"),
    ({"device": "gpu"}, "device"),
    ({"ema_decay": 1.0}, "ema_decay"),
    ({"steps": "many"}, "steps"),
    ({"lambda_l1": -1.0}, "lambda_l1"),
])
def test_config_bad_values_name_the_option(changes, name):
    with pytest.raises(InputError, match=name):
        TrainConfig.from_dict(changes)


def test_cli_flags_override_config_file(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("preset: tiny\nsteps: 100\nbatch_size: 2\nmodel: {ngf: 4}\n")
    parser = cli_main.build_parser()
    args = parser.parse_args(["train", "chips", "-o", str(tmp_path / "run"), "--config", str(path),
                              "--epochs", "3", "--lr-g", "2e-4", "--no-amp",
                              "--model", "ndf=16"])
    from geospade.cli.train import resolve_config
    cfg = resolve_config(args)
    # The flag's length replaces the file's; unset flags keep the file's values.
    assert (cfg.epochs, cfg.steps, cfg.batch_size, cfg.preset) == (3, None, 2, "tiny")
    assert cfg.lr_g == 2e-4 and cfg.amp is False and cfg.model == {"ngf": 4, "ndf": 16}


def test_library_resolves_a_resumed_run_s_own_options(tmp_path):
    """resolve_config, which the CLI and the ArcGIS tool share: a resumed run reads its own
    config.yaml; model overrides merge; an explicit length replaces the file's unit."""
    from geospade.training.config import resolve_config

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("preset: tiny\nepochs: 2\nmodel: {ngf: 4}\n")
    cfg = resolve_config({"steps": 7, "model": {"ndf": 8}}, run_dir=run, resume=True)
    assert (cfg.preset, cfg.steps, cfg.epochs, cfg.model) == ("tiny", 7, None,
                                                               {"ngf": 4, "ndf": 8})
    assert resolve_config({"seed": 3}, run_dir=run, resume=False).preset == TrainConfig().preset
    with pytest.raises(InputError, match="batch_size"):
        resolve_config({"batch_size": 0})


def test_cli_help_lists_every_option(capsys):
    with pytest.raises(SystemExit):
        cli_main.main(["train", "--help"])
    out = capsys.readouterr().out
    for flag in ("--resume", "--overwrite", "--config", "--steps", "--epochs", "--batch-size",
                 "--device", "--amp", "--no-amp", "--vgg-weights", "--checkpoint-every",
                 "--sample-every", "--tensorboard", "--seed", "--workers", "--lr-g", "--lr-d"):
        assert flag in out


def test_epoch_order_shards_a_permutation():
    full = epoch_order(10, seed=3, epoch=1)
    assert sorted(full) == list(range(10)) and full != epoch_order(10, seed=3, epoch=2)
    shards = [epoch_order(10, seed=3, epoch=1, rank=r, world_size=3) for r in range(3)]
    assert all(len(s) == 4 for s in shards)  # padded to 12, like DistributedSampler
    assert set().union(*shards) == set(range(10))


def test_epoch_order_is_the_order_of_earlier_runs_and_gives_every_rank_chips():
    # The permutation earlier checkpoints were trained in, so old runs resume bit-exact.
    permutation = torch.randperm(10, generator=torch.Generator().manual_seed(3 * 1_000_003 + 1))
    assert epoch_order(10, seed=3, epoch=1) == permutation.tolist()
    assert epoch_order(10, seed=3, epoch=1, rank=1, world_size=4) == permutation.tolist()[1::4]
    # Fewer chips than ranks: every rank still gets a batch (DDP waits for all of them).
    assert [len(epoch_order(1, seed=0, epoch=0, rank=r, world_size=3)) for r in range(3)] == [1] * 3


# ---- the run folder and the checkpoint ----------------------------------------------------------


def test_run_folder_layout(short_run):
    assert (short_run / "checkpoints" / "latest.pt").is_file()
    assert (short_run / "checkpoints" / "step_000002.pt").is_file()
    assert (short_run / "checkpoints" / "step_000004.pt").is_file()
    assert TrainConfig.from_yaml(short_run / "config.yaml").steps == 4
    rows = [json.loads(line) for line in (short_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for key in ("loss_d", "loss_g", "loss_g_adv", "loss_g_fm", "img_per_s"):
        assert all(isinstance(r[key], float) for r in rows)
    png = (short_run / "samples" / "step_000004.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    # 4 validation chips of 64 px with 2 px gaps: label | real | generated.
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (3 * 64 + 2 * 2, 13 + 4 * 64 + 3 * 2)  # heading + 4 rows
    assert not list(short_run.rglob("*.partial*"))


def test_checkpoint_holds_everything_synthesis_needs(short_run, demo_chips):
    payload = load_checkpoint(short_run)
    card = read_card(payload)
    data = ChipDataset(demo_chips, "train")
    assert card.step == payload["step"] == 4
    assert card.class_scheme == data.class_scheme and card.imagery == data.imagery
    assert card.chip_size == 64 and card.resolution == (1.0, 1.0)
    assert card.crs_wkt and card.crs_units == "metre"
    for key in ("generator", "generator_ema", "discriminator", "optimizer_g", "optimizer_d",
                "rng", "train_config"):
        assert key in payload
    # The card alone rebuilds the networks the weights belong to.
    cfg = ModelConfig.from_dict(card.model_config)
    assert (cfg.num_classes, cfg.out_channels) == (7, 3)
    generator, discriminator = build_generator(cfg), build_discriminator(cfg)
    # Strict loading: the same tensors with the same shapes, so the same parameter count.
    generator.load_state_dict(payload["generator_ema"])
    generator.load_state_dict(payload["generator"])
    discriminator.load_state_dict(payload["discriminator"])
    generator.eval()
    labels = data[0]["label"][None]
    with torch.no_grad():
        out = generator(one_hot(labels, 7), generator.make_noise(1, 64, 64, seed=0))
    assert out.shape == (1, 3, 64, 64) and out.abs().max() <= 1


def test_periodic_checkpoint_equals_latest_of_that_step(short_run):
    step2 = load_checkpoint(short_run / "checkpoints" / "step_000002.pt")
    assert step2["step"] == 2 and read_card(step2).step == 2


def test_existing_run_needs_resume_or_overwrite(short_run, demo_chips, tmp_path):
    with pytest.raises(OutputExistsError, match="--resume"):
        train(demo_chips, short_run, TrainConfig(steps=1, **TINY), progress=False)
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(demo_chips, tmp_path / "new", TrainConfig(steps=1, **TINY), resume=True,
              progress=False)
    again = tmp_path / "again"
    train(demo_chips, again, TrainConfig(steps=2, **TINY), progress=False)
    train(demo_chips, again, TrainConfig(steps=1, **TINY), overwrite=True, progress=False)
    assert load_checkpoint(again)["step"] == 1
    assert len((again / "metrics.jsonl").read_text().splitlines()) == 1


def test_arcgis_folder_without_geospade_metadata(demo_chips, tmp_path):
    """A plain ArcGIS Pro Classified_Tiles folder: classes and bands from Esri's own files."""
    arcgis = tmp_path / "arcgis"
    shutil.copytree(demo_chips, arcgis)
    for name in ("geospade_export.json", "class_scheme.json", "chips.gpkg"):
        (arcgis / name).unlink()
    train(arcgis, tmp_path / "run", TrainConfig(steps=1, **TINY), progress=False)
    card = read_card(load_checkpoint(tmp_path / "run"))
    ours = ChipDataset(demo_chips, "train").class_scheme
    # Esri's statistics list the classes present in the chips (here all but one).
    assert set(card.class_scheme.values) <= set(ours.values) and card.class_scheme.num_classes >= 5
    assert card.model_config["num_classes"] == card.class_scheme.num_classes
    assert card.imagery.count == 3 and card.chip_size == 64


def test_too_few_chips_for_the_batch(demo_chips, tmp_path):
    with pytest.raises(InputError, match="batch"):
        train(demo_chips, tmp_path / "run", TrainConfig(steps=1, **{**TINY, "batch_size": 500}),
              progress=False)


def test_chip_size_must_fit_the_model(demo_chips, tmp_path):
    with pytest.raises(InputError, match="multiple of 128"):
        train(demo_chips, tmp_path / "run",
              TrainConfig(steps=1, **{**TINY, "model": {"num_upsampling": 7}}), progress=False)


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is not None,
                    reason="tensorboard is installed")
def test_tensorboard_without_the_package_is_a_clear_error(demo_chips, tmp_path):
    with pytest.raises(InputError, match="pip install tensorboard"):
        train(demo_chips, tmp_path / "run", TrainConfig(steps=1, tensorboard=True, **TINY),
              progress=False)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_vgg_loss_with_a_weights_file(demo_chips, tmp_path):
    from geospade.models.losses import vgg19_features

    weights = tmp_path / "vgg19.pth"
    torch.save({f"features.{k}": v for k, v in vgg19_features().state_dict().items()}, weights)
    run = tmp_path / "run"
    train(demo_chips, run, TrainConfig(steps=1, vgg_weights=str(weights), **TINY), progress=False)
    row = json.loads((run / "metrics.jsonl").read_text())
    assert row["loss_g_vgg"] > 0
    assert row["loss_g"] == pytest.approx(row["loss_g_adv"] + 10 * row["loss_g_fm"]
                                          + 10 * row["loss_g_vgg"], rel=1e-5)
    with pytest.raises(InputError, match="VGG19 weights file not found"):
        train(demo_chips, tmp_path / "run2",
              TrainConfig(steps=1, vgg_weights=str(tmp_path / "missing.pth"), **TINY),
              progress=False)


# ---- divergence guard ---------------------------------------------------------------------------


def test_nan_loss_stops_and_keeps_the_last_checkpoint(demo_chips, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    train(demo_chips, run, TrainConfig(steps=2, **TINY), progress=False)
    latest = run / "checkpoints" / "latest.pt"
    before = latest.read_bytes()
    real_loss = loss_module.hinge_g_loss

    def poisoned(fake_preds):
        return real_loss(fake_preds) * float("nan")

    monkeypatch.setattr(loss_module, "hinge_g_loss", poisoned)
    with pytest.raises(TrainingDivergedError) as exc:
        train(demo_chips, run, TrainConfig(steps=4, **TINY), resume=True, progress=False)
    message = str(exc.value)
    assert "step 3" in message and "generator loss = nan" in message and "kept" in message
    assert latest.read_bytes() == before
    assert not (run / "checkpoints" / "step_000003.pt").exists()

    # The command line reports it in one line with a non-zero exit.
    code = cli_main.main(["train", str(demo_chips), "-o", str(run), "--resume", "--steps", "4",
                          "--quiet"])
    assert code != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "diverged" in err
    assert latest.read_bytes() == before


# ---- visuals ------------------------------------------------------------------------------------


def test_sample_grid_panels(demo_chips, tmp_path):
    data = ChipDataset(demo_chips, "val")
    labels = torch.stack([data[i]["label"] for i in range(2)])
    real = torch.stack([data[i]["image"] for i in range(2)])
    grid = sample_grid(labels, real, -real, data.class_scheme, gap=2, headings=False)
    assert grid.shape == (2 * 64 + 2, 3 * 64 + 4, 3)
    palette = data.class_scheme.palette()
    assert (grid[:64, :64] == palette[labels[0].numpy()]).all()
    assert (grid[:64, 66:130] == ((real[0, :3].permute(1, 2, 0) + 1) * 127.5).round().numpy()).all()
    headed = sample_grid(labels, real, -real, data.class_scheme, gap=2)
    strip = headed.shape[0] - grid.shape[0]
    assert strip > 7 and (headed[strip:] == grid).all()
    for col in range(3):  # dark text over each of the three columns, on white
        heading = headed[:strip, col * 66:col * 66 + 64]
        assert (heading == 0).any() and (heading == 255).mean() > 0.5
    path = write_png(tmp_path / "g.png", headed.transpose(2, 0, 1))
    with rasterio.open(path) as png:
        assert (png.read().transpose(1, 2, 0) == headed).all()


# ---- learning -----------------------------------------------------------------------------------


def per_class_colour_error(generator, labels, real, num_classes) -> float:
    """Mean over classes of |mean real colour - mean generated colour| (model units)."""
    with torch.no_grad():
        fake = generator(one_hot(labels, num_classes),
                         generator.make_noise(len(labels), *labels.shape[1:], seed=0))
    errors = []
    for c in range(num_classes):
        mask = labels == c
        if mask.sum() >= 50:  # classes with a few pixels only would make the mean noisy
            real_mean = real.permute(1, 0, 2, 3)[:, mask].mean(1)
            fake_mean = fake.permute(1, 0, 2, 3)[:, mask].mean(1)
            errors.append((real_mean - fake_mean).abs().mean().item())
    assert len(errors) >= 3
    return sum(errors) / len(errors)


@pytest.mark.slow  # trains for minutes: learning is what it checks
def test_generator_learns_the_class_colours(demo_chips, tmp_path):
    """An honest learning test: after 300 steps on the demo chips, the EMA generator's
    per-class mean colours are at least twice as close to the real imagery's as the untrained
    generator's on a fixed spread of training chips, and clearly closer on held-out chips."""
    started = time.perf_counter()
    run = tmp_path / "learn"
    config = TrainConfig(steps=300, **{**TINY, "log_every": 50})
    train(demo_chips, run, config, progress=False)
    seconds = time.perf_counter() - started

    payload = load_checkpoint(run)
    cfg = ModelConfig.from_dict(read_card(payload).model_config)
    train_set, val = ChipDataset(demo_chips, "train"), ChipDataset(demo_chips, "val")
    spread = [train_set[i] for i in range(0, len(train_set), len(train_set) // 16)][:16]
    fitted = (torch.stack([c["label"] for c in spread]), torch.stack([c["image"] for c in spread]))
    held_out = (torch.stack([val[i]["label"] for i in range(len(val))]),
                torch.stack([val[i]["image"] for i in range(len(val))]))
    bn_batches = [torch.stack([train_set[i]["label"] for i in range(j, j + 8)])
                  for j in range(0, 32, 8)]

    def evaluate(generator, chips) -> float:
        torch.manual_seed(0)
        recompute_batchnorm_stats(generator, bn_batches)  # fair to both: fresh statistics
        return per_class_colour_error(generator, *chips, cfg.num_classes)

    seed_everything(config.seed)  # the trainer's initial weights
    untrained = build_generator(cfg)
    trained = build_generator(cfg)
    trained.load_state_dict(payload["generator_ema"])
    before, after = evaluate(untrained, fitted), evaluate(trained, fitted)
    before_val, after_val = evaluate(untrained, held_out), evaluate(trained, held_out)
    print(f"per-class colour error: training chips {before:.3f} -> {after:.3f}, held-out "
          f"{before_val:.3f} -> {after_val:.3f}; 300 steps in {seconds:.0f} s")
    assert after <= 0.5 * before
    assert after_val <= 0.67 * before_val
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["loss_g_fm"] < rows[0]["loss_g_fm"]
    assert yaml.safe_load((run / "config.yaml").read_text())["steps"] == 300


def test_l1_loss_is_logged_and_pulls_towards_the_real_chips(demo_chips, tmp_path):
    run = tmp_path / "run"
    train(demo_chips, run, TrainConfig(steps=2, lambda_l1=10.0, **TINY),
          progress=False)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(row["loss_g_l1"] > 0 for row in rows)
    # the G loss includes the weighted L1 term
    assert all(row["loss_g"] >= 10.0 * row["loss_g_l1"] + row["loss_g_adv"] for row in rows)


@pytest.mark.parametrize("objective", ["spade", "oasis"])
def test_class_moment_loss_is_logged_in_both_objectives(demo_chips, tmp_path, objective):
    run = tmp_path / "run"
    train(demo_chips, run, TrainConfig(steps=2, lambda_moments=5.0, objective=objective,
                                       **TINY), progress=False)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(row["loss_g_moments"] > 0 for row in rows)
    assert all(row["loss_g"] >= 5.0 * row["loss_g_moments"] + row["loss_g_adv"] - 1e-4
               for row in rows)
