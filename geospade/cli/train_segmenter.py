"""Train the land-cover segmenter that ``geospade evaluate`` scores generators with.

A small U-Net learns to predict the land-cover classes of the real image chips of a chip
folder's train split. Its pixel accuracy and mIoU on the validation chips are printed; they
are the ceiling a generator's synthetic imagery can reach in ``geospade evaluate``.
"""

from __future__ import annotations

import argparse

from geospade.cli import add_output, add_quiet


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``geospade train-segmenter``."""
    parser.add_argument("chips", metavar="CHIPS_DIR", help="chip folder (geospade or ArcGIS Pro)")
    add_output(parser, required=True, metavar="SEGMENTER.pt", help="segmenter file to write")
    parser.add_argument("--steps", type=int, default=None,
                        help="optimiser steps (default: sized for the chips: 500 at 64 px, "
                             "125 at 256 px, at most 50 passes over the training chips)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="chips per step (default: 16; fewer for chips over 256 px)")
    parser.add_argument("--learning-rate", type=float, default=2e-3, help="Adam learning rate")
    parser.add_argument("--base-channels", type=int, default=16,
                        help="U-Net channels of its first level")
    parser.add_argument("--depth", type=int, default=3, help="U-Net poolings")
    parser.add_argument("--class-balance", action=argparse.BooleanOptionalAction, default=True,
                        help="weight the loss towards small classes (1 / sqrt of pixel share)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and chip order")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_quiet(parser)


def run(args: argparse.Namespace) -> int:
    """Train, save, and print the validation scores."""
    from geospade.evaluation.segmenter import load_segmenter, train_segmenter

    path = train_segmenter(args.chips, args.output, steps=args.steps,
                           batch_size=args.batch_size, learning_rate=args.learning_rate,
                           base_channels=args.base_channels, depth=args.depth,
                           class_balance=args.class_balance, device=args.device, seed=args.seed, overwrite=args.overwrite,
                           progress=args.progress)
    scores = load_segmenter(path, "cpu").card.extra.get("validation", {})
    print(f"{path}: pixel accuracy {scores.get('pixel_accuracy', float('nan')):.3f}, "
          f"mIoU {scores.get('miou', float('nan')):.3f} on {scores.get('chips', 0)} "
          f"'{scores.get('split', '?')}' chips")
    return 0
