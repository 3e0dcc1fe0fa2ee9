"""Synthesis on a Dask cluster: the raster cut into blocks of tiles, in two phases.

Every tile is generated exactly once in the whole run, by the block it belongs to:

1. One task per block generates the block's own tiles with the single-process loop
   (:func:`~geospade.synthesis.pipeline.run_synthesis` on that subset of the tile grid),
   blends everything that depends on them alone and writes it to the block's shard GeoTIFF;
   it keeps the raw generated pixels of its tiles in the feather bands it shares with the
   neighbouring blocks in a small edge file beside the shards.
2. One task per band between blocks (along a block's top edge with the corner where four
   blocks meet, and along its left edge) blends it from those edge pixels, with the
   arithmetic of the in-process :class:`~geospade.synthesis.blend.FeatherBlender` over the
   same tiles in the same (grid) order, and writes it to a small shard of its own. A band
   waits only for the blocks it reads.

So the pixels are those of a run in one process, bit for bit. The client records each
finished task (its id and the SHA-256 of its files) in a manifest, which ``resume`` trusts,
then lays a VRT over the shards and streams it through GDAL into the final GeoTIFF or COG
(or keeps the VRT and its shards as the output).

Block edges sit where a tile boundary's feather band begins, so a block's pixels are a
rectangle its own tiles complete plus, at its top and left, the bands it shares with the
blocks before it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import dask
import numpy as np
import rasterio
import rasterio.shutil
from distributed import Client, LocalCluster, WorkerPlugin, as_completed
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from geospade.errors import GeospadeError, GridError, InputError, OutputExistsError
from geospade.progress import ProgressArg, progress_bar
from geospade.raster import PARTIAL_RE, atomic_file, open_raster, remove_stale_partials
from geospade.synthesis.blend import tile_weights
from geospade.synthesis.model import LoadedModel, save_model
from geospade.synthesis.pipeline import RasterLabels, RasterSink, RunStats, run_synthesis
from geospade.synthesis.plan import SynthesisPlan, kept_range
from geospade.tiling import Tile

log = logging.getLogger(__name__)

# Block side, fixed whatever the raster's size: a worker's memory depends on it (never on the
# raster), and a task is a minute or so of work on a CPU worker, with few bands between
# blocks (phase-2 tasks, edge files)...
DEFAULT_BLOCK_SIZE = 2048
MIN_DEFAULT_TILES = 2  # ...but smaller blocks, down to 2 x 2 tiles, to give every worker two
CONNECT_TIMEOUT = 10.0     # seconds to reach a scheduler before giving up
#: Dask settings of the workers of a local cluster. The statistical profiler (the dashboard's
#: "Profile" page) samples every thread's stack each 10 ms; beside a CPU-bound PyTorch task it
#: cost about 10 % of the throughput (measured: 0.91 of one process's Mpx/s with it, 1.01
#: without, 8192^2 px on 2 workers). Workers of a cluster started elsewhere take the same
#: setting from DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False (docs/scale-out.md).
LOCAL_WORKER_CONFIG = {"distributed.worker.profile.enabled": False}
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
        InputError: ``workers`` below 1, a missing scheduler file, no scheduler reachable
            within ``timeout`` seconds, or a running cluster with no worker after them.
    """
    _quiet_dask()
    if workers is not None:
        if workers < 1:
            raise InputError(f"--workers {workers}: a local cluster needs at least one worker",
                             hint="Use --workers 1 or more.")
        threads = threads or max(1, (os.cpu_count() or 1) // workers)
        cluster = local_cluster(workers)
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
        _wait_for_a_worker(client, where, timeout)
        yield client


def local_cluster(workers: int) -> LocalCluster:
    """A Dask cluster of ``workers`` processes on this machine, one task at a time each,
    dashboard on a free port, with :data:`LOCAL_WORKER_CONFIG`."""
    with dask.config.set(LOCAL_WORKER_CONFIG):  # the nannies pass it to their workers
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                            dashboard_address=":0", silence_logs=logging.ERROR)


def _wait_for_a_worker(client, where: str, timeout: float) -> None:
    """InputError unless the cluster has a worker within ``timeout`` seconds (its tasks
    would wait for one for ever)."""
    try:
        client.wait_for_workers(1, timeout=timeout)
    except TimeoutError:
        address = client.scheduler.address
        raise InputError(f"the Dask scheduler at {where} has no workers after {timeout:g} s",
                         hint=f"Start workers (dask worker {address}, or one job per worker "
                              "on a batch system), or wait longer with --connect-timeout "
                              "SECONDS.") from None


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


# -- blocks and the bands between them --------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """One block's extent along one axis of the raster.

    Attributes:
        index: the block's position along the axis.
        first, stop_tile: its tiles along the axis, ``range(first, stop_tile)``.
        start, stop: its pixels, from the start of the feather band it shares with the block
            before (0 for the first block) to the start of the next block's.
        lead: pixels at ``start`` in the band shared with the block before (0 for the first
            block and without feather): they need that block's tiles too.
    """

    index: int
    first: int
    stop_tile: int
    start: int
    stop: int
    lead: int


@dataclass(frozen=True)
class Line:
    """A band between two rows ("h") or two columns ("v") of blocks, across the raster:
    pixels ``[start, stop)`` along the axis it crosses, blended from tiles on both sides."""

    axis: str
    index: int
    start: int
    stop: int

    @property
    def name(self) -> str:
        return f"{self.axis}{self.index}"


@dataclass(frozen=True)
class Block:
    """One phase-1 task: a block of whole tiles, each generated by this task alone.

    Attributes:
        row, col: the block's position in the block grid (its id).
        window: the output pixels in the block (its shard and its two bands).
        tiles: the block's own tiles, in grid order.
        inner: the part of ``window`` that its own tiles complete, written to its shard:
            the window less the bands shared with the blocks above and to the left.
        lines: the bands its tiles reach into (the raw pixels there are kept for phase 2).
    """

    row: int
    col: int
    window: Window
    tiles: tuple[Tile, ...]
    inner: Window
    lines: tuple[Line, ...] = ()

    @property
    def name(self) -> str:
        return f"r{self.row:05d}_c{self.col:05d}"

    @property
    def pixels(self) -> int:
        return int(self.window.width * self.window.height)

    @property
    def edges_file(self) -> str:
        return f"{self.name}.edges.npz"


@dataclass(frozen=True)
class Band:
    """One phase-2 task: a strip of a block blended from the edge pixels of up to four
    blocks' tiles ("top": the band shared with the block above, with the corner; "left":
    the rest of the band shared with the block to the left).

    Attributes:
        name: shard name (the block's name and the side).
        window: the output pixels it writes.
        line: the band between blocks it lies in.
        tiles: every tile whose kept window touches ``window``, in grid order.
        blocks: the name of the block each of those tiles belongs to.
    """

    name: str
    window: Window
    line: Line
    tiles: tuple[Tile, ...]
    blocks: tuple[str, ...]

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


def _check_block_size(plan: SynthesisPlan, block_size: int) -> int:
    """Tiles per block side; GridError unless a positive multiple of the tile size."""
    tile = plan.tile_size
    if block_size <= 0 or block_size % tile:
        fit = max(1, round(max(block_size, tile) / tile)) * tile
        raise GridError(f"block size {block_size} is not a multiple of the tile size {tile}",
                        hint=f"Use --block-size {fit}.")
    return block_size // tile


def plan_blocks(plan: SynthesisPlan, block_size: int | None = None,
                workers: int = 0) -> list[Block]:
    """Cut the plan's tile grid into blocks of ``block_size`` pixels (k x k tiles).

    Default: :func:`default_block_size` for ``workers`` workers.

    Raises:
        GridError: a block size that is not a positive multiple of the tile size.
    """
    return plan_tasks(plan, block_size, workers)[0]


def plan_tasks(plan: SynthesisPlan, block_size: int | None = None,
               workers: int = 0) -> tuple[list[Block], list[Band]]:
    """The blocks (phase 1) and the bands between them (phase 2) of a cluster run.

    The block windows and band windows tile the raster exactly once; every tile belongs to
    exactly one block.

    Raises:
        GridError: a block size that is not a positive multiple of the tile size.
    """
    if block_size is None:
        block_size = default_block_size(plan, workers)
    k = _check_block_size(plan, block_size)
    grid = plan.grid
    rows = _spans(plan, grid.n_rows, k, plan.height, axis=0)
    cols = _spans(plan, grid.n_cols, k, plan.width, axis=1)
    h_lines = {s.index: Line("h", s.index, s.start, s.start + s.lead) for s in rows if s.lead}
    v_lines = {s.index: Line("v", s.index, s.start, s.start + s.lead) for s in cols if s.lead}
    blocks: dict[tuple[int, int], Block] = {}
    for rs in rows:
        for cs in cols:
            lines = tuple(line for line in (h_lines.get(rs.index), h_lines.get(rs.index + 1),
                                            v_lines.get(cs.index), v_lines.get(cs.index + 1))
                          if line is not None)
            tiles = tuple(grid.tile(r, c) for r in range(rs.first, rs.stop_tile)
                          for c in range(cs.first, cs.stop_tile))
            blocks[rs.index, cs.index] = Block(
                rs.index, cs.index, _window(rs.start, rs.stop, cs.start, cs.stop), tiles,
                _window(rs.start + rs.lead, rs.stop, cs.start + cs.lead, cs.stop), lines)
    owner = {t.index: b.name for b in blocks.values() for t in b.tiles}
    bands = []
    for rs in rows:
        for cs in cols:
            name = blocks[rs.index, cs.index].name
            pieces = []
            if rs.lead:  # the band shared with the block above, with the corner
                pieces.append((f"{name}_top", h_lines[rs.index],
                               _window(rs.start, rs.start + rs.lead, cs.start, cs.stop)))
            if cs.lead:  # the rest of the band shared with the block to the left
                pieces.append((f"{name}_left", v_lines[cs.index],
                               _window(rs.start + rs.lead, rs.stop, cs.start,
                                       cs.start + cs.lead)))
            for piece, line, window in pieces:
                if window.width <= 0 or window.height <= 0:
                    continue
                tiles = _tiles_touching(plan, window, rs, cs)
                bands.append(Band(piece, window, line, tiles,
                                  tuple(owner[t.index] for t in tiles)))
    return list(blocks.values()), bands


def _window(r0: int, r1: int, c0: int, c1: int) -> Window:
    return Window(c0, r0, max(0, c1 - c0), max(0, r1 - r0))


def _spans(plan: SynthesisPlan, n_tiles: int, k: int, extent: int, axis: int) -> list[Span]:
    """The blocks along one axis: each starts where the kept window of its first tile starts
    (the start of the feather band it shares with the tile before)."""
    firsts = list(range(0, n_tiles, k))
    kept = [kept_range(first, n_tiles, plan.tile_size, plan.feather,
                       plan.grid.row_origin if axis == 0 else plan.grid.col_origin)[0]
            for first in firsts]
    starts = [0] + [max(0, s) for s in kept[1:]]
    stops = [*starts[1:], extent]
    spans = []
    for i, first in enumerate(firsts):
        lead = min(kept[i] + plan.feather, stops[i]) - starts[i] if i else 0
        spans.append(Span(i, first, min(first + k, n_tiles), starts[i], stops[i], max(0, lead)))
    return spans


def _tiles_touching(plan: SynthesisPlan, window: Window, rs: Span, cs: Span) -> tuple[Tile, ...]:
    """The tiles whose kept windows touch ``window`` (of block ``rs`` x ``cs``), grid order."""
    grid = plan.grid
    rows = range(max(0, rs.first - 1), min(grid.n_rows, rs.stop_tile + 1))
    cols = range(max(0, cs.first - 1), min(grid.n_cols, cs.stop_tile + 1))
    return tuple(t for t in (grid.tile(r, c) for r in rows for c in cols)
                 if _touches(plan, t, window))


def _touches(plan: SynthesisPlan, tile: Tile, window: Window) -> bool:
    (r0, r1), (c0, c1) = plan.kept_ranges(tile)
    return (r0 < window.row_off + window.height and r1 > window.row_off
            and c0 < window.col_off + window.width and c1 > window.col_off)


def _line_rect(plan: SynthesisPlan, tile: Tile, line: Line) -> tuple[int, int, int, int] | None:
    """Where a tile's kept window crosses a band between blocks: (row0, row1, col0, col1)
    in raster pixels, or None when it does not."""
    (r0, r1), (c0, c1) = plan.kept_ranges(tile)
    if line.axis == "h":
        r0, r1 = max(r0, line.start), min(r1, line.stop)
    else:
        c0, c1 = max(c0, line.start), min(c1, line.stop)
    return (r0, r1, c0, c1) if r1 > r0 and c1 > c0 else None


def _edge_key(line: Line, tile: Tile) -> str:
    return f"{line.name}_{tile.row}_{tile.col}"


class BlockSink:
    """Writes the part of each finished cell that lies in one window into that window's
    shard (``dataset`` None: a block with no pixels of its own, which writes nothing)."""

    def __init__(self, dataset, block: Window):
        self.out = None if dataset is None else RasterSink(dataset)
        self.block = block
        self.pixels = 0

    def write(self, window: Window, pixels: np.ndarray, valid: np.ndarray) -> None:
        b = self.block
        r0, r1 = max(window.row_off, b.row_off), min(window.row_off + window.height,
                                                     b.row_off + b.height)
        c0, c1 = max(window.col_off, b.col_off), min(window.col_off + window.width,
                                                     b.col_off + b.width)
        if r1 <= r0 or c1 <= c0:
            return
        rows = slice(r0 - window.row_off, r1 - window.row_off)
        cols = slice(c0 - window.col_off, c1 - window.col_off)
        local = Window(c0 - b.col_off, r0 - b.row_off, c1 - c0, r1 - r0)
        if self.out is not None:
            self.out.write(local, pixels[:, rows, cols], valid[rows, cols])
        self.pixels += (r1 - r0) * (c1 - c0)


class EdgeCollector:
    """Keeps, of each tile a block generates, the raw kept output and validity in the bands
    it shares with neighbouring blocks (what phase 2 blends them from)."""

    def __init__(self, plan: SynthesisPlan, lines: tuple[Line, ...]):
        self.plan, self.lines = plan, lines
        self.arrays: dict[str, np.ndarray] = {}

    def __call__(self, tile: Tile, output: np.ndarray | None, valid: np.ndarray) -> None:
        (r0, _), (c0, _) = self.plan.kept_ranges(tile)
        for line in self.lines:
            rect = _line_rect(self.plan, tile, line)
            if rect is None:
                continue
            piece = (slice(rect[0] - r0, rect[1] - r0), slice(rect[2] - c0, rect[3] - c0))
            key = _edge_key(line, tile)
            self.arrays[f"{key}_valid"] = np.ascontiguousarray(valid[piece])
            if output is not None:  # no array: a skipped tile, which adds no weight
                self.arrays[key] = np.ascontiguousarray(output[:, piece[0], piece[1]])


# -- the tasks --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterRun:
    """Settings of a cluster run (what :func:`geospade.synthesis.synthesize` was given)."""

    landcover: str | Path
    checkpoint: str | Path | LoadedModel
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
    """What every task needs besides its block or band (sent to the workers)."""

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
    #: Deflate the shards: only when they are the output (``--output-format vrt``). Shards
    #: read once into the final GeoTIFF are stored raw, which saves compressing and then
    #: decompressing every pixel once more than one process does.
    compress_shards: bool = True


def synthesize_block(job: BlockJob, block: Block) -> dict:
    """Phase 1 (on a worker): generate the block's own tiles, write the pixels they complete
    to its shard GeoTIFF and their raw pixels in the bands between blocks to its edge file;
    returns its manifest record."""
    from geospade.synthesis.synthesize import ResolutionWarning, _training_view

    model = worker_model(job.checkpoint, job.device)
    folder = Path(job.shard_dir)
    shard = folder / f"{block.name}.tif" if block.inner.width and block.inner.height else None
    edges = EdgeCollector(job.plan, block.lines)
    began = time.perf_counter()
    with open_raster(job.landcover, "land cover") as dataset:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResolutionWarning)  # the client has warned
            source_ds, _ = _training_view(dataset, model, job.resample)
        try:
            stats = _write_block(RasterLabels(source_ds), model, job, block, shard, edges)
        finally:
            if source_ds is not dataset:
                source_ds.close()
    edges_path = folder / block.edges_file
    with atomic_file(edges_path, overwrite=True) as tmp, open(tmp, "wb") as f:
        np.savez(f, **edges.arrays)  # type: ignore[arg-type]  # names, not allow_pickle
    w = block.inner
    return {"block": block.name, "file": None if shard is None else shard.name,
            "sha256": None if shard is None else file_sha256(shard),
            "edges": edges_path.name, "edges_sha256": file_sha256(edges_path),
            "window": [w.col_off, w.row_off, w.width, w.height],
            "generated": stats.generated, "skipped": stats.skipped,
            "forward_calls": stats.forward_calls,
            "seconds": round(time.perf_counter() - began, 3)}


def _write_block(source, model: LoadedModel, job: BlockJob, block: Block, shard: Path | None,
                 edges: EdgeCollector) -> RunStats:
    def run(sink: BlockSink) -> RunStats:
        stats = run_synthesis(source, sink, model, job.plan, seed=job.seed,
                              batch_size=job.batch_size, map_unknown=job.map_unknown,
                              progress=False, tiles=block.tiles, on_tile=edges)
        inner = block.inner
        if sink.pixels != inner.width * inner.height:  # every pixel of its own, exactly once
            raise RuntimeError(f"block {block.name} wrote {sink.pixels} of "
                               f"{inner.width * inner.height} pixels")
        return stats

    if shard is None:  # all its pixels lie in bands shared with the blocks before it
        return run(BlockSink(None, block.inner))
    with _shard(job, model, block.inner, shard) as dst:
        return run(BlockSink(dst, block.inner))


@contextlib.contextmanager
def _shard(job: BlockJob, model: LoadedModel, window: Window, shard: Path):
    """An open shard GeoTIFF over ``window``, written under a temporary name."""
    from affine import Affine

    from geospade.synthesis.synthesize import block_cache_bytes, describe_bands, imagery_profile

    transform = window_transform(window, Affine(*job.transform))
    profile = imagery_profile(model.imagery, window.width, window.height, job.crs, transform)
    if not job.compress_shards:
        profile.pop("predictor", None)
        profile["compress"] = "none"
    env = rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True,
                       GDAL_CACHEMAX=block_cache_bytes(window.width, model.imagery))
    with atomic_file(shard, overwrite=True) as tmp, env, \
            rasterio.open(tmp, "w", **profile) as dst:
        describe_bands(dst, model.imagery)
        yield dst


def blend_band(job: BlockJob, band: Band, *_blocks: dict) -> dict:
    """Phase 2 (on a worker): blend a band between blocks from its tiles' edge pixels, as
    :class:`~geospade.synthesis.blend.FeatherBlender` does in one process, and write it to
    its shard; returns its manifest record.

    Each pixel sums its tiles' weighted values one tile at a time in grid order, starting
    from zero, then divides by the summed weights: the float operations, in the order, of
    the single-process blender, so the pixels are the same bit for bit. (The trailing
    arguments are the records of the blocks it reads, which makes it wait for them.)
    """
    model = worker_model(job.checkpoint, job.device)
    began = time.perf_counter()
    plan, window = job.plan, band.window
    shape = (window.height, window.width)
    total = np.zeros((model.imagery.count, *shape), np.float32)
    weight = np.zeros(shape, np.float32)
    valid = np.zeros(shape, bool)
    covered = np.zeros(shape, bool)
    files = {name: np.load(Path(job.shard_dir) / f"{name}.edges.npz")
             for name in dict.fromkeys(band.blocks)}
    try:
        # Grid order, as the in-process blender adds them.
        for tile, block in zip(band.tiles, band.blocks, strict=True):
            edges = files[block]
            here, there, weights = _overlap(plan, tile, band)
            key = _edge_key(band.line, tile)
            # The validity of the first tile covering a pixel (the blender keeps that one).
            valid[here] = np.where(covered[here], valid[here], edges[f"{key}_valid"][there])
            covered[here] = True
            if key in edges.files:
                w = tile_weights(plan, tile)[weights]
                total[:, here[0], here[1]] += edges[key][:, there[0], there[1]] * w
                weight[here] += w
    finally:
        for f in files.values():
            f.close()
    if not covered.all():
        raise RuntimeError(f"band {band.name}: {int((~covered).sum())} pixels had no tile")
    generated = weight > 0
    values = np.divide(total, weight, out=np.zeros_like(total), where=generated[None])
    valid &= generated
    pixels = model.imagery.from_model(values)
    pixels[:, ~valid] = 0  # masked pixels hold 0, as in one process
    shard = Path(job.shard_dir) / f"{band.name}.tif"
    with _shard(job, model, window, shard) as dst:
        RasterSink(dst).write(Window(0, 0, window.width, window.height), pixels, valid)
    return {"block": band.name, "file": shard.name, "sha256": file_sha256(shard),
            "window": [window.col_off, window.row_off, window.width, window.height],
            "seconds": round(time.perf_counter() - began, 3)}


def _overlap(plan: SynthesisPlan, tile: Tile, band: Band):
    """Slices of where a tile's edge piece meets a band: in the band's arrays, in the
    piece, and in the tile's kept window (for its weights)."""
    (r0, _), (c0, _) = plan.kept_ranges(tile)
    rect = _line_rect(plan, tile, band.line)
    if rect is None:
        raise RuntimeError(f"band {band.name}: tile ({tile.row}, {tile.col}) is not in it")
    pr0, pr1, pc0, pc1 = rect
    w = band.window
    a0, a1 = max(pr0, w.row_off), min(pr1, w.row_off + w.height)
    b0, b1 = max(pc0, w.col_off), min(pc1, w.col_off + w.width)
    here = (slice(a0 - w.row_off, a1 - w.row_off), slice(b0 - w.col_off, b1 - w.col_off))
    there = (slice(a0 - pr0, a1 - pr0), slice(b0 - pc0, b1 - pc0))
    weights = (slice(a0 - r0, a1 - r0), slice(b0 - c0, b1 - c0))
    return here, there, weights


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
    then one line per finished task (block or band: id, files, SHA-256), appended as tasks
    complete."""

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

    def is_complete(self, name: str) -> bool:
        """True when the task is recorded and each of its files still has that checksum."""
        record = self.records.get(name)
        if record is None:
            return False
        for file, sha in ((record.get("file"), record.get("sha256")),
                          (record.get("edges"), record.get("edges_sha256"))):
            if file is None:
                continue
            path = self.folder / file
            if not path.is_file() or file_sha256(path) != sha:
                return False
        return True


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


def shards_folder(out: str | Path) -> Path:
    """Where a cluster run writing ``out`` keeps its shards and manifest."""
    out = Path(out)
    return out.with_name(out.name + ".shards")


def after_interrupt(out: str | Path) -> int:
    """Tidy the shard folder of an interrupted run writing ``out`` (call it once the local
    workers have stopped): remove the temporary files of tasks that were stopped mid-write,
    keep the finished shards. Returns how many tasks the manifest records as finished."""
    folder = shards_folder(out)
    if not folder.is_dir():
        return 0
    pattern = re.compile(r"\.(?P<name>.+?)" + PARTIAL_RE)
    for name in {m["name"] for p in folder.glob(".*.partial*")
                 if (m := pattern.match(p.name)) is not None}:
        remove_stale_partials(folder / name)  # only those of processes no longer running
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return 0
    return len({r["block"] for r in map(_parse, manifest.read_text().splitlines()[1:])
                if "block" in r})


# -- the run ----------------------------------------------------------------------------------


@dataclass
class ClusterStats(RunStats):
    """:class:`RunStats` of a cluster run, plus its blocks and bands.

    ``generated`` counts tile generations: each tile once, as in one process (more only
    when a killed worker's block was redone).

    Attributes:
        blocks: blocks in the raster (phase 1).
        reused: blocks a resumed run took from the manifest instead of generating.
        bands: bands between blocks blended from the blocks' edge pixels (phase 2).
        bands_reused: bands a resumed run took from the manifest.
        busy_seconds: seconds the workers spent inside the run's tasks, all together.
        assembly_seconds: seconds the client spent assembling the output from the shards.
    """

    blocks: int = 0
    reused: int = 0
    bands: int = 0
    bands_reused: int = 0
    busy_seconds: float = 0.0
    assembly_seconds: float = 0.0


def write_on_cluster(client, run: ClusterRun, model: LoadedModel, plan: SynthesisPlan,
                     out: Path, crs, transform, *, overwrite: bool = False,
                     progress: ProgressArg = True, blocks_only: bool = False) -> ClusterStats:
    """Synthesise on ``client``'s cluster into shards, then assemble them at ``out``.

    ``blocks_only``: run phase 1 alone (generate and record every block, with its edge
    file) and stop there; a later run with ``resume`` blends the bands and assembles.

    Shards, edge files and the manifest live in ``OUT.shards/`` beside the output: the
    shards kept as part of the output for ``output_format="vrt"``, everything removed after
    a GeoTIFF is assembled (and kept when the run fails, for ``resume``).

    Raises:
        OutputExistsError: shards of an earlier run exist and neither resume nor overwrite.
        InputError: resuming with other settings, or an unknown output format.
    """
    if run.output_format not in OUTPUT_FORMATS:
        raise InputError(f"output format '{run.output_format}' is not one of {OUTPUT_FORMATS}")
    if run.output_format == "vrt" and run.cog:
        raise InputError("a VRT output cannot also be a COG", hint="Drop --cog or use gtiff.")
    folder = shards_folder(out)
    block_size = run.block_size
    if block_size is None and run.resume:  # the default depends on the cluster's size
        block_size = _recorded(folder).get("block_size")
    if block_size is None:
        block_size = default_block_size(plan, len(client.scheduler_info()["workers"]))
    blocks, bands = plan_tasks(plan, block_size)
    checkpoint = (str(Path(run.checkpoint).resolve())
                  if not isinstance(run.checkpoint, LoadedModel) else None)
    header = {"landcover": _fingerprint(run.landcover),
              "checkpoint": _fingerprint(checkpoint) if checkpoint else _weights_digest(model),
              "seed": run.seed, "batch_size": run.batch_size, "map_unknown": run.map_unknown,
              "resample": run.resample, "tile_size": plan.tile_size, "halo": plan.halo,
              "feather": plan.feather, "width": plan.width, "height": plan.height,
              "block_size": block_size, "phases": 2}
    manifest = Manifest(folder, header)
    _prepare_folder(folder, manifest, run.resume, overwrite)
    if checkpoint is None:  # workers load the model from a file, not from this process
        checkpoint = str(save_model(model, folder / "model.pt"))
    job = BlockJob(str(Path(run.landcover).resolve()), checkpoint, run.device, run.resample,
                   plan, run.seed, run.batch_size, run.map_unknown, str(folder),
                   None if crs is None else crs.to_wkt(), tuple(transform)[:6],
                   compress_shards=run.output_format == "vrt")
    stats = _run_tasks(client, job, blocks, [] if blocks_only else bands, manifest, progress)
    if blocks_only:
        return stats
    began = time.perf_counter()
    _assemble(blocks, bands, manifest, folder, out, model.imagery, plan, crs, transform, run,
              overwrite)
    stats.assembly_seconds = time.perf_counter() - began
    if run.output_format != "vrt":
        shutil.rmtree(folder, ignore_errors=True)
    else:  # the edge files were only for blending the bands
        for block in blocks:
            (folder / block.edges_file).unlink(missing_ok=True)
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


def _run_tasks(client, job: BlockJob, blocks: list[Block], bands: list[Band],
               manifest: Manifest, progress: ProgressArg) -> ClusterStats:
    """Submit every block and band the manifest lacks and record each as it completes.

    A band waits for the blocks whose edge pixels it blends (Dask runs it once they are
    done, while other blocks are still generating); a block the manifest has is not redone.
    """
    stats = ClusterStats(tiles=len(job.plan.grid), blocks=len(blocks), bands=len(bands))
    todo = [b for b in blocks if not manifest.is_complete(b.name)]
    stats.reused = len(blocks) - len(todo)
    band_todo = [b for b in bands if not manifest.is_complete(b.name)]
    stats.bands_reused = len(bands) - len(band_todo)
    client.register_plugin(GeneratorPlugin(job.checkpoint, job.device),
                           name=f"geospade-generator-{_token(job.checkpoint, job.device)}")
    token = _token(json.dumps(manifest.header, sort_keys=True), job.device)
    phase1 = {b.name: client.submit(synthesize_block, job, b, key=f"geospade-{token}-{b.name}")
              for b in todo}
    futures = list(phase1.values())
    for band in band_todo:
        needs = [phase1[name] for name in dict.fromkeys(band.blocks) if name in phase1]
        futures.append(client.submit(blend_band, job, band, *needs,
                                     key=f"geospade-{token}-{band.name}"))
    pixels = {f"geospade-{token}-{b.name}": b.inner.width * b.inner.height for b in todo}
    pixels.update({f"geospade-{token}-{b.name}": b.pixels for b in band_todo})
    bar = progress_bar(progress, total=len(blocks) + len(bands),
                       initial=stats.reused + stats.bands_reused, desc="synthesize",
                       unit="task")
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
                    setattr(stats, name, getattr(stats, name) + record.get(name, 0))
                stats.busy_seconds += record.get("seconds", 0.0)
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
        raise RuntimeError(f"{len(failed)} of {len(futures)} tasks failed; the first: "
                           f"{type(error).__name__}: {error}") from error
    return stats


def _token(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


# -- assembly ---------------------------------------------------------------------------------


def _assemble(blocks: list[Block], bands: list[Band], manifest: Manifest, folder: Path,
              out: Path, imagery, plan: SynthesisPlan, crs, transform, run: ClusterRun,
              overwrite: bool) -> None:
    """The shards -> a VRT -> the output (the VRT itself, or a GeoTIFF / COG via GDAL)."""
    for leftover in folder.glob(".*.partial*"):  # shards of tasks killed mid-write
        leftover.unlink(missing_ok=True)
    pieces = [(b.inner, manifest.records[b.name]["file"]) for b in blocks
              if manifest.records[b.name]["file"] is not None]
    pieces += [(b.window, manifest.records[b.name]["file"]) for b in bands]
    if run.output_format == "vrt":
        with atomic_file(out, overwrite) as tmp:
            tmp.write_text(vrt_xml([(w, f"{folder.name}/{f}") for w, f in pieces], imagery,
                                   plan.width, plan.height, crs, transform))
        return
    vrt = folder / "mosaic.vrt"
    vrt.write_text(vrt_xml(pieces, imagery, plan.width, plan.height, crs, transform))
    from geospade.synthesis.synthesize import imagery_profile, to_cog

    with atomic_file(out, overwrite) as tmp:
        if run.cog:
            to_cog(vrt, tmp)
            return
        profile = imagery_profile(imagery, plan.width, plan.height, crs, transform)
        options = {k: v for k, v in profile.items()
                   if k not in ("driver", "width", "height", "count", "dtype", "crs",
                                "transform", "nodata")}
        # The workers are idle while the client assembles: compress blocks on every core
        # (each block is compressed on its own, so the pixels are the same).
        options["num_threads"] = "ALL_CPUS"
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
            rasterio.shutil.copy(vrt, tmp, driver="GTiff", **options)


def vrt_xml(pieces: list[tuple[Window, str]], imagery, width: int, height: int, crs,
            transform) -> str:
    """A GDAL VRT mosaic of the shards (each its output window and relative path), with
    their mask, band names and colour interpretation."""
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
        lines += _sources(pieces, str(band), "    ")
        lines.append("  </VRTRasterBand>")
    lines.append("  <MaskBand>")
    lines.append('    <VRTRasterBand dataType="Byte">')
    lines += _sources(pieces, "mask,1", "      ")
    lines.append("    </VRTRasterBand>")
    lines.append("  </MaskBand>")
    lines.append("</VRTDataset>")
    return "\n".join(lines) + "\n"


def _sources(pieces: list[tuple[Window, str]], band: str, indent: str) -> list[str]:
    lines = []
    for w, name in pieces:
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
