"""Show what a file is: a checkpoint's model card, a chip folder's summary, a raster's grid.

CKPT (a .pt file or a training run folder): classes, training resolution and CRS, bands and
their normalisation, chip size, step, preset and parameter count. CHIPS (a chip folder):
chip count per split, chip size, classes, bands, CRS and resolution. RASTER: size, CRS,
transform, data type and nodata, and for a land cover (one integer band) the class values
present with their pixel counts. Checkpoints are read with geospade's own loader.
"""

from __future__ import annotations

import argparse

from geospade.cli import add_quiet


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``geospade info``."""
    parser.add_argument("path", metavar="CKPT|CHIPS|RASTER",
                        help="checkpoint .pt or run folder, chip folder, or raster")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_quiet(parser)  # accepted for a uniform command line: info shows no bar


def run(args: argparse.Namespace) -> int:
    """Describe the path and print the summary."""
    import json

    from geospade.info import describe, format_info

    info = describe(args.path)
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0
