"""Resuming: N steps, stop, resume to 2N equals an uninterrupted 2N-step run, bit for bit."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from geospade.checkpoint import load_checkpoint
from geospade.cli import main as cli_main
from geospade.training import TrainConfig, train


@pytest.fixture(scope="module")
def chips(small_chips) -> Path:
    """16 chips of 64 px (14 train) from a small demo scene."""
    return small_chips


def assert_same_state(a: dict, b: dict) -> None:
    """Every weight, EMA weight, optimiser moment and the step are identical."""
    assert a["step"] == b["step"]
    for key in ("generator", "generator_ema", "discriminator"):
        assert a[key].keys() == b[key].keys()
        different = [name for name in a[key] if not torch.equal(a[key][name], b[key][name])]
        assert not different, f"{key} differs in {different[:5]}"
    for key in ("optimizer_g", "optimizer_d"):
        for pid, state in a[key]["state"].items():
            for name, value in state.items():
                assert torch.equal(value, b[key]["state"][pid][name]), f"{key} {pid} {name}"


def losses(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "img_per_s"} for row in rows]


def test_resume_equals_uninterrupted_run(chips, tmp_path):
    # 14 chips / batch 4 = 3 steps per epoch: N = 5 stops in the middle of an epoch, with
    # augmentation on, so the data order, flips and noise must all continue exactly.
    config = TrainConfig(preset="tiny", batch_size=4, device="cpu", augment=True, log_every=1,
                         checkpoint_every=4, sample_every=4, steps=5)
    interrupted, straight = tmp_path / "interrupted", tmp_path / "straight"
    train(chips, interrupted, config, progress=False)
    assert load_checkpoint(interrupted)["step"] == 5
    train(chips, interrupted, config.replace(steps=10), resume=True, progress=False)
    train(chips, straight, config.replace(steps=10), progress=False)

    assert_same_state(load_checkpoint(interrupted), load_checkpoint(straight))
    assert losses(interrupted) == losses(straight)
    # The periodic checkpoint written after resuming matches too.
    assert_same_state(load_checkpoint(interrupted / "checkpoints" / "step_000008.pt"),
                      load_checkpoint(straight / "checkpoints" / "step_000008.pt"))


def test_ctrl_c_stops_after_the_step_and_resumes_exactly(chips, tmp_path):
    config = TrainConfig(preset="tiny", batch_size=4, device="cpu", log_every=1, steps=6)
    # As in a terminal: a background job (nohup, `&`) starts with SIGINT ignored.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _stop_at_step_two_and_resume(chips, tmp_path, config)
    finally:
        signal.signal(signal.SIGINT, previous)


def _stop_at_step_two_and_resume(chips, tmp_path, config: TrainConfig) -> None:

    def press_ctrl_c(step, info):
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    stopped, straight = tmp_path / "stopped", tmp_path / "straight"
    with pytest.raises(KeyboardInterrupt):
        train(chips, stopped, config, progress=False, callback=press_ctrl_c)
    assert load_checkpoint(stopped)["step"] == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    train(chips, stopped, config, resume=True, progress=False)
    train(chips, straight, config, progress=False)
    assert_same_state(load_checkpoint(stopped), load_checkpoint(straight))


def test_resume_drops_metrics_logged_after_the_checkpoint(chips, tmp_path):
    run = tmp_path / "run"
    config = TrainConfig(preset="tiny", batch_size=4, device="cpu", log_every=1, steps=3,
                         metrics_format="csv")
    train(chips, run, config, progress=False)
    # As if the run had logged steps 4 and 5 and then crashed before checkpointing them.
    with (run / "metrics.csv").open("a") as fh:
        fh.write("4,9,9,9,9,9,1\n5,9,9,9,9,9,1\n")
    train(chips, run, config.replace(steps=4), resume=True, progress=False)
    lines = (run / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("step,") and [line.split(",")[0] for line in lines[1:]] == \
        ["1", "2", "3", "4"]
    assert lines[-1].split(",")[1] != "9"


def test_cli_resume_reads_the_runs_own_options(chips, tmp_path):
    run = tmp_path / "run"
    argv = ["train", str(chips), "-o", str(run), "--preset", "tiny", "--batch-size", "2",
            "--steps", "2", "--device", "cpu", "--quiet"]
    assert cli_main.main(argv) == 0
    # Only the new length is given: preset and batch size come from run/config.yaml.
    assert cli_main.main(["train", str(chips), "-o", str(run), "--resume", "--steps", "3",
                          "--quiet"]) == 0
    payload = load_checkpoint(run)
    assert payload["step"] == 3
    assert payload["train_config"]["preset"] == "tiny"
    assert payload["train_config"]["batch_size"] == 2
