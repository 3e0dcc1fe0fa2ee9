"""Benchmark of ``export_chips``: throughput, distance to the I/O floor, and peak memory.

Builds the demo scene at 2048 px and repeats it 4 x 4 into an 8192 x 8192 scene (land cover
and imagery), then:

- times the export (median of ``--runs`` runs) and reports chips/s and MB/s written;
- times the I/O floor: the same windows read and the same chip bytes written with plain
  rasterio, one thread, no planning, no statistics, no metadata;
- runs the export in a fresh subprocess at 2048 and 8192 px and reports each one's peak RSS,
  which must not grow with the raster's size.

Usage: python benchmarks/bench_export.py [--size 8192] [--runs 3] [--workers N] [--work-dir D]
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
from rasterio.windows import transform as window_transform

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from geospade.chips import esri  # noqa: E402
from geospade.chips.export import default_workers, export_chips  # noqa: E402
from geospade.demo import make_demo_scene, tile_raster  # noqa: E402
from geospade.raster import write_world_file  # noqa: E402
from geospade.tiling import tile_grid  # noqa: E402

BASE = 2048


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


def peak_rss(landcover: Path, imagery: Path, out: Path, workers: int, tile: int) -> float:
    """Peak resident memory (MiB) of one export in a fresh Python process.

    The child reports its own high-water mark (VmHWM): ``ru_maxrss`` would count the
    parent's memory copied at fork, and RUSAGE_CHILDREN the largest child so far.
    """
    code = (
        "import re, sys, warnings; warnings.simplefilter('ignore'); "
        f"sys.path.insert(0, {str(REPO)!r}); "
        "from geospade.chips.export import export_chips; "
        f"export_chips({str(landcover)!r}, {str(imagery)!r}, {str(out)!r}, tile_size={tile}, "
        f"workers={workers}, overwrite=True, progress=False); "
        "print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))"
    )
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                          text=True)
    shutil.rmtree(out, ignore_errors=True)
    return int(done.stdout.split()[-1]) / 1024.0  # /proc reports KiB


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
        report: dict = {"size": args.size, "tile_size": tile, "runs": args.runs,
                        "chips": len(indices), "mb_written": round(written / 1e6, 1),
                        "chips_per_s": round(len(indices) / best, 1),
                        "mb_per_s": round(written / 1e6 / best, 1)}
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
