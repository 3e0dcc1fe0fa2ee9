"""Synthesis on a Dask cluster: the same pixels as in one process, shards, faults, resume."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

pytest.importorskip("distributed")

from distributed import Client, LocalCluster  # noqa: E402
from test_synthesize import NODATA, blocky_labels, small_model, write_landcover  # noqa: E402

from geospade.cli.main import main as cli_main  # noqa: E402
from geospade.errors import GridError, InputError, OutputExistsError  # noqa: E402
from geospade.synthesis import synthesize  # noqa: E402
from geospade.synthesis.distributed import (  # noqa: E402
    ClusterRun,
    TorchThreads,
    local_cluster,
    plan_blocks,
    plan_tasks,
    write_on_cluster,
)
from geospade.synthesis.model import LoadedModel, save_model  # noqa: E402
from geospade.synthesis.synthesize import make_plan  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GRID = dict(tile_size=64, halo=32)  # 4 x 5 tiles of 64 px, feather 32
BLOCK = 128                         # 2 x 3 blocks of 2 x 2 tiles


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A 256 x 320 land cover with an all-nodata tile, and a tiny checkpoint."""
    folder = tmp_path_factory.mktemp("inputs")
    labels = blocky_labels(256, 320, seed=4, cell=20)
    labels[:64, :64] = NODATA
    labels[200:, 250:] = NODATA
    landcover = write_landcover(folder / "landcover.tif", labels)
    checkpoint = str(save_model(small_model(), folder / "tiny.pt"))
    return landcover, checkpoint


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory):
    """The single-process output."""
    landcover, checkpoint = inputs
    out = tmp_path_factory.mktemp("reference") / "single.tif"
    result = synthesize(landcover, checkpoint, out, progress=False, **GRID)
    return {**read(out), "generated": result.stats.generated}


@pytest.fixture(scope="module")
def offset(inputs, tmp_path_factory):
    """A 150 x 230 land cover whose corner is off the tile grid (tiles start 48 rows and 40
    columns before it), so the first and last bands between blocks are clipped by its
    edges; with its single-process output."""
    folder = tmp_path_factory.mktemp("offset")
    labels = blocky_labels(150, 230, seed=9, cell=18)
    labels[100:, :70] = NODATA
    transform = Affine(1.0, 0.0, 360448.0 + 40, 0.0, -1.0, 4310016.0 - 48)
    landcover = write_landcover(folder / "offset.tif", labels, transform)
    out = folder / "single.tif"
    result = synthesize(landcover, inputs[1], out, progress=False, **GRID)
    return landcover, {**read(out), "generated": result.stats.generated}


@pytest.fixture(scope="module")
def client():
    """One local cluster of 2 worker processes (1 thread each) for the whole module."""
    cluster = local_cluster(2)
    try:
        with Client(cluster) as c:
            c.register_plugin(TorchThreads(1), name="geospade-torch-threads")
            yield c
    finally:
        cluster.close()


def test_local_cluster_workers_run_without_the_statistical_profiler(client):
    """The profiler samples every thread each 10 ms: about 10 % of a CPU worker's time."""
    import dask

    settings = client.run(lambda: dask.config.get("distributed.worker.profile.enabled"))
    assert len(settings) == 2 and not any(settings.values())
    assert not any(client.run(lambda dask_worker: "profile" in dask_worker.periodic_callbacks)
                   .values())


def read(path):
    with rasterio.open(path) as ds:
        return {"pixels": ds.read(), "mask": ds.dataset_mask(), "names": ds.descriptions,
                "colours": ds.colorinterp, "crs": ds.crs, "transform": ds.transform}


def assert_same(found: dict, expected: dict) -> None:
    assert np.array_equal(found["pixels"], expected["pixels"])  # bit for bit
    assert np.array_equal(found["mask"], expected["mask"])
    for key in ("names", "colours", "crs", "transform"):
        assert found[key] == expected[key], key


# -- blocks (no cluster) ----------------------------------------------------------------------


def test_blocks_and_bands_cover_every_pixel_once_and_each_tile_is_in_one_block(inputs):
    model = small_model()
    plan = make_plan(model, 320, 256, feather=32, **GRID)
    blocks, bands = plan_tasks(plan, BLOCK)
    assert blocks == plan_blocks(plan, BLOCK)
    cover = np.zeros((256, 320), int)
    for w in [b.inner for b in blocks] + [b.window for b in bands]:
        cover[w.row_off:w.row_off + w.height, w.col_off:w.col_off + w.width] += 1
    assert (cover == 1).all()
    assert len(blocks) == 6 and len(bands) == 3 + 4  # tops of the 2nd row, lefts of 2 columns
    tiles = [(t.row, t.col) for b in blocks for t in b.tiles]
    assert sorted(tiles) == [(t.row, t.col) for t in plan.grid]  # each tile in one block
    # Block edges start the feather band: the block at (1, 1) starts 16 px before 128, and
    # its shard starts after the bands shared with the blocks above and to the left.
    middle = next(b for b in blocks if (b.row, b.col) == (1, 1))
    assert (middle.window.row_off, middle.window.col_off) == (112, 112)
    assert (middle.inner.row_off, middle.inner.col_off) == (144, 144)
    assert {(t.row, t.col) for t in middle.tiles} == {(r, c) for r in (2, 3) for c in (2, 3)}
    # Its top band with the corner blends tiles of the four blocks meeting there.
    top = next(b for b in bands if b.name == "r00001_c00001_top")
    assert (top.window.row_off, top.window.height, top.window.width) == (112, 32, 128)
    assert set(top.blocks) == {"r00000_c00000", "r00000_c00001", "r00001_c00000",
                               "r00001_c00001"}
    assert [(t.row, t.col) for t in top.tiles] == sorted((t.row, t.col) for t in top.tiles)
    with pytest.raises(GridError, match="multiple of the tile size 64"):
        plan_blocks(plan, 100)


def test_cluster_options_need_a_cluster(inputs, tmp_path):
    landcover, checkpoint = inputs
    with pytest.raises(InputError, match="--workers N"):
        synthesize(landcover, checkpoint, tmp_path / "o.tif", resume=True, progress=False)


# -- on the cluster ---------------------------------------------------------------------------


def _tiles_generated(client) -> int:
    """Tiles the workers' generators have generated so far, all workers together."""
    def count() -> int:
        from geospade.synthesis import distributed

        return sum(m.tiles_generated for m in distributed._MODELS.values())
    return sum(client.run(count).values())


def test_cluster_output_equals_single_process(inputs, reference, client, tmp_path):
    landcover, checkpoint = inputs
    out = tmp_path / "cluster.tif"
    before = _tiles_generated(client)
    result = synthesize(landcover, checkpoint, out, client=client, block_size=BLOCK,
                        progress=False, **GRID)
    assert_same(read(out), reference)
    assert result.stats.blocks == 6 and result.stats.reused == 0  # 2 x 3: odd, with corners
    assert result.stats.bands == 7
    # Every tile generated once, as in one process (20 tiles, 1 all nodata), counted on the
    # workers' generators too.
    assert result.stats.generated == reference["generated"] == 19
    assert _tiles_generated(client) - before == reference["generated"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cluster.tif"]  # shards removed


def test_vrt_output_over_shards(inputs, reference, client, tmp_path):
    landcover, checkpoint = inputs
    out = tmp_path / "cluster.vrt"
    synthesize(landcover, checkpoint, out, client=client, block_size=BLOCK,
               output_format="vrt", progress=False, **GRID)
    folder = tmp_path / "cluster.vrt.shards"
    shards = sorted(p.name for p in folder.glob("*.tif"))
    names = [f"r{r:05d}_c{c:05d}" for r in range(2) for c in range(3)]
    bands = [f"{n}_top" for n in names[3:]] + [f"{n}_left" for n in names if "_c00000" not in n]
    assert shards == sorted(f"{n}.tif" for n in names + bands)
    assert not list(folder.glob("*.npz"))  # the edge files were only for the bands
    assert_same(read(out), reference)
    records = (folder / "manifest.jsonl").read_text().splitlines()
    assert len(records) == 1 + 6 + 7
    assert all(len(json.loads(r)["sha256"]) == 64 for r in records[1:])


@pytest.mark.parametrize("block_size, blocks, bands", [
    (64, 20, 23),   # 4 x 5 blocks of a tile: empty blocks, bands clipped at the raster's edges
    (320, 1, 0),    # one block: nothing to blend between blocks
])
def test_blocks_at_raster_edges_corners_and_a_single_block(offset, inputs, client, tmp_path,
                                                          block_size, blocks, bands):
    landcover, expected = offset
    with rasterio.open(landcover) as ds:
        plan = make_plan(small_model(), ds.width, ds.height, transform=ds.transform, **GRID)
    planned = plan_tasks(plan, block_size)[0]
    if block_size == 64:  # the first row of blocks has no pixels, the last none of its own
        assert all(b.window.height == 0 for b in planned if b.row == 0)
        assert all(b.inner.width * b.inner.height == 0 for b in planned if b.row == 3)
    out = tmp_path / "offset.tif"
    before = _tiles_generated(client)
    result = synthesize(landcover, inputs[1], out, client=client, block_size=block_size,
                        progress=False, **GRID)
    assert_same(read(out), expected)
    assert (result.stats.blocks, result.stats.bands) == (blocks, bands)
    assert result.stats.generated == expected["generated"]
    assert _tiles_generated(client) - before == expected["generated"]


def test_resume_after_phase_one_only(inputs, reference, client, tmp_path):
    landcover, checkpoint = inputs
    out = tmp_path / "two.vrt"
    model = LoadedModel.from_checkpoint(checkpoint, "cpu")
    with rasterio.open(landcover) as ds:
        plan = make_plan(model, ds.width, ds.height, transform=ds.transform, **GRID)
        run = ClusterRun(landcover, checkpoint, block_size=BLOCK, output_format="vrt")
        first = write_on_cluster(client, run, model, plan, out, ds.crs, ds.transform,
                                 progress=False, blocks_only=True)
    assert first.generated == reference["generated"] and not out.exists()
    folder = tmp_path / "two.vrt.shards"
    assert len(list(folder.glob("*.edges.npz"))) == 6 and not list(folder.glob("*_top.tif"))
    before = _tiles_generated(client)
    result = synthesize(landcover, checkpoint, out, client=client, block_size=BLOCK,
                        output_format="vrt", resume=True, progress=False, **GRID)
    assert (result.stats.reused, result.stats.bands_reused) == (6, 0)
    assert result.stats.generated == 0 and _tiles_generated(client) == before  # none redone
    assert_same(read(out), reference)


@pytest.mark.slow  # kills a worker and waits for the cluster to recover
def test_worker_killed_mid_run_same_output(inputs, reference, client, tmp_path):
    landcover, checkpoint = inputs
    killed = []

    def kill_a_busy_worker(done, total, message):
        if killed:
            return
        busy = [addr for addr, keys in client.processing().items() if keys]
        if busy:
            pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    out = tmp_path / "cluster.tif"
    synthesize(landcover, checkpoint, out, client=client, block_size=64, progress=kill_a_busy_worker,
               **GRID)
    assert killed, "no worker was busy to kill"
    assert_same(read(out), reference)
    client.wait_for_workers(2, timeout=60)  # the nanny restarted it
    assert killed[0] not in client.run(os.getpid).values()


@pytest.mark.slow  # a client in a process of its own, killed, then a resumed run
def test_resume_after_the_client_is_killed(inputs, reference, client, tmp_path):
    landcover, checkpoint = inputs
    out = tmp_path / "resumed.vrt"
    shards = tmp_path / "resumed.vrt.shards"
    scheduler_file = tmp_path / "scheduler.json"
    # What `dask scheduler --scheduler-file` writes, reduced to what a client reads. (The
    # client's own write_scheduler_file dumps live worker metrics, whose tuple keys JSON
    # cannot encode once tasks have run.)
    scheduler_file.write_text(json.dumps({"type": "Scheduler",
                                          "address": client.scheduler.address}))
    command = [sys.executable, "-m", "geospade", "synthesize", landcover, "--checkpoint",
               checkpoint, "-o", str(out), "--tile-size", "64", "--halo", "32",
               "--block-size", "64", "--output-format", "vrt", "--scheduler-file",
               str(scheduler_file), "-q"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and _records(shards) < 2 and proc.poll() is None:
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
    kept = _records(shards)
    # 20 blocks of one tile and the 15 + 16 bands between them.
    assert 2 <= kept < 51, f"the client was not killed mid-run ({kept} of 51 tasks done)"
    assert not out.exists()
    with pytest.raises(OutputExistsError, match="--resume"):
        synthesize(landcover, checkpoint, out, client=client, block_size=64,
                   output_format="vrt", progress=False, **GRID)
    first = json.loads((shards / "manifest.jsonl").read_text().splitlines()[1])
    assert "edges" in first  # a block: bands finish after the blocks they blend
    (shards / first["file"]).write_bytes(b"damaged")  # its checksum no longer matches
    result = synthesize(landcover, checkpoint, out, client=client, block_size=64,
                        output_format="vrt", resume=True, progress=False, **GRID)
    assert result.stats.reused + result.stats.bands_reused == kept - 1
    assert_same(read(out), reference)


def _records(shards: Path) -> int:
    manifest = shards / "manifest.jsonl"
    if not manifest.exists():
        return 0
    return sum(1 for line in manifest.read_text().splitlines()[1:] if line.endswith("}"))


@pytest.mark.slow  # starts a cluster of its own
def test_cli_local_workers_cog(inputs, reference, tmp_path, capsys):
    landcover, checkpoint = inputs
    out = tmp_path / "cli.tif"
    code = cli_main(["synthesize", landcover, "--checkpoint", checkpoint, "-o", str(out),
                     "--tile-size", "64", "--halo", "32", "--workers", "1", "--threads", "1",
                     "--block-size", "128", "--cog"])
    assert code == 0
    captured = capsys.readouterr()
    assert "Dask dashboard: http" in captured.err
    assert "6 blocks and 7 bands between them on the cluster" in captured.out
    assert_same(read(out), reference)
    with rasterio.open(out) as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"


# -- bad input --------------------------------------------------------------------------------


def _error_line(capsys, argv) -> tuple[int, str]:
    code = cli_main(argv)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return code, lines[0]


def test_unreachable_scheduler_is_one_line_after_a_timeout(inputs, tmp_path, capsys):
    landcover, checkpoint = inputs
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    began = time.time()
    code, line = _error_line(capsys, [
        "synthesize", landcover, "--checkpoint", checkpoint, "-o", str(tmp_path / "o.tif"),
        "--scheduler", f"tcp://127.0.0.1:{port}", "--connect-timeout", "2"])
    assert code == 2
    assert f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port} within 2 s" in line
    assert time.time() - began < 30
    assert not (tmp_path / "o.tif").exists()


def test_missing_scheduler_file_and_zero_workers(inputs, tmp_path, capsys):
    landcover, checkpoint = inputs
    base = ["synthesize", landcover, "--checkpoint", checkpoint, "-o", str(tmp_path / "o.tif")]
    code, line = _error_line(capsys, [*base, "--scheduler-file", str(tmp_path / "none.json")])
    assert code == 2 and "none.json: scheduler file not found" in line
    code, line = _error_line(capsys, [*base, "--workers", "0"])
    assert code == 2 and "--workers 0" in line and "--workers 1 or more" in line
    code, line = _error_line(capsys, [*base, "--threads", "2"])
    assert code == 2 and "Add --workers N" in line


def test_scheduler_without_workers_fails_in_one_line(inputs, tmp_path, capsys):
    landcover, checkpoint = inputs
    cluster = LocalCluster(n_workers=0, dashboard_address=":0")
    try:
        began = time.time()
        code, line = _error_line(capsys, [
            "synthesize", landcover, "--checkpoint", checkpoint, "-o", str(tmp_path / "o.tif"),
            "--scheduler", cluster.scheduler_address, "--connect-timeout", "1"])
    finally:
        cluster.close()
    assert code == 2 and time.time() - began < 30
    assert f"the Dask scheduler at {cluster.scheduler_address} has no workers after 1 s" in line
    assert "dask worker" in line and "--connect-timeout" in line
    assert not (tmp_path / "o.tif").exists()


def test_interrupt_keeps_finished_shards_and_says_so(inputs, client, tmp_path, capsys,
                                                    monkeypatch):
    import geospade.synthesis
    from geospade.raster import _host_tag

    landcover, checkpoint = inputs
    out = tmp_path / "o.tif"
    shards = tmp_path / "o.tif.shards"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    partial = shards / f".r00000_c00001.tif.{dead}-{_host_tag()}.x1y2.partial.tif"

    def interrupted(*args, **kwargs):  # a run stopped after two tasks, one mid-write
        shards.mkdir()
        records = [{"header": {}}, {"block": "r00000_c00000", "file": "r00000_c00000.tif"},
                   {"block": "r00001_c00000_top", "file": "r00001_c00000_top.tif"}]
        (shards / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        for r in records[1:]:
            (shards / r["file"]).write_bytes(b"shard")
        partial.write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(geospade.synthesis, "synthesize", interrupted)
    code, line = _error_line(capsys, [
        "synthesize", landcover, "--checkpoint", checkpoint, "-o", str(out),
        "--scheduler", client.scheduler.address])
    assert code == 130
    assert line.startswith("geospade synthesize: interrupted;")
    assert f"the 2 finished blocks and bands are kept in {shards}" in line and "--resume" in line
    assert not partial.exists() and (shards / "r00000_c00000.tif").exists()
    assert not out.exists()


def test_in_process_run_does_not_import_dask(inputs, tmp_path):
    landcover, checkpoint = inputs
    script = (
        "import sys\n"
        "from geospade.cli.main import main\n"
        f"code = main(['synthesize', {landcover!r}, '--checkpoint', {checkpoint!r}, '-o', "
        f"{str(tmp_path / 'o.tif')!r}, '--tile-size', '320', '-q'])\n"
        "assert code == 0, code\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], env={**os.environ,
                          "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "o.tif").exists()
