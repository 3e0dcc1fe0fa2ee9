#!/usr/bin/env python3
"""What-if on the demo scene: a field turned into houses and roads, and a wood cleared.

    python pipelines/whatif.py OUT_DIR --checkpoint demo-run/run [--scene demo-run/scene]
        [--picture docs/whatif.png] [--device cpu] [--overwrite]

Writes the plan (``plan.gpkg``, polygons in WGS 84 to show that any CRS works), runs
``geospade what-if`` on the demo scene's land cover and real imagery with a model trained on
it (``geospade demo`` / ``pipelines/quickstart.py`` trains one), and writes
``whatif.tif`` + ``whatif.landcover.tif``, the preview ``whatif.preview.png`` (before | after |
outline) and ``before_after.png`` (before | after around the changes; ``--picture`` copies it).
The demo scene is seeded, so the polygons below always fall on the same field and wood.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Pixel boxes (col0, row0, col1, row1) on the 2048 x 2048 demo scene (seed 0, 1 m pixels).
FIELD = (1068, 784, 1306, 912)   # a large field (its hedges left as they are)
WOOD = (1056, 672, 1160, 778)    # the small square wood just north-west of it
ROAD_WIDTH, HOUSE = 8, (11, 9)   # metres; houses are 11 m along the road, 9 m deep
HOUSE_SPACING, SETBACK = 22, 5


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", help="output folder")
    parser.add_argument("--checkpoint", required=True, help="checkpoint or run folder of a "
                        "model trained on the demo scene")
    parser.add_argument("--scene", default=None, help="demo scene folder (default: write one)")
    parser.add_argument("--picture", default=None, help="also copy before_after.png here")
    parser.add_argument("--panel", type=int, default=384, help="picture panel size in pixels")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--overwrite", action="store_true")
    return parser.parse_args(argv)


def suburb(transform):
    """Two streets along the field, one across it, and houses on both sides of each street."""
    import shapely

    def box(c0, r0, c1, r1):
        (x0, y0), (x1, y1) = transform @ (c0, r0), transform @ (c1, r1)
        return shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))

    c0, r0, c1, r1 = FIELD
    mid_c, half = (c0 + c1) // 2, ROAD_WIDTH // 2
    streets = [r0 + (r1 - r0) // 4, r0 + 3 * (r1 - r0) // 4]
    roads = [box(c0, r - half, c1, r + half) for r in streets]
    roads.append(box(mid_c - half, r0, mid_c + half, r1))
    houses = []
    along, deep = HOUSE
    for street in streets:
        for col in range(c0 + 6, c1 - along - 6, HOUSE_SPACING):
            if abs(col + along / 2 - mid_c) < half + along:  # leave the crossing free
                continue
            top = street - half - SETBACK - deep
            bottom = street + half + SETBACK
            houses += [box(col, top, col + along, top + deep),
                       box(col, bottom, col + along, bottom + deep)]
    return roads, houses


def write_plan(path: Path, landcover: Path) -> Path:
    """The plan as polygons with class names, saved in WGS 84."""
    import geopandas
    import rasterio
    import shapely

    with rasterio.open(landcover) as ds:
        transform, crs = ds.transform, ds.crs
    roads, houses = suburb(transform)
    c0, r0, c1, r1 = WOOD
    (x0, y0), (x1, y1) = transform @ (c0, r0), transform @ (c1, r1)
    wood = shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
    frame = geopandas.GeoDataFrame(
        {"new_class": ["Barren"] + ["Impervious Roads"] * len(roads)
         + ["Impervious Surfaces"] * len(houses),
         "what": ["wood cleared"] + ["road"] * len(roads) + ["house"] * len(houses)},
        geometry=[wood, *roads, *houses], crs=crs)
    frame.to_crs("EPSG:4326").to_file(path)
    return path


def before_after(imagery: Path, output: Path, result, png: Path, panel: int) -> Path:
    """before | after over the change regions, ``panel`` pixels a side at most."""
    import rasterio
    from rasterio.enums import Resampling

    from geospade.preview import imagery_rgb, preview_shape, side_by_side, write_png

    window = result.extent
    h, w = preview_shape(int(window.width), int(window.height), panel)
    panels = []
    for path in (imagery, output):
        with rasterio.open(path) as ds:
            panels.append(imagery_rgb(ds.read(window=window, out_shape=(ds.count, h, w),
                                              resampling=Resampling.average, masked=True)))
    return write_png(png, side_by_side(panels), overwrite=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    from geospade.demo import make_demo_scene
    from geospade.raster import check_output
    from geospade.whatif import what_if

    out = Path(args.out_dir)
    check_output(out, args.overwrite)
    out.mkdir(parents=True, exist_ok=True)
    if args.scene:
        scene = Path(args.scene)
    else:
        scene = out / "scene"
        make_demo_scene(scene, size=2048, overwrite=True)
    landcover, imagery = scene / "landcover.tif", scene / "imagery.tif"
    plan = write_plan(out / "plan.gpkg", landcover)
    result = what_if(landcover, imagery, args.checkpoint, out / "whatif.tif", changes=plan,
                     class_field="new_class", preview=out / "whatif.preview.png",
                     device=args.device, overwrite=True)
    picture = before_after(imagery, result.path, result, out / "before_after.png", args.panel)
    if args.picture:
        shutil.copyfile(picture, args.picture)
    print(f"{result.changed_pixels} changed pixels in {len(result.regions)} region(s), "
          f"{result.synthesized_pixels} synthesised, {result.seconds:.1f} s; gains "
          f"{[g.round(2).tolist() for g in result.gains]}, offsets "
          f"{[o.round(1).tolist() for o in result.offsets]}; seam score at the blend's edge "
          f"{result.seam_score:.3f} (1.0 = as smooth as the real imagery around it)")
    print(f"wrote {result.path}, {result.landcover}, {result.preview}, {picture}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
