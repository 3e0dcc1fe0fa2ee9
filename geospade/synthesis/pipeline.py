"""The streaming synthesis loop: read tiles -> generate -> blend -> write, with bounded queues.

Three stages run at once: a reader thread reads each tile's core + halo window of land
cover, encodes it to model indices and batches it; the calling thread runs the generator
(on the GPU, it overlaps the reader's and writer's I/O); a writer thread blends the kept parts
(:mod:`geospade.synthesis.blend`) and writes every finished block. Queues between the stages
hold a few batches at most, so memory depends on the tile and batch size, not on the raster.
The same loop serves files and in-memory arrays through small source and sink adapters.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from rasterio import windows
from rasterio.windows import Window

from geospade.classes import ClassScheme
from geospade.progress import ProgressArg, progress_bar
from geospade.synthesis.blend import FeatherBlender
from geospade.synthesis.model import LoadedModel
from geospade.synthesis.plan import SynthesisPlan
from geospade.tiling import Tile, TileGrid

QUEUE_SIZE = 3  # batches in flight between two stages


# -- sources of land cover and sinks for imagery --------------------------------------------


class RasterLabels:
    """Land cover read window by window from a rasterio dataset (or WarpedVRT), band 1.

    Args:
        dataset: the open land-cover dataset; only the reader thread uses it.
    """

    def __init__(self, dataset):
        self.dataset = dataset
        self.name = str(dataset.name)
        self.width, self.height = dataset.width, dataset.height

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """(labels, valid) of a window inside the raster; valid is False where masked."""
        labels = self.dataset.read(1, window=window)
        valid = self.dataset.read_masks(1, window=window) > 0
        return labels, valid


class ArrayLabels:
    """Land cover held in a (H, W) integer array (a masked array's mask counts as nodata).

    Args:
        labels: class values.
        nodata: value meaning nodata, if any (besides the class scheme's own).
    """

    def __init__(self, labels: np.ndarray, nodata: int | None = None):
        self.labels = np.ma.getdata(labels)
        self.invalid = np.ma.getmaskarray(labels) if np.ma.isMaskedArray(labels) else None
        self.nodata = nodata
        self.name = "array"
        self.height, self.width = self.labels.shape

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        rows, cols = window.toslices()
        labels = self.labels[rows, cols]
        valid = np.ones(labels.shape, bool) if self.invalid is None else ~self.invalid[rows, cols]
        if self.nodata is not None:
            valid &= labels != self.nodata
        return labels, valid


class RasterSink:
    """Writes finished blocks and their validity mask (an internal mask) into a dataset."""

    def __init__(self, dataset):
        self.dataset = dataset

    def write(self, window: Window, pixels: np.ndarray, valid: np.ndarray) -> None:
        self.dataset.write(pixels, window=window)
        self.dataset.write_mask(np.where(valid, 255, 0).astype(np.uint8), window=window)


class ArraySink:
    """Collects finished blocks into an in-memory (bands, H, W) image and (H, W) mask."""

    def __init__(self, bands: int, height: int, width: int, dtype: str):
        self.image = np.zeros((bands, height, width), dtype=dtype)
        self.mask = np.zeros((height, width), dtype=bool)

    def write(self, window: Window, pixels: np.ndarray, valid: np.ndarray) -> None:
        rows, cols = window.toslices()
        self.image[:, rows, cols] = pixels
        self.mask[rows, cols] = valid


# -- one tile's input -------------------------------------------------------------------------


@dataclass
class TileInput:
    """A tile's encoded land cover (core + halo) and what the blender needs to place it."""

    tile: Tile
    indices: np.ndarray | None  # int64 (S, S), None when the tile is skipped
    kept_valid: np.ndarray      # bool over the tile's kept window


def read_tile(source, plan: SynthesisPlan, tile: Tile, scheme: ClassScheme,
              map_unknown: int | None = None) -> TileInput:
    """Read and encode one tile's core + halo window; outside the raster is "don't care".

    A tile whose core holds no valid pixel is marked skipped (``indices`` None): it is never
    generated.
    """
    size = plan.input_size
    window = plan.read_window(tile)
    indices = np.full((size, size), scheme.ignore_index, dtype=np.int64)
    inside = windows.crop(window, source.height, source.width)  # the part on the raster
    if inside.width > 0 and inside.height > 0:
        labels, valid = source.read(inside)
        encoded = scheme.encode(labels, valid=valid, map_unknown=map_unknown, source=source.name)
        top, left = inside.row_off - window.row_off, inside.col_off - window.col_off
        indices[top: top + inside.height, left: left + inside.width] = encoded
    known = indices != scheme.ignore_index
    rows, cols = plan.kept_slices(tile)
    core = slice(plan.halo, plan.halo + plan.tile_size)
    generate = bool(known[core, core].any())
    return TileInput(tile, indices if generate else None, known[rows, cols].copy())


# -- the three stages -------------------------------------------------------------------------


@dataclass
class RunStats:
    """What one synthesis run did.

    Attributes:
        tiles: tiles in the grid.
        generated: tiles generated.
        skipped: all-nodata tiles not generated.
        forward_calls: generator forward passes (batches).
        seconds: wall time of the loop.
        generate_seconds: time spent in the generator.
        max_pending_pixels: largest number of pixels the blender held waiting for neighbours.
    """

    tiles: int = 0
    generated: int = 0
    skipped: int = 0
    forward_calls: int = 0
    seconds: float = 0.0
    generate_seconds: float = 0.0
    max_pending_pixels: int = 0


class _End:
    """Marks the end of a queue's stream."""


@dataclass
class _Failed:
    """Carries a worker thread's exception to the calling thread."""

    error: BaseException


class _Stage(threading.Thread):
    """A daemon worker thread that records its exception and stops the run when it fails."""

    def __init__(self, name: str, target: Callable[[], None], stop: threading.Event):
        super().__init__(name=name, daemon=True)
        self._work, self._stop_event = target, stop
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._work()
        except BaseException as exc:  # handed to the calling thread, which re-raises it
            self.error = exc
            self._stop_event.set()


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Put without blocking forever: gives up (False) once the run is stopped."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: threading.Event, producer: _Stage | None = None):
    """Get, checking the run is alive: a failed producer's exception is raised here."""
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if producer is not None and producer.error is not None:
                raise producer.error from None
            if stop.is_set():
                return _End()


def run_synthesis(source, sink, model: LoadedModel, plan: SynthesisPlan, *, seed: int = 0,
                  batch_size: int = 4, map_unknown: int | None = None,
                  progress: ProgressArg = True, tiles: Sequence[Tile] | None = None,
                  on_tile: Callable[[Tile, np.ndarray | None, np.ndarray], None] | None = None,
                  ) -> RunStats:
    """Generate every tile of ``plan`` from ``source`` and write the blended result to ``sink``.

    Args:
        source: land cover (:class:`RasterLabels` or :class:`ArrayLabels`).
        sink: where finished blocks go (:class:`RasterSink` or :class:`ArraySink`).
        model: the loaded generator and its card.
        plan: tile grid, halo and feather width.
        seed: noise seed for the whole raster.
        batch_size: tiles per generator forward pass.
        map_unknown: class value for land-cover values outside the class scheme.
        progress: progress bar (True), silent (False), or a callback.
        tiles: generate only these tiles of ``plan.grid`` (in grid order), as a block of a
            distributed run does; cells that need other tiles are then never finished, and
            the sink must keep only the cells these tiles complete. Default: every tile.
        on_tile: called with each tile, its kept output (None when skipped) and validity, in
            grid order, before they are blended (a distributed run keeps the parts its
            neighbours blend with).

    Returns:
        Counts and timings of the run.
    """
    run_tiles: TileGrid | Sequence[Tile] = plan.grid if tiles is None else tiles
    stats = RunStats(tiles=len(run_tiles))
    stop = threading.Event()
    to_generate: queue.Queue = queue.Queue(QUEUE_SIZE)
    to_write: queue.Queue = queue.Queue(QUEUE_SIZE * max(1, batch_size))
    scheme, imagery = model.scheme, model.imagery
    blender = FeatherBlender(plan, imagery.count)

    def read_all() -> None:
        batch: list[TileInput] = []
        try:
            for tile in run_tiles:
                item = read_tile(source, plan, tile, scheme, map_unknown)
                if item.indices is None:
                    if not _put(to_generate, [item], stop):
                        return
                    continue
                batch.append(item)
                if len(batch) == batch_size:
                    if not _put(to_generate, batch, stop):
                        return
                    batch = []
            if batch and not _put(to_generate, batch, stop):
                return
        except BaseException as exc:
            _put(to_generate, _Failed(exc), stop)
            raise
        _put(to_generate, _End(), stop)

    def write_all() -> None:
        while True:
            item = _get(to_write, stop)
            if isinstance(item, _End):
                return
            tile, output, valid = item
            if on_tile is not None:
                on_tile(tile, output, valid)
            for block in blender.add(tile, output, valid):
                pixels = imagery.from_model(block.values)
                pixels[:, ~block.valid] = 0  # masked pixels hold 0, not noise
                sink.write(block.window, pixels, block.valid)
            stats.max_pending_pixels = max(stats.max_pending_pixels, blender.pending_pixels)

    reader = _Stage("geospade-read", read_all, stop)
    writer = _Stage("geospade-write", write_all, stop)
    start = time.perf_counter()
    pixels_done = 0
    bar = progress_bar(progress, total=len(run_tiles), desc="synthesize", unit="tile")
    reader.start()
    writer.start()
    try:
        while True:
            item = _get(to_generate, stop, reader)
            if isinstance(item, _Failed):
                raise item.error
            if isinstance(item, _End):
                break
            outputs = _generate(model, item, plan.halo, seed, stats,
                                (plan.world_row, plan.world_col), batch_size)
            for tile_input, output in zip(item, outputs, strict=True):
                rows, cols = plan.kept_slices(tile_input.tile)
                kept = None if output is None else output[:, rows, cols]
                if not _put(to_write, (tile_input.tile, kept, tile_input.kept_valid), stop):
                    break
                core = tile_input.tile.clipped(plan.width, plan.height)
                pixels_done += core.width * core.height
            if stop.is_set():
                break
            bar.update(len(item))
            bar.set_postfix_str(f"{pixels_done / 1e6 / (time.perf_counter() - start):.2f} Mpx/s",
                                refresh=False)
        _put(to_write, _End(), stop)
        writer.join()
        for stage in (writer, reader):
            if stage.error is not None:
                raise stage.error
    finally:
        stop.set()  # also stops the workers when this thread fails or is interrupted
        bar.close()
        reader.join(timeout=10)
        writer.join(timeout=10)
    if run_tiles is plan.grid and not blender.done:  # every cell must have received all its tiles
        raise RuntimeError("blending left unfinished blocks; the tile stream was incomplete")
    stats.seconds = time.perf_counter() - start
    return stats


def _generate(model: LoadedModel, batch: list[TileInput], halo: int, seed: int,
              stats: RunStats, world: tuple[int, int] = (0, 0),
              batch_size: int = 1) -> list[np.ndarray | None]:
    """Generator outputs (bands, S, S) for a batch; None for skipped tiles."""
    todo = [t for t in batch if t.indices is not None]
    world_row, world_col = world
    stats.skipped += len(batch) - len(todo)
    if not todo:
        return [None] * len(batch)
    began = time.perf_counter()
    # Noise is indexed by world pixels, so separate runs over one area draw the same noise.
    # CPU kernels take another path for a batch of one, which changes the last float bits. A
    # lone tile (the last of a run) is generated beside a copy of itself, so a tile's pixels
    # never depend on how the tiles fell into batches: a block of a distributed run then
    # gives exactly the pixels of the single-process run.
    padded = todo * 2 if len(todo) == 1 and batch_size > 1 else todo
    # todo holds only tiles with indices; the test again here narrows their type.
    out = model.generate(np.stack([t.indices for t in padded if t.indices is not None]),
                         [world_row + t.tile.row_off - halo for t in padded],
                         [world_col + t.tile.col_off - halo for t in padded], seed)
    model.tiles_generated -= len(padded) - len(todo)  # the copy is not a tile of the raster
    stats.generate_seconds += time.perf_counter() - began
    stats.generated += len(todo)
    stats.forward_calls += 1
    results = iter(out)
    return [None if t.indices is None else next(results) for t in batch]
