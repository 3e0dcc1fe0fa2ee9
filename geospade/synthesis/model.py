"""A generator loaded once from a checkpoint, ready to turn label tiles into imagery tiles.

:class:`LoadedModel` holds the generator (eval mode, on its device) and the checkpoint's
model card (class scheme, imagery bands and scaling, training resolution). Synthesis of files
and arrays, and any other front end (a notebook, the ArcGIS raster function), share it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from geospade.checkpoint import ModelCard, load_checkpoint, read_card
from geospade.device import resolve_device
from geospade.errors import CheckpointError

log = logging.getLogger(__name__)



@dataclass
class LoadedModel:
    """A generator in eval mode plus the model card that says how to feed and read it.

    Build one with :meth:`from_checkpoint` (or directly from a generator and a card).

    Attributes:
        generator: the SPADE generator, eval mode, on ``device``.
        card: the checkpoint's model card.
        device: where the generator runs.
        forward_calls: generator forward passes so far (batches).
        tiles_generated: tiles generated so far.
    """

    generator: torch.nn.Module
    card: ModelCard
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    forward_calls: int = 0
    tiles_generated: int = 0

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, device: str | torch.device = "auto"
                        ) -> LoadedModel:
        """Load the generator of a checkpoint (its EMA weights when present).

        Args:
            checkpoint: checkpoint file, or a training run folder.
            device: "auto", "cpu", "cuda", "cuda:N" or a torch.device.
        """
        from geospade.models import ModelConfig, build_generator

        device = resolve_device(device)
        payload = load_checkpoint(checkpoint, map_location="cpu")
        card = read_card(payload)
        if "kind" in card.model_config:  # e.g. the segmenter of `geospade evaluate`
            raise CheckpointError(
                f"this is a {card.model_config['kind']}, not a generator checkpoint",
                path=checkpoint,
                hint="Give the checkpoint of a run of geospade train (RUN_DIR/checkpoints/"
                     "latest.pt); a segmenter goes to geospade evaluate --segmenter.")
        state = payload.get("generator_ema") or payload.get("generator")
        if state is None:
            raise CheckpointError("checkpoint holds no generator weights", path=checkpoint,
                                  hint="Give a checkpoint written by geospade train.")
        generator = build_generator(ModelConfig.from_dict(card.model_config))
        try:
            generator.load_state_dict(state)
        except RuntimeError as exc:
            raise CheckpointError(f"generator weights do not fit the model config ({exc})",
                                  path=checkpoint,
                                  hint="The checkpoint may be damaged or from another version.") from None
        generator.eval().to(device)
        return cls(generator, card, device)

    @property
    def scheme(self):
        """The class scheme the model was trained on."""
        return self.card.class_scheme

    @property
    def imagery(self):
        """Band count, dtype and scaling of the imagery the model produces."""
        return self.card.imagery

    @property
    def downsampling_factor(self) -> int:
        """Tile sizes, offsets and halos must be multiples of this."""
        factor = getattr(self.generator, "downsampling_factor", None)
        if factor is None:
            factor = 2 ** int(self.card.model_config.get("num_upsampling", 0))
        return int(factor)

    @property
    def receptive_field(self) -> int | None:
        """The generator's receptive field in pixels, when the model reports it."""
        value = getattr(self.generator, "receptive_field", None)
        if callable(value):
            value = value()
        return None if value is None else int(value)

    def generate(self, indices: np.ndarray, row_offs: Sequence[int], col_offs: Sequence[int],
                 seed: int) -> np.ndarray:
        """Generate imagery for a batch of label windows.

        Args:
            indices: int64 (B, H, W) model class indices (``scheme.ignore_index`` = don't care).
            row_offs, col_offs: global top-left pixel of each window, so the noise at a pixel
                is the same whichever tile asks for it.
            seed: noise seed of the whole raster.

        Returns:
            float32 (B, bands, H, W) model values in [-1, 1].
        """
        from geospade.models import one_hot

        batch, height, width = indices.shape
        with torch.inference_mode():
            labels = torch.from_numpy(indices).to(self.device)
            onehot = one_hot(labels, self.scheme.num_classes)
            noise = self.generator.make_noise(batch, height, width, seed,
                                              row_off=list(row_offs), col_off=list(col_offs),
                                              device=self.device)
            out = self.generator(onehot, noise)
            result = out.float().cpu().numpy()
        self.forward_calls += 1
        self.tiles_generated += batch
        return result


def random_model(scheme, imagery, *, preset: str = "tiny", chip_size: int = 64,
                 resolution: tuple[float, float] | None = (1.0, 1.0),
                 crs_units: str | None = "metre", seed: int = 0,
                 device: str | torch.device = "cpu", **overrides) -> LoadedModel:
    """An untrained generator with a complete model card, for tests and benchmarks.

    Its batch-norm running statistics come from a few training-mode passes over random
    label maps, so it behaves like a trained model in eval mode (no per-tile statistics).

    Args:
        scheme: class scheme of the card.
        imagery: ImageryInfo of the output bands.
        preset: model preset ("tiny", "cpu", "paper").
        chip_size: chip size recorded in the card (and used for the warm-up passes).
        resolution, crs_units: training resolution and unit recorded in the card.
        seed: torch seed of the initial weights.
        device: where the generator runs.
        **overrides: ModelConfig fields.
    """
    from geospade.models import build_generator, model_config, one_hot

    cfg = model_config(preset, scheme.num_classes, imagery.count, **overrides)
    torch.manual_seed(seed)
    generator = build_generator(cfg)
    _vivid_init(generator)
    generator.train()
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for _ in range(3):
            # Blocky random label maps: like land cover, classes come in patches.
            coarse = rng.integers(0, scheme.num_classes, (2, chip_size // 8, chip_size // 8))
            labels = torch.from_numpy(coarse.repeat(8, axis=1).repeat(8, axis=2))
            generator(one_hot(labels, scheme.num_classes))
    card = ModelCard(cfg.to_dict(), scheme, imagery, chip_size, resolution=resolution,
                     crs_units=crs_units)
    return LoadedModel(generator.eval().to(resolve_device(device)), card,
                       resolve_device(device))


def _vivid_init(generator: torch.nn.Module) -> None:
    """Unit-gain weights: training's small initial gain makes an untrained generator's output
    a flat grey, which would hide any seam a test or benchmark is meant to reveal."""
    for module in generator.modules():
        if isinstance(module, torch.nn.Conv2d):
            parametrized = getattr(module, "parametrizations", None)
            weight = parametrized.weight.original if parametrized is not None else module.weight
            with torch.no_grad():
                torch.nn.init.xavier_normal_(weight, gain=1.0)
                if module.bias is not None:
                    torch.nn.init.normal_(module.bias, std=0.1)


def save_model(model: LoadedModel, path: str | Path) -> Path:
    """Write a :class:`LoadedModel` as a checkpoint synthesis can load (generator + card)."""
    from geospade.checkpoint import save_checkpoint

    state = {k: v.detach().cpu() for k, v in model.generator.state_dict().items()}
    return save_checkpoint(path, model.card, {"generator": state, "generator_ema": state,
                                               "step": model.card.step})
