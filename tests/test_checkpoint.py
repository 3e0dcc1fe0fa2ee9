"""The checkpoint format: round trip, atomic writes, clear errors, run folders."""

from __future__ import annotations

import pytest
import torch

from geospade.checkpoint import (
    ModelCard,
    load_checkpoint,
    read_card,
    resolve_checkpoint_path,
    save_checkpoint,
)
from geospade.classes import CHESAPEAKE_7
from geospade.errors import CheckpointError
from geospade.imagery import ImageryInfo


@pytest.fixture
def card() -> ModelCard:
    return ModelCard(model_config={"preset": "tiny", "num_classes": 7, "channels": [8, 4]},
                     class_scheme=CHESAPEAKE_7,
                     imagery=ImageryInfo(4, "uint8"),
                     chip_size=64, resolution=(1.0, 1.0), crs_wkt="EPSG:26918",
                     crs_units="metre", step=120, extra={"note": "test"})


@pytest.fixture
def state() -> dict:
    torch.manual_seed(0)
    return {"generator": torch.nn.Linear(3, 2).state_dict(), "step": 120,
            "rng": torch.get_rng_state()}


def test_round_trip(tmp_path, card, state):
    path = save_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt", card, state)
    payload = load_checkpoint(path)
    assert read_card(payload) == card
    assert payload["step"] == 120
    for key, tensor in state["generator"].items():
        assert torch.equal(payload["generator"][key], tensor)
    # A run folder resolves to its latest checkpoint.
    assert resolve_checkpoint_path(tmp_path / "run") == path
    assert read_card(load_checkpoint(tmp_path / "run")) == card


def test_failed_save_keeps_previous_file(tmp_path, card, state):
    path = save_checkpoint(tmp_path / "model.pt", card, state)
    before = path.read_bytes()
    with pytest.raises(Exception):  # noqa: B017 - any pickling error will do
        save_checkpoint(path, card, {**state, "callback": lambda: None})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_not_a_checkpoint(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="cannot read as a geospade checkpoint") as exc:
        load_checkpoint(text)
    assert "notes.pt" in str(exc.value)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a geospade checkpoint"):
        load_checkpoint(foreign)


def test_newer_format_is_refused(tmp_path, card, state):
    path = save_checkpoint(tmp_path / "model.pt", card, state)
    payload = torch.load(path, weights_only=True)
    payload["version"] = 99
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="version 99 is newer"):
        load_checkpoint(path)


def test_missing_paths(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="no checkpoint in this folder"):
        load_checkpoint(tmp_path)
