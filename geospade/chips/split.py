"""Spatial train/validation split of exported chips.

Neighbouring chips look alike, so a random per-chip split leaks training data into
validation. Chips are grouped into square blocks of the tile grid; whole blocks go to
validation, and any training chip that shares a pixel with a validation chip (possible when
the stride is smaller than the tile) is dropped, so validation never overlaps training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from geospade.errors import InputError
from geospade.tiling import Tile, TileGrid

#: Default block side, in grid steps (tiles, without overlap), when no block size is given.
DEFAULT_BLOCK_TILES = 4


@dataclass(frozen=True)
class Split:
    """Grid indices of the training and validation chips, and training chips dropped."""

    train: tuple[int, ...]
    val: tuple[int, ...]
    dropped: tuple[int, ...]
    block_size: int

    def assignment(self) -> dict[int, str]:
        """Grid index -> "train" or "val" for every chip kept (dropped chips are absent)."""
        return {**{i: "train" for i in self.train}, **{i: "val" for i in self.val}}


def default_block_size(grid: TileGrid) -> int:
    """Block side in pixels: 4 grid steps, halved (down to one step) on small grids.

    Small grids get smaller blocks so that there are at least about 10 blocks to choose from.
    """
    block = DEFAULT_BLOCK_TILES * grid.stride
    while block > grid.stride and _num_blocks(grid, block) < 10:
        block //= 2
    return max(block, grid.stride)


def _num_blocks(grid: TileGrid, block: int) -> int:
    rows = (max(grid.n_rows - 1, 0) * grid.stride) // block + 1
    cols = (max(grid.n_cols - 1, 0) * grid.stride) // block + 1
    return rows * cols


def spatial_split(
    grid: TileGrid,
    tiles: Sequence[Tile],
    *,
    val_fraction: float,
    block_size: int | None = None,
    seed: int = 0,
) -> Split:
    """Split ``tiles`` (chips of ``grid``) into train and val by blocks of the grid.

    Args:
        grid: the tile grid the tiles belong to.
        tiles: the chips to split (those that passed the nodata and AOI filters).
        val_fraction: target share of chips in validation, in [0, 1).
        block_size: block side in pixels (default :func:`default_block_size`); a tile belongs
            to the block holding its top-left pixel.
        seed: seed of the block shuffle, so the split is reproducible.

    Raises:
        InputError: ``val_fraction`` out of range, or a split that would leave no training
            or no validation block.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise InputError(f"validation fraction {val_fraction} is not in [0, 1)",
                         hint="Use e.g. --val-fraction 0.1.")
    block = default_block_size(grid) if block_size is None else int(block_size)
    if block <= 0:
        raise InputError(f"validation block size {block} must be positive")
    indices = tuple(t.index for t in tiles)
    if val_fraction == 0.0 or not tiles:
        return Split(indices, (), (), block)

    blocks: dict[tuple[int, int], list[Tile]] = {}
    for t in tiles:
        blocks.setdefault((t.row_off // block, t.col_off // block), []).append(t)
    if len(blocks) < 2:
        raise InputError(
            f"all {len(tiles)} chips fall in one {block}-pixel block, so a spatial split "
            "cannot hold validation chips apart from training chips",
            hint="Use a smaller --val-block, more chips, or --val-fraction 0.",
        )
    order = sorted(blocks)
    rng = np.random.default_rng(seed)
    target = val_fraction * len(tiles)
    val: list[Tile] = []
    for i in rng.permutation(len(order)):
        members = blocks[order[i]]
        grown = len(val) + len(members)
        # Take a block when it brings the count closer to the target, never the last one.
        if grown < len(tiles) and abs(grown - target) < abs(len(val) - target):
            val.extend(members)
    if not val:
        smallest = min(order, key=lambda k: len(blocks[k]))
        val = list(blocks[smallest])
    val_ids = {t.index for t in val}
    val_at = {(t.row, t.col): t for t in val}
    reach = -(-grid.tile_size // grid.stride) - 1  # grid steps within which tiles overlap
    train, dropped = [], []
    for t in tiles:
        if t.index in val_ids:
            continue
        if reach and _touches(t, val_at, reach):
            dropped.append(t.index)
        else:
            train.append(t.index)
    if not train:
        raise InputError(
            "every training chip overlaps a validation chip",
            hint="Use a larger --stride, a larger --val-block or a smaller --val-fraction.",
        )
    return Split(tuple(train), tuple(sorted(val_ids)), tuple(dropped), block)


def _touches(tile: Tile, val_at: dict[tuple[int, int], Tile], reach: int) -> bool:
    for dr in range(-reach, reach + 1):
        for dc in range(-reach, reach + 1):
            other = val_at.get((tile.row + dr, tile.col + dc))
            if other is not None and tile.overlaps(other):
                return True
    return False
