"""What the real imagery would look like after a plan: synthesise only what the plan changes.

The plan is polygons with new classes (--changes, --class-field) or an edited land cover
(--edited-landcover). The output is the real imagery (its grid, CRS, bands, dtype and mask),
bit for bit except on the changed pixels, which are synthesised and matched to the imagery
around them, and a transition band (--blend metres) where they fade into it. The edited land
cover is written beside the output as OUTPUT.landcover.tif.
"""

from __future__ import annotations

import argparse

from geospade.cli import add_output, add_quiet


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``geospade what-if``."""
    parser.add_argument("landcover", help="land cover of the place (any grid)")
    parser.add_argument("--imagery", required=True,
                        help="the real imagery, with the bands the model was trained on")
    plan = parser.add_mutually_exclusive_group(required=True)
    plan.add_argument("--changes", default=None, metavar="PLAN[:LAYER]",
                      help="polygons (any vector format, any CRS) carrying the new classes")
    plan.add_argument("--edited-landcover", default=None, metavar="EDITED.tif",
                      help="an edited copy of the land cover (any grid) instead of polygons")
    parser.add_argument("--class-field", default=None,
                        help="field of --changes holding each polygon's new class (a class "
                             "value or name of the model's scheme)")
    parser.add_argument("--checkpoint", required=True,
                        help="checkpoint .pt file or training run folder")
    add_output(parser, required=True, metavar="OUT.tif", help="output GeoTIFF")
    parser.add_argument("--blend", type=float, default=None, metavar="METRES",
                        help="width of the transition band around the change "
                             "(default: 8 m, at least 2 pixels)")
    parser.add_argument("--preview", nargs="?", const=True, default=None, metavar="PNG",
                        help="write a PNG of before | after | change outlined, zoomed to the "
                             "changes (default path: OUTPUT with .preview.png)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed of the synthetic")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--batch-size", type=int, default=4, help="tiles per generator pass")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    add_quiet(parser)


def run(args: argparse.Namespace) -> int:
    """Run the what-if and print a summary."""
    from geospade.whatif import preview_output_path, what_if

    preview = preview_output_path(args.output) if args.preview is True else args.preview
    result = what_if(args.landcover, args.imagery, args.checkpoint, args.output,
                     changes=args.changes, class_field=args.class_field,
                     edited_landcover=args.edited_landcover, blend=args.blend, preview=preview,
                     seed=args.seed, device=args.device, batch_size=args.batch_size,
                     overwrite=args.overwrite, progress=args.progress)
    print(result.summary())
    if result.preview is not None:
        print(f"preview: {result.preview}")
    return 0

