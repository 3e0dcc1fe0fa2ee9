"""Score a generator: segmentation consistency, Fréchet distance, per-class colours, seams.

A segmenter from ``geospade train-segmenter`` classifies the real and the synthesised image of
every chip of a split; per-class IoU, mIoU and pixel accuracy against the chips' land cover
are reported for both (real = the ceiling), with a Fréchet distance of the segmenter's
features, per-class colour statistics and realism ratios (synthetic / real texture, spread
and variety of each class, 1.0 = as real, flat paint 0). Writes report.json, report.txt and panel.png to
the output folder and prints the table.
"""

from __future__ import annotations

import argparse

from geospade.cli import add_output, add_quiet


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``geospade evaluate``."""
    parser.add_argument("--checkpoint", required=True, metavar="CKPT",
                        help="generator checkpoint or training run folder")
    parser.add_argument("--chips", required=True, metavar="CHIPS_DIR", help="chip folder")
    parser.add_argument("--segmenter", required=True, metavar="SEG.pt",
                        help="segmenter written by geospade train-segmenter")
    add_output(parser, required=True, metavar="REPORT_DIR", help="report folder to write")
    parser.add_argument("--split", default="val", choices=("val", "train", "all"),
                        help="chips to score (val falls back to all when there are none)")
    parser.add_argument("--synthetic", metavar="OUT.tif",
                        help="a raster written by geospade synthesize, for its seam score")
    parser.add_argument("--tile-size", type=int, metavar="T",
                        help="tile size that raster was synthesised with")
    parser.add_argument("--landcover", metavar="LANDCOVER.tif",
                        help="the land cover that raster was made from, for its class colours")
    parser.add_argument("--inception-weights", metavar="FILE",
                        help="InceptionV3 weights for an Inception FID (needs torchvision)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed of the generated chips")
    parser.add_argument("--batch-size", type=int, default=8, help="chips per pass")
    parser.add_argument("--panel-chips", type=int, default=4,
                        help="worst and best chips shown in panel.png")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing report")
    add_quiet(parser)


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the table."""
    from geospade.evaluation import evaluate, format_table

    report = evaluate(args.checkpoint, args.chips, args.output, segmenter=args.segmenter,
                      split=args.split, synthetic=args.synthetic, tile_size=args.tile_size,
                      landcover=args.landcover, seed=args.seed, batch_size=args.batch_size,
                      device=args.device, inception_weights=args.inception_weights,
                      panel_chips=args.panel_chips, overwrite=args.overwrite,
                      progress=args.progress)
    print(format_table(report))
    print(f"report written to {args.output}")
    return 0
