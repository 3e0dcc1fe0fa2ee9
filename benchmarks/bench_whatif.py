"""Benchmark of ``geospade what-if``: its cost follows the change, not the raster.

Inputs: the demo scene (2048 px, 1 m) repeated to each size (land cover and imagery). The plan
is one square polygon of ``--change-fraction`` (default 1 %) of the largest raster's area,
turning whatever is there into impervious surfaces, placed at the same ground position in
every size. A fresh subprocess runs each measurement and reports wall time, process CPU time
and peak RSS (``ru_maxrss``):

- ``what-if`` at every size: the same change in a larger raster should cost about the same
  time and the same peak memory (flat in raster size);
- ``synthesize`` of the whole largest raster (or of ``--whole-size`` px, scaled linearly in
  pixels to the largest size when smaller; the output says so), the cost the what-if avoids.

The ratio what-if / whole-raster synthesis is measured in one run. The model is a checkpoint
given with --checkpoint, else an untrained tiny CLADE generator (the ratio depends on the
model only through how much synthesis dominates I/O; a bigger model favours the what-if).

Usage::

    python benchmarks/bench_whatif.py --sizes 2048 8192
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SCENE_SIZE = 2048


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 8192],
                        help="raster sides in pixels (multiples of 2048)")
    parser.add_argument("--whole-size", type=int, default=None,
                        help="side of the raster synthesised whole (default: the largest size)")
    parser.add_argument("--change-fraction", type=float, default=0.01,
                        help="area of the change as a fraction of the largest raster")
    parser.add_argument("--workdir", default="/tmp/geospade-bench-whatif")
    parser.add_argument("--checkpoint", default=None, help="trained checkpoint to use")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def prepare(workdir: Path, sizes: list[int], checkpoint: str | None) -> str:
    """The demo scene repeated to each size, and the model checkpoint."""
    from geospade.classes import CHESAPEAKE_7
    from geospade.demo import make_demo_scene
    from geospade.imagery import ImageryInfo
    from geospade.synthesis.model import save_model
    from tests.helpers import random_model, tile_raster

    scene_dir = workdir / "scene"
    if not (scene_dir / "imagery.tif").exists():
        make_demo_scene(scene_dir, size=SCENE_SIZE, progress=False)
    for size in sizes:
        for name in ("landcover", "imagery"):
            target = workdir / f"{name}_{size}.tif"
            if not target.exists():
                tile_raster(scene_dir / f"{name}.tif", target, size // SCENE_SIZE, progress=False)
    if checkpoint:
        return checkpoint
    path = workdir / "tiny.pt"
    if not path.exists():
        model = random_model(CHESAPEAKE_7, ImageryInfo(3, "uint8"), preset="tiny", ngf=4,
                             adaptive="clade")
        save_model(model, path)
    return str(path)


def write_plan(workdir: Path, largest: int, fraction: float) -> tuple[str, int]:
    """One square polygon of ``fraction`` of the largest raster, near the scene's centre."""
    import geopandas
    import rasterio
    import shapely

    side = int(round(largest * fraction ** 0.5))
    with rasterio.open(workdir / "scene" / "landcover.tif") as ds:
        left, top = ds.bounds.left, ds.bounds.top
        crs = ds.crs
    # Inside the first copy of the scene, so every size holds the same change.
    x0, y0 = left + (SCENE_SIZE - min(side, SCENE_SIZE - 64)) / 2, top - 64
    polygon = shapely.box(x0, y0 - side, x0 + side, y0)
    path = workdir / f"plan_{side}.gpkg"
    geopandas.GeoDataFrame({"new_class": ["Impervious Surfaces"]}, geometry=[polygon],
                           crs=crs).to_file(path)
    return str(path), side


def child(spec: dict) -> dict:
    """One measurement in this (fresh) process."""
    import torch

    torch.set_num_threads(1)
    began, cpu0 = time.perf_counter(), time.process_time()
    out = Path(spec["out"])
    if spec["kind"] == "what-if":
        from geospade.whatif import what_if

        result = what_if(spec["landcover"], spec["imagery"], spec["checkpoint"], out,
                         changes=spec["plan"], class_field="new_class", device=spec["device"],
                         overwrite=True, progress=False)
        extra = {"changed_pixels": result.changed_pixels,
                 "synthesized_pixels": result.synthesized_pixels,
                 "regions": len(result.regions), "seam_score": result.seam_score}
    else:
        from geospade.synthesis import synthesize

        result = synthesize(spec["landcover"], spec["checkpoint"], out, device=spec["device"],
                            overwrite=True, progress=False)
        extra = {"tiles": result.stats.generated}
    seconds = time.perf_counter() - began
    cpu = time.process_time() - cpu0
    for path in out.parent.glob(out.stem + "*"):
        path.unlink()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "cpu_seconds": cpu, "peak_rss_mb": rss, **extra}


def run_child(spec: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                          capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"child failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    largest = max(args.sizes)
    whole = args.whole_size or largest
    checkpoint = prepare(workdir, sorted(set(args.sizes) | {whole}), args.checkpoint)
    plan, side = write_plan(workdir, largest, args.change_fraction)
    print(f"change: {side} x {side} px = {side * side / largest ** 2:.2%} of {largest}^2; "
          f"model: {checkpoint}; machine shared with other jobs, 1 torch thread")
    rows = {}
    for size in args.sizes:
        spec = dict(kind="what-if", landcover=str(workdir / f"landcover_{size}.tif"),
                    imagery=str(workdir / f"imagery_{size}.tif"), plan=plan,
                    checkpoint=checkpoint, device=args.device,
                    out=str(workdir / f"whatif_{size}.tif"))
        rows[size] = run_child(spec)
        r = rows[size]
        print(f"what-if {size:>6} px: {r['seconds']:7.1f} s wall, {r['cpu_seconds']:7.1f} s CPU, "
              f"peak RSS {r['peak_rss_mb']:7.0f} MB, {r['synthesized_pixels'] / 1e6:.2f} Mpx "
              f"synthesised for {r['changed_pixels'] / 1e6:.2f} Mpx changed, seam score "
              f"{r['seam_score']:.3f}")
    spec = dict(kind="synthesize", landcover=str(workdir / f"landcover_{whole}.tif"),
                checkpoint=checkpoint, device=args.device, out=str(workdir / f"whole_{whole}.tif"))
    full = run_child(spec)
    scale = (largest / whole) ** 2
    note = "" if whole == largest else f" (x{scale:g}, scaled linearly in pixels to {largest} px)"
    print(f"synthesize whole {whole:>6} px: {full['seconds']:7.1f} s wall, "
          f"{full['cpu_seconds']:7.1f} s CPU, peak RSS {full['peak_rss_mb']:7.0f} MB{note}")
    r = rows[largest]
    wall = r["seconds"] / (full["seconds"] * scale)
    cpu = r["cpu_seconds"] / (full["cpu_seconds"] * scale)
    print(f"ratio what-if / whole-raster synthesis at {largest} px: {wall:.2%} wall, "
          f"{cpu:.2%} CPU (target < 5%)")
    small = min(args.sizes)
    print(f"peak RSS what-if {largest} px / {small} px: "
          f"{r['peak_rss_mb'] / rows[small]['peak_rss_mb']:.2f} (flat = 1.0)")
    (workdir / "results.json").write_text(json.dumps(
        {"what_if": rows, "whole": full, "whole_size": whole, "change_side": side,
         "ratio_wall": wall, "ratio_cpu": cpu}, indent=2))


if __name__ == "__main__":
    main()
