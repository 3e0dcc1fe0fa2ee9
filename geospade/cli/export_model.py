"""Package a trained model as an Esri deep learning package (.dlpk) for ArcGIS Pro.

The package holds the model definition (.emd), the generator's weights with their model card,
and the Python raster function that runs them. In ArcGIS Pro, run "Translate Pixels Using
Deep Learning" on a land-cover raster with the .dlpk as the model definition; geospade must
be installed in Pro's Python environment. With an output ending in .pt, writes the slim
inference checkpoint instead (EMA generator and model card only), which synthesize and
evaluate read like the run's own checkpoints.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from geospade.cli import add_output, add_quiet


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``geospade export-model``."""
    parser.add_argument("run_dir", metavar="RUN_DIR", type=Path,
                        help="training run folder (its latest checkpoint) or a checkpoint .pt")
    add_output(parser, required=True, type=Path, metavar="MODEL.dlpk",
               help="model package to write (.dlpk), or a slim checkpoint (.pt)")
    parser.add_argument("--tile-size", type=int, default=None,
                        help="tile side of Pro's blocks; none: the training chip size")
    parser.add_argument("--padding", type=int, default=None,
                        help="context pixels read around each block; none: the "
                             "generator's receptive field")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (Pro's Seed argument can change it)")
    parser.add_argument("--half", action="store_true",
                        help="store the weights in half precision (float16): half the size")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing package")
    add_quiet(parser)  # accepted for a uniform command line: packaging shows no bar


def run(args: argparse.Namespace) -> int:
    """Write the package and print its path."""
    from geospade.checkpoint import slim_checkpoint
    from geospade.dlpk import export_model

    if args.output.suffix.lower() == ".pt":
        path = slim_checkpoint(args.run_dir, args.output, half=args.half,
                               overwrite=args.overwrite)
        print(f"wrote {path}")
        return 0
    path = export_model(args.run_dir, args.output, overwrite=args.overwrite,
                        tile_size=args.tile_size, padding=args.padding, seed=args.seed,
                        half=args.half)
    print(f"wrote {path}")
    return 0
