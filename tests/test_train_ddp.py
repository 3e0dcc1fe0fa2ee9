"""Multi-process training: two CPU processes under torchrun (gloo) stay in step."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from geospade.checkpoint import load_checkpoint

# Each rank trains, then saves what it ended with; the test compares the files.
WORKER = textwrap.dedent("""
    import sys, torch
    from geospade.training import TrainConfig, train

    torch.set_num_threads(1)
    chips, run, out = sys.argv[1:4]
    seen = []

    def record(step, info):
        seen.extend(info["chips"])
        state = {f"{name}.{key}": value.detach().clone()
                 for name in ("generator", "discriminator", "generator_ema")
                 for key, value in info[name].named_parameters()}
        state.update({f"discriminator.{k}": v.clone()
                      for k, v in info["discriminator"].named_buffers()})
        torch.save({"state": state, "chips": seen, "losses": info["losses"]},
                   f"{out}/rank{info['rank']}.pt")

    config = TrainConfig(preset="tiny", batch_size=2, steps=2, device="cpu", log_every=1)
    train(chips, run, config, progress=False, callback=record)
""")


@pytest.fixture(scope="module")
def chips(small_chips) -> Path:
    return small_chips


@pytest.mark.slow  # two training processes, each importing torch
def test_two_processes_agree_on_the_weights(chips, tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    run, out = tmp_path / "run", tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
           "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(script), str(chips), str(run), str(out)],
        env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    rank0, rank1 = (torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    # Gradients were averaged: every weight (and D's spectral-norm vectors) is identical.
    assert rank0["state"].keys() == rank1["state"].keys()
    different = [k for k in rank0["state"] if not torch.equal(rank0["state"][k],
                                                              rank1["state"][k])]
    assert not different, different[:5]
    # ...although each rank trained on its own chips (DistributedSampler-like shards)...
    assert not set(rank0["chips"]) & set(rank1["chips"])
    assert rank0["losses"] != rank1["losses"]
    # ...and only rank 0 wrote the run folder, a checkpoint holding those same weights.
    payload = load_checkpoint(run)
    assert payload["step"] == 2 and payload["world_size"] == 2 and len(payload["rng"]) == 2
    for key, value in payload["generator"].items():
        name = f"generator.{key}"
        if name in rank0["state"]:
            assert torch.equal(value, rank0["state"][name])
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
