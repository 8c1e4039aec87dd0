import os

import pytest
import torch

import scarlet_lib  # noqa: F401  (makes torchvision importable before any test imports it)

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """Run a test on one thread: many tiny ops (and float64 convs off oneDNN) crawl when two OpenMP threads
    spin against each other on a shared 2-core machine; results are exact either way."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)
