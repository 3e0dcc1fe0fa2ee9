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
from typing import TYPE_CHECKING

import numpy as np
import torch

from geospade.checkpoint import ModelCard, load_checkpoint, read_card
from geospade.device import resolve_device
from geospade.errors import CheckpointError

if TYPE_CHECKING:
    from geospade.models.generator import SpadeGenerator

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

    generator: SpadeGenerator
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
        return int(self.generator.downsampling_factor)

    @property
    def receptive_field(self) -> int:
        """The generator's receptive field in pixels."""
        return int(self.generator.receptive_field)

    @property
    def default_halo(self) -> int:
        """The context a synthesis tile reads on each side unless told otherwise
        (:func:`~geospade.synthesis.plan.default_halo` of this generator)."""
        from geospade.synthesis.plan import default_halo

        return default_halo(self.downsampling_factor, self.receptive_field,
                            int(self.generator.field_reach))

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


def save_model(model: LoadedModel, path: str | Path) -> Path:
    """Write a :class:`LoadedModel` as a checkpoint synthesis can load (generator + card)."""
    from geospade.checkpoint import save_checkpoint

    state = {k: v.detach().cpu() for k, v in model.generator.state_dict().items()}
    return save_checkpoint(path, model.card, {"generator": state, "generator_ema": state,
                                               "step": model.card.step})
