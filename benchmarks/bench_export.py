"""Benchmark of ``export_chips``: throughput, distance to the I/O floor, and peak memory.

Builds the demo scene at 2048 px and repeats it 4 x 4 into an 8192 x 8192 scene (land cover
and imagery), then:

- times the export (median of ``--runs`` runs) and reports chips/s and MB/s written;
- times the I/O floor: the same windows read and the same chip bytes written with plain
  rasterio, one thread, no planning, no statistics, no metadata;
- runs the export in a fresh subprocess at 2048 and 8192 px and reports each one's peak RSS,
  which must not grow with the raster's size.

The multi-scene case cuts the 4096 px scene into 16 scenes of 1024 px (16 land-cover and 16
imagery files, the same pixels) and times one export of all 16 against the export of the
single 4096 px scene (target: at most 1.2 times as long), then reports the peak RSS of
exports of 4 and 16 such scenes, which must not grow with the number of scenes.

Usage: python benchmarks/bench_export.py [--case single|multi|all] [--size 8192] [--runs 3]
                                         [--workers N] [--work-dir D]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import rasterio
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from geospade.chips import esri  # noqa: E402
from geospade.chips.export import default_workers, export_chips  # noqa: E402
from geospade.demo import make_demo_scene  # noqa: E402
from geospade.raster import write_world_file  # noqa: E402
from geospade.tiling import tile_grid  # noqa: E402
from tests.helpers import tile_raster  # noqa: E402  (benchmark inputs, not geospade API)

BASE = 2048
SCENE = 1024  # side of each scene of the multi-scene case


def build_scenes(work: Path, size: int) -> dict[int, tuple[Path, Path]]:
    """The 2048 px demo scene repeated to ``size / 2`` and ``size`` px (reused when present)."""
    base = work / f"demo{BASE}"
    if not (base / "imagery.tif").exists():
        make_demo_scene(base, size=BASE, progress=False, overwrite=True)
    scenes = {BASE: (base / "landcover.tif", base / "imagery.tif")}
    for reps in sorted({size // BASE // 2, size // BASE} - {0, 1}):
        big = work / f"demo{BASE * reps}"
        big.mkdir(exist_ok=True)
        for name in ("landcover.tif", "imagery.tif"):
            if not (big / name).exists():
                tile_raster(base / name, big / name, reps, progress=False)
        scenes[BASE * reps] = (big / "landcover.tif", big / "imagery.tif")
    return scenes


def _timed(fn, *args, **kwargs) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads) of one call."""
    cpu0, wall0 = _cpu(), time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - wall0, _cpu() - cpu0


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_export(landcover: Path, imagery: Path, out: Path, workers: int,
               tile: int) -> tuple[float, float]:
    """Wall and CPU time of one export into a fresh ``out``."""
    shutil.rmtree(out, ignore_errors=True)  # deleting the last run is not export time
    return _timed(export_chips, landcover, imagery, out, tile_size=tile, workers=workers,
                  progress=False)


def run_floor(landcover: Path, imagery: Path, indices: list[int], out: Path,
              tile: int) -> tuple[float, float]:
    """Wall and CPU time to read the chips' windows and write the same chip files, plainly."""
    shutil.rmtree(out, ignore_errors=True)
    (out / "images").mkdir(parents=True)
    (out / "labels").mkdir()
    return _timed(_floor, landcover, imagery, indices, out, tile)


def _floor(landcover: Path, imagery: Path, indices: list[int], out: Path, tile: int) -> None:
    with rasterio.open(landcover) as lc, rasterio.open(imagery) as img:
        grid = tile_grid(lc.width, lc.height, tile)
        colormap = lc.colormap(1)
        for index in indices:
            window = grid.tile_at(index).window
            transform = window_transform(window, lc.transform)
            labels = lc.read(1, window=window)
            pixels = img.read(window=window)
            for folder, data, ds in (("labels", labels[None], lc), ("images", pixels, img)):
                path = out / folder / f"{index:012d}.tif"
                with rasterio.open(path, "w", driver="GTiff", width=tile, height=tile,
                                   count=data.shape[0], dtype=data.dtype, crs=lc.crs,
                                   transform=transform, nodata=ds.nodata) as dst:
                    dst.write(data)
                    if folder == "labels":
                        dst.write_colormap(1, colormap)
                write_world_file(path, transform)


def chip_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for d in ("images", "labels") for p in (folder / d).iterdir())


def cut_scenes(landcover: Path, imagery: Path, folder: Path,
               side: int = SCENE) -> tuple[list[Path], list[Path]]:
    """Cut a scene into scenes of ``side`` px, one land-cover and one imagery file each."""
    folder.mkdir(parents=True, exist_ok=True)
    out: tuple[list[Path], list[Path]] = ([], [])
    for source, kind, paths in ((landcover, "landcover", out[0]), (imagery, "imagery", out[1])):
        with rasterio.open(source) as src:
            colormap = src.colormap(1) if kind == "landcover" else None
            for row in range(0, src.height, side):
                for col in range(0, src.width, side):
                    path = folder / f"{kind}_{row // side:02d}_{col // side:02d}.tif"
                    paths.append(path)
                    if path.exists():
                        continue
                    window = Window(col, row, side, side)
                    profile = {**src.profile, "width": side, "height": side,
                               "transform": window_transform(window, src.transform)}
                    with rasterio.open(path, "w", **profile) as dst:
                        dst.write(src.read(window=window))
                        if colormap:
                            dst.write_colormap(1, colormap)
    return out


def peak_rss(landcover, imagery, out: Path, workers: int, tile: int) -> float:
    """Peak resident memory (MiB) of one export in a fresh Python process.

    The child reports its own high-water mark (VmHWM): ``ru_maxrss`` would count the
    parent's memory copied at fork, and RUSAGE_CHILDREN the largest child so far.
    """
    code = (
        "import re, sys, warnings; warnings.simplefilter('ignore'); "
        f"sys.path.insert(0, {str(REPO)!r}); "
        "from geospade.chips.export import export_chips; "
        f"export_chips({_literal(landcover)}, {_literal(imagery)}, {str(out)!r}, "
        f"tile_size={tile}, "
        f"workers={workers}, overwrite=True, progress=False); "
        "print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))"
    )
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                          text=True)
    shutil.rmtree(out, ignore_errors=True)
    return int(done.stdout.split()[-1]) / 1024.0  # /proc reports KiB


def _literal(paths) -> str:
    """A path, or a list of paths, as Python source for the child process."""
    if isinstance(paths, (list, tuple)):
        return repr([str(p) for p in paths])
    return repr(str(paths))


def multi_scene(work: Path, workers: int, tile: int, runs: int) -> dict:
    """16 scenes of 1024 px against one 4096 px scene of the same pixels; RSS at 4 and 16."""
    base = build_scenes(work, 2 * BASE)  # the 2048 px scene and its 2 x 2 repeat
    landcover, imagery = base[2 * BASE]
    landcovers, imageries = cut_scenes(landcover, imagery, work / "scenes1024")
    out = work / "multi"
    run_export(landcover, imagery, out, workers, tile)  # warm the page cache
    run_multi(landcovers, imageries, out, workers, tile)
    timings: dict[str, list[tuple[float, float]]] = {"one_scene": [], "sixteen_scenes": []}
    for _ in range(runs):  # interleaved, so that load from other processes hits both alike
        timings["one_scene"].append(run_export(landcover, imagery, out, workers, tile))
        timings["sixteen_scenes"].append(run_multi(landcovers, imageries, out, workers, tile))
    wall = {k: statistics.median(t[0] for t in v) for k, v in timings.items()}
    cpu = {k: statistics.median(t[1] for t in v) for k, v in timings.items()}
    report = {"multi_scene_pixels": (2 * BASE) ** 2, "multi_scene_side": SCENE}
    for k in timings:
        report[f"{k}_wall_s"] = round(wall[k], 3)
        report[f"{k}_cpu_s"] = round(cpu[k], 3)
    report["sixteen_to_one_wall_ratio"] = round(wall["sixteen_scenes"] / wall["one_scene"], 3)
    report["sixteen_to_one_cpu_ratio"] = round(cpu["sixteen_scenes"] / cpu["one_scene"], 3)
    for n in (4, 16):
        report[f"peak_rss_mib_{n}_scenes"] = round(
            peak_rss(landcovers[:n], imageries[:n], work / f"rss_scenes{n}", workers, tile), 1)
    return report


def run_multi(landcovers: list[Path], imageries: list[Path], out: Path, workers: int,
              tile: int) -> tuple[float, float]:
    """Wall and CPU time of one export of several scenes into a fresh ``out``."""
    shutil.rmtree(out, ignore_errors=True)
    return _timed(export_chips, landcovers, imageries, out, tile_size=tile, workers=workers,
                  progress=False)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=("single", "multi", "all"), default="all",
                        help="one scene at growing sizes, 16 scenes vs one, or both")
    parser.add_argument("--size", type=int, default=8192, help="large scene side (x 2048)")
    parser.add_argument("--tile-size", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None,
                        help=f"export threads (default {default_workers()}); 1 is also timed")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="keep the scenes here between runs (default: a temporary folder)")
    args = parser.parse_args(argv)
    workers = args.workers or default_workers()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="geospade-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        report: dict = {}
        if args.case in ("multi", "all"):
            report.update(multi_scene(work, workers, args.tile_size, args.runs))
        if args.case == "multi":
            print(json.dumps(report, indent=2))
            return report
        scenes = build_scenes(work, args.size)
        landcover, imagery = scenes[args.size]
        tile = args.tile_size
        chips = work / "export"
        run_export(landcover, imagery, chips, 1, tile)  # warm the page cache, list the chips
        indices = [int(image.stem) for image, _ in esri.read_map_txt(chips)]
        written = chip_bytes(chips)
        # Interleaved runs, so that load from other processes hits all variants alike.
        timings: dict[str, list[tuple[float, float]]] = {}
        variants = {f"export_workers_{n}": n for n in sorted({1, workers})}
        for _ in range(args.runs):
            for name, n in variants.items():
                timings.setdefault(name, []).append(
                    run_export(landcover, imagery, chips, n, tile))
            timings.setdefault("floor", []).append(
                run_floor(landcover, imagery, indices, work / "floor", tile))
        wall = {k: statistics.median(t[0] for t in v) for k, v in timings.items()}
        cpu = {k: statistics.median(t[1] for t in v) for k, v in timings.items()}
        best = min(wall[k] for k in variants)
        report.update({"size": args.size, "tile_size": tile, "runs": args.runs,
                       "chips": len(indices), "mb_written": round(written / 1e6, 1),
                       "chips_per_s": round(len(indices) / best, 1),
                       "mb_per_s": round(written / 1e6 / best, 1)})
        for k in timings:
            report[f"{k}_wall_s"] = round(wall[k], 3)
            report[f"{k}_cpu_s"] = round(cpu[k], 3)
        for k in variants:
            report[f"{k}_wall_ratio_to_floor"] = round(wall[k] / wall["floor"], 2)
            report[f"{k}_cpu_ratio_to_floor"] = round(cpu[k] / cpu["floor"], 2)
        for size in sorted(scenes):
            lc, img = scenes[size]
            report[f"peak_rss_mib_{size}"] = round(
                peak_rss(lc, img, work / f"rss{size}", workers, args.tile_size), 1)
        print(json.dumps(report, indent=2))
        return report
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
