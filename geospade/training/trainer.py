"""The SPADE training loop: one function, read top to bottom.

Each step: a discriminator step (real chips vs generated ones), a generator step, then the
moving average (EMA) of the generator's weights, which is what synthesis uses. What each step
minimises is the objective's business (:mod:`geospade.training.loss`); what a checkpoint
restores is a :class:`TrainingState`; checkpoints, samples and metrics hang off step counters
(:class:`RunWriter`, :class:`LossMeter`). Runs as one process or as one of many under ``torchrun``.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from geospade.checkpoint import ModelCard, load_checkpoint, save_checkpoint, save_generator
from geospade.chips.dataset import ChipDataset, decoded_in_memory
from geospade.errors import CheckpointError, InputError, OutputExistsError, TrainingDivergedError
from geospade.models import (
    ModelConfig,
    SpadeGenerator,
    build_discriminator,
    build_generator,
    model_config,
    one_hot,
    recompute_batchnorm_stats,
)
from geospade.preview import write_png
from geospade.progress import ProgressArg, progress_bar
from geospade.raster import (
    check_not_input,
    check_writable,
    output_exists,
    partial_prefix,
    remove_stale_partials,
)
from geospade.training import distributed
from geospade.training.config import TrainConfig
from geospade.training.distributed import Process
from geospade.training.logs import MetricsLog, require_tensorboard
from geospade.training.loss import DISCRIMINATOR_OF, Batch, LossTerms, build_objective
from geospade.training.visuals import sample_grid

#: The slim inference checkpoint beside latest.pt (EMA generator and model card only).
GENERATOR_FILE = "generator.pt"
# What a run folder holds; --overwrite removes exactly these.
RUN_ENTRIES = ("config.yaml", "checkpoints", "samples", "metrics.jsonl", "metrics.csv",
               "tensorboard")
StepCallback = Callable[[int, dict], None]
log_message = logging.getLogger(__name__)
T = TypeVar("T")


def train(
    chips_dir: str | Path | Sequence[str | Path],
    run_dir: str | Path,
    config: TrainConfig | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: ProgressArg = True,
    callback: StepCallback | None = None,
) -> Path:
    """Train a SPADE generator on chip folders; returns the path of the latest checkpoint.

    Class scheme, band count and value ranges come from the chip folders' metadata. Under
    ``torchrun`` every process calls this function; only rank 0 writes files.

    Args:
        chips_dir: a geospade or ArcGIS Pro Classified_Tiles chip folder, or several: merged
            into one dataset, class schemes reconciled by value (``config.classes``
            overrides), value ranges combined (see
            :func:`~geospade.chips.folder.read_chip_folders`).
        run_dir: where config.yaml, checkpoints/, samples/ and metrics go.
        config: training options; None = defaults, or the run's own options with ``resume``.
        resume: continue from ``run_dir/checkpoints/latest.pt`` (bit for bit on the same
            hardware); raise the step or epoch count in ``config`` to train further.
        overwrite: start afresh in a ``run_dir`` that already holds a run.
        progress: progress bar (True), silence (False) or a callback(done, total, message).
        callback: called after every step on every process as ``callback(step, info)``,
            info holding the losses, the (unwrapped) generator, discriminator and EMA
            generator, this process's rank and the dataset indices of the step's chips:
            for notebooks and tests.

    Raises:
        OutputExistsError: ``run_dir`` holds a run and neither ``resume`` nor ``overwrite``.
        CheckpointError: ``resume`` without a checkpoint, or one from other data or model.
        TrainingDivergedError: a loss became NaN or infinite; the last checkpoint is kept.
        InputError: unusable chips or options.
        KeyboardInterrupt: Ctrl-C in a single-process run, raised once the step in progress
            has finished and latest.pt has been written (``resume`` continues from it).
    """
    run_dir = Path(run_dir)
    if config is None and resume and (run_dir / "config.yaml").exists():
        config = TrainConfig.from_yaml(run_dir / "config.yaml")  # the run's own options
    folders = ([Path(chips_dir)] if isinstance(chips_dir, (str, Path))
               else [Path(p) for p in chips_dir])
    check_run_inputs(folders, run_dir, config)
    process = distributed.start((config or TrainConfig()).device)
    try:
        return _train(folders, run_dir, config, resume, overwrite, progress, callback,
                      process)
    finally:
        distributed.stop(process)


def _train(chips_dirs: list[Path], run_dir: Path, config: TrainConfig | None, resume: bool,
           overwrite: bool, progress: ProgressArg, callback: StepCallback | None,
           process: Process) -> Path:
    # ---- where we start from: a fresh run folder or the latest checkpoint -------------------
    checkpoint = prepare_run_dir(run_dir, resume, overwrite, process)
    if config is None:
        config = (TrainConfig.from_dict(checkpoint["train_config"]) if checkpoint
                  else TrainConfig())
    config = config.validate().resolved()  # options left to the preset: its recipe
    if config.tensorboard:
        require_tensorboard()  # on every process: a rank-0-only error would hang the others
    device = process.device

    # ---- data: the class scheme and imagery scaling come from the chips' metadata ----------
    chips_dir = chips_dirs[0]  # named in messages about the chips as a whole
    train_set = ChipDataset(chips_dirs if len(chips_dirs) > 1 else chips_dir, "train",
                            augment=config.augment, seed=config.seed,
                            class_scheme=config.classes, map_unknown=config.map_unknown)
    if not config.workers:  # the loader reads in this process: decode each chip only once
        train_set = decoded_in_memory(train_set)
    steps_per_epoch = count_steps_per_epoch(len(train_set), recipe_value(config.batch_size),
                                            process.world_size, chips_dir)
    total_steps = config.total_steps(steps_per_epoch)

    # ---- models, optimisers and the objective (same initial weights on every process) ------
    distributed.seed_everything(config.seed)
    state, mcfg = build_state(train_set, config, device, chips_dir)
    objective = build_objective(config, mcfg.num_classes, device)
    amp_dtype = autocast_dtype(config, device)
    card = model_card(mcfg, train_set, chips_dirs, device, amp_dtype, process)
    if checkpoint is not None:
        check_resumable(checkpoint, card, run_dir)
        state.load(checkpoint, config)
        if state.step >= total_steps and process.is_main:
            log_message.warning("%s is already at step %d of %d: nothing to train; raise the "
                                "step or epoch count to continue", run_dir, state.step,
                                total_steps)
        rng = checkpoint["rng"]
        if len(rng) == process.world_size:
            distributed.set_rng_state(rng[process.rank])
        else:  # another process count: the data order is another one anyway
            distributed.seed_everything(config.seed + 7919 * process.rank + state.step)
    else:
        # Different noise and dropout per process, from here on.
        distributed.seed_everything(config.seed + 7919 * process.rank)
    memory_format = place_models(state, config, device, process)

    # ---- run folder files (rank 0 writes them) -----------------------------------------------
    writer = RunWriter(run_dir, card, config, total_steps, steps_per_epoch,
                       sample_chips=fixed_sample_chips(train_set, config),
                       bn_batches=fixed_bn_batches(train_set, config), process=process)
    log = writer.open_log(resumed=checkpoint is not None, step=state.step)

    # ---- the loop ------------------------------------------------------------------------------
    start_step = state.step
    batches = training_batches(train_set, config, start_step, steps_per_epoch, process)
    bar = progress_bar(progress if process.is_main else False, total=total_steps,
                       initial=start_step, desc="train", unit="step")
    autocast = torch.autocast(device.type, dtype=amp_dtype or torch.bfloat16,
                              enabled=amp_dtype is not None)
    meter = LossMeter(start_step, recipe_value(config.batch_size) * process.world_size)
    interrupted = GracefulInterrupt(process)
    generator, discriminator = state.generator, state.discriminator
    d_net, scaler = state.d_net, state.scaler
    try:
        for step in range(start_step + 1, total_steps + 1):
            data = next(batches)
            labels = data["label"].to(device, non_blocking=True)
            real = data["image"].to(device, non_blocking=True)
            batch = Batch(labels=labels, real=real.contiguous(memory_format=memory_format),
                          onehot=one_hot(labels, mcfg.num_classes)
                          .contiguous(memory_format=memory_format))
            generator.train()
            discriminator.train()

            # 1. Discriminator: real chips vs generated ones (detached: G is not updated here).
            with autocast:
                fake = generator(batch.onehot)
                terms_d = objective.discriminator_loss(discriminator, batch, fake.detach())
            check_finite(step, {"discriminator": terms_d["loss_d"]}, process, writer.latest)
            state.optimizer_d.zero_grad(set_to_none=True)
            scaler.scale(terms_d["loss_d"]).backward()
            scaler.step(state.optimizer_d)

            # 2. Generator: the objective's generator terms against the updated D. D's own
            #    weights get no gradient here (and, unwrapped, no DDP synchronisation).
            d_net.requires_grad_(False)
            with autocast:
                terms_g = objective.generator_loss(d_net, batch, fake)
            d_net.requires_grad_(True)
            check_finite(step, {"generator": terms_g["loss_g"]}, process, writer.latest)
            state.optimizer_g.zero_grad(set_to_none=True)
            scaler.scale(terms_g["loss_g"]).backward()
            scaler.step(state.optimizer_g)
            scaler.update()

            # 3. Moving average of the generator's weights: what synthesis uses.
            update_ema(state.generator_ema, state.g_net, ema_decay_at(step, config.ema_decay))
            state.step = step

            # 4. Bookkeeping: metrics, progress, checkpoints and samples.
            losses = {**terms_d, **terms_g}
            meter.add(losses)
            bar.update(1)
            if step % config.log_every == 0 or step == total_steps:
                row = meter.row(step, steps_per_epoch)
                bar.set_postfix(d=f"{row['loss_d']:.3f}", g=f"{row['loss_g']:.3f}",
                                img_s=f"{row['img_per_s']:.1f}")
                if log is not None:
                    log.write(step, row)
            if callback is not None:
                callback(step, {"losses": {k: v.item() for k, v in losses.items()},
                                "generator": state.g_net, "discriminator": d_net,
                                "generator_ema": state.generator_ema, "rank": process.rank,
                                "chips": data["index"].tolist()})
            if writer.due(step):
                with meter.paused():  # img/s counts training time only
                    writer.save(state)
            if interrupted.is_set():  # Ctrl-C during the step: stop at its end, resumable
                writer.save(state, stopping=True)
                raise KeyboardInterrupt
    finally:
        interrupted.restore()
        bar.close()
        if log is not None:
            log.close()
    return writer.latest


# ---- the training state -------------------------------------------------------------------------


@dataclass
class TrainingState:
    """What a checkpoint saves and a resumed run restores: networks, optimisers, the step.

    ``generator`` and ``discriminator`` are the networks the loop calls (DDP-wrapped under
    torchrun); ``g_net`` and ``d_net`` are the networks inside.
    """

    generator: nn.Module
    discriminator: nn.Module
    generator_ema: SpadeGenerator
    optimizer_g: torch.optim.Optimizer
    optimizer_d: torch.optim.Optimizer
    scaler: Any
    step: int = 0

    @property
    def g_net(self) -> nn.Module:
        return unwrap(self.generator)

    @property
    def d_net(self) -> nn.Module:
        return unwrap(self.discriminator)

    def state_dict(self) -> dict[str, Any]:
        """The tensors and step, under the checkpoint's keys."""
        return {"generator": self.g_net.state_dict(),
                "generator_ema": self.generator_ema.state_dict(),
                "discriminator": self.d_net.state_dict(),
                "optimizer_g": self.optimizer_g.state_dict(),
                "optimizer_d": self.optimizer_d.state_dict(),
                "grad_scaler": self.scaler.state_dict(), "step": self.step}

    def load(self, checkpoint: dict, config: TrainConfig) -> None:
        """Restore from a checkpoint; the learning rates are ``config``'s (they may change)."""
        self.g_net.load_state_dict(checkpoint["generator"])
        self.d_net.load_state_dict(checkpoint["discriminator"])
        self.generator_ema.load_state_dict(checkpoint["generator_ema"])
        self.optimizer_g.load_state_dict(checkpoint["optimizer_g"])
        self.optimizer_d.load_state_dict(checkpoint["optimizer_d"])
        if checkpoint.get("grad_scaler"):  # empty when saved without fp16 scaling
            self.scaler.load_state_dict(checkpoint["grad_scaler"])
        for optimizer, lr in ((self.optimizer_g, recipe_value(config.lr_g)),
                              (self.optimizer_d, config.lr_d)):
            for group in optimizer.param_groups:
                group["lr"] = lr
        self.step = int(checkpoint["step"])


def build_state(train_set: ChipDataset, config: TrainConfig, device: torch.device,
                chips_dir: Path) -> tuple[TrainingState, ModelConfig]:
    """Fresh networks and optimisers for the chips' classes and bands, at step 0."""
    folder, scheme, imagery = train_set.folder, train_set.class_scheme, train_set.imagery
    mcfg = model_config(config.preset, scheme.num_classes, imagery.count,
                        **model_options(config))
    check_chip_size(folder.tile_size, mcfg.downsampling_factor, chips_dir, config.preset)
    generator = build_generator(mcfg)
    generator.to(device)  # in place: keeps the SpadeGenerator type the EMA copy needs
    discriminator = build_discriminator(mcfg).to(device)
    generator_ema = copy.deepcopy(generator).eval().requires_grad_(False)
    betas = (config.beta1, config.beta2)
    optimizer_g = torch.optim.Adam(generator.parameters(), lr=recipe_value(config.lr_g),
                                   betas=betas)
    optimizer_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr_d, betas=betas)
    scaler = grad_scaler(device, enabled=autocast_dtype(config, device) == torch.float16)
    return TrainingState(generator, discriminator, generator_ema, optimizer_g, optimizer_d,
                         scaler), mcfg


def model_options(config: TrainConfig) -> dict[str, Any]:
    """The model-config overrides of a run: ``config.model`` plus the objective's discriminator."""
    wanted = DISCRIMINATOR_OF[recipe_value(config.objective)]
    given = config.model.get("discriminator", wanted)
    if given != wanted:
        raise InputError(f"model discriminator={given} does not fit objective={config.objective}, "
                         f"which trains a '{wanted}' discriminator",
                         hint="Leave the discriminator out of --model: the objective picks it.")
    return {**config.model, "discriminator": wanted}


def place_models(state: TrainingState, config: TrainConfig, device: torch.device,
                 process: Process) -> torch.memory_format:
    """Memory format and, under torchrun, DDP wrappers; returns the format for the batches."""
    channels_last = (config.channels_last if config.channels_last is not None
                     else device.type == "cuda")
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    # Module.to takes memory_format; torch's type stubs leave it out.
    state.generator.to(memory_format=memory_format)  # type: ignore[call-overload]
    state.discriminator.to(memory_format=memory_format)  # type: ignore[call-overload]
    if process.distributed:
        generator = state.generator
        if device.type == "cuda":  # SyncBatchNorm has no CPU kernels: gloo runs keep BatchNorm
            generator = nn.SyncBatchNorm.convert_sync_batchnorm(generator)
        ids = [device.index] if device.type == "cuda" else None
        state.generator = DistributedDataParallel(generator, device_ids=ids)
        state.discriminator = DistributedDataParallel(state.discriminator, device_ids=ids)
    return memory_format


def model_card(mcfg: ModelConfig, train_set: ChipDataset, chips_dirs: list[Path],
               device: torch.device, amp_dtype: torch.dtype | None,
               process: Process) -> ModelCard:
    """The card every checkpoint of the run carries (its step is set at each save)."""
    folder = train_set.folder
    return ModelCard(model_config=mcfg.to_dict(), class_scheme=train_set.class_scheme,
                     imagery=train_set.imagery, chip_size=folder.tile_size,
                     resolution=folder.resolution, crs_wkt=folder.crs_wkt,
                     crs_units=folder.crs_units,
                     extra={"chips_dir": str(chips_dirs[0].resolve()),
                            "chips_dirs": [str(p.resolve()) for p in chips_dirs],
                            "device": str(device),
                            "precision": str(amp_dtype or torch.float32).removeprefix("torch."),
                            "world_size": process.world_size})


class LossMeter:
    """Averages the loss terms between metrics lines and times the training for img/s."""

    def __init__(self, step: int, images_per_step: int):
        self.images_per_step = images_per_step
        self.sums: dict[str, torch.Tensor] = {}
        self.logged_at, self.clock = step, time.perf_counter()

    def add(self, losses: LossTerms) -> None:
        for key, value in losses.items():
            self.sums[key] = self.sums.get(key, 0.0) + value.detach().float()

    def row(self, step: int, steps_per_epoch: int) -> dict[str, float]:
        """The metrics line for ``step``: mean losses since the last line, img/s, epoch."""
        now = time.perf_counter()
        done = step - self.logged_at
        row = {k: (v / done).item() for k, v in self.sums.items()}
        row["img_per_s"] = done * self.images_per_step / (now - self.clock)
        row["epoch"] = (step - 1) // steps_per_epoch
        self.sums, self.logged_at, self.clock = {}, step, now
        return row

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Time spent inside does not count as training time."""
        since = time.perf_counter()
        try:
            yield
        finally:
            self.clock += time.perf_counter() - since


@dataclass
class RunWriter:
    """Checkpoints, sample grids and the metrics log of a run (only rank 0 writes files).

    Attributes:
        run_dir: the run folder.
        card: the model card (its step is set at each save).
        config: the run's options (stored in each checkpoint).
        total_steps, steps_per_epoch: the run's length.
        sample_chips: fixed chips shown in every sample grid.
        bn_batches: fixed label batches for the EMA generator's batch-norm statistics.
        process: this process (rank, world size).
    """

    run_dir: Path
    card: ModelCard
    config: TrainConfig
    total_steps: int
    steps_per_epoch: int
    sample_chips: dict
    bn_batches: list[torch.Tensor]
    process: Process

    @property
    def latest(self) -> Path:
        return self.run_dir / "checkpoints" / "latest.pt"

    def open_log(self, resumed: bool, step: int) -> MetricsLog | None:
        """Write config.yaml and open the metrics log (None on other ranks)."""
        if not self.process.is_main:
            return None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.config.to_yaml(self.run_dir / "config.yaml")
        return MetricsLog(self.run_dir, self.config.metrics_format,
                          resume_step=step if resumed else None,
                          tensorboard=self.config.tensorboard)

    def due(self, step: int) -> bool:
        """Whether ``step`` writes a checkpoint or a sample grid."""
        return (step % self.config.checkpoint_every == 0
                or step % self.config.sample_every == 0 or step == self.total_steps)

    def save(self, state: TrainingState, stopping: bool = False) -> None:
        """Checkpoint and sample grid of the state's step (collective: every process calls it).

        The RNG is forked: saving must not change what training draws next. ``stopping``:
        the user interrupted; write latest.pt so --resume continues from here.
        """
        with torch.random.fork_rng(devices=cuda_devices(self.process.device)):
            self._save(state, stopping)

    def _save(self, state: TrainingState, stopping: bool) -> None:
        config, step, device = self.config, state.step, self.process.device
        rng = distributed.gather_objects(distributed.rng_state(), self.process)
        if not self.process.is_main:
            return
        num_classes = self.card.class_scheme.num_classes
        refresh_ema_batchnorm(state.generator_ema, self.bn_batches, num_classes, config.seed,
                              device)
        if step % config.sample_every == 0 or step == self.total_steps:
            write_samples(self.run_dir / "samples" / f"step_{step:06d}.png",
                          state.generator_ema, self.sample_chips, self.card.class_scheme,
                          num_classes, config.seed, device)
        if step % config.checkpoint_every == 0 or step == self.total_steps or stopping:
            write_checkpoint(self.run_dir, self.card, state, rng, config, self.steps_per_epoch,
                             self.process.world_size)


def write_checkpoint(run_dir: Path, card: ModelCard, state: TrainingState, rng: list,
                     config: TrainConfig, steps_per_epoch: int, world_size: int) -> Path:
    """Write checkpoints/latest.pt for the state's step (+ step_NNNNNN.pt when periodic)."""
    step = state.step
    card.step = step
    latest = run_dir / "checkpoints" / "latest.pt"
    save_checkpoint(latest, card, {**state.state_dict(), "epoch": step // steps_per_epoch,
                                   "rng": rng, "world_size": world_size,
                                   "train_config": config.to_dict()})
    save_generator(latest.with_name(GENERATOR_FILE), card, state.generator_ema.state_dict())
    if step % config.checkpoint_every == 0:
        link_or_copy(latest, run_dir / "checkpoints" / f"step_{step:06d}.pt")
        prune_checkpoints(latest.parent, config.keep_checkpoints)
    return latest


class GracefulInterrupt:
    """Turn the first Ctrl-C of a single-process run into "stop after this step".

    The step in progress finishes, latest.pt is written and KeyboardInterrupt is raised, so
    ``--resume`` continues exactly there. A second Ctrl-C interrupts at once. Under torchrun
    (and outside the main thread) Ctrl-C keeps its usual meaning.
    """

    def __init__(self, process: Process):
        self._event = threading.Event()
        self._previous = None
        if not process.distributed and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame) -> None:
        if self._event.is_set():
            raise KeyboardInterrupt
        self._event.set()
        log_message.warning("stopping after this step; checkpoints/latest.pt will let "
                            "--resume continue from it (Ctrl-C again to stop at once)")

    def is_set(self) -> bool:
        return self._event.is_set()

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


# ---- run folder ---------------------------------------------------------------------------------


def prepare_run_dir(run_dir: Path, resume: bool, overwrite: bool, process: Process) -> dict | None:
    """The checkpoint to resume from (None for a new run), after checking ``run_dir``.

    Every process checks the same files, so they all raise the same error.
    """
    latest = run_dir / "checkpoints" / "latest.pt"
    if resume:
        if not latest.exists():
            raise CheckpointError("nothing to resume: no checkpoints/latest.pt", path=run_dir,
                                  hint="Start a new run without --resume.")
        return load_checkpoint(latest, map_location="cpu")
    has_run = output_exists(run_dir)
    if has_run and not overwrite:
        raise OutputExistsError("run folder is not empty", path=run_dir,
                                hint="Pass --resume to continue this run, --overwrite to start "
                                     "it again, or choose another folder.")
    if has_run and process.is_main:
        if not run_dir.is_dir():
            raise OutputExistsError("run folder is a file", path=run_dir,
                                    hint="Choose a folder for the run.")
        for name in RUN_ENTRIES:
            entry = run_dir / name
            if entry.is_dir():
                shutil.rmtree(entry)
            elif entry.exists():
                entry.unlink()
    distributed.barrier(process)
    return None


def check_run_inputs(chips_dirs: list[Path], run_dir: Path, config: TrainConfig | None) -> None:
    """InputError when the run would write over its chip folders or VGG weights."""
    if run_dir.exists() and not run_dir.is_dir():
        raise OutputExistsError("the run folder is a file", path=run_dir,
                                hint="Give a folder for the run (it is created if needed).")
    check_writable(run_dir / "checkpoints")
    if any(folder.resolve() == run_dir.resolve() for folder in chips_dirs):
        raise InputError("the run folder is the chip folder", path=run_dir,
                         hint="Give the run its own folder.")
    vgg = config.vgg_weights if config is not None else None
    check_not_input([run_dir / name for name in RUN_ENTRIES],
                    {"chip folder": chips_dirs, "VGG19 weights": vgg})


def check_resumable(checkpoint: dict, card: ModelCard, run_dir: Path) -> None:
    """CheckpointError when the checkpoint's model or classes differ from this run's."""
    saved = checkpoint["card"]
    saved_model = ModelConfig.from_dict(saved["model_config"]).to_dict()  # older: defaults
    if saved_model != card.model_config:
        changed = sorted(k for k in card.model_config if saved_model.get(k) != card.model_config[k])
        raise CheckpointError(f"the run's model differs from this one in {changed}", path=run_dir,
                              hint="Resume with the run's own preset and model options.")
    if saved["class_scheme"] != card.class_scheme.to_dict():
        raise CheckpointError("the run was trained on another class scheme than these chips'",
                              path=run_dir, hint="Resume on the chips the run started with.")


def prune_checkpoints(folder: Path, keep: int) -> list[Path]:
    """Delete all but the ``keep`` newest ``step_NNNNNN.pt`` of a run; returns the deleted."""
    steps = sorted(folder.glob("step_*.pt"), key=_checkpoint_step)
    old = steps[:-keep] if keep > 0 else steps
    for path in old:
        path.unlink(missing_ok=True)
    return old


def _checkpoint_step(path: Path) -> int:
    digits = path.stem.removeprefix("step_")
    return int(digits) if digits.isdigit() else -1


def link_or_copy(source: Path, target: Path) -> None:
    """Put a copy of ``source`` at ``target`` atomically (a hard link where possible)."""
    remove_stale_partials(target)
    tmp = target.with_name(f"{partial_prefix(target)}link.partial")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)


# ---- data ---------------------------------------------------------------------------------------


def recipe_value(value: T | None) -> T:
    """An option left to the preset (None), after :meth:`TrainConfig.resolved` filled it in."""
    if value is None:
        raise RuntimeError("training options are used before TrainConfig.resolved()")
    return value


def count_steps_per_epoch(num_chips: int, batch_size: int, world_size: int, chips_dir: Path) -> int:
    """Full batches per epoch on each process; InputError when there is not even one."""
    per_process = -(-num_chips // world_size)
    steps = per_process // batch_size
    if steps < 1:
        raise InputError(
            f"{num_chips} training chips make no full batch of {batch_size} on each of "
            f"{world_size} process(es)", path=chips_dir,
            hint="Lower --batch-size, or export more chips (smaller tiles or a larger area).")
    return steps


def check_chip_size(tile_size: int, factor: int, chips_dir: Path, preset: str) -> None:
    """InputError when the chips cannot go through the generator's upsampling levels."""
    if tile_size % factor:
        raise InputError(
            f"chips of {tile_size} px are not a multiple of {factor}, the size step of the "
            f"'{preset}' model", path=chips_dir,
            hint=f"Export chips of a multiple of {factor} px, or lower model num_upsampling.")


def training_batches(dataset: ChipDataset, config: TrainConfig, start_step: int,
                     steps_per_epoch: int, process: Process) -> Iterator[dict]:
    """Batches from step ``start_step`` on, endlessly: the same ones a run from 0 would see.

    The order of each epoch is a pure function of (seed, epoch) (:func:`epoch_order`), so a
    resumed run skips exactly the batches already used. The loader gets its own generator:
    creating it must not draw from the global RNG the training uses.
    """
    epoch, position = divmod(start_step, steps_per_epoch)
    batch_size = recipe_value(config.batch_size)
    per_epoch = steps_per_epoch * batch_size
    while True:
        order = distributed.epoch_order(len(dataset), config.seed, epoch, process.rank,
                                        process.world_size)[:per_epoch]
        dataset.set_epoch(epoch)
        loader = DataLoader(dataset, batch_size=batch_size,
                            sampler=order[position * batch_size:],
                            num_workers=config.workers, pin_memory=process.device.type == "cuda",
                            generator=torch.Generator().manual_seed(config.seed + epoch))
        yield from loader
        epoch, position = epoch + 1, 0


def fixed_sample_chips(train_set: ChipDataset, config: TrainConfig) -> dict:
    """The chips shown in every sample grid: the first validation chips (else training ones)."""
    try:
        chips = ChipDataset(train_set.folder, "val", class_scheme=train_set.class_scheme,
                            map_unknown=config.map_unknown)
    except InputError:  # no validation split
        chips = ChipDataset(train_set.folder, "train", class_scheme=train_set.class_scheme,
                            map_unknown=config.map_unknown)
    items = [chips[i] for i in range(min(config.num_samples, len(chips)))]
    if not items:
        return {}
    return {"label": torch.stack([it["label"] for it in items]),
            "image": torch.stack([it["image"] for it in items])}


def fixed_bn_batches(train_set: ChipDataset, config: TrainConfig) -> list[torch.Tensor]:
    """Label batches for the EMA generator's batch-norm statistics (same at every save)."""
    plain = ChipDataset(train_set.folder, "train", class_scheme=train_set.class_scheme,
                        map_unknown=config.map_unknown)
    order = torch.randperm(len(plain), generator=torch.Generator().manual_seed(config.seed))
    size = recipe_value(config.batch_size)
    batches = []
    for b in range(min(config.bn_batches, len(plain) // size)):
        idx = order[b * size:(b + 1) * size].tolist()
        batches.append(torch.stack([plain[i]["label"] for i in idx]))
    return batches


# ---- model helpers ------------------------------------------------------------------------------


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """Mixed-precision dtype (None: full precision): on by default on CUDA only."""
    enabled = config.amp if config.amp is not None else device.type == "cuda"
    if not enabled:
        return None
    if config.amp_dtype == "bf16":
        return torch.bfloat16
    if config.amp_dtype == "fp16":
        if device.type == "cpu":
            raise InputError("fp16 mixed precision is not supported on the CPU",
                             hint="Use --amp-dtype bf16 or --no-amp on the CPU.")
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if device.type == "cpu" else torch.float16


def grad_scaler(device: torch.device, enabled: bool):
    """Loss scaling for fp16 (bf16 and fp32 need none); torch < 2.3 only has the CUDA one."""
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler(device.type, enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled and device.type == "cuda")


def cuda_devices(device: torch.device) -> list[int]:
    """Devices whose RNG ``fork_rng`` must save (only the one we use)."""
    return [device.index or 0] if device.type == "cuda" else []


def ema_decay_at(step: int, decay: float) -> float:
    """EMA decay for ``step``: ramps up from 0.1 so short runs average recent weights only.

    With a constant 0.999 the average of a run of a few hundred steps would still be mostly
    the random initial weights; (1 + step) / (10 + step) is TensorFlow's warm-up rule.
    """
    return min(decay, (1.0 + step) / (10.0 + step))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema = decay * ema + (1 - decay) * model, for every weight; buffers are copied.

    Copied batch-norm statistics belong to the raw weights; they are recomputed for the EMA
    weights before every save (:func:`refresh_ema_batchnorm`).
    """
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p.detach(), 1.0 - decay)
    for buffer, b in zip(ema.buffers(), model.buffers(), strict=True):
        buffer.copy_(b)


def refresh_ema_batchnorm(generator_ema: nn.Module, batches: list[torch.Tensor],
                          num_classes: int, seed: int, device: torch.device) -> None:
    """Batch-norm statistics of the EMA weights, from fixed batches and fixed noise.

    Without batches (``bn_batches`` 0) the statistics copied from the raw weights are kept.
    """
    if not batches:
        return
    torch.manual_seed(seed)  # the caller forked the RNG; this makes the noise repeatable
    recompute_batchnorm_stats(generator_ema, [b.to(device) for b in batches])


@torch.no_grad()
def write_samples(path: Path, generator_ema: SpadeGenerator, chips: dict, scheme,
                  num_classes: int, seed: int, device: torch.device) -> None:
    """Sample grid (label colours | real | EMA generated) of the fixed chips, eval mode."""
    if not chips:
        return
    labels = chips["label"].to(device)
    batch, height, width = labels.shape
    noise = generator_ema.make_noise(batch, height, width, seed, device=device)
    generator_ema.eval()
    fake = generator_ema(one_hot(labels, num_classes), noise)
    grid = sample_grid(chips["label"], chips["image"], fake, scheme)
    write_png(path, grid.transpose(2, 0, 1), overwrite=True)


def check_finite(step: int, losses: dict[str, torch.Tensor], process: Process,
                 latest: Path) -> None:
    """TrainingDivergedError (on every process) when a loss is NaN or infinite."""
    finite = all(bool(torch.isfinite(v).all()) for v in losses.values())
    if distributed.all_true(finite, process):
        return
    values = {name: float(v.detach().float().mean()) for name, v in losses.items()}
    which = ", ".join(f"{name} loss = {v}" for name, v in values.items() if not math.isfinite(v))
    kept = (f"The last good checkpoint ({latest}) is kept" if latest.exists()
            else "No checkpoint had been written yet")
    raise TrainingDivergedError(
        f"training diverged at step {step}: {which or 'a non-finite loss on another process'}",
        path=latest.parent.parent,
        hint=f"{kept}. Lower --lr-g/--lr-d, or try --no-amp or --amp-dtype bf16, then "
             "continue with --resume.")

