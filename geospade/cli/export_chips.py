"""Tile land-cover rasters and their imagery into training chips (ArcGIS Pro Classified_Tiles).

Writes images/ and labels/ GeoTIFF (or PNG) chips with world files, map.txt, stats.txt,
esri_accumulated_stats.json and esri_model_definition.emd as ArcGIS Pro does, plus
chips.gpkg (a tile index), class_scheme.json and geospade_export.json. Imagery on another
grid is resampled bilinearly onto the land cover's grid; labels are never resampled.
Several land covers (files, globs, folders) make one folder: each is paired with the imagery
files that overlap it (several read as one mosaic) and keeps its own grid and CRS.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from geospade.cli import add_output, add_quiet


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction between 0 and 1")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``geospade export-chips``."""
    parser.add_argument("landcover", type=Path, nargs="+", metavar="LANDCOVER",
                        help="classified land-cover raster(s) (integer, one band): files, "
                             "quoted glob patterns or folders; each is one scene")
    parser.add_argument("--imagery", type=Path, nargs="+", required=True, metavar="IMAGERY",
                        help="imagery of the same areas (any CRS, resolution and alignment): "
                             "files, quoted glob patterns or folders; each land cover gets the "
                             "files overlapping it")
    add_output(parser, dest="out_dir", type=Path, required=True, metavar="OUT_DIR",
               help="chip folder to create")
    parser.add_argument("--tile-size", type=int, default=256,
                        help="chip side in pixels (a multiple of 8; 32 suits every model preset)")
    parser.add_argument("--stride", type=int, default=None,
                        help="step between chips in pixels (None: the tile size)")
    parser.add_argument("--max-nodata", type=_fraction, default=0.0,
                        help="skip chips with a larger share of nodata pixels "
                             "(0 skips any chip touching nodata)")
    parser.add_argument("--aoi", type=Path, default=None,
                        help="polygons (gpkg, shp, geojson; any CRS): keep only chips inside")
    parser.add_argument("--classes", default=None,
                        help="class scheme: chesapeake-7, chesapeake-13 or a JSON file "
                             "(None: from the raster's colour or attribute table, else the "
                             "values present)")
    # The range is export_chips' own check (MAX_VAL_FRACTION), the one every front end uses.
    parser.add_argument("--val-fraction", type=float, default=0.0,
                        help="share of chips held out for validation, by spatial blocks "
                             "(at least 0, below 1)")
    parser.add_argument("--val-block", type=int, default=None,
                        help="side of the validation blocks in pixels (None: about 4 tiles)")
    parser.add_argument("--val-scenes", default=None, metavar="N|NAMES",
                        help="hold out whole scenes for validation instead: a number of scenes "
                             "(chosen by --seed) or comma-separated land-cover file names")
    parser.add_argument("--resolution", type=float, default=None,
                        help="resample every scene to this pixel size (CRS units): imagery "
                             "bilinearly, land cover by nearest neighbour (None: as they are)")
    parser.add_argument("--skip-unpaired", action="store_true",
                        help="leave out land covers that no imagery overlaps (default: error)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/val split")
    parser.add_argument("--format", dest="image_format", choices=("tif", "png"), default="tif",
                        help="chip format (PNG holds at most 3 bands)")
    parser.add_argument("--workers", type=int, default=None,
                        help="reader/writer threads (None: the CPU count, at most 4)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the output folder if it is not empty")
    add_quiet(parser)


def run(args: argparse.Namespace) -> int:
    """Export the chips and print a one-line summary."""
    from geospade.chips.export import export_chips
    from geospade.raster import check_not_input

    check_not_input([args.out_dir], {"land cover": args.landcover, "imagery": args.imagery,
                                     "AOI": args.aoi, "class scheme": args.classes})
    result = export_chips(
        args.landcover, args.imagery, args.out_dir, tile_size=args.tile_size,
        stride=args.stride, max_nodata=args.max_nodata, aoi=args.aoi, classes=args.classes,
        val_fraction=args.val_fraction, val_block=args.val_block, val_scenes=args.val_scenes,
        resolution=args.resolution, skip_unpaired=args.skip_unpaired, seed=args.seed,
        image_format=args.image_format, workers=args.workers, overwrite=args.overwrite,
        progress=args.progress,
    )
    skipped = ", ".join(f"{n} {r.replace('_', ' ')}" for r, n in result.skipped.items() if n)
    scenes = f" in {result.num_scenes} scenes" if result.num_scenes > 1 else ""
    print(f"{result.num_chips} chips ({result.num_train} train, {result.num_val} val) of "
          f"{result.num_tiles} tiles{scenes} written to {result.out_dir} in {result.seconds:.1f} s"
          + (f"; skipped: {skipped}" if skipped else ""))
    return 0
