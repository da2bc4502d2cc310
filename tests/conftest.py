"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from videoreid.utils.shared import shared_dir as _shared_dir

# Tests are sized for 2 cores; more threads only adds contention between pytest workers.
torch.set_num_threads(2)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The project's ``shared/`` folder (real MARS frames, official metadata); skip if absent."""
    d = _shared_dir()
    if d is None:
        pytest.skip("../shared is not present (it exists on the project's machines and CI only)")
    return d
