"""Training objectives: the OASIS losses' parts, and OASIS runs through the trainer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from geospade.checkpoint import load_checkpoint, read_card
from geospade.cli import main as cli_main
from geospade.errors import CheckpointError, InputError
from geospade.models import build_discriminator, model_config
from geospade.models.unet_discriminator import UNetDiscriminator
from geospade.training import TrainConfig, train
from geospade.training.loss import (
    Anchors,
    Batch,
    OasisObjective,
    build_objective,
    chip_fields,
    chip_moments,
    class_balance,
    class_moments,
    class_moments_loss,
    class_texture,
    field_variety_loss,
    labelmix_mask,
    segmentation_loss,
)

OASIS = dict(preset="tiny", objective="oasis", batch_size=4, device="cpu", log_every=1,
             checkpoint_every=1000, sample_every=1000)


@pytest.fixture(scope="module")
def chips(small_chips) -> Path:
    return small_chips


def test_class_balance_gives_each_present_class_equal_weight():
    labels = torch.zeros(2, 8, 8, dtype=torch.long)
    labels[:, :2] = 1        # a small class
    labels[0, 7, 7] = 3      # don't care (3 classes)
    weights = class_balance(labels, 3)
    assert weights[0, 7, 7] == 0
    valid = labels < 3
    assert weights[valid].mean() == pytest.approx(1.0)
    totals = [float(weights[labels == c].sum()) for c in (0, 1)]
    assert totals[0] == pytest.approx(totals[1])  # class 2 is absent: no weight


def test_labelmix_mask_is_constant_within_each_class_of_each_image():
    torch.manual_seed(0)
    labels = torch.randint(0, 4, (6, 16, 16))
    mask = labelmix_mask(labels, 4)
    assert mask.shape == (6, 1, 16, 16) and set(mask.unique().tolist()) <= {0.0, 1.0}
    for b in range(6):
        for c in range(4):
            assert len(mask[b, 0][labels[b] == c].unique()) <= 1
    assert 0 < mask.mean() < 1


def test_segmentation_loss_rewards_the_right_classes():
    labels = torch.randint(0, 3, (2, 8, 8))
    right = torch.nn.functional.one_hot(labels, 4).permute(0, 3, 1, 2).float() * 10
    wrong = torch.roll(right, 1, dims=1)
    assert segmentation_loss(right, labels, 3) < 0.01 < segmentation_loss(wrong, labels, 3)


def classes(labels: torch.Tensor, n: int = 2) -> torch.Tensor:
    """The class channels of the one-hot land cover (don't-care left out), as Anchors does."""
    return torch.nn.functional.one_hot(labels, n + 1).permute(0, 3, 1, 2).float()[:, :n]


def test_class_moments_loss_pools_the_batch_and_catches_flat_paint():
    torch.manual_seed(0)
    labels = torch.zeros(2, 16, 16, dtype=torch.long)
    labels[:, 8:] = 1
    labels[0, 0, 0] = 2                                    # don't care (2 classes)
    real = torch.rand(2, 3, 16, 16) * 2 - 1
    assert float(class_moments_loss(real, real, classes(labels))) == pytest.approx(0.0, abs=1e-3)
    # Chips with the same land cover swapped: the batch's colours per class are unchanged,
    # so the loss is too (L1 would not be), and fields may take any of their class's looks.
    labels[0, 0, 0] = 0
    swapped = real.flip(0)
    assert float(class_moments_loss(swapped, real, classes(labels))) == pytest.approx(0.0, abs=1e-3)
    assert float((swapped - real).abs().mean()) > 0.5
    # Each class painted in its real mean colour: right means, no spread.
    flat = torch.zeros_like(real)
    for c in (0, 1):
        inside = labels == c                               # (B, H, W)
        mean = real.permute(1, 0, 2, 3)[:, inside].mean(1)  # (bands,)
        flat.permute(1, 0, 2, 3)[:, inside] = mean[:, None]
    assert float(class_moments_loss(flat, real, classes(labels))) > 0.2
    fake = flat.clone().requires_grad_(True)
    class_moments_loss(fake, real, classes(labels)).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0


def test_per_chip_moments_tell_field_tones_from_speckle():
    torch.manual_seed(0)
    labels = torch.zeros(4, 16, 16, dtype=torch.long)
    labels[:, 8:] = 1
    onehot = classes(labels)
    count = onehot.sum((0, 2, 3))
    # Real: every chip's fields calm, each in its own tone.
    tones = torch.tensor([-0.6, -0.2, 0.2, 0.6])
    real = tones[:, None, None, None].expand(4, 3, 16, 16).clone()
    real += 0.05 * torch.randn_like(real)
    mean, within, between = chip_moments(real, onehot, count)
    pooled_mean, pooled = class_moments(real, onehot, count)
    assert torch.allclose(mean, pooled_mean, atol=1e-5)
    assert torch.allclose(within**2 + between**2, pooled**2, atol=1e-4)
    assert float(within.max()) < 0.1 and float(between.min()) > 0.4
    # Speckle: the same pixels shuffled across the batch, class by class: the pooled
    # moments are unchanged, so only the per-chip split notices.
    speckle = real.clone()
    for c in (0, 1):
        inside = labels == c                               # (B, H, W)
        for band in range(3):
            values = speckle[:, band][inside]
            speckle[:, band][inside] = values[torch.randperm(values.numel())]
    assert float(class_moments_loss(real, real, onehot, per_chip=True)) == pytest.approx(
        0.0, abs=1e-3)
    pooled_loss = float(class_moments_loss(speckle, real, onehot))
    split_loss = float(class_moments_loss(speckle, real, onehot, per_chip=True))
    texture = float((class_texture(speckle, onehot)[0] - class_texture(real, onehot)[0])
                    .abs().mean())
    assert pooled_loss == pytest.approx(texture, abs=1e-3)   # only the texture term sees it
    assert split_loss > pooled_loss + 0.5


def test_chip_fields_number_each_connected_field_of_each_chip():
    labels = torch.zeros(2, 12, 12, dtype=torch.long)
    labels[:, :, 5] = 1                       # a line of class 1 cuts class 0 in two
    labels[1, 2:4, 8:10] = 2                  # a small patch of class 2 in chip 1
    fields = chip_fields(labels)
    for chip, expected in ((0, 3), (1, 4)):
        assert len(fields[chip].unique()) == expected
    assert fields[0, 0, 0] != fields[0, 0, 11]           # either side of the line
    assert fields[0, 0, 0] == fields[0, 11, 4]           # one field, corner to corner
    assert not set(fields[0].unique().tolist()) & set(fields[1].unique().tolist())
    snake = torch.ones(1, 9, 9, dtype=torch.long)        # a winding field needs many steps
    snake[0, 1::2, 1:8] = 0                              # rows 1, 3, 5, 7 of class 0 ...
    snake[0, [2, 4, 6], [7, 1, 7]] = 0                  # ... joined at alternate ends
    assert len(chip_fields(snake)[snake == 0].unique()) == 1


def test_field_variety_loss_catches_one_look_for_every_field():
    torch.manual_seed(0)
    labels = torch.zeros(4, 16, 16, dtype=torch.long)
    labels[:, :, 8:] = 1
    labels[:, 8, :8] = 2                                  # splits class 0 in two per chip
    real = torch.rand(4, 3, 1, 1).expand(4, 3, 16, 16).clone()
    real[..., :8, :8] = torch.rand(4, 3, 1, 1)            # the other class 0 field's tone
    real += 0.02 * torch.randn_like(real)
    assert float(field_variety_loss(real, real, labels, 3)) == pytest.approx(0.0, abs=1e-6)
    onehot = classes(labels)[:, :3]
    count = onehot.sum((0, 2, 3))
    mean, _ = class_moments(real, onehot, count)
    flat = torch.einsum("nc,bnhw->bchw", mean, onehot)    # every field in its class's mean
    flat = flat.clone().requires_grad_(True)
    loss = field_variety_loss(flat, real, labels, 3)
    assert float(loss) > 0.1
    loss.backward()
    assert flat.grad is not None and float(flat.grad.abs().sum()) > 0
    ignored = torch.full_like(labels, 3)                   # all don't-care: nothing to compare
    assert float(field_variety_loss(flat, real, ignored, 3)) == 0.0


def test_class_texture_counts_only_steps_inside_a_class():
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    labels[:, :, 2:] = 1                                   # class 1 on the right half
    image = torch.zeros(1, 1, 4, 4)
    image[..., 2:] = 1.0                                   # a step exactly at the class border
    image[0, 0, 0, 0] = 0.5                                # texture inside class 0
    texture, present = class_texture(image, classes(labels))
    assert present.tolist() == [True, True]
    # Class 0: 10 pairs inside (4 across, 6 down), two of them touch the 0.5 pixel.
    assert float(texture[0, 0]) == pytest.approx(1.0 / 10)
    assert float(texture[1, 0]) == 0.0                     # the border step is not texture


def test_anchors_add_their_terms_only_when_weighted():
    labels = torch.randint(0, 3, (2, 8, 8))
    onehot = torch.nn.functional.one_hot(labels, 4).permute(0, 3, 1, 2).float()
    batch = Batch(labels=labels, onehot=onehot, real=torch.rand(2, 3, 8, 8))
    fake = torch.zeros(2, 3, 8, 8)
    terms: dict = {}
    assert float(Anchors(3)(batch, fake, terms)) == 0 and not terms
    total = Anchors(3, lambda_l1=2.0, lambda_moments=5.0, lambda_variety=3.0)(batch, fake, terms)
    assert list(terms) == ["loss_g_l1", "loss_g_moments", "loss_g_variety"]
    assert float(total) == pytest.approx(float(2 * terms["loss_g_l1"]
                                               + 5 * terms["loss_g_moments"]
                                               + 3 * terms["loss_g_variety"]))


def test_moments_per_chip_reaches_the_loss_from_the_options():
    labels = torch.randint(0, 3, (4, 8, 8))
    onehot = torch.nn.functional.one_hot(labels, 4).permute(0, 3, 1, 2).float()
    batch = Batch(labels=labels, onehot=onehot, real=torch.rand(4, 3, 8, 8))
    fake = torch.rand(4, 3, 8, 8)
    config = TrainConfig(preset="cpu", moments_per_chip=True).resolved()
    objective = build_objective(config, 3, torch.device("cpu"))
    assert objective.anchors.moments_per_chip
    assert not build_objective(TrainConfig(preset="cpu").resolved(), 3,
                               torch.device("cpu")).anchors.moments_per_chip
    terms: dict = {}
    objective.anchors(batch, fake, terms)
    expected = class_moments_loss(fake, batch.real, onehot[:, :3], per_chip=True)
    assert float(terms["loss_g_moments"]) == pytest.approx(float(expected))


def test_oasis_discriminator_losses_and_gradients():
    cfg = model_config("tiny", 3, 3, discriminator="unet")
    disc = build_discriminator(cfg)
    assert isinstance(disc, UNetDiscriminator)
    labels = torch.randint(0, 4, (2, 64, 64))
    onehot = torch.nn.functional.one_hot(labels, 4).permute(0, 3, 1, 2).float()
    assert disc(torch.zeros(2, 3, 64, 64)).shape == (2, 4, 64, 64)
    batch = Batch(labels=labels, onehot=onehot, real=torch.rand(2, 3, 64, 64) * 2 - 1)
    fake = torch.zeros(2, 3, 64, 64, requires_grad=True)
    objective = OasisObjective(3, lambda_labelmix=10.0)
    terms = {k: v.detach() for k, v in objective.discriminator_loss(disc, batch,
                                                                    fake.detach()).items()}
    assert list(terms) == ["loss_d", "loss_d_real", "loss_d_fake", "loss_d_labelmix"]
    assert float(terms["loss_d"]) == pytest.approx(float(
        terms["loss_d_real"] + terms["loss_d_fake"] + 10 * terms["loss_d_labelmix"]), rel=1e-6)
    g_terms = objective.generator_loss(disc, batch, fake)
    g_terms["loss_g"].backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    with pytest.raises(InputError, match="multiple of 8"):
        disc(torch.zeros(1, 3, 60, 60))


def test_oasis_trains_logs_its_terms_and_resumes_bit_for_bit(chips, tmp_path):
    config = TrainConfig(steps=2, **OASIS)
    interrupted, straight = tmp_path / "interrupted", tmp_path / "straight"
    train(chips, interrupted, config, progress=False)
    train(chips, interrupted, config.replace(steps=4), resume=True, progress=False)
    train(chips, straight, config.replace(steps=4), progress=False)
    a, b = load_checkpoint(interrupted), load_checkpoint(straight)
    assert read_card(a).model_config["discriminator"] == "unet"
    for key in ("generator", "generator_ema", "discriminator"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key])
    rows = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    assert all(r["loss_d_labelmix"] >= 0 and "loss_g_fm" not in r for r in rows)
    # A SPADE-objective resume of an OASIS run is refused by name.
    with pytest.raises(CheckpointError, match="discriminator"):
        train(chips, straight, config.replace(steps=5, objective="spade"), resume=True,
              progress=False)


def test_objective_flag_and_a_conflicting_discriminator(chips, tmp_path):
    run = tmp_path / "run"
    assert cli_main.main(["train", str(chips), "-o", str(run), "--preset", "tiny", "--steps",
                          "1", "--objective", "oasis", "--device", "cpu", "--quiet"]) == 0
    assert load_checkpoint(run)["train_config"]["objective"] == "oasis"
    with pytest.raises(InputError, match="objective=oasis"):
        train(chips, tmp_path / "bad", TrainConfig(steps=1, **{**OASIS, "model": {
            "discriminator": "multiscale"}}), progress=False)
    with pytest.raises(InputError, match="objective"):
        TrainConfig(objective="pix2pix").validate()


# ---- recipes: --preset alone is the preset's best recipe --------------------------------------


def test_options_left_to_the_preset_take_its_recipe():
    from geospade.training.config import RECIPE_FALLBACK, RECIPES

    cpu = TrainConfig(preset="cpu").resolved()
    for name, value in RECIPES["cpu"].items():
        assert getattr(cpu, name) == value, name
    tiny = TrainConfig(preset="tiny").resolved()
    assert (tiny.objective, tiny.batch_size, tiny.lambda_l1, tiny.steps) == \
        tuple(RECIPE_FALLBACK[k] for k in ("objective", "batch_size", "lambda_l1", "steps"))
    given = TrainConfig(preset="cpu", objective="spade", batch_size=2, epochs=3).resolved()
    assert (given.objective, given.batch_size, given.steps, given.epochs) == ("spade", 2, None, 3)
    assert TrainConfig(preset="cpu").total_steps(10) == RECIPES["cpu"]["steps"]


def test_cli_preset_alone_is_the_recipe(tmp_path):
    from geospade.cli.train import resolve_config

    args = cli_main.build_parser().parse_args(["train", "chips", "-o", str(tmp_path / "run"),
                                               "--preset", "cpu"])
    assert resolve_config(args).resolved() == TrainConfig(preset="cpu").resolved()


def test_quickstart_trains_with_exactly_the_cpu_recipe():
    from geospade.quickstart import default_settings

    settings = default_settings("cpu")
    assert settings.preset == "cpu" and settings.steps is None and settings.batch_size is None


def test_a_run_records_the_resolved_recipe(chips, tmp_path):
    run = tmp_path / "run"
    train(chips, run, TrainConfig(preset="tiny", steps=1, device="cpu"), progress=False)
    saved = TrainConfig.from_yaml(run / "config.yaml")
    assert saved.objective == "spade" and saved.batch_size == 4 and saved.lambda_l1 == 0.0
