"""Which torch device a command runs on: one rule for training, synthesis, evaluation and the
quickstart.

``"auto"`` means the first CUDA GPU, else Apple's MPS, else the CPU; under torchrun (or a
dask-cuda worker) "auto" and "cuda" pick the process's own GPU.
"""

from __future__ import annotations

import torch

from geospade.errors import InputError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")


def mps_available() -> bool:
    """True where this PyTorch build can use Apple's Metal GPU."""
    backend = getattr(torch.backends, "mps", None)
    return backend is not None and backend.is_available()


def resolve_device(spec: str | torch.device = "auto", local_rank: int = 0) -> torch.device:
    """The device for ``spec``.

    Args:
        spec: "auto", "cpu", "cuda", "cuda:N", "mps", or a ``torch.device``.
        local_rank: the GPU that "auto" and a bare "cuda" pick (the torchrun local rank).

    Raises:
        InputError: an unknown name, or a device this machine does not have.
    """
    if isinstance(spec, torch.device):
        return spec
    spec = str(spec).strip().lower()
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "mps" if mps_available() else "cpu"
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        if not mps_available():
            raise InputError("device 'mps' was asked for but Apple MPS is not available",
                             hint="Use --device cpu (or auto).")
        return torch.device("mps")
    if spec == "cuda" or spec.startswith("cuda:"):
        return _cuda(spec, local_rank)
    raise InputError(f"unknown device '{spec}'",
                     hint="Use auto, cpu, cuda, cuda:N (a GPU index) or mps.")


def _cuda(spec: str, local_rank: int) -> torch.device:
    if not torch.cuda.is_available():
        raise InputError(f"device '{spec}' was asked for but this PyTorch sees no CUDA GPU",
                         hint="Use --device cpu (or auto), or install a CUDA build of PyTorch.")
    text = spec.partition(":")[2]
    if text and not text.isdigit():
        raise InputError(f"device '{spec}': the GPU index must be a whole number",
                         hint="Use cuda:0, cuda:1, ...")
    index = int(text) if text else local_rank
    count = torch.cuda.device_count()
    if index >= count:
        raise InputError(f"device '{spec}': only {count} GPU(s) are visible",
                         hint="Pick an existing GPU index (nvidia-smi lists them).")
    return torch.device("cuda", index)
