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

pytest.importorskip("distributed")

from distributed import Client, LocalCluster  # noqa: E402
from test_synthesize import NODATA, blocky_labels, small_model, write_landcover  # noqa: E402

from geospade.cli.main import main as cli_main  # noqa: E402
from geospade.errors import GridError, InputError, OutputExistsError  # noqa: E402
from geospade.synthesis import synthesize  # noqa: E402
from geospade.synthesis.distributed import TorchThreads, plan_blocks  # noqa: E402
from geospade.synthesis.model import save_model  # noqa: E402
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
    synthesize(landcover, checkpoint, out, progress=False, **GRID)
    return read(out)


@pytest.fixture(scope="module")
def client():
    """One local cluster of 2 worker processes (1 thread each) for the whole module."""
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=":0")
    try:
        with Client(cluster) as c:
            c.register_plugin(TorchThreads(1), name="geospade-torch-threads")
            yield c
    finally:
        cluster.close()


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


def test_blocks_cover_every_pixel_once_and_reach_one_tile_out(inputs):
    model = small_model()
    plan = make_plan(model, 320, 256, feather=32, **GRID)
    blocks = plan_blocks(plan, BLOCK)
    cover = np.zeros((256, 320), int)
    for b in blocks:
        cover[b.window.row_off:b.window.row_off + b.window.height,
              b.window.col_off:b.window.col_off + b.window.width] += 1
    assert (cover == 1).all()
    assert len(blocks) == 6
    # Block edges start the feather band: the block at (1, 1) starts 16 px before 128.
    middle = next(b for b in blocks if (b.row, b.col) == (1, 1))
    assert (middle.window.row_off, middle.window.col_off) == (112, 112)
    # 2 x 2 tiles of its own plus the row and column of tiles before it.
    assert {(t.row, t.col) for t in middle.tiles} == {(r, c) for r in (1, 2, 3) for c in (1, 2, 3)}
    with pytest.raises(GridError, match="multiple of the tile size 64"):
        plan_blocks(plan, 100)


def test_cluster_options_need_a_cluster(inputs, tmp_path):
    landcover, checkpoint = inputs
    with pytest.raises(InputError, match="--workers N"):
        synthesize(landcover, checkpoint, tmp_path / "o.tif", resume=True, progress=False)


# -- on the cluster ---------------------------------------------------------------------------


def test_cluster_output_equals_single_process(inputs, reference, client, tmp_path):
    landcover, checkpoint = inputs
    out = tmp_path / "cluster.tif"
    result = synthesize(landcover, checkpoint, out, client=client, block_size=BLOCK,
                        progress=False, **GRID)
    assert_same(read(out), reference)
    assert result.stats.blocks == 6 and result.stats.reused == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cluster.tif"]  # shards removed


def test_vrt_output_over_shards(inputs, reference, client, tmp_path):
    landcover, checkpoint = inputs
    out = tmp_path / "cluster.vrt"
    synthesize(landcover, checkpoint, out, client=client, block_size=BLOCK,
               output_format="vrt", progress=False, **GRID)
    shards = sorted(p.name for p in (tmp_path / "cluster.vrt.shards").glob("*.tif"))
    assert shards == [f"r{r:05d}_c{c:05d}.tif" for r in range(2) for c in range(3)]
    assert_same(read(out), reference)
    records = (tmp_path / "cluster.vrt.shards" / "manifest.jsonl").read_text().splitlines()
    assert len(records) == 7 and all(len(json.loads(r)["sha256"]) == 64 for r in records[1:])


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
    assert 2 <= kept < 20, f"the client was not killed mid-run ({kept} of 20 blocks done)"
    assert not out.exists()
    with pytest.raises(OutputExistsError, match="--resume"):
        synthesize(landcover, checkpoint, out, client=client, block_size=64,
                   output_format="vrt", progress=False, **GRID)
    first = json.loads((shards / "manifest.jsonl").read_text().splitlines()[1])
    (shards / first["file"]).write_bytes(b"damaged")  # its checksum no longer matches
    result = synthesize(landcover, checkpoint, out, client=client, block_size=64,
                        output_format="vrt", resume=True, progress=False, **GRID)
    assert result.stats.reused == kept - 1
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
    assert "6 blocks on the cluster" in captured.out
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
