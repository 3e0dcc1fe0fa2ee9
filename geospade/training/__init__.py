"""Training SPADE generators on chip folders: options, the training loop, logs and samples.

Typical use::

    from geospade.training import TrainConfig, train
    latest = train("chips/", "runs/demo", TrainConfig(preset="cpu", steps=2000))

``train`` is imported on first use, so reading :class:`TrainConfig` (as ``geospade train
--help`` does) does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from geospade.training.config import TrainConfig

if TYPE_CHECKING:
    from geospade.training.trainer import train

__all__ = ["TrainConfig", "train"]


def __getattr__(name: str) -> Any:
    if name == "train":
        from geospade.training.trainer import train

        return train
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
