"""Synthesis on a Dask cluster: the raster cut into blocks of tiles, one task per block.

A task generates every tile that touches its block with the single-process loop
(:func:`~geospade.synthesis.pipeline.run_synthesis` on that subset of the tile grid), keeps the
block's own pixels, and writes them to a shard GeoTIFF; so the pixels are those of a run in one
process. The client records each finished shard (block id, SHA-256) in a manifest, which
``resume`` trusts, then lays a VRT over the shards and streams it through GDAL into the final
GeoTIFF or COG (or keeps the VRT and its shards as the output).

Block edges sit where a tile boundary's feather band begins, so the band lies wholly inside one
block: a block of k x k tiles generates (k + 1) x (k + 1) (k x k with no feather).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import rasterio
import rasterio.shutil
from distributed import Client, LocalCluster, WorkerPlugin, as_completed
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from geospade.errors import GeospadeError, GridError, InputError, OutputExistsError
from geospade.progress import ProgressArg, progress_bar
from geospade.raster import atomic_file, open_raster
from geospade.synthesis.model import LoadedModel, save_model
from geospade.synthesis.pipeline import RasterLabels, RasterSink, RunStats, run_synthesis
from geospade.synthesis.plan import SynthesisPlan
from geospade.tiling import Tile

log = logging.getLogger(__name__)

# Block side: minutes of work per task on a CPU worker, and few tiles generated twice at
# block edges ((k + 1)^2 / k^2 for k x k tiles: 13 % for 16 tiles of 512 px)...
DEFAULT_BLOCK_SIZE = 8192
MIN_DEFAULT_TILES = 4  # ...but smaller blocks, down to 4 x 4 tiles, to give every worker two
CONNECT_TIMEOUT = 10.0     # seconds to reach a scheduler before giving up
MANIFEST = "manifest.jsonl"
OUTPUT_FORMATS = ("gtiff", "vrt")


# -- the cluster ------------------------------------------------------------------------------


@contextlib.contextmanager
def connect(workers: int | None = None, threads: int | None = None,
            scheduler: str | None = None, scheduler_file: str | Path | None = None,
            timeout: float = CONNECT_TIMEOUT):
    """A ``distributed.Client``: on a new local cluster of ``workers`` processes, or on the
    running cluster at ``scheduler`` (an address) or described by ``scheduler_file``.

    A local cluster's workers run one block at a time with ``threads`` PyTorch threads each
    (default: the machine's cores shared out); the cluster is shut down on leaving.

    Raises:
        InputError: ``workers`` below 1, a missing scheduler file, or no scheduler reachable
            within ``timeout`` seconds.
    """
    _quiet_dask()
    if workers is not None:
        if workers < 1:
            raise InputError(f"--workers {workers}: a local cluster needs at least one worker",
                             hint="Use --workers 1 or more.")
        threads = threads or max(1, (os.cpu_count() or 1) // workers)
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=":0", silence_logs=logging.ERROR)
        try:
            with Client(cluster) as client:
                client.register_plugin(TorchThreads(threads), name="geospade-torch-threads")
                yield client
        finally:
            cluster.close()
        return
    if scheduler_file is not None:
        if not Path(scheduler_file).is_file():
            raise InputError("scheduler file not found", path=scheduler_file,
                             hint="Give the file the scheduler wrote "
                                  "(dask scheduler --scheduler-file FILE).")
        target = {"scheduler_file": str(scheduler_file)}
        where = str(scheduler_file)
    elif scheduler is not None:
        target = {"address": scheduler}
        where = scheduler
    else:
        raise InputError("no cluster given", hint="Give workers, scheduler or scheduler_file.")
    try:
        client = Client(**target, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        raise InputError(f"cannot reach the Dask scheduler at {where} within {timeout:g} s "
                         f"({type(exc).__name__})",
                         hint="Check the address (tcp://HOST:PORT) and that the scheduler "
                              "is running.") from None
    with client:
        yield client


def _quiet_dask() -> None:
    """Dask logs every start, connection and shutdown step; keep that for ``-v``."""
    if logging.getLogger().getEffectiveLevel() > logging.INFO:
        logging.getLogger("distributed").setLevel(logging.ERROR)


class TorchThreads(WorkerPlugin):
    """Sets each worker process's PyTorch thread count (a local cluster's ``--threads``)."""

    def __init__(self, threads: int):
        self.threads = int(threads)

    def setup(self, worker) -> None:
        import torch

        torch.set_num_threads(self.threads)


class GeneratorPlugin(WorkerPlugin):
    """Loads the generator once per worker process, on that worker's device (a dask-cuda
    worker sees only its own GPU), before its first block."""

    def __init__(self, checkpoint: str, device: str):
        self.checkpoint, self.device = checkpoint, device

    def setup(self, worker) -> None:
        worker_model(self.checkpoint, self.device)


_MODELS: dict[tuple[str, str], LoadedModel] = {}
_MODELS_LOCK = threading.Lock()


def worker_model(checkpoint: str, device: str) -> LoadedModel:
    """The generator of ``checkpoint``, loaded once per process (tasks share it)."""
    with _MODELS_LOCK:
        key = (checkpoint, device)
        if key not in _MODELS:
            _MODELS[key] = LoadedModel.from_checkpoint(checkpoint, device)
        return _MODELS[key]


# -- blocks -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """One task's output: a window of the raster and the tiles that contribute to it.

    Attributes:
        row, col: the block's position in the block grid (its id).
        window: the output pixels it writes.
        tiles: every tile of the plan whose kept window touches ``window``, in grid order.
    """

    row: int
    col: int
    window: Window
    tiles: tuple[Tile, ...]

    @property
    def name(self) -> str:
        return f"r{self.row:05d}_c{self.col:05d}"

    @property
    def pixels(self) -> int:
        return int(self.window.width * self.window.height)


def default_block_size(plan: SynthesisPlan, workers: int = 0) -> int:
    """:data:`DEFAULT_BLOCK_SIZE` in whole tiles, smaller (down to :data:`MIN_DEFAULT_TILES`
    tiles) while the raster would give fewer than two blocks per worker."""
    rows, cols = plan.grid.n_rows, plan.grid.n_cols
    k = max(1, DEFAULT_BLOCK_SIZE // plan.tile_size)
    while k > MIN_DEFAULT_TILES and _ceil(rows, k) * _ceil(cols, k) < 2 * workers:
        k -= 1
    # The same number of blocks, as even as they go (8 tiles in blocks of 4 + 4, not 7 + 1).
    k = max(_ceil(rows, _ceil(rows, k)), _ceil(cols, _ceil(cols, k)))
    return k * plan.tile_size


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def plan_blocks(plan: SynthesisPlan, block_size: int | None = None,
                workers: int = 0) -> list[Block]:
    """Cut the plan's tile grid into blocks of ``block_size`` pixels (k x k tiles).

    Default: :func:`default_block_size` for ``workers`` workers.

    Raises:
        GridError: a block size that is not a positive multiple of the tile size.
    """
    tile = plan.tile_size
    if block_size is None:
        block_size = default_block_size(plan, workers)
    if block_size <= 0 or block_size % tile:
        fit = max(1, round(max(block_size, tile) / tile)) * tile
        raise GridError(f"block size {block_size} is not a multiple of the tile size {tile}",
                        hint=f"Use --block-size {fit}.")
    k = block_size // tile
    grid = plan.grid
    row_edges = _edges(plan, grid.n_rows, k, plan.height, axis=0)
    col_edges = _edges(plan, grid.n_cols, k, plan.width, axis=1)
    blocks = []
    for i, (r0, r1) in enumerate(row_edges):
        for j, (c0, c1) in enumerate(col_edges):
            window = Window(c0, r0, c1 - c0, r1 - r0)
            rows = range(max(0, i * k - 1), min(grid.n_rows, (i + 1) * k + 1))
            cols = range(max(0, j * k - 1), min(grid.n_cols, (j + 1) * k + 1))
            tiles = tuple(t for t in (grid.tile(r, c) for r in rows for c in cols)
                          if _touches(plan, t, window))
            blocks.append(Block(i, j, window, tiles))
    return blocks


def _edges(plan: SynthesisPlan, n_tiles: int, k: int, extent: int,
           axis: int) -> list[tuple[int, int]]:
    """Pixel ranges of the blocks along one axis: each starts where the kept window of its
    first tile starts (the start of the feather band it shares with the tile before)."""
    starts = []
    for first in range(0, n_tiles, k):
        tile = plan.grid.tile(first, 0) if axis == 0 else plan.grid.tile(0, first)
        starts.append(max(0, plan.kept_ranges(tile)[axis][0]) if first else 0)
    stops = [*starts[1:], extent]
    return [(a, min(b, extent)) for a, b in zip(starts, stops, strict=True) if b > a]


def _touches(plan: SynthesisPlan, tile: Tile, window: Window) -> bool:
    (r0, r1), (c0, c1) = plan.kept_ranges(tile)
    return (r0 < window.row_off + window.height and r1 > window.row_off
            and c0 < window.col_off + window.width and c1 > window.col_off)


class BlockSink:
    """Writes the part of each finished cell that lies in one block into the block's shard."""

    def __init__(self, dataset, block: Window):
        self.out = RasterSink(dataset)
        self.block = block
        self.pixels = 0

    def write(self, window: Window, pixels: np.ndarray, valid: np.ndarray) -> None:
        b = self.block
        r0, r1 = max(window.row_off, b.row_off), min(window.row_off + window.height,
                                                     b.row_off + b.height)
        c0, c1 = max(window.col_off, b.col_off), min(window.col_off + window.width,
                                                     b.col_off + b.width)
        if r1 <= r0 or c1 <= c0:
            return  # a cell of a neighbouring block (generated only as context)
        rows = slice(r0 - window.row_off, r1 - window.row_off)
        cols = slice(c0 - window.col_off, c1 - window.col_off)
        local = Window(c0 - b.col_off, r0 - b.row_off, c1 - c0, r1 - r0)
        self.out.write(local, pixels[:, rows, cols], valid[rows, cols])
        self.pixels += (r1 - r0) * (c1 - c0)


# -- one task ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterRun:
    """Settings of a cluster run (what :func:`geospade.synthesis.synthesize` was given)."""

    landcover: str | Path
    checkpoint: object
    device: str = "auto"
    resample: bool = False
    seed: int = 0
    batch_size: int = 4
    map_unknown: int | None = None
    block_size: int | None = None
    output_format: str = "gtiff"
    cog: bool = False
    resume: bool = False


@dataclass(frozen=True)
class BlockJob:
    """What every task needs besides its block (sent to the workers)."""

    landcover: str
    checkpoint: str
    device: str
    resample: bool
    plan: SynthesisPlan
    seed: int
    batch_size: int
    map_unknown: int | None
    shard_dir: str
    crs: str | None
    transform: tuple


def synthesize_block(job: BlockJob, block: Block) -> dict:
    """Generate one block into its shard GeoTIFF (on a worker); returns its manifest record."""
    from geospade.synthesis.synthesize import ResolutionWarning, _training_view

    model = worker_model(job.checkpoint, job.device)
    shard = Path(job.shard_dir) / f"{block.name}.tif"
    began = time.perf_counter()
    with open_raster(job.landcover, "land cover") as dataset:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResolutionWarning)  # the client has warned
            source_ds, _ = _training_view(dataset, model, job.resample)
        try:
            stats = _write_shard(RasterLabels(source_ds), model, job, block, shard)
        finally:
            if source_ds is not dataset:
                source_ds.close()
    return {"block": block.name, "file": shard.name, "sha256": file_sha256(shard),
            "window": [block.window.col_off, block.window.row_off, block.window.width,
                       block.window.height],
            "generated": stats.generated, "skipped": stats.skipped,
            "forward_calls": stats.forward_calls,
            "seconds": round(time.perf_counter() - began, 3)}


def _write_shard(source, model: LoadedModel, job: BlockJob, block: Block,
                 shard: Path) -> RunStats:
    from affine import Affine

    from geospade.synthesis.synthesize import block_cache_bytes, describe_bands, imagery_profile

    window = block.window
    transform = window_transform(window, Affine(*job.transform))
    profile = imagery_profile(model.imagery, window.width, window.height, job.crs, transform)
    env = rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True,
                       GDAL_CACHEMAX=block_cache_bytes(window.width, model.imagery))
    with atomic_file(shard, overwrite=True) as tmp:
        with env, rasterio.open(tmp, "w", **profile) as dst:
            describe_bands(dst, model.imagery)
            sink = BlockSink(dst, window)
            stats = run_synthesis(source, sink, model, job.plan, seed=job.seed,
                                  batch_size=job.batch_size, map_unknown=job.map_unknown,
                                  progress=False, tiles=block.tiles)
        if sink.pixels != block.pixels:  # every pixel of the block, exactly once
            raise RuntimeError(f"block {block.name} wrote {sink.pixels} of {block.pixels} "
                               "pixels")
    return stats


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in 4 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(4 << 20), b""):
            digest.update(piece)
    return digest.hexdigest()


# -- the manifest -----------------------------------------------------------------------------


class Manifest:
    """``manifest.jsonl`` of a run's shard folder: a header line with the run's settings,
    then one line per finished block (id, file, SHA-256), appended as blocks complete."""

    def __init__(self, folder: Path, header: dict):
        self.path = folder / MANIFEST
        self.folder = folder
        self.header = header
        self.records: dict[str, dict] = {}

    def load(self) -> None:
        """Read an existing manifest; a run with other settings cannot be resumed."""
        if not self.path.exists():
            return
        lines = self.path.read_text().splitlines()
        found = _parse(lines[0]).get("header") if lines else None
        if found != self.header:
            changed = sorted(k for k in {**self.header, **(found or {})}
                             if (found or {}).get(k) != self.header.get(k))
            raise InputError(f"the interrupted run here used other settings ({', '.join(changed)})",
                             path=self.path,
                             hint="Resume with the same settings, or pass --overwrite to "
                                  "start over.")
        for line in lines[1:]:
            record = _parse(line)  # a line cut short by a killed client parses as {}
            if "block" in record:
                self.records[record["block"]] = record

    def start(self) -> None:
        """Begin a new manifest (header only)."""
        self.path.write_text(json.dumps({"header": self.header}) + "\n")

    def add(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.records[record["block"]] = record

    def is_complete(self, block: Block) -> bool:
        """True when the block's shard is recorded and its file still has that checksum."""
        record = self.records.get(block.name)
        if record is None:
            return False
        shard = self.folder / record["file"]
        return shard.is_file() and file_sha256(shard) == record["sha256"]


def _recorded(folder: Path) -> dict:
    """The settings header of the manifest in ``folder`` ({} when there is none)."""
    with contextlib.suppress(OSError), open(folder / MANIFEST) as f:
        return _parse(f.readline()).get("header") or {}
    return {}


def _parse(line: str) -> dict:
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _fingerprint(path: str | Path) -> list:
    stat = Path(path).stat()
    return [str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns]


def _weights_digest(model: LoadedModel) -> str:
    """SHA-256 of a model's weights (what identifies a model that has no file)."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.generator.state_dict().items()):
        digest.update(name.encode())
        raw = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)  # any dtype
        digest.update(raw.numpy().tobytes())
    return digest.hexdigest()


# -- the run ----------------------------------------------------------------------------------


@dataclass
class ClusterStats(RunStats):
    """:class:`RunStats` of a cluster run, plus its blocks.

    ``generated`` counts tile generations, including the tiles generated again as context
    at block edges.

    Attributes:
        blocks: blocks in the raster.
        reused: blocks a resumed run took from the manifest instead of generating.
    """

    blocks: int = 0
    reused: int = 0


def write_on_cluster(client, run: ClusterRun, model: LoadedModel, plan: SynthesisPlan,
                     out: Path, crs, transform, *, overwrite: bool = False,
                     progress: ProgressArg = True) -> ClusterStats:
    """Synthesise on ``client``'s cluster into shards, then assemble them at ``out``.

    Shards and the manifest live in ``OUT.shards/`` beside the output: kept as part of the
    output for ``output_format="vrt"``, removed after a GeoTIFF is assembled (and kept when
    the run fails, for ``resume``).

    Raises:
        OutputExistsError: shards of an earlier run exist and neither resume nor overwrite.
        InputError: resuming with other settings, or an unknown output format.
    """
    if run.output_format not in OUTPUT_FORMATS:
        raise InputError(f"output format '{run.output_format}' is not one of {OUTPUT_FORMATS}")
    if run.output_format == "vrt" and run.cog:
        raise InputError("a VRT output cannot also be a COG", hint="Drop --cog or use gtiff.")
    folder = out.with_name(out.name + ".shards")
    block_size = run.block_size
    if block_size is None and run.resume:  # the default depends on the cluster's size
        block_size = _recorded(folder).get("block_size")
    if block_size is None:
        block_size = default_block_size(plan, len(client.scheduler_info()["workers"]))
    blocks = plan_blocks(plan, block_size)
    checkpoint = (str(Path(run.checkpoint).resolve())
                  if not isinstance(run.checkpoint, LoadedModel) else None)
    header = {"landcover": _fingerprint(run.landcover),
              "checkpoint": _fingerprint(checkpoint) if checkpoint else _weights_digest(model),
              "seed": run.seed, "batch_size": run.batch_size, "map_unknown": run.map_unknown,
              "resample": run.resample, "tile_size": plan.tile_size, "halo": plan.halo,
              "feather": plan.feather, "width": plan.width, "height": plan.height,
              "block_size": block_size}
    manifest = Manifest(folder, header)
    _prepare_folder(folder, manifest, run.resume, overwrite)
    if checkpoint is None:  # workers load the model from a file, not from this process
        checkpoint = str(save_model(model, folder / "model.pt"))
    job = BlockJob(str(Path(run.landcover).resolve()), checkpoint, run.device, run.resample,
                   plan, run.seed, run.batch_size, run.map_unknown, str(folder),
                   None if crs is None else crs.to_wkt(), tuple(transform)[:6])
    stats = _run_blocks(client, job, blocks, manifest, progress)
    _assemble(blocks, manifest, folder, out, model.imagery, plan, crs, transform, run,
              overwrite)
    if run.output_format != "vrt":
        shutil.rmtree(folder, ignore_errors=True)
    return stats


def _prepare_folder(folder: Path, manifest: Manifest, resume: bool, overwrite: bool) -> None:
    if folder.exists() and not resume:
        if not overwrite:
            raise OutputExistsError("shards of an earlier run exist", path=folder,
                                    hint="Pass --resume to continue that run, or --overwrite "
                                         "to start over.")
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if resume:
        manifest.load()
    if not manifest.path.exists() or not manifest.records:
        manifest.start()


def _run_blocks(client, job: BlockJob, blocks: list[Block], manifest: Manifest,
                progress: ProgressArg) -> ClusterStats:
    """Submit every block the manifest lacks and record each as it completes."""
    stats = ClusterStats(tiles=len(job.plan.grid), blocks=len(blocks))
    todo = [b for b in blocks if not manifest.is_complete(b)]
    stats.reused = len(blocks) - len(todo)
    client.register_plugin(GeneratorPlugin(job.checkpoint, job.device),
                           name=f"geospade-generator-{_token(job.checkpoint, job.device)}")
    token = _token(json.dumps(manifest.header, sort_keys=True), job.device)
    futures = [client.submit(synthesize_block, job, block, key=f"geospade-{token}-{block.name}")
               for block in todo]
    pixels = {f"geospade-{token}-{b.name}": b.pixels for b in todo}
    bar = progress_bar(progress, total=len(blocks), initial=stats.reused, desc="synthesize",
                       unit="block")
    start, done_pixels, failed = time.perf_counter(), 0, []
    try:
        for future in as_completed(futures):
            if future.status != "finished":
                failed.append(future)
            else:
                record = future.result()
                manifest.add(record)
                done_pixels += pixels[future.key]
                for name in ("generated", "skipped", "forward_calls"):
                    setattr(stats, name, getattr(stats, name) + record[name])
            running = sum(len(v) for v in client.processing().values())
            rate = done_pixels / 1e6 / max(time.perf_counter() - start, 1e-9)
            bar.update(1)
            bar.set_postfix_str(f"in flight {running}, failed {len(failed)}, {rate:.2f} Mpx/s",
                                refresh=False)
    finally:
        bar.close()
        client.cancel([f for f in futures if not f.done()])
    stats.seconds = time.perf_counter() - start
    if failed:
        error = failed[0].exception()
        if isinstance(error, GeospadeError):
            raise error
        raise RuntimeError(f"{len(failed)} of {len(todo)} blocks failed; the first: "
                           f"{type(error).__name__}: {error}") from error
    return stats


def _token(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


# -- assembly ---------------------------------------------------------------------------------


def _assemble(blocks: list[Block], manifest: Manifest, folder: Path, out: Path, imagery,
              plan: SynthesisPlan, crs, transform, run: ClusterRun, overwrite: bool) -> None:
    """The shards -> a VRT -> the output (the VRT itself, or a GeoTIFF / COG via GDAL)."""
    for leftover in folder.glob(".*.partial*"):  # shards of tasks killed mid-write
        leftover.unlink(missing_ok=True)
    files = [manifest.records[b.name]["file"] for b in blocks]
    if run.output_format == "vrt":
        with atomic_file(out, overwrite) as tmp:
            tmp.write_text(vrt_xml(blocks, [f"{folder.name}/{f}" for f in files], imagery,
                                   plan.width, plan.height, crs, transform))
        return
    vrt = folder / "mosaic.vrt"
    vrt.write_text(vrt_xml(blocks, files, imagery, plan.width, plan.height, crs, transform))
    from geospade.synthesis.synthesize import imagery_profile, to_cog

    with atomic_file(out, overwrite) as tmp:
        if run.cog:
            to_cog(vrt, tmp)
            return
        profile = imagery_profile(imagery, plan.width, plan.height, crs, transform)
        options = {k: v for k, v in profile.items()
                   if k not in ("driver", "width", "height", "count", "dtype", "crs",
                                "transform", "nodata")}
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
            rasterio.shutil.copy(vrt, tmp, driver="GTiff", **options)


def vrt_xml(blocks: list[Block], files: list[str], imagery, width: int, height: int, crs,
            transform) -> str:
    """A GDAL VRT mosaic of the shards (relative paths), with their mask, band names and
    colour interpretation."""
    dtype = {"uint8": "Byte", "uint16": "UInt16", "int16": "Int16", "float32": "Float32",
             "uint32": "UInt32", "int32": "Int32", "float64": "Float64"}[str(imagery.dtype)]
    t = transform
    lines = [f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">']
    if crs is not None:
        lines.append(f"  <SRS>{escape(crs.to_wkt())}</SRS>")
    lines.append(f"  <GeoTransform>{t.c!r}, {t.a!r}, {t.b!r}, {t.f!r}, {t.d!r}, {t.e!r}"
                 "</GeoTransform>")
    interp = [c.name.capitalize() for c in imagery.colorinterp()]
    for band in range(1, imagery.count + 1):
        lines.append(f'  <VRTRasterBand dataType="{dtype}" band="{band}">')
        lines.append(f"    <Description>{escape(imagery.band_names[band - 1])}</Description>")
        lines.append(f"    <ColorInterp>{interp[band - 1]}</ColorInterp>")
        lines += _sources(blocks, files, str(band), "    ")
        lines.append("  </VRTRasterBand>")
    lines.append("  <MaskBand>")
    lines.append('    <VRTRasterBand dataType="Byte">')
    lines += _sources(blocks, files, "mask,1", "      ")
    lines.append("    </VRTRasterBand>")
    lines.append("  </MaskBand>")
    lines.append("</VRTDataset>")
    return "\n".join(lines) + "\n"


def _sources(blocks: list[Block], files: list[str], band: str, indent: str) -> list[str]:
    lines = []
    for block, name in zip(blocks, files, strict=True):
        w = block.window
        lines += [
            f"{indent}<SimpleSource>",
            f'{indent}  <SourceFilename relativeToVRT="1">{escape(name)}</SourceFilename>',
            f"{indent}  <SourceBand>{band}</SourceBand>",
            f'{indent}  <SrcRect xOff="0" yOff="0" xSize="{w.width}" ySize="{w.height}"/>',
            f'{indent}  <DstRect xOff="{w.col_off}" yOff="{w.row_off}" xSize="{w.width}" '
            f'ySize="{w.height}"/>',
            f"{indent}</SimpleSource>",
        ]
    return lines

