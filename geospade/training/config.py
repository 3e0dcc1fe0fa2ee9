"""Training options: one dataclass that is also the YAML file format and the CLI's flags.

Every field of :class:`TrainConfig` is a key of ``--config file.yaml`` and a ``--flag`` of
``geospade train`` (underscores become dashes). Class count, band count and value ranges are
not options: they come from the chip folder's metadata. A few options default to the
preset's recipe (:data:`RECIPES`): ``geospade train CHIPS -o RUN --preset cpu`` alone is the
best CPU recipe found, ``--preset paper`` the GPU one.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from geospade.errors import InputError

DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
METRICS_FORMATS = ("jsonl", "csv")
AMP_DTYPES = ("auto", "bf16", "fp16")
OBJECTIVES = ("spade", "oasis")
DEFAULT_STEPS = 5000

#: Options that default to the model preset's recipe (None in TrainConfig = "the preset's").
#: Presets without an entry, and options a recipe leaves out, take RECIPE_FALLBACK's value.
RECIPE_FALLBACK: dict[str, Any] = {"objective": "spade", "batch_size": 4, "lr_g": 1e-4,
                                   "lambda_l1": 0.0, "lambda_moments": 0.0,
                                   "moments_per_chip": False, "lambda_variety": 0.0,
                                   "steps": DEFAULT_STEPS}
RECIPES: dict[str, dict[str, Any]] = {
    # SPADE's PatchGANs with feature matching and the class-moment loss (each class's colour
    # mean, spread and texture in the batch, generated vs real, weight 5) instead of L1, on
    # the cpu preset's generator with texture noise. Measured with
    # benchmarks/bench_quality.py at 320 s of CPU training on the demo (one run each): this
    # recipe reached texture 0.98, variety 0.81, judge mIoU ratio 0.91 and a Frechet
    # distance of 2.0, where OASIS with the same generator and loss reached texture 0.75,
    # mIoU ratio 0.68 and 15.5 (more spread and variety, 1.02 and 0.95, but peach blobs
    # across fields), and adding L1 10 gave more spread (0.92 vs 0.78) but a worse colour
    # error, judge mIoU and Frechet distance. Against the former SPADE + L1 recipe over two
    # runs on the demo (README) it had the real texture, a lower colour error and Frechet
    # distance and a judge mIoU ratio of 0.88 and 0.92 (former 0.72 and 0.51); on FLAIR
    # its colours were no better than the former's at 320 s; at 450 s it beat the former on
    # FLAIR's colour error and variety on both patches with seed 0 (with seed 1 not on
    # 076201's colour error). The field-variety loss (weight 5: each class's spread of
    # field mean colours, generated vs real) took the demo's whole-scene variety from 0.61
    # to 0.72 of the real, its colour error from 3.1 to 2.5, judge mIoU ratio from 0.95 to
    # 0.97 and Frechet distance from 0.61 to 0.10, and lowered FLAIR's colour errors (8.6
    # and 5.4 against 14.1 and 10.0), at the cost of more FLAIR texture (1.30 and 1.19
    # against 1.13 and 1.13) and Frechet distance (450 s, seed 0, docs/realism-log.md).
    # 1500 steps of 8 chips are about 450 s of CPU time (1420-1520 steps in the
    # benchmark's 450 s on the demo) and keep the quickstart within ten minutes on two
    # cores.
    "cpu": {"objective": "spade", "batch_size": 8, "steps": 1500, "lr_g": 2e-4,
            "lambda_moments": 5.0, "lambda_variety": 5.0},
    # OASIS beats SPADE on FID and mIoU on ADE20K, Cityscapes and COCO-Stuff without VGG,
    # trained for days on GPUs (not measured here).
    "paper": {"objective": "oasis"},
}


def _opt(default: Any, help: str, **extra: Any) -> Any:
    """A dataclass field whose help text is the CLI flag's help."""
    if isinstance(default, dict | list):
        return field(default_factory=lambda: type(default)(default),
                     metadata={"help": help, **extra})
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class TrainConfig:
    """Everything that controls a training run (not the data: that comes from the chips).

    Args:
        preset: model size, one of geospade.models.PRESETS ("paper", "cpu", "tiny").
        model: overrides of single model-config fields, e.g. ``{"ngf": 32}``.
        classes: class scheme overriding the chip folder's (preset name or JSON file).
        map_unknown: class value given to label values outside the scheme (default: error).
        steps: number of optimisation steps (default: the preset's recipe, else 5000, unless
            ``epochs`` is given).
        epochs: train for this many passes over the training chips instead of ``steps``.
        batch_size: chips per step on each process (per GPU under torchrun); default: the
            preset's recipe, else 4.
        objective: "spade" (multi-scale PatchGAN, hinge + feature matching [+ VGG] [+ L1])
            or "oasis" (a U-Net discriminator segmenting real chips into the classes and
            generated ones into "fake", with LabelMix; no perceptual loss needed); default:
            the preset's recipe, else "spade".
        lr_g, lr_d: Adam learning rates (two-time-scale update rule); lr_g defaults to the
            preset's recipe, else 1e-4.
        beta1, beta2: Adam betas; SPADE uses (0, 0.9).
        lambda_fm: weight of the discriminator feature-matching loss (spade).
        lambda_labelmix: weight of the LabelMix consistency loss of the discriminator (oasis).
        lambda_vgg: weight of the VGG19 perceptual loss (only with ``vgg_weights``).
        lambda_l1: weight of an L1 loss between generated and real chips (0 = off, as in the
            paper). It anchors colours quickly in short runs where no VGG19 weights are
            available; it also pulls outputs towards the mean look, so keep it small.
            Default: the preset's recipe, else 0.
        lambda_moments: weight of a class-moment loss: per class and band, the mean,
            standard deviation and texture (mean difference between neighbours) of the
            generated batch's pixels against the real batch's (pooled over the batch, so
            fields keep their own colours). Default: the preset's recipe, else 0.
        moments_per_chip: compare the class-moment loss's spread in two parts, inside the
            chips and across the chips' class means, instead of pooled over the batch
            (pixel noise inside every field then cannot stand in for field-to-field
            variety). Default: the preset's recipe, else off.
        lambda_variety: weight of a field-variety loss: per class and band, the standard
            deviation across the chips' fields (connected segments of the class) of each
            field's mean colour, generated vs real on the same fields, so fields of one
            class keep the real imagery's field-to-field differences instead of one shared
            look. Default: the preset's recipe, else 0.
        vgg_weights: file with torchvision VGG19 weights; without it no VGG loss is used.
        ema_decay: decay of the exponential moving average of the generator weights.
        bn_batches: training batches used to recompute the EMA generator's batch-norm
            statistics before each checkpoint and sample grid.
        augment: random flips and 90-degree rotations of chips (changes shadow direction).
        device: "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:N" or "mps".
        amp: mixed precision; None = on for CUDA, off elsewhere.
        amp_dtype: "auto" (bf16 where the GPU supports it, else fp16), "bf16" or "fp16".
        channels_last: channels-last memory format; None = on for CUDA.
        seed: seed of weights, data order, noise and augmentation.
        workers: data-loading worker processes.
        checkpoint_every: write checkpoints/step_NNNNNN.pt every this many steps.
        keep_checkpoints: how many of the newest step_NNNNNN.pt files to keep (older ones are
            deleted: the paper preset's are 1.5 GB each); latest.pt and generator.pt stay.
        sample_every: write samples/step_NNNNNN.png every this many steps.
        log_every: write a metrics line every this many steps.
        num_samples: validation chips shown in each sample grid.
        metrics_format: "jsonl" or "csv".
        tensorboard: also write TensorBoard event files (needs the tensorboard package).
    """

    preset: str = _opt("cpu", "model size: cpu (trains on a laptop CPU), paper (the published "
                       "size, for GPUs) or tiny", metavar="NAME")
    model: dict = _opt({}, "override one model-config field, e.g. ngf=32 (repeatable)",
                       metavar="KEY=VALUE")
    classes: str | None = _opt(None, "class scheme overriding the chips' own: preset name or "
                               "JSON file", metavar="SCHEME")
    map_unknown: int | None = _opt(None, "class value for label values outside the class scheme",
                               metavar="VALUE")
    steps: int | None = _opt(None, "optimisation steps (default: the preset's recipe, else "
                             f"{DEFAULT_STEPS}, unless --epochs)")
    epochs: int | None = _opt(None, "passes over the training chips (instead of --steps)")
    batch_size: int | None = _opt(None, "chips per step on each process (per GPU under "
                                  "torchrun; default: the preset's recipe)")
    objective: str | None = _opt(None, "spade (PatchGAN: hinge + feature matching [+ VGG] [+ "
                                 "L1]) or oasis (U-Net discriminator over the classes + fake, "
                                 "LabelMix); default: the preset's recipe", choices=OBJECTIVES)
    lr_g: float | None = _opt(None, "generator learning rate (default: the preset's recipe, "
                              "else 1e-4)")
    lr_d: float = _opt(4e-4, "discriminator learning rate")
    beta1: float = _opt(0.0, "Adam beta1")
    beta2: float = _opt(0.9, "Adam beta2")
    lambda_fm: float = _opt(10.0, "weight of the feature-matching loss")
    lambda_labelmix: float = _opt(10.0, "weight of the discriminator's LabelMix loss (oasis)")
    lambda_vgg: float = _opt(10.0, "weight of the VGG19 loss (only with --vgg-weights)")
    lambda_l1: float | None = _opt(None, "weight of an L1 loss to the real chip (0 = off, as in "
                                   "SPADE; default: the preset's recipe)")
    lambda_moments: float | None = _opt(None, "weight of a class-moment loss: each class's "
                                        "mean colour, spread and texture in the batch, "
                                        "generated vs real (0 = off; default: the preset's "
                                        "recipe)")
    moments_per_chip: bool | None = _opt(None, "split the class-moment loss's spread into the "
                                         "spread inside chips and across chips (default: "
                                         "the preset's recipe)")
    lambda_variety: float | None = _opt(None, "weight of a field-variety loss: the spread of "
                                        "each class's field mean colours, generated vs real "
                                        "(0 = off; default: the preset's recipe)")
    vgg_weights: str | None = _opt(None, "torchvision VGG19 weights file; enables the VGG loss",
                               metavar="FILE")
    ema_decay: float = _opt(0.999, "decay of the generator weights' moving average")
    bn_batches: int = _opt(4, "batches used to refresh the EMA generator's batch-norm statistics")
    augment: bool = _opt(False, "random flips/rotations of chips (changes shadow direction)")
    device: str = _opt("auto", "auto, cpu, cuda, cuda:N or mps", metavar="DEVICE")
    amp: bool | None = _opt(None, "mixed precision (default: on for CUDA)")
    amp_dtype: str = _opt("auto", "auto (bf16 if supported, else fp16), bf16 or fp16",
                          choices=AMP_DTYPES)
    channels_last: bool | None = _opt(None, "channels-last memory format (default: on for CUDA)")
    seed: int = _opt(0, "seed of weights, data order, noise and augmentation")
    workers: int = _opt(0, "data-loading worker processes")
    checkpoint_every: int = _opt(1000, "write checkpoints/step_NNNNNN.pt every N steps")
    keep_checkpoints: int = _opt(3, "keep the last N step_NNNNNN.pt files (0: none); latest.pt "
                                 "and the slim generator.pt are always kept")
    sample_every: int = _opt(500, "write samples/step_NNNNNN.png every N steps")
    log_every: int = _opt(10, "write a metrics line every N steps")
    num_samples: int = _opt(4, "validation chips in each sample grid")
    metrics_format: str = _opt("jsonl", "metrics log format: jsonl or csv",
                               choices=METRICS_FORMATS)
    tensorboard: bool = _opt(False, "also write TensorBoard logs to RUN_DIR/tensorboard")

    # -- checks --------------------------------------------------------------------------
    def validate(self, source: str | Path | None = None) -> TrainConfig:
        """Raise InputError naming the first option whose value cannot work."""
        def bad(name: str, why: str, hint: str) -> InputError:
            value = getattr(self, name)
            return InputError(f"training option {name}={value!r}: {why}", path=source, hint=hint)

        for name in ("batch_size", "checkpoint_every", "sample_every", "log_every"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise bad(name, "must be at least 1", "Give a positive whole number.")
        for name in ("steps", "epochs"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise bad(name, "must be at least 1", "Give a positive whole number.")
        if self.steps is not None and self.epochs is not None:
            raise bad("epochs", f"given together with steps={self.steps}",
                      "Give either steps or epochs, not both.")
        for name in ("workers", "num_samples", "bn_batches", "seed", "keep_checkpoints"):
            if getattr(self, name) < 0:
                raise bad(name, "must not be negative", "Give 0 or more.")
        for name in ("lr_g", "lr_d"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise bad(name, "must be positive", "SPADE uses lr_g=1e-4, lr_d=4e-4.")
        for name in ("beta1", "beta2", "ema_decay"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise bad(name, "must be in [0, 1)", "SPADE uses beta1=0, beta2=0.9.")
        if self.objective is not None and self.objective not in OBJECTIVES:
            raise bad("objective", "unknown objective", f"Use one of {list(OBJECTIVES)}.")
        for name in ("lambda_fm", "lambda_labelmix", "lambda_vgg", "lambda_l1", "lambda_moments",
                     "lambda_variety"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise bad(name, "must not be negative", "Give 0 to switch the loss off.")
        if not DEVICE_PATTERN.match(self.device):
            raise bad("device", "unknown device", "Use auto, cpu, cuda, cuda:N or mps.")
        if self.amp_dtype not in AMP_DTYPES:
            raise bad("amp_dtype", "unknown precision", f"Use one of {list(AMP_DTYPES)}.")
        if self.metrics_format not in METRICS_FORMATS:
            raise bad("metrics_format", "unknown format", f"Use one of {list(METRICS_FORMATS)}.")
        from geospade.models.config import check_overrides  # here: --help stays torch-free

        check_overrides(self.model, None if source is None else str(source))
        return self

    def resolved(self) -> TrainConfig:
        """A copy whose options left to the preset (None) hold the preset's recipe values."""
        recipe = {**RECIPE_FALLBACK, **RECIPES.get(self.preset, {})}
        if self.epochs is not None:
            recipe.pop("steps")  # the run's length is given in epochs
        changes = {name: value for name, value in recipe.items() if getattr(self, name) is None}
        return dataclasses.replace(self, **changes)

    def total_steps(self, steps_per_epoch: int) -> int:
        """Number of optimisation steps of the whole run."""
        if self.epochs is not None:
            return self.epochs * steps_per_epoch
        steps = self.resolved().steps
        assert steps is not None  # resolved() fills it in from the recipe
        return steps

    # -- (de)serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping, source: str | Path | None = None) -> TrainConfig:
        """Build from a mapping; InputError names unknown keys and values of the wrong type."""
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise InputError(f"unknown training options {unknown}", path=source,
                             hint=f"Valid options: {', '.join(names)}.")
        values = {key: coerce(names[key], value, source) for key, value in data.items()}
        return cls(**values).validate(source)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some options changed (checked like a YAML file)."""
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        """Read a YAML file of training options (keys as in :class:`TrainConfig`)."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise InputError("config file not found", path=path, hint="Check the path.") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise InputError(f"not valid YAML{where}: {problem}", path=path,
                             hint="Write one 'option: value' per line.") from None
        if not isinstance(data, Mapping):
            raise InputError("config file must hold a mapping of option: value", path=path,
                             hint="Write one 'option: value' per line.")
        return cls.from_dict(data, source=path)

    def to_yaml(self, path: str | Path) -> Path:
        """Write the options as YAML (readable back with :meth:`from_yaml`)."""
        path = Path(path)
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        return path


def resolve_config(overrides: Mapping[str, Any] | None = None,
                   config_file: str | Path | None = None, *, run_dir: str | Path | None = None,
                   resume: bool = False) -> TrainConfig:
    """The options of a run: defaults, then a YAML file, then the options given.

    Every front end (``geospade train``, the ArcGIS Train tool, a notebook) resolves its
    options here, so they mean the same everywhere.

    Args:
        overrides: options given explicitly (TrainConfig field names); ``model`` is merged
            into the file's model overrides rather than replacing them.
        config_file: a YAML file of options; without one, a resumed run reads its own
            ``run_dir/config.yaml``.
        run_dir: the run folder (only read when resuming without ``config_file``).
        resume: the run continues where it stopped.

    Raises:
        InputError: an unreadable file, an unknown option or a value that cannot work.
    """
    if config_file is not None:
        base = TrainConfig.from_yaml(config_file)
    elif resume and run_dir is not None and (Path(run_dir) / "config.yaml").exists():
        base = TrainConfig.from_yaml(Path(run_dir) / "config.yaml")
    else:
        base = TrainConfig()
    given = dict(overrides or {})
    if "model" in given:
        given["model"] = {**base.model, **given["model"]}
    # A length given explicitly replaces the file's, whichever unit it used.
    if "steps" in given:
        given.setdefault("epochs", None)
    if "epochs" in given:
        given.setdefault("steps", None)
    return base.replace(**given)


def field_default(name: str) -> Any:
    """TrainConfig's default value of option ``name`` (a fresh copy for dicts)."""
    f = next(f for f in dataclasses.fields(TrainConfig) if f.name == name)
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def field_kind(f: dataclasses.Field) -> tuple[type, bool]:
    """(base type, optional) of a TrainConfig field, from its annotation string."""
    annotation = str(f.type).replace(" ", "")
    optional = annotation.endswith("|None")
    base = annotation.removesuffix("|None")
    return {"int": int, "float": float, "str": str, "bool": bool, "dict": dict}[base], optional


def coerce(f: dataclasses.Field, value: Any, source: str | Path | None = None) -> Any:
    """``value`` converted to the type of field ``f``; InputError when it cannot be."""
    kind, optional = field_kind(f)
    if value is None:
        if optional:
            return None
        raise InputError(f"training option {f.name} cannot be empty", path=source,
                         hint=f"Give a {kind.__name__} or leave the option out.")
    try:
        if kind is bool:
            if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false",
                                                            "no", "off", "0"):
                return value.lower() in ("true", "yes", "on", "1")
            if isinstance(value, bool):
                return value
            raise ValueError
        if kind is int:
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise ValueError
            return int(float(value))
        if kind is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)  # YAML reads 1e-4 as a string: float() handles it
        if kind is dict:
            if not isinstance(value, Mapping):
                raise ValueError
            return dict(value)
        return str(value)
    except (TypeError, ValueError):
        raise InputError(f"training option {f.name}={value!r} is not a {kind.__name__}",
                         path=source, hint="Fix the value's type.") from None
