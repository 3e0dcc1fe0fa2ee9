"""Benchmark of ``geospade synthesize``: throughput, peak memory, overhead and seams by size.

For each raster size (2k, 8k, 16k pixels a side by default; a land cover made by repeating
the 2048 px demo scene) a fresh subprocess synthesises the whole raster and reports:

- wall time and Mpx/s (output pixels per second);
- peak RSS (``ru_maxrss``) of the process: flat across sizes when memory does not depend on
  the raster's size;
- overhead ratio = synthesis time / (generated tiles x one generator forward per tile at
  the tile + halo size and the same batch size): how far the pipeline (reading, encoding,
  blending, compression, writing) stays from the limit the model itself sets; reported with
  wall time and with process CPU time (steadier when the machine is shared);
- the seam score of the output (1.0 = tile boundaries indistinguishable), over the whole
  raster and within each copy of the demo scene (where copies meet, the land cover itself
  jumps, on a tile boundary).

The model is a checkpoint given with --checkpoint, else an untrained generator of --preset
(weights scaled to give a textured output, so seams would show).

With ``--workers N [N ...]`` it measures synthesis on a local Dask cluster instead, side by
side in one run: for each size, one process with ``--threads`` PyTorch threads, then N worker
processes with threads / N threads each (blocks of ``--block-size``); it reports Mpx/s, the
ratio to the single process (1.0 = distribution costs nothing; also in CPU seconds of the
workers and client against the single process's, steadier on a shared machine, though a
process's idle intra-op threads may spin and count), the peak RSS of the largest
worker (flat across sizes when memory does not depend on the raster), the tile generations
(each tile once, as in the single process) and whether the output is identical to the
single process's. Sizes below 2048 crop the demo scene.

Usage::

    python benchmarks/bench_synthesize.py --sizes 2048 8192 --preset tiny --adaptive clade
    python benchmarks/bench_synthesize.py --workers 1 2 --threads 2 --sizes 2048 4096 \
        --preset tiny --tile-size 256 --block-size 1024
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SCENE_SIZE = 2048


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 8192, 16384],
                        help="raster sides in pixels (multiples of 2048)")
    parser.add_argument("--workdir", default="/tmp/geospade-bench-synthesize",
                        help="folder for inputs, outputs and results.json")
    parser.add_argument("--checkpoint", default=None, help="trained checkpoint to use")
    parser.add_argument("--preset", default="cpu", help="model preset of the untrained model")
    parser.add_argument("--adaptive", default=None, choices=["spade", "clade"],
                        help="override the preset's adaptive normalisation")
    parser.add_argument("--tile-size", type=int, default=512)
    parser.add_argument("--halo", type=int, default=None, help="default: the model's default")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--forward-repeats", type=int, default=5,
                        help="timed generator forwards for the overhead ratio")
    parser.add_argument("--keep-outputs", action="store_true",
                        help="keep the synthesised rasters (they are large)")
    parser.add_argument("--workers", type=int, nargs="+", default=None,
                        help="compare local Dask clusters of these worker counts with one "
                             "process (needs dask[distributed])")
    parser.add_argument("--threads", type=int, default=None,
                        help="with --workers: PyTorch threads in all (default: the largest "
                             "worker count), shared out among the workers")
    parser.add_argument("--block-size", type=int, default=None,
                        help="with --workers: block side in pixels (default: geospade's)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def prepare(args: argparse.Namespace) -> tuple[Path, dict[int, Path]]:
    """The model checkpoint and one land cover per size (made once, reused)."""
    from geospade.classes import CHESAPEAKE_7
    from geospade.demo import make_demo_scene
    from geospade.imagery import ImageryInfo
    from geospade.synthesis.model import save_model
    from tests.helpers import random_model, tile_raster

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    scene_dir = work / "scene"
    if not (scene_dir / "landcover.tif").exists():
        make_demo_scene(scene_dir, size=SCENE_SIZE, seed=0, progress=False)
    inputs = {}
    for size in args.sizes:
        if size % SCENE_SIZE and size > SCENE_SIZE:
            raise SystemExit(f"size {size} is not a multiple of {SCENE_SIZE}")
        path = work / f"landcover_{size}.tif"
        if not path.exists() and size < SCENE_SIZE:
            crop_raster(scene_dir / "landcover.tif", path, size)
        elif not path.exists():
            tile_raster(scene_dir / "landcover.tif", path, size // SCENE_SIZE, progress=False)
        inputs[size] = path
    if args.checkpoint:
        return Path(args.checkpoint), inputs
    overrides = {"adaptive": args.adaptive} if args.adaptive else {}
    name = f"untrained_{args.preset}_{args.adaptive or 'default'}.pt"
    checkpoint = work / name
    if not checkpoint.exists():
        model = random_model(CHESAPEAKE_7, ImageryInfo(3, "uint8"), preset=args.preset,
                             chip_size=256, **overrides)
        save_model(model, checkpoint)
    return checkpoint, inputs


def crop_raster(src: Path, dst: Path, size: int) -> None:
    """The top-left ``size`` x ``size`` pixels of a raster (colour table and nodata kept)."""
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(src) as ds:
        window = Window(0, 0, size, size)
        profile = {**ds.profile, "width": size, "height": size,
                   "transform": ds.window_transform(window)}
        profile.pop("blockxsize", None), profile.pop("blockysize", None)
        profile["tiled"] = False
        with rasterio.open(dst, "w", **profile) as out:
            out.write(ds.read(window=window))
            out.write_colormap(1, ds.colormap(1))


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """CPU time this process (all its threads) has used, user + system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cluster_child(args: argparse.Namespace, job: dict) -> dict:
    """One size on a fresh local cluster of ``job["workers"]`` processes (timed without the
    cluster's start-up and the workers' model loading)."""
    import dask
    from distributed import Client

    from geospade.synthesis import synthesize
    from geospade.synthesis.distributed import TorchThreads, local_cluster, worker_model

    cluster = local_cluster(job["workers"])  # the one `geospade synthesize --workers` starts
    try:
        with Client(cluster) as client:
            client.register_plugin(TorchThreads(job["threads"]), name="torch-threads")
            client.run(lambda: worker_model(job["checkpoint"], args.device) and None)
            cpu_before, client_cpu = client.run(cpu_seconds), cpu_seconds()
            began = time.perf_counter()
            result = synthesize(job["landcover"], job["checkpoint"], job["out"],
                                tile_size=args.tile_size, halo=args.halo,
                                batch_size=args.batch_size, device=args.device, client=client,
                                block_size=args.block_size, progress=False, overwrite=True)
            seconds = time.perf_counter() - began
            cpu_after, client_cpu = client.run(cpu_seconds), cpu_seconds() - client_cpu
            rss = client.run(peak_rss_mb)
            profiler = client.run(lambda: dask.config.get("distributed.worker.profile.enabled"))
            # Workers and client together (a restarted worker would be missing: none is).
            cpu = client_cpu + sum(cpu_after[w] - cpu_before.get(w, 0.0) for w in cpu_after)
    finally:
        cluster.close()
    return {"size": job["size"], "workers": job["workers"], "threads": job["threads"],
            "seconds": round(seconds, 2), "mpx_per_s": round(job["size"] ** 2 / 1e6 / seconds, 3),
            "cpu_seconds": round(cpu, 2),
            "peak_rss_per_worker_mb": round(max(rss.values()), 1),
            "client_rss_mb": round(peak_rss_mb(), 1), "blocks": result.stats.blocks,
            "task_seconds": round(result.stats.seconds, 2),
            "worker_busy_seconds": round(result.stats.busy_seconds, 2),
            "assembly_seconds": round(result.stats.assembly_seconds, 2),
            "tile_generations": result.stats.generated, "tiles": result.stats.tiles,
            "worker_profiler": any(profiler.values())}


def single_child(args: argparse.Namespace, job: dict) -> dict:
    """One size in this process with ``job["threads"]`` PyTorch threads (output kept)."""
    import torch

    from geospade.synthesis import LoadedModel, synthesize

    torch.set_num_threads(job["threads"])
    model = LoadedModel.from_checkpoint(job["checkpoint"], args.device)
    began, began_cpu = time.perf_counter(), cpu_seconds()
    result = synthesize(job["landcover"], model, job["out"], tile_size=args.tile_size,
                        halo=args.halo, batch_size=args.batch_size, progress=False,
                        overwrite=True)
    seconds = time.perf_counter() - began
    return {"size": job["size"], "workers": 0, "threads": job["threads"],
            "seconds": round(seconds, 2), "mpx_per_s": round(job["size"] ** 2 / 1e6 / seconds, 3),
            "cpu_seconds": round(cpu_seconds() - began_cpu, 2),
            "peak_rss_per_worker_mb": round(peak_rss_mb(), 1), "tiles": result.stats.tiles,
            "tile_generations": result.stats.generated}


def identical(a: str, b: str) -> bool:
    """True when two rasters hold the same pixels and masks, read window by window."""
    import numpy as np
    import rasterio

    with rasterio.open(a) as x, rasterio.open(b) as y:
        if (x.width, x.height, x.count) != (y.width, y.height, y.count):
            return False
        for _, window in x.block_windows(1):
            if not (np.array_equal(x.read(window=window), y.read(window=window))
                    and np.array_equal(x.dataset_mask(window=window),
                                       y.dataset_mask(window=window))):
                return False
    return True


def run_workers(args: argparse.Namespace, checkpoint: Path, inputs: dict[int, Path]) -> int:
    """Single process vs local clusters, size by size, each run in a fresh subprocess."""
    threads = args.threads or max(args.workers)
    passthrough = ["--tile-size", str(args.tile_size), "--batch-size", str(args.batch_size),
                   "--device", args.device]
    if args.halo is not None:
        passthrough += ["--halo", str(args.halo)]
    if args.block_size is not None:
        passthrough += ["--block-size", str(args.block_size)]
    work = Path(args.workdir)
    results = []
    for size, landcover in inputs.items():
        single_out = str(work / f"single_{size}.tif")
        runs = [(0, threads, single_out)] + [
            (n, max(1, threads // n), str(work / f"cluster_{n}_{size}.tif")) for n in args.workers]
        base = None
        for workers, per_worker, out in runs:
            job = {"size": size, "landcover": str(landcover),
                   "checkpoint": str(checkpoint.resolve()), "out": out, "workers": workers,
                   "threads": per_worker}
            proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(job),
                                   *passthrough], capture_output=True, text=True, check=False)
            if proc.returncode:
                print(proc.stderr, file=sys.stderr)
                return proc.returncode
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            if workers == 0:
                base = row
                label = f"1 process x {per_worker} threads"
            else:
                row["ratio_to_single_process"] = round(row["mpx_per_s"] / base["mpx_per_s"], 3)
                # CPU time is steadier than wall time on a shared machine.
                row["cpu_ratio_to_single_process"] = round(base["cpu_seconds"]
                                                           / row["cpu_seconds"], 3)
                row["identical_to_single_process"] = identical(out, single_out)
                Path(out).unlink()
                label = f"{workers} workers x {per_worker} threads"
            results.append(row)
            extra = ("" if workers == 0 else
                     f"  ratio {row['ratio_to_single_process']:.3f} (CPU time "
                     f"{row['cpu_ratio_to_single_process']:.3f})  "
                     f"identical {row['identical_to_single_process']}  "
                     f"{row['blocks']} blocks, {row['tile_generations']} tile generations "
                     f"(1 process: {base['tile_generations']}) for {row['tiles']} tiles; "
                     f"tasks {row['task_seconds']:.1f} s (workers busy "
                     f"{row['worker_busy_seconds']:.1f} s in all), assembly "
                     f"{row['assembly_seconds']:.1f} s")
            print(f"{size:>6} px  {label:<26} {row['seconds']:8.1f} s  "
                  f"{row['mpx_per_s']:7.3f} Mpx/s  peak RSS per worker "
                  f"{row['peak_rss_per_worker_mb']:7.1f} MB{extra}", flush=True)
        Path(single_out).unlink(missing_ok=True)
    summary = {"checkpoint": str(checkpoint), "preset": args.preset, "threads": threads,
               "block_size": args.block_size, "tile_size": args.tile_size, "results": results}
    for n in args.workers:
        rss = [r["peak_rss_per_worker_mb"] for r in results if r["workers"] == n]
        summary[f"rss_growth_{n}_workers"] = round(max(rss) / min(rss), 3)
        print(f"{n} workers: peak RSS per worker, largest / smallest size: "
              f"{summary[f'rss_growth_{n}_workers']:.3f}")
    (work / "results_workers.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


def child(args: argparse.Namespace) -> dict:
    """One size, in its own process: synthesise, then time the generator alone."""
    import torch

    from geospade.models import one_hot
    from geospade.synthesis import LoadedModel, seam_score, synthesize

    job = json.loads(args.child)
    if "workers" in job:
        return (single_child if job["workers"] == 0 else cluster_child)(args, job)
    out = Path(job["out"])
    model = LoadedModel.from_checkpoint(job["checkpoint"], args.device)
    began, began_cpu = time.perf_counter(), time.process_time()
    result = synthesize(job["landcover"], model, out, tile_size=args.tile_size,
                        halo=args.halo, batch_size=args.batch_size, progress=False,
                        overwrite=True)
    seconds = time.perf_counter() - began
    cpu_seconds = time.process_time() - began_cpu
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    # The limit the model sets: one forward of a batch of tiles of the same input size.
    size = result.tile_size + 2 * result.halo
    labels = torch.randint(0, model.scheme.num_classes, (args.batch_size, size, size))
    with torch.inference_mode():
        onehot = one_hot(labels.to(model.device), model.scheme.num_classes)
        noise = model.generator.make_noise(args.batch_size, size, size, 0)
        model.generator(onehot, noise)  # warm-up
        times, cpu_times = [], []
        for _ in range(args.forward_repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            model.generator(onehot, noise)
            if model.device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - start_cpu)
    per_tile = statistics.median(times) / args.batch_size
    limit = result.stats.generated * per_tile
    # CPU time is steadier than wall time on a machine shared with other work.
    cpu_limit = result.stats.generated * statistics.median(cpu_times) / args.batch_size
    score = seam_score(out, result.tile_size)
    scene_score = scene_seam_score(out, result.tile_size)
    matched = scene_seam_score(out, result.tile_size, period=result.downsampling_factor)
    if not args.keep_outputs:
        out.unlink()
    return {
        "size": job["size"], "tile_size": result.tile_size, "halo": result.halo,
        "feather": result.feather, "batch_size": args.batch_size,
        "tiles": result.stats.tiles, "generated": result.stats.generated,
        "seconds": round(seconds, 2), "mpx_per_s": round(job["size"] ** 2 / 1e6 / seconds, 3),
        "peak_rss_mb": round(peak_rss_mb, 1),
        "forward_per_tile_s": round(per_tile, 4),
        "generate_seconds": round(result.stats.generate_seconds, 2),
        "overhead_ratio": round(seconds / limit, 3),
        "cpu_seconds": round(cpu_seconds, 2),
        "overhead_ratio_cpu_time": round(cpu_seconds / cpu_limit, 3),
        "max_pending_pixels": result.stats.max_pending_pixels,
        "seam_score": round(score, 4),
        "seam_score_within_scenes": round(scene_score, 4),
        "seam_score_within_scenes_phase_matched": round(matched, 4),
    }


def scene_seam_score(path: Path, tile_size: int, period: int = 1) -> float:
    """Seam score within each copy of the demo scene, read copy by copy.

    The repeated land cover jumps where one copy of the scene meets the next; with tiles
    dividing 2048 px those lines are also tile boundaries, and their real content edges
    would count as seams. Scoring each 2048 px copy on its own leaves them out. ``period``
    as in :func:`geospade.synthesis.seam_score`.
    """
    import rasterio
    from rasterio.windows import Window

    from geospade.synthesis.plan import world_offset
    from geospade.synthesis.seams import SeamStats, seam_stats

    total = SeamStats()
    with rasterio.open(path) as ds:
        world_row, world_col = world_offset(ds.transform)  # tiles are anchored in the CRS
        for row in range(0, ds.height, SCENE_SIZE):
            for col in range(0, ds.width, SCENE_SIZE):
                window = Window(col, row, min(SCENE_SIZE, ds.width - col),
                                min(SCENE_SIZE, ds.height - row))
                offset = (-(world_row + row) % tile_size, -(world_col + col) % tile_size)
                total = total + seam_stats(ds.read(window=window), tile_size, offset,
                                           period=period,
                                           mask=ds.dataset_mask(window=window) > 0)
    return total.score


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    checkpoint, inputs = prepare(args)
    if args.workers:
        return run_workers(args, checkpoint, inputs)
    results = []
    passthrough = ["--tile-size", str(args.tile_size), "--batch-size", str(args.batch_size),
                   "--device", args.device, "--forward-repeats", str(args.forward_repeats)]
    if args.halo is not None:
        passthrough += ["--halo", str(args.halo)]
    if args.keep_outputs:
        passthrough.append("--keep-outputs")
    for size, landcover in inputs.items():
        job = {"size": size, "landcover": str(landcover), "checkpoint": str(checkpoint),
               "out": str(Path(args.workdir) / f"synthetic_{size}.tif")}
        proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(job),
                               *passthrough], capture_output=True, text=True, check=False)
        if proc.returncode:
            print(proc.stderr, file=sys.stderr)
            return proc.returncode
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(row)
        print(f"{size:>6} px: {row['seconds']:8.1f} s  {row['mpx_per_s']:7.3f} Mpx/s  "
              f"peak RSS {row['peak_rss_mb']:7.1f} MB  overhead {row['overhead_ratio']:.3f} "
              f"(CPU time {row['overhead_ratio_cpu_time']:.3f})  "
              f"seam score {row['seam_score']:.4f} (within scene copies "
              f"{row['seam_score_within_scenes']:.4f}, phase-matched "
              f"{row['seam_score_within_scenes_phase_matched']:.4f})  "
              f"({row['generated']}/{row['tiles']} tiles)",
              flush=True)
    rss = [r["peak_rss_mb"] for r in results]
    summary = {"checkpoint": str(checkpoint), "preset": args.preset, "adaptive": args.adaptive,
               "results": results,
               "rss_growth": round(max(rss) / min(rss), 3) if rss else None}
    (Path(args.workdir) / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    if len(rss) > 1:
        print(f"peak RSS largest / smallest: {summary['rss_growth']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
