"""One device rule for every stage: "auto" is CUDA, then MPS, then the CPU."""

import pytest
import torch

from geospade import device as device_module
from geospade.device import resolve_device
from geospade.errors import InputError
from geospade.synthesis import model as synthesis_model
from geospade.training import distributed


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_module, "mps_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(device_module, "mps_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("auto", local_rank=1) == torch.device("cuda", 1)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)


def test_training_and_synthesis_share_the_rule(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_module, "mps_available", lambda: True)
    assert distributed.select_device("auto") == torch.device("mps")
    assert synthesis_model.resolve_device("auto") == torch.device("mps")


@pytest.mark.parametrize("spec, message", [
    ("gpu", "unknown device 'gpu'"),
    ("cuda", "sees no CUDA GPU"),
    ("cuda:0", "sees no CUDA GPU"),
])
def test_bad_or_missing_devices_are_one_line(monkeypatch, spec, message):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match=message) as info:
        resolve_device(spec)
    assert "\n" not in str(info.value)


def test_cuda_index_is_checked(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(InputError, match="only 1 GPU"):
        resolve_device("cuda:3")
    with pytest.raises(InputError, match="whole number"):
        resolve_device("cuda:x")


def test_mps_without_mps_is_refused(monkeypatch):
    monkeypatch.setattr(device_module, "mps_available", lambda: False)
    with pytest.raises(InputError, match="MPS is not available"):
        resolve_device("mps")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
