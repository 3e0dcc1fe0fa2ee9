"""Shared test set-up."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """One intra-op PyTorch thread for the whole session: CI machines have few cores, and
    oversubscribed threads slow small models down many times over; it also keeps float
    results repeatable."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
