#!/usr/bin/env python3
"""The Chesapeake recipe: Chesapeake Conservancy land cover + NAIP -> chips -> SPADE on GPU(s)
-> synthetic NAIP-like imagery for any land-cover raster.

    python pipelines/chesapeake.py --landcover lc.tif --naip naip.tif -o runs/chesapeake \\
        --gpus 4 --steps 200000 --synthesize other_lc.tif

Stages (``--stages``, default all): ``export`` (chips in ArcGIS Classified_Tiles layout; NAIP
is warped onto the land cover's grid, so a 0.6 m NAIP mosaic over a 1 m land cover works),
``train`` (in-process on one device, or ``torchrun --nproc_per_node N -m geospade train`` for
N > 1 GPUs), ``synthesize`` (a Cloud Optimized GeoTIFF on the land cover's grid) and ``seams``
(the seam score of that output). Many land-cover / NAIP tiles: mosaic each set first with
``gdalbuildvrt`` and pass the two .vrt files. Re-running with ``--resume`` continues training.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

STAGES = ("export", "train", "synthesize", "seams")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default only where there is one to show (not None, not a switch)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or isinstance(action.default, bool):
            return action.help or ""
        return super()._get_help_string(action)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The recipe's parameters."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=_HelpFormatter)
    p.add_argument("--landcover", required=True, type=Path, metavar="LANDCOVER",
                   help="Chesapeake land cover (7- or 13-class GeoTIFF or VRT)")
    p.add_argument("--naip", required=True, type=Path, metavar="NAIP",
                   help="NAIP imagery (GeoTIFF or VRT)")
    p.add_argument("-o", "--output", "--out", dest="out", required=True, type=Path,
                   metavar="OUT_DIR", help="folder for chips/, run/ and the synthetic output")
    p.add_argument("--classes", default=None,
                   help="class scheme: chesapeake-7, chesapeake-13 or a JSON file "
                        "(default: from the land cover's colour table)")
    p.add_argument("--tile-size", type=int, default=256, help="training chip side in pixels")
    p.add_argument("--stride", type=int, default=None,
                   help="step between chips in pixels (default: the tile size)")
    p.add_argument("--max-nodata", type=float, default=0.0,
                   help="skip chips with a larger share of nodata pixels")
    p.add_argument("--val-fraction", type=float, default=0.05,
                   help="share of chips held out for validation, by spatial blocks")
    p.add_argument("--aoi", type=Path, default=None,
                   help="polygons limiting the chips (gpkg, shp, geojson)")
    p.add_argument("--preset", default="paper",
                   help="model preset: paper (GPU), cpu or tiny")
    p.add_argument("--steps", type=int, default=100_000, help="training steps")
    p.add_argument("--batch-size", type=int, default=8, help="chips per step on each GPU")
    p.add_argument("--gpus", type=int, default=1,
                   help="GPUs to train on; more than 1 launches torchrun (0 = CPU)")
    p.add_argument("--workers", type=int, default=4, help="data-loading workers per process")
    p.add_argument("--resume", action="store_true", help="continue the run in OUT_DIR/run")
    p.add_argument("--synthesize", type=Path, default=None, metavar="LANDCOVER",
                   help="land cover to synthesise (default: --landcover)")
    p.add_argument("--synth-tile-size", type=int, default=512,
                   help="synthesis tile side in pixels")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, training and noise")
    p.add_argument("--stages", default=",".join(STAGES),
                   help=f"comma-separated subset of {','.join(STAGES)}")
    p.add_argument("--overwrite", action="store_true", help="replace the outputs of a run")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = p.parse_args(argv)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        p.error(f"unknown stages {unknown}; choose from {list(STAGES)}")
    args.stages = stages
    return args


def commands(args: argparse.Namespace) -> list[list[str]]:
    """The geospade command lines the recipe runs, in order."""
    out = args.out
    geospade = [sys.executable, "-m", "geospade"]
    overwrite = ["--overwrite"] if args.overwrite else []
    device = "cpu" if args.gpus == 0 else "auto"
    plan: list[list[str]] = []
    if "export" in args.stages:
        cmd = [*geospade, "export-chips", str(args.landcover), "--imagery", str(args.naip),
               "-o", str(out / "chips"), "--tile-size", str(args.tile_size),
               "--max-nodata", str(args.max_nodata), "--val-fraction", str(args.val_fraction),
               "--seed", str(args.seed), *overwrite]
        cmd += ["--stride", str(args.stride)] if args.stride else []
        cmd += ["--classes", args.classes] if args.classes else []
        cmd += ["--aoi", str(args.aoi)] if args.aoi else []
        plan.append(cmd)
    if "train" in args.stages:
        launcher = geospade
        if args.gpus > 1:
            launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                        f"--nproc_per_node={args.gpus}", "-m", "geospade"]
        cmd = [*launcher, "train", str(out / "chips"), "-o", str(out / "run"),
               "--preset", args.preset, "--steps", str(args.steps),
               "--batch-size", str(args.batch_size), "--device", device,
               "--workers", str(args.workers), "--seed", str(args.seed)]
        cmd += ["--resume"] if args.resume else overwrite
        plan.append(cmd)
    synthetic = out / "synthetic.tif"
    if "synthesize" in args.stages:
        plan.append([*geospade, "synthesize", str(args.synthesize or args.landcover),
                     "--checkpoint", str(out / "run"), "-o", str(synthetic),
                     "--tile-size", str(args.synth_tile_size), "--device", device,
                     "--seed", str(args.seed), "--cog", "--preview", str(out / "synthetic.png"),
                     *overwrite])
    if "seams" in args.stages:
        plan.append([*geospade, "seam-score", str(synthetic),
                     "--tile-size", str(args.synth_tile_size)])
    return plan


def main(argv: Sequence[str] | None = None) -> int:
    """Run (or print, with --dry-run) every stage; stops at the first that fails."""
    args = parse_args(argv)
    for cmd in commands(args):
        print("$", shlex.join(cmd), flush=True)
        if args.dry_run:
            continue
        code = subprocess.run(cmd, check=False).returncode
        if code:
            print(f"chesapeake pipeline: stage failed with exit code {code}", file=sys.stderr)
            return code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
