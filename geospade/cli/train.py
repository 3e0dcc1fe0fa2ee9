"""Train a SPADE generator on chip folders (geospade export or ArcGIS Pro Classified_Tiles).

Classes, bands and value ranges are read from the chips' metadata; several folders are merged
into one training set (classes reconciled by value, value ranges combined). RUN_DIR receives
config.yaml (the resolved options), checkpoints/latest.pt and checkpoints/step_NNNNNN.pt,
metrics.jsonl and samples/step_NNNNNN.png (label colours | real | generated). Options come
from --config FILE.yaml (keys as the flags, with underscores), then the flags given.
--resume continues a run where it stopped (raise --steps to train further). For several
GPUs, launch with torchrun: torchrun --nproc_per_node 4 -m geospade train CHIPS -o RUN.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

import yaml

from geospade.cli import add_output, add_quiet
from geospade.errors import InputError
from geospade.training.config import TrainConfig, field_default, field_kind
from geospade.training.config import resolve_config as library_resolve_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``geospade train``: the run, then one per :class:`TrainConfig` option."""
    parser.add_argument("chips_dir", metavar="CHIPS_DIR", type=Path, nargs="+",
                        help="chip folder(s) written by geospade export-chips or ArcGIS Pro "
                             "(Classified_Tiles); several are trained on as one set")
    add_output(parser, dest="run_dir", metavar="RUN_DIR", type=Path, required=True,
               help="run folder for checkpoints, samples and metrics")
    parser.add_argument("--config", type=Path, metavar="FILE.yaml",
                        help="training options as YAML; flags given here override them")
    run = parser.add_mutually_exclusive_group()
    run.add_argument("--resume", action="store_true",
                     help="continue the run in RUN_DIR from checkpoints/latest.pt")
    run.add_argument("--overwrite", action="store_true",
                     help="start again in a RUN_DIR that already holds a run")
    add_quiet(parser)
    options = parser.add_argument_group(
        "training options", "defaults shown are TrainConfig's; unset flags keep the value "
        "from --config (or from the run's config.yaml with --resume)")
    for f in dataclasses.fields(TrainConfig):
        kind, _ = field_kind(f)
        flag = "--" + f.name.replace("_", "-")
        default = field_default(f.name)
        help_text = f.metadata["help"] + ("" if default in (None, {}) else f" (default: {default})")
        metavar = f.metadata.get("metavar") or {int: "N", float: "X"}.get(kind, f.name.upper())
        if "choices" in f.metadata:
            metavar = None  # argparse lists the choices
        # SUPPRESS: only flags the user gave appear in args, so they can override a file.
        if kind is bool:
            options.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                                 default=argparse.SUPPRESS, help=help_text)
        elif kind is dict:
            options.add_argument(flag, dest=f.name, action="append", default=argparse.SUPPRESS,
                                 metavar=metavar, help=help_text)
        else:
            options.add_argument(flag, dest=f.name, type=kind, default=argparse.SUPPRESS,
                                 metavar=metavar, choices=f.metadata.get("choices"),
                                 help=help_text)


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    """Defaults, then --config (or the resumed run's config.yaml), then the flags given."""
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    given = {name: getattr(args, name) for name in names if hasattr(args, name)}
    if "model" in given:
        given["model"] = parse_key_values(given["model"], "--model")
    return library_resolve_config(given, args.config, run_dir=args.run_dir, resume=args.resume)


def parse_key_values(items: list[str], flag: str) -> dict:
    """["ngf=32", "adaptive=clade"] -> {"ngf": 32, "adaptive": "clade"} (YAML-typed values)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"{flag} {item!r} is not KEY=VALUE", hint=f"e.g. {flag} ngf=32")
        out[key.strip()] = yaml.safe_load(value)
    return out


def run(args: argparse.Namespace) -> int:
    from geospade.training import train

    config = resolve_config(args)
    latest = train(args.chips_dir, args.run_dir, config, resume=args.resume,
                   overwrite=args.overwrite, progress=args.progress)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one line, not one per process
        print(latest)
    return 0
