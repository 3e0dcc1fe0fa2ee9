"""Spatial train/validation split of chips: the one rule for exports and chip folders.

Neighbouring chips look alike, so a random per-chip split leaks training data into
validation. Chips are grouped into square blocks; whole blocks go to validation, and any
training chip that shares a pixel with a validation chip (possible when the stride is smaller
than the chip) is left out of training, so validation never overlaps training.
:func:`split_chips` holds the rule; :func:`spatial_split` applies it to the tiles of an export's
grid, and :func:`~geospade.chips.folder.read_chip_folder` to the positions of the chips of a
folder without a split of its own (ArcGIS Pro's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from geospade.errors import InputError
from geospade.tiling import Tile, TileGrid

#: Default block side, in grid steps (tiles, without overlap), when no block size is given.
DEFAULT_BLOCK_TILES = 4
#: The default block is halved (down to one step) until about this many blocks exist.
MIN_DEFAULT_BLOCKS = 10
# Positions read from world files are floats: a hair below a whole pixel counts as that pixel.
_EPS = 1e-6


@dataclass(frozen=True)
class Split:
    """Ids of the training and validation chips, and of the training chips left out.

    ``dropped`` are the chips that overlap a validation chip: an export does not write them,
    a chip folder marks them ``"buffer"``; neither trains nor validates on them.
    """

    train: tuple[int, ...]
    val: tuple[int, ...]
    dropped: tuple[int, ...]
    block_size: int

    def assignment(self) -> dict[int, str]:
        """Grid index -> "train" or "val" for every chip kept (dropped chips are absent)."""
        return {**{i: "train" for i in self.train}, **{i: "val" for i in self.val}}


def default_block_size(grid: TileGrid) -> int:
    """Block side in pixels for a grid: see :func:`default_block`."""
    return default_block(max(grid.n_rows - 1, 0) * grid.stride,
                         max(grid.n_cols - 1, 0) * grid.stride, grid.stride)


def default_block(row_extent: float, col_extent: float, step: int) -> int:
    """Block side in pixels: 4 grid steps, halved (down to one step) on small extents.

    Small extents get smaller blocks so that there are at least about 10 blocks to choose from.

    Args:
        row_extent, col_extent: offset of the last chip row and column from the first, pixels.
        step: pixels between neighbouring chips (the stride).
    """
    def count(block: int) -> int:
        return (int(row_extent // block) + 1) * (int(col_extent // block) + 1)

    block = DEFAULT_BLOCK_TILES * step
    while block > step and count(block) < MIN_DEFAULT_BLOCKS:
        block //= 2
    return max(block, step)


def spatial_split(
    grid: TileGrid,
    tiles: Sequence[Tile],
    *,
    val_fraction: float,
    block_size: int | None = None,
    seed: int = 0,
) -> Split:
    """Split ``tiles`` (chips of ``grid``) into train and val by :func:`split_chips`'s rule.

    Args:
        grid: the tile grid the tiles belong to.
        tiles: the chips to split (those that passed the nodata and AOI filters).
        val_fraction: target share of chips in validation, in [0, 1).
        block_size: block side in pixels (default :func:`default_block_size`).
        seed: seed of the block shuffle, so the split is reproducible.

    Raises:
        InputError: as :func:`split_chips`.
    """
    block = default_block_size(grid) if block_size is None else int(block_size)
    offsets = np.array([(t.row_off, t.col_off) for t in tiles], dtype=np.float64).reshape(-1, 2)
    return split_chips([t.index for t in tiles], offsets, grid.tile_size,
                       val_fraction=val_fraction, block_size=block, seed=seed)


def split_chips(
    ids: Sequence[int],
    offsets: np.ndarray,
    chip_size: int,
    *,
    val_fraction: float,
    block_size: int,
    seed: int = 0,
) -> Split:
    """Hold out whole blocks of chips for validation; leave out training chips touching them.

    The rule, the same for an export's grid and for a folder's chips:

    1. A chip belongs to the ``block_size`` x ``block_size`` pixel block holding its top-left
       pixel.
    2. The blocks are visited in an order shuffled by ``seed`` (a permutation of the blocks
       sorted by row, then column, so the same chips and seed give the same split). A block
       goes to validation when it brings the validation count closer to ``val_fraction`` of
       the chips, and never when it would leave no chip for training. If no block was taken,
       the smallest block goes.
    3. A training chip that shares at least one pixel with a validation chip is dropped from
       training (touching edges are fine): validation never sees pixels trained on.

    Args:
        ids: the chips' ids (grid indices), returned in the :class:`Split`.
        offsets: (N, 2) pixel (row, col) offset of each chip's top-left corner, all in one
            pixel grid (floats allowed: positions read from world files).
        chip_size: chip side in pixels.
        val_fraction: target share of chips in validation, in [0, 1).
        block_size: block side in pixels.
        seed: seed of the block shuffle.

    Raises:
        InputError: ``val_fraction`` out of range, a block size below 1, all chips in one
            block, or no training chip left.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise InputError(f"validation fraction {val_fraction} is not in [0, 1)",
                         hint="Use e.g. --val-fraction 0.1.")
    block = int(block_size)
    if block <= 0:
        raise InputError(f"validation block size {block} must be positive")
    ids = tuple(int(i) for i in ids)
    if val_fraction == 0.0 or not ids:
        return Split(ids, (), (), block)
    offsets = np.asarray(offsets, dtype=np.float64).reshape(len(ids), 2)

    keys = np.floor(offsets / block + _EPS).astype(np.int64)
    order, block_of = np.unique(keys, axis=0, return_inverse=True)
    block_of = block_of.reshape(-1)
    if len(order) < 2:
        raise InputError(
            f"all {len(ids)} chips fall in one {block}-pixel block, so a spatial split "
            "cannot hold validation chips apart from training chips",
            hint="Use a smaller --val-block, more chips, or --val-fraction 0.",
        )
    sizes = np.bincount(block_of, minlength=len(order))
    target = val_fraction * len(ids)
    is_val_block = np.zeros(len(order), dtype=bool)
    n_val = 0
    for b in np.random.default_rng(seed).permutation(len(order)):
        grown = n_val + int(sizes[b])
        if grown < len(ids) and abs(grown - target) < abs(n_val - target):
            is_val_block[b] = True
            n_val = grown
    if not n_val:
        is_val_block[int(np.argmin(sizes))] = True
    is_val = is_val_block[block_of]
    touching = _overlaps_any(offsets, is_val, chip_size)
    train = tuple(i for i, v, t in zip(ids, is_val, touching, strict=True) if not v and not t)
    if not train:
        raise InputError(
            "every training chip overlaps a validation chip",
            hint="Use a larger --stride, a larger --val-block or a smaller --val-fraction.",
        )
    dropped = tuple(i for i, v, t in zip(ids, is_val, touching, strict=True) if not v and t)
    val = tuple(sorted(i for i, v in zip(ids, is_val, strict=True) if v))
    return Split(train, val, dropped, block)


def _overlaps_any(offsets: np.ndarray, is_val: np.ndarray, size: int) -> np.ndarray:
    """For each chip not in validation: does it share a pixel with a validation chip?

    Chips are hashed into cells of one chip side, so only the 3 x 3 cells around a chip are
    compared (chips sharing a pixel are less than one side apart on both axes).
    """
    reach = size * (1 - _EPS)
    cells: dict[tuple[int, int], list[int]] = {}
    for i in np.flatnonzero(is_val):
        cell = (int(offsets[i, 0] // size), int(offsets[i, 1] // size))
        cells.setdefault(cell, []).append(int(i))
    out = np.zeros(len(offsets), dtype=bool)
    for i in np.flatnonzero(~is_val):
        r, c = int(offsets[i, 0] // size), int(offsets[i, 1] // size)
        near = [j for dr in (-1, 0, 1) for dc in (-1, 0, 1) for j in cells.get((r + dr, c + dc), ())]
        if near:
            d = np.abs(offsets[near] - offsets[i])
            out[i] = bool(np.any((d[:, 0] < reach) & (d[:, 1] < reach)))
    return out
