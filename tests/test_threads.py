"""Chip-export threads: ordered maps on a bounded pool, tiles grouped by source block."""

from __future__ import annotations

import threading
import time

import pytest

from geospade.chips.threads import block_groups, map_by_block, ordered_map
from geospade.tiling import tile_grid


class _Bar:
    def __init__(self) -> None:
        self.n = 0

    def update(self, n: int) -> None:
        self.n += n


@pytest.mark.parametrize("workers", [1, 4])
def test_ordered_map_returns_results_in_order(workers):
    def slow_square(x: int) -> int:
        time.sleep(0.001 * (x % 3))  # later items may finish first
        return x * x

    seen: list[int] = []
    assert ordered_map(slow_square, range(40), workers, seen.append) == [x * x for x in range(40)]
    assert seen == [x * x for x in range(40)]


def test_ordered_map_stops_queued_tasks_after_an_error():
    started = []
    lock = threading.Lock()

    def fail_at_five(x: int) -> int:
        with lock:
            started.append(x)
        if x == 5:
            raise ValueError("five")
        time.sleep(0.01)
        return x

    with pytest.raises(ValueError, match="five"):
        ordered_map(fail_at_five, range(1000), 2)
    assert len(started) < 100  # the queue is bounded: most items never started


def test_map_by_block_keeps_block_members_on_one_thread_and_results_in_tile_order():
    grid = tile_grid(256, 256, 32)
    tiles = list(grid)
    groups = block_groups(tiles, (128, 128))
    assert len(groups) == 4 and sorted(i for g in groups for i in g) == list(range(len(tiles)))
    threads: dict[int, str] = {}

    def name(tile):
        threads[tile.index] = threading.current_thread().name
        return tile.index

    bar = _Bar()
    assert map_by_block(name, tiles, (128, 128), 3, bar) == [t.index for t in tiles]
    assert bar.n == len(tiles)
    for group in groups:
        assert len({threads[tiles[i].index] for i in group}) == 1
