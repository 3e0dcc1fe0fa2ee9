"""Measure how visible tile seams are in a synthesised raster.

Prints the mean absolute difference between adjacent pixels across tile boundaries divided by
the same statistic everywhere else (masked pixels excluded): 1.0 means the boundaries cannot
be told apart from the interior; a visible seam scores above 1. With --period 2^k (the
generator's downsampling factor) the interior lines are only those at the boundaries' phase
of the generator's grid, so its periodic texture is not mistaken for seams.
"""

from __future__ import annotations

import argparse

from geospade.cli import add_quiet


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``geospade seam-score``."""
    parser.add_argument("image", help="synthesised raster (GeoTIFF)")
    parser.add_argument("--tile-size", type=int, required=True,
                        help="tile size the raster was generated with")
    parser.add_argument("--offset", type=int, default=None,
                        help="pixel position of the tile grid's origin (default: the grid "
                             "geospade synthesize anchors in the CRS, from the raster's "
                             "georeferencing)")
    parser.add_argument("--period", type=int, default=1,
                        help="compare boundaries only with interior lines at the same phase of "
                             "this period: the generator's downsampling factor (e.g. 16) tells "
                             "seams from the model's own periodic texture; 1 = every line")
    add_quiet(parser)


def run(args: argparse.Namespace) -> int:
    """Compute and print the score."""
    from geospade.synthesis.seams import seam_score

    score = seam_score(args.image, args.tile_size, args.offset, period=args.period,
                       progress=args.progress)
    print(f"{score:.4f}")
    return 0
