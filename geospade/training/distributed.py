"""Devices and multi-process training: device choice, torchrun set-up, data sharding.

A single process is the degenerate case (rank 0 of 1), so the trainer has one code path.
Under ``torchrun`` (``WORLD_SIZE`` > 1) each process joins the process group (NCCL on CUDA,
gloo on CPU), trains on its own shard of every epoch, and only rank 0 writes files.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler

from geospade.device import resolve_device


@dataclass(frozen=True)
class Process:
    """This process's place in the run.

    Args:
        rank: global rank (0 writes checkpoints, logs and samples).
        world_size: number of processes.
        local_rank: rank on this machine (selects the GPU).
        device: the device this process computes on.
        owns_group: the process group was created by :func:`start` (and is ended by
            :func:`stop`), not by the caller.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def select_device(spec: str = "auto", local_rank: int = 0) -> torch.device:
    """The training device (see :func:`geospade.device.resolve_device`)."""
    return resolve_device(spec, local_rank)


def start(device_spec: str = "auto") -> Process:
    """Join the torchrun process group if launched by torchrun; pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = select_device(device_spec, local_rank)
    owns_group = world_size > 1 and not dist.is_initialized()
    if owns_group:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Process(rank, world_size, local_rank, device, owns_group)


def stop(process: Process) -> None:
    """Leave the process group if :func:`start` created it."""
    if process.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(process: Process) -> None:
    """Wait for every process (no-op for a single process)."""
    if process.distributed:
        dist.barrier()


def all_true(flag: bool, process: Process) -> bool:
    """True only if ``flag`` is True on every process (so all ranks take the same branch)."""
    if not process.distributed:
        return flag
    value = torch.tensor([1 if flag else 0], device=process.device)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item())


def gather_objects(obj: Any, process: Process) -> list:
    """Every rank's ``obj``, in rank order, on every process."""
    if not process.distributed:
        return [obj]
    out: list = [None] * process.world_size
    dist.all_gather_object(out, obj)
    return out


def epoch_order(num_items: int, seed: int, epoch: int, rank: int = 0,
                world_size: int = 1) -> list[int]:
    """This rank's chip indices for ``epoch``: a pure function of (seed, epoch).

    torch's :class:`~torch.utils.data.DistributedSampler` after ``set_epoch(epoch)``: one
    shuffled permutation per epoch, padded by wrapping around to a multiple of
    ``world_size``, rank ``r`` taking items r, r+W, ... Built afresh for each epoch, it keeps
    no state, so a resumed run skips exactly the items already consumed. The sampler's seed
    is ``seed * 1_000_003`` so that orders match those of runs started before it was used.
    """
    # The sampler only asks the dataset for its length: a range of the chip indices does.
    items = cast(Dataset, range(num_items))
    sampler: DistributedSampler[int] = DistributedSampler(
        items, num_replicas=world_size, rank=rank, shuffle=True, seed=seed * 1_000_003,
        drop_last=False)
    sampler.set_epoch(epoch)
    return list(sampler)


def rng_state() -> dict:
    """Every random-number generator this process uses (restored on resume).

    Only tensors and plain Python values, so a checkpoint holding it loads with
    ``torch.load(weights_only=True)``: numpy's key array travels as a tensor.
    """
    legacy = np.random.get_state(legacy=True)
    if not isinstance(legacy, tuple):  # numpy's global generator is always MT19937
        raise RuntimeError(f"numpy's global random state is not MT19937: {legacy['bit_generator']}")
    name, key, pos, has_gauss, cached = legacy
    state = {"torch": torch.get_rng_state(),
             "numpy": {"bit_generator": str(name), "key": torch.from_numpy(key.astype(np.int64)),
                       "pos": int(pos), "has_gauss": int(has_gauss),
                       "cached_gaussian": float(cached)},
             "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    saved = state["numpy"]
    np.random.set_state((saved["bit_generator"], saved["key"].numpy().astype(np.uint32),
                         saved["pos"], saved["has_gauss"], saved["cached_gaussian"]))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and Python's random."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
