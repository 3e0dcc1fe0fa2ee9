"""Training SPADE generators on chip folders: options, the training loop, logs and samples.

Typical use::

    from geospade.training import TrainConfig, train
    latest = train("chips/", "runs/demo", TrainConfig(preset="cpu", steps=2000))
"""

from geospade.training.config import TrainConfig
from geospade.training.trainer import train

__all__ = ["TrainConfig", "train"]
