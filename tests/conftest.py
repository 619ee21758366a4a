"""Shared test fixtures."""

import pytest
import torch


@pytest.fixture
def tiny_cpu():
    """Tiny models: one thread (far faster than two contended ones) and no autograd."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with torch.no_grad():
        yield
    torch.set_num_threads(threads)
