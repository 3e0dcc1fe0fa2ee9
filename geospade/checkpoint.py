"""The checkpoint: model weights plus everything synthesis needs to use them.

A checkpoint is one ``torch.save`` file holding the training state (generator, EMA generator,
discriminator, optimisers, step, RNG state) and a :class:`ModelCard`: the model config, the
class scheme, the imagery's bands/dtype/normalisation, the chip size and the ground resolution
and CRS units of the training data. Files are written atomically (temp file + rename) so a
crash never leaves a truncated checkpoint under a real name.

Checkpoints hold only tensors and plain data (the model card is JSON-able), and are read
with ``torch.load(weights_only=True)``: loading one never runs code, and a file that would
need code to load is refused with one line.
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from geospade import __version__
from geospade.classes import ClassScheme
from geospade.errors import CheckpointError
from geospade.imagery import ImageryInfo

FORMAT = "geospade-checkpoint"
#: 2: only tensors and plain data (loads with weights_only=True); 1 held numpy objects.
VERSION = 2
REWRITE_HINT = ("geospade loads only checkpoints that need no code to read; if this one was "
                "written by an older geospade, train it again (or give its run's newer "
                "checkpoint).")


@dataclass
class ModelCard:
    """What a trained model is: enough to synthesise with it and to check inputs against it.

    Attributes:
        model_config: keyword arguments that rebuild the generator (and discriminator).
        class_scheme: raster values, names, colours and nodata the model was trained on.
        imagery: band count, dtype and value range of the training imagery.
        chip_size: training chip side in pixels.
        resolution: ground size of a pixel (x, y) in CRS units, if known.
        crs_wkt: CRS of the training data, if known.
        crs_units: linear unit of that CRS (e.g. "metre"), if known.
        step: training step the weights come from.
    """

    model_config: dict
    class_scheme: ClassScheme
    imagery: ImageryInfo
    chip_size: int
    resolution: tuple[float, float] | None = None
    crs_wkt: str | None = None
    crs_units: str | None = None
    step: int = 0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "model_config": dict(self.model_config),
            "class_scheme": self.class_scheme.to_dict(),
            "imagery": self.imagery.to_dict(),
            "chip_size": self.chip_size,
            "resolution": None if self.resolution is None else list(self.resolution),
            "crs_wkt": self.crs_wkt,
            "crs_units": self.crs_units,
            "step": self.step,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> ModelCard:
        res = data.get("resolution")
        return cls(
            model_config=dict(data["model_config"]),
            class_scheme=ClassScheme.from_dict(data["class_scheme"]),
            imagery=ImageryInfo.from_dict(data["imagery"]),
            chip_size=int(data["chip_size"]),
            resolution=None if res is None else (float(res[0]), float(res[1])),
            crs_wkt=data.get("crs_wkt"),
            crs_units=data.get("crs_units"),
            step=int(data.get("step", 0)),
            extra=dict(data.get("extra", {})),
        )


def save_checkpoint(path: str | Path, card: ModelCard, state: Mapping[str, Any]) -> Path:
    """Write ``state`` (weights, optimisers, step, RNG...) and ``card`` to ``path`` atomically.

    ``state`` must hold only tensors and plain Python values (what ``weights_only`` loading
    accepts); the card is stored as JSON-able data.
    """
    from geospade.raster import atomic_file

    path = Path(path)
    payload = {"format": FORMAT, "version": VERSION, "geospade_version": __version__,
               "card": plain_data(card.to_dict()), **state}
    # Through a Python file object: a full disk then raises OSError(ENOSPC).
    with atomic_file(path, overwrite=True) as tmp, open(tmp, "wb") as fh:
        torch.save(payload, fh)
    return path


def save_generator(path: str | Path, card: ModelCard, generator_state: Mapping[str, Any],
                   *, half: bool = False) -> Path:
    """Write a slim inference checkpoint: the (EMA) generator's weights and the model card.

    No discriminator, optimisers or RNG state: about a quarter of a training checkpoint, or
    an eighth with ``half`` (floating-point weights stored as float16; synthesis loads them
    back into float32). Synthesis, evaluation and export-model read it like any checkpoint;
    training cannot resume from it.
    """
    state = {key: _stored(value, half) for key, value in generator_state.items()}
    return save_checkpoint(path, card, {"generator_ema": state, "step": card.step,
                                        "inference_only": True,
                                        "precision": "float16" if half else "float32"})


def _stored(tensor: torch.Tensor, half: bool) -> torch.Tensor:
    tensor = tensor.detach().cpu()
    return tensor.half() if half and tensor.is_floating_point() else tensor


def slim_checkpoint(source: str | Path, out: str | Path, *, half: bool = False,
                    overwrite: bool = False) -> Path:
    """Write the slim inference checkpoint (:func:`save_generator`) of a training checkpoint
    or run folder to ``out``."""
    from geospade.raster import check_not_input, check_output_file

    out = check_output_file(out, overwrite)
    check_not_input([out], {"checkpoint": checkpoint_input(source)})
    payload = load_checkpoint(source)
    state = payload.get("generator_ema") or payload.get("generator")
    if state is None:
        raise CheckpointError("checkpoint holds no generator weights", path=source,
                              hint="Give a checkpoint written by geospade train.")
    return save_generator(out, read_card(payload), state, half=half)


def plain_data(value: Any) -> Any:
    """``value`` as JSON would give it back (TypeError if it holds anything else)."""
    return json.loads(json.dumps(value))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`; CheckpointError if it is not one.

    Nothing in the file is executed: it is read with ``torch.load(weights_only=True)``, and a
    file that needs Python code to load is refused as not a safe geospade checkpoint.
    A run folder is accepted too: its ``checkpoints/latest.pt`` is read.
    """
    path = resolve_checkpoint_path(path)
    payload = safe_load(path, "geospade checkpoint", map_location=map_location,
                        hint="Give a .pt file written by geospade train.",
                        code_hint=REWRITE_HINT)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError("not a geospade checkpoint", path=path,
                              hint="Give a .pt file written by geospade train.")
    version = payload.get("version", 0)
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(
            f"checkpoint format version {version} is newer than this geospade "
            f"understands ({VERSION})", path=path, hint="Upgrade geospade.")
    if not isinstance(payload.get("card"), dict):
        raise CheckpointError("checkpoint has no model card", path=path, hint=REWRITE_HINT)
    return payload


def safe_load(path: str | Path, what: str, *, hint: str, code_hint: str | None = None,
              map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain data only, never code.

    Every failure is one CheckpointError line naming the file: a file whose pickle would
    call Python code (``os.system``, a class...) is "not a safe <what>"; a damaged or foreign
    file "cannot be read as a <what>".
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        match = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if match is None:
            raise CheckpointError(f"cannot read as a {what}: not a PyTorch file of tensors",
                                  path=path, hint=hint) from None
        raise CheckpointError(f"not a safe {what}: loading it would run Python code "
                              f"({match.group(1)}), which geospade never does", path=path,
                              hint=code_hint or hint) from None
    except Exception as exc:  # torch raises many types for a damaged or foreign file
        first_line = (str(exc).strip().splitlines() or [""])[0]
        raise CheckpointError(f"cannot read as a {what} ({exc.__class__.__name__}: "
                              f"{first_line})", path=path, hint=hint) from None


def read_card(payload: Mapping) -> ModelCard:
    """The :class:`ModelCard` of a loaded checkpoint."""
    return ModelCard.from_dict(payload["card"])


def checkpoint_input(checkpoint: Any) -> Path | None:
    """The file a checkpoint argument reads (a path or a run folder), for input/output checks;
    None for an already loaded model."""
    if isinstance(checkpoint, str | Path):
        return resolve_checkpoint_path(checkpoint)
    return None


def resolve_checkpoint_path(path: str | Path) -> Path:
    """A checkpoint file, or a run folder's latest checkpoint."""
    path = Path(path)
    if path.is_dir():
        for candidate in (path / "checkpoints" / "latest.pt", path / "latest.pt"):
            if candidate.exists():
                return candidate
        raise CheckpointError("no checkpoint in this folder", path=path,
                              hint="Give a .pt file or a run folder with checkpoints/latest.pt.")
    if not path.exists():
        raise CheckpointError("checkpoint not found", path=path, hint="Check the path.")
    return path
