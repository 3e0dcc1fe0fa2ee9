"""Write the built-in demo scene: a synthetic 1 m Chesapeake 7-class land cover in Maryland
(UTM 18N) with fields, woods, a river, roads and a small town, paired imagery on the same grid,
and PNG previews of both. The same seed always writes the same rasters.
"""

from __future__ import annotations

import argparse

from geospade.cli import add_quiet


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", metavar="OUT_DIR",
                        help="folder for landcover.tif, imagery.tif and their .png previews")
    parser.add_argument("--size", type=int, default=2048,
                        help="scene width and height in pixels (1 m each), 256 to 4096")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the scene")
    parser.add_argument("--bands", type=int, choices=(3, 4), default=3,
                        help="imagery bands: 3 (RGB) or 4 (RGB + near infrared)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the scene's files if they exist")
    add_quiet(parser)


def run(args: argparse.Namespace) -> int:
    from geospade.demo import make_demo_scene

    scene = make_demo_scene(args.out_dir, size=args.size, seed=args.seed, bands=args.bands,
                            overwrite=args.overwrite, progress=args.progress)
    for path in scene.paths():
        print(path)
    return 0
