import os

import pytest
import torch

import scarlet_lib  # noqa: F401  (makes torchvision importable before any test imports it)

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
