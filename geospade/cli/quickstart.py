"""Run the whole pipeline on the built-in demo scene: demo scene -> chips -> training ->
synthesis of the whole demo land cover -> evaluation, then write quickstart.png (land cover |
real imagery | synthetic imagery) and report.md into OUT_DIR. On a CPU it trains the small
model (the README's Set-up section gives a measured duration); with a GPU it trains the
paper-size model.
"""

from __future__ import annotations

import argparse

from geospade.cli import add_quiet


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``geospade demo``: where, on what, and (for quick trials) how big each
    stage is."""
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder for every output of the run")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps (default: sized for the device)")
    parser.add_argument("--preset", default=None, help="model preset (default: cpu on a CPU, "
                        "paper on a GPU)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="training chips per step (default: the preset's recipe)")
    parser.add_argument("--size", type=int, default=None, help="demo scene side in pixels")
    parser.add_argument("--tile-size", type=int, default=None, help="training chip side in pixels")
    parser.add_argument("--segmenter-steps", type=int, default=None,
                        help="training steps of the judge segmenter (default: sized for the "
                             "device)")
    parser.add_argument("--synth-tile-size", type=int, default=None,
                        help="tile side of the synthesis (default: sized for the device)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every stage")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the outputs of an earlier run in OUT_DIR")
    add_quiet(parser)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from geospade.quickstart import default_settings, run_quickstart

    settings = default_settings(args.device)
    changes = {"steps": args.steps, "preset": args.preset, "batch_size": args.batch_size,
               "scene_size": args.size, "tile_size": args.tile_size,
               "segmenter_steps": args.segmenter_steps, "synth_tile_size": args.synth_tile_size}
    settings = dataclasses.replace(settings, **{k: v for k, v in changes.items() if v is not None})
    result = run_quickstart(args.out_dir, settings, seed=args.seed, overwrite=args.overwrite,
                            progress=args.progress)
    print(result.report.read_text())
    print(f"picture: {result.picture}\nsynthetic imagery: {result.synthetic}\n"
          f"checkpoint: {result.checkpoint}")
    return 0
