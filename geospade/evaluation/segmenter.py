"""The land-cover segmenter that scores synthesised imagery: a small U-Net trained on real chips.

SPADE's "segmentation consistency" runs a segmentation network on generated images and
compares its predictions with the input label maps. No pretrained land-cover network can be
downloaded here, so :func:`train_segmenter` trains a small U-Net on the same chip folder the
generator learned from; its scores on real chips are the ceiling a generator can reach. Its
bottleneck features, averaged over each chip, are the features of the domain Fréchet distance.

The segmenter is saved as a geospade checkpoint whose model card says ``kind: segmenter`` and
carries the class scheme and imagery scaling, so evaluation can check it fits the generator.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from geospade.checkpoint import ModelCard, load_checkpoint, read_card, save_checkpoint
from geospade.errors import CheckpointError, InputError, TrainingDivergedError
from geospade.progress import ProgressArg, progress_bar
from geospade.raster import check_not_input, check_output_file

log = logging.getLogger(__name__)

KIND = "segmenter"
# Default schedule: 500 steps of 16 chips at 64 px; fewer steps (and, past 256 px, smaller
# batches) for larger chips, so a default run costs a few minutes on a laptop CPU at any
# chip size, and at most MAX_DEFAULT_EPOCHS passes over a small chip folder.
REFERENCE_CHIP, REFERENCE_STEPS, REFERENCE_BATCH = 64, 500, 16
MIN_DEFAULT_STEPS, MAX_DEFAULT_EPOCHS = 50, 50
ESTIMATE_AFTER = 5  # steps timed before the run's duration is estimated


def default_schedule(chip_size: int, train_chips: int) -> tuple[int, int]:
    """(steps, batch size) sized for the chips: steps fall as 1 / chip side (each step sees
    more pixels), batches shrink as 1 / area past 256 px (memory), and the run makes at most
    :data:`MAX_DEFAULT_EPOCHS` passes over the training chips."""
    chip_size, train_chips = max(1, int(chip_size)), max(1, int(train_chips))
    batch = REFERENCE_BATCH if chip_size <= 256 else max(2, REFERENCE_BATCH * 256**2 // chip_size**2)
    batch = min(batch, train_chips)
    steps = max(MIN_DEFAULT_STEPS, round(REFERENCE_STEPS * REFERENCE_CHIP / chip_size))
    per_epoch = max(1, train_chips // batch)
    return min(steps, MAX_DEFAULT_EPOCHS * per_epoch), batch


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _conv_block(fin: int, fout: int) -> nn.Sequential:
    """Two 3x3 conv + BatchNorm + ReLU layers, U-Net's basic unit."""
    return nn.Sequential(
        nn.Conv2d(fin, fout, 3, padding=1, bias=False), nn.BatchNorm2d(fout), nn.ReLU(inplace=True),
        nn.Conv2d(fout, fout, 3, padding=1, bias=False), nn.BatchNorm2d(fout), nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """A small U-Net: ``depth`` poolings, ``base_channels`` doubling at each level.

    Args:
        in_channels: imagery bands.
        num_classes: land-cover classes (logits per class; no don't-care output).
        base_channels: channels of the first level.
        depth: number of 2x poolings (inputs are padded to a multiple of 2**depth).

    Attributes:
        feature_channels: size of the feature vector :meth:`forward` returns on request.
    """

    def __init__(self, in_channels: int, num_classes: int, base_channels: int = 16,
                 depth: int = 3):
        super().__init__()
        if depth < 1 or base_channels < 1:
            raise InputError(f"segmenter depth {depth} and width {base_channels} must be >= 1")
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.depth = depth
        self.encoder = nn.ModuleList(
            _conv_block(in_channels if i == 0 else widths[i - 1], widths[i]) for i in range(depth))
        self.bottleneck = _conv_block(widths[depth - 1], widths[depth])
        self.upsample = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in range(depth))
        self.decoder = nn.ModuleList(_conv_block(2 * widths[i], widths[i]) for i in range(depth))
        self.head = nn.Conv2d(widths[0], num_classes, 1)
        self.feature_channels = widths[depth]

    def forward(self, images: torch.Tensor, return_features: bool = False):
        """Class logits (B, num_classes, H, W) of images (B, bands, H, W) in [-1, 1].

        With ``return_features``, also the bottleneck averaged over each image: (B, C).
        """
        height, width = images.shape[-2:]
        multiple = 2**self.depth
        pad_h, pad_w = -height % multiple, -width % multiple
        x = F.pad(images, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else images
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottleneck(x)
        features = x.mean(dim=(2, 3))
        for i in reversed(range(self.depth)):
            x = self.decoder[i](torch.cat([self.upsample[i](x), skips[i]], dim=1))
        logits = self.head(x)[..., :height, :width]
        return (logits, features) if return_features else logits


@dataclass
class Segmenter:
    """A trained segmenter (eval mode) and the card saying which classes and imagery it knows.

    Attributes:
        network: the U-Net, eval mode, on ``device``.
        card: its model card (class scheme, imagery scaling, chip size, training scores in
            ``card.extra``).
        device: where it runs.
    """

    network: UNet
    card: ModelCard
    device: torch.device

    @property
    def class_scheme(self):
        return self.card.class_scheme

    @property
    def imagery(self):
        return self.card.imagery

    @torch.inference_mode()
    def predict(self, images: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predicted model indices (B, H, W) int64 and features (B, C) float32.

        Args:
            images: (B, bands, H, W) imagery scaled to [-1, 1] (``ImageryInfo.to_model``).
        """
        x = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images)
        logits, features = self.network(x.to(self.device, torch.float32), return_features=True)
        return (logits.argmax(dim=1).cpu().numpy().astype(np.int64),
                features.float().cpu().numpy())


def load_segmenter(path: str | Path, device: str | torch.device = "auto") -> Segmenter:
    """Load a segmenter written by :func:`train_segmenter`.

    Raises:
        CheckpointError: the file is not a segmenter (e.g. a generator checkpoint).
    """
    from geospade.device import resolve_device

    device = resolve_device(device)
    payload = load_checkpoint(path, map_location="cpu")
    card = read_card(payload)
    config = card.model_config
    if config.get("kind") != KIND or "segmenter" not in payload:
        raise CheckpointError("this checkpoint is not a land-cover segmenter", path=path,
                              hint="Train one with: geospade train-segmenter CHIPS -o SEG.pt")
    network = UNet(int(config["in_channels"]), int(config["num_classes"]),
                   int(config["base_channels"]), int(config["depth"]))
    try:
        network.load_state_dict(payload["segmenter"])
    except RuntimeError as exc:
        raise CheckpointError(f"segmenter weights do not fit its config ({exc})", path=path,
                              hint="Train the segmenter again.") from None
    return Segmenter(network.eval().to(device), card, device)


def train_segmenter(
    chips_dir: str | Path,
    out_path: str | Path,
    *,
    steps: int | None = None,
    batch_size: int | None = None,
    learning_rate: float = 2e-3,
    base_channels: int = 16,
    depth: int = 3,
    class_balance: bool = True,
    device: str | torch.device = "auto",
    seed: int = 0,
    overwrite: bool = False,
    progress: ProgressArg = True,
) -> Path:
    """Train a U-Net segmenter on a chip folder's train split and save it.

    Cross-entropy over the real classes (nodata pixels ignored; with ``class_balance`` each
    class weighted by the inverse square root of its pixel share, so small classes such as
    roads and buildings are learnt too), Adam with a cosine learning rate decay, the
    dataset's flips/rotations as augmentation. After training, pixel accuracy
    and mIoU on the validation split (all chips when there is none) are logged and kept in
    the saved card's ``extra`` (``validation``).

    Args:
        chips_dir: chip folder (geospade export or ArcGIS Classified_Tiles).
        out_path: segmenter file to write (atomically).
        steps: optimiser steps (None: sized for the chips, see :func:`default_schedule`).
        batch_size: chips per step (None: sized for the chips).
        learning_rate: Adam's initial learning rate.
        base_channels: U-Net width of its first level.
        depth: U-Net poolings (chips are padded to a multiple of 2**depth).
        class_balance: weight the loss towards small classes (see above).
        device: "auto", "cpu", "cuda" or "cuda:N".
        seed: seeds the weights, the chip order and the augmentation.
        overwrite: replace an existing ``out_path``.
        progress: progress bar (True), silent (False) or a callback(done, total, message).
            The bar shows the time left; after a few steps it also prints an estimate of
            the whole run.

    Returns:
        ``out_path``.

    Raises:
        OutputExistsError: ``out_path`` exists and ``overwrite`` is False.
        InputError: no training chips, or bad options.
        TrainingDivergedError: the loss became non-finite.
    """
    from geospade.chips.dataset import ChipDataset, decoded_in_memory
    from geospade.device import resolve_device

    out_path = check_output_file(out_path, overwrite)
    check_not_input([out_path], {"chip folder": chips_dir})
    if (steps is not None and steps < 1) or (batch_size is not None and batch_size < 1) \
            or not learning_rate > 0:
        raise InputError(f"steps ({steps}), batch size ({batch_size}) and learning rate "
                         f"({learning_rate}) must be positive")
    device = resolve_device(device)
    torch.manual_seed(seed)
    train_set = ChipDataset(chips_dir, split="train", augment=True, seed=seed)
    default_steps, default_batch = default_schedule(train_set.tile_size, len(train_set))
    steps = default_steps if steps is None else steps
    batch_size = default_batch if batch_size is None else batch_size
    scheme, imagery = train_set.class_scheme, train_set.imagery
    # Many epochs over few chips: decode each chip file once (augmentation still applies,
    # after reading). The loader runs in this process, so the cache is shared.
    train_set = decoded_in_memory(train_set)
    network = UNet(imagery.count, scheme.num_classes, base_channels, depth).to(device)
    weights = class_weights(train_set).to(device) if class_balance else None
    optimiser = torch.optim.Adam(network.parameters(), lr=learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / steps)))
    generator = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(train_set, batch_size=min(batch_size, len(train_set)),
                                         shuffle=True, drop_last=True, generator=generator)
    network.train()
    step, epoch = 0, 0
    began = 0.0
    with progress_bar(progress, total=steps, desc="train segmenter", unit="step") as bar:
        while step < steps:
            train_set.set_epoch(epoch)
            for batch in loader:
                logits = network(batch["image"].to(device))
                loss = F.cross_entropy(logits, batch["label"].to(device), weight=weights,
                                       ignore_index=scheme.ignore_index)
                if not torch.isfinite(loss):
                    raise TrainingDivergedError(
                        f"segmenter loss became {loss.item()} at step {step}",
                        path=chips_dir, hint="Lower --learning-rate or check the chips.")
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                schedule.step()
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
                if step == 1:
                    began = time.perf_counter()  # the first step includes warm-up costs
                elif step == 1 + ESTIMATE_AFTER and progress is True and steps > step:
                    per_step = (time.perf_counter() - began) / ESTIMATE_AFTER
                    bar.write(f"train segmenter: {steps} steps of {batch_size} chips of "
                              f"{train_set.tile_size} px; about {_duration(per_step * steps)} "
                              f"on {device} ({per_step:.2f} s/step)", file=sys.stderr)
                if step >= steps:
                    break
            epoch += 1
    network.eval()
    folder = train_set.folder
    card = ModelCard(
        model_config={"kind": KIND, "in_channels": imagery.count,
                      "num_classes": scheme.num_classes, "base_channels": base_channels,
                      "depth": depth},
        class_scheme=scheme, imagery=imagery, chip_size=folder.tile_size,
        resolution=folder.resolution, crs_wkt=folder.crs_wkt, crs_units=folder.crs_units,
        step=steps)
    segmenter = Segmenter(network, card, device)
    card.extra["validation"] = validation_scores(segmenter, folder)
    log.info("segmenter validation: %s", card.extra["validation"])
    state = {k: v.detach().cpu() for k, v in network.state_dict().items()}
    train_config = {"steps": steps, "batch_size": batch_size, "learning_rate": learning_rate,
                    "class_balance": class_balance, "seed": seed, "chips": str(chips_dir)}
    save_checkpoint(out_path, card, {"segmenter": state, "step": steps,
                                     "train_config": train_config})
    return out_path


def class_weights(dataset) -> torch.Tensor:
    """Loss weight per class: 1 / sqrt(pixel share), mean 1 over the classes present.

    The square root keeps rare classes from dominating the loss; absent classes get 0.
    """
    n = dataset.class_scheme.num_classes
    counts = np.zeros(n, np.int64)
    for record in dataset.records:
        labels = dataset.read(record)[0]
        counts += np.bincount(labels[labels < n].reshape(-1), minlength=n)[:n]
    present = counts > 0
    weights = np.zeros(n, np.float64)
    weights[present] = 1.0 / np.sqrt(counts[present] / counts.sum())
    weights[present] /= weights[present].mean()
    return torch.tensor(weights, dtype=torch.float32)


def validation_scores(segmenter: Segmenter, folder, batch_size: int = 16) -> dict:
    """Pixel accuracy and mIoU of the segmenter on a chip folder's val split (else all chips)."""
    from geospade.chips.dataset import ChipDataset
    from geospade.evaluation.metrics import confusion_matrix, mean_iou, pixel_accuracy

    split = "val" if folder.split_counts().get("val") else "all"
    dataset = ChipDataset(folder, split=split)
    scheme = dataset.class_scheme
    matrix = np.zeros((scheme.num_classes, scheme.num_classes), dtype=np.int64)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size)
    for batch in loader:
        pred, _ = segmenter.predict(batch["image"])
        matrix += confusion_matrix(pred, batch["label"].numpy(), scheme.num_classes,
                                   scheme.ignore_index)
    return {"split": split, "chips": len(dataset), "pixel_accuracy": pixel_accuracy(matrix),
            "miou": mean_iou(matrix)}
