"""Generate one seamless, georeferenced GeoTIFF of imagery from a land-cover raster.

The output has the land cover's CRS, transform and size, the training imagery's bands and data
type, and an internal mask over nodata. Tiles are generated with a halo of context, one noise
field for the whole raster (from --seed), and a narrow cosine feather at the seams.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from geospade.cli import add_output, add_quiet
from geospade.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``geospade synthesize``."""
    parser.add_argument("landcover", help="single-band integer land-cover raster")
    parser.add_argument("--checkpoint", required=True,
                        help="checkpoint .pt file or training run folder")
    add_output(parser, required=True, metavar="OUT.tif", help="output GeoTIFF (.tif)")
    parser.add_argument("--tile-size", type=int, default=None,
                        help="tile core size in pixels, a multiple of the generator's 2**k "
                             "(default: 512, or less for a small raster)")
    parser.add_argument("--halo", type=int, default=None,
                        help="context pixels on every side of a tile (default: the "
                             "generator's receptive field, its convolutional part capped at "
                             "128; per-field tones' full reach)")
    parser.add_argument("--feather", type=int, default=None,
                        help="width of the cosine blend at tile seams (default: 32)")
    parser.add_argument("--batch-size", type=int, default=4, help="tiles per generator pass")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=int, default=0,
                        help="noise seed: one style for the whole raster")
    parser.add_argument("--map-unknown", type=int, default=None, metavar="VALUE",
                        help="class value for land-cover values the model has not seen "
                             "(default: such values are an error)")
    parser.add_argument("--resample", action="store_true",
                        help="resample the land cover (nearest) to the training resolution "
                             "when it differs; the output is on that grid")
    parser.add_argument("--cog", action="store_true",
                        help="write a Cloud Optimized GeoTIFF with overviews")
    parser.add_argument("--preview", nargs="?", const=True, default=None, metavar="PNG",
                        help="write a PNG quick-look of land cover beside output "
                             "(default path: OUTPUT with .preview.png)")
    parser.add_argument("--seam-score", action="store_true",
                        help="measure and print the seam score of the output")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    cluster = parser.add_argument_group(
        "on a Dask cluster", "one task per block of tiles; the same pixels as in one process "
                             "(needs pip install geospade[distributed])")
    where = cluster.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=None, metavar="N",
                       help="start a local cluster of N worker processes on this machine")
    where.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="run on the cluster whose scheduler is at ADDRESS (tcp://HOST:PORT)")
    where.add_argument("--scheduler-file", default=None, metavar="FILE",
                       help="run on the cluster described by FILE (dask scheduler "
                            "--scheduler-file FILE, dask-jobqueue, dask-mpi)")
    cluster.add_argument("--threads", type=int, default=None,
                         help="PyTorch threads per local worker (default: cores / N)")
    cluster.add_argument("--block-size", type=int, default=None, metavar="PX",
                         help="side of a task's output block, a multiple of the tile size "
                              "(default: 2048, smaller to give each worker two blocks)")
    cluster.add_argument("--output-format", choices=("gtiff", "vrt"), default="gtiff",
                         help="gtiff: one GeoTIFF (COG with --cog); vrt: OUTPUT.vrt over "
                              "the block GeoTIFFs in OUTPUT.vrt.shards/, for rasters too large "
                              "for one file")
    cluster.add_argument("--resume", action="store_true",
                         help="continue an interrupted cluster run: blocks its manifest "
                              "records as complete and intact are kept")
    cluster.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECONDS",
                         help="how long to try to reach --scheduler / --scheduler-file")
    add_quiet(parser)


def run(args: argparse.Namespace) -> int:
    """Synthesise and print a one-line summary."""
    from geospade.synthesis import seam_score, synthesize

    preview = args.preview
    if preview is True:
        out = Path(args.output)
        preview = out.with_name(out.stem + ".preview.png")
    options = dict(
        tile_size=args.tile_size, halo=args.halo, feather=args.feather,
        batch_size=args.batch_size, device=args.device, seed=args.seed,
        map_unknown=args.map_unknown, resample=args.resample,
        cog=args.cog, preview=preview, overwrite=args.overwrite, progress=args.progress)
    if args.threads is not None and args.workers is None:
        raise InputError(f"--threads {args.threads} sets the threads of local workers",
                         hint="Add --workers N.")
    if args.workers is None and args.scheduler is None and args.scheduler_file is None:
        result = synthesize(args.landcover, args.checkpoint, args.output,
                            block_size=args.block_size, output_format=args.output_format,
                            resume=args.resume, **options)
    else:
        try:
            result = _on_cluster(args, options)
        except KeyboardInterrupt:
            return _interrupted_on_cluster(args.output)
    s = result.stats
    if hasattr(s, "blocks"):  # a cluster run's ClusterStats
        c = vars(s)
        print(f"{c['blocks']} blocks and {c['bands']} bands between them on the cluster "
              f"({c['reused']} blocks and {c['bands_reused']} bands kept from an interrupted "
              "run); each tile generated once")
    print(f"wrote {result.path} ({result.width} x {result.height} px, tiles {result.tile_size} "
          f"+ halo {result.halo}, feather {result.feather}, seed {result.seed}): "
          f"{s.generated} tiles generated, {s.skipped} all-nodata tiles skipped, "
          f"{s.seconds:.1f} s, {result.megapixels_per_second:.2f} Mpx/s"
          + (" [resampled to the training resolution]" if result.resampled else ""))
    if result.preview is not None:
        print(f"preview: {result.preview}")
    if args.seam_score:
        factor = result.downsampling_factor
        print(f"seam score: {seam_score(result.path, result.tile_size):.3f} against every "
              f"interior line, {seam_score(result.path, result.tile_size, period=factor):.3f} "
              f"against lines at the same phase of the generator's {factor} px grid "
              "(1.0 = seams indistinguishable)")
    return 0


def _on_cluster(args: argparse.Namespace, options: dict):
    """Synthesise on a local or running Dask cluster."""
    try:
        from geospade.synthesis.distributed import connect
    except ModuleNotFoundError as exc:
        raise InputError(f"a cluster run needs Dask distributed ({exc})",
                         hint='pip install "geospade[distributed]"') from None
    from geospade.synthesis import synthesize

    with connect(workers=args.workers, threads=args.threads, scheduler=args.scheduler,
                 scheduler_file=args.scheduler_file, timeout=args.connect_timeout) as client:
        if args.workers is not None and args.progress:
            print(f"Dask dashboard: {client.dashboard_link}", file=sys.stderr)
        return synthesize(args.landcover, args.checkpoint, args.output, client=client,
                          block_size=args.block_size, output_format=args.output_format,
                          resume=args.resume, **options)


def _interrupted_on_cluster(output: str) -> int:
    """Ctrl-C (or kill) during a cluster run: the output is not written, the finished shards
    stay for --resume. Says so in one line; exit code 130 as for any interrupt."""
    from geospade.synthesis.distributed import after_interrupt, shards_folder

    finished = after_interrupt(output)  # a local cluster's workers have stopped by now
    folder = shards_folder(output)
    if finished:
        kept = (f"partial files were removed; the {finished} finished blocks and bands are "
                f"kept in {folder}: the same command with --resume continues the run "
                "(--overwrite starts over)")
    else:
        kept = "partial files were removed; no block had finished"
    print(f"geospade synthesize: interrupted; {output} was not written; {kept}.",
          file=sys.stderr)
    return 130
