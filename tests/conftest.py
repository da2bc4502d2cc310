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
    """The folder of optional real test data; skip if absent.

    It holds ``data/mars-mini/mars/`` (frames of 16 MARS identities in the official layout,
    with official-format ``info/`` files) and ``data/mars-official-info/`` (the official
    ``tracks_train_info.mat``, ``tracks_test_info.mat`` and ``query_IDX.mat``), taken from
    the MARS release on its official site; point ``$VIDEOREID_SHARED`` at it.
    """
    d = _shared_dir()
    if d is None:
        pytest.skip("no real MARS test data: set VIDEOREID_SHARED to a folder with "
                    "data/mars-mini and data/mars-official-info (from the MARS release)")
    return d


from tiny_models import TINY_MODEL_ARGS, tiny_model  # noqa: E402,F401  (re-exported for fixtures)


@pytest.fixture(scope="session")
def demo_quick_run(tmp_path_factory) -> Path:
    """A ``videoreid demo --quick`` run (seconds): ``OUT/run_quick`` and ``OUT/data_quick``."""
    from videoreid.cli.main import main

    out = tmp_path_factory.mktemp("demo_quick")
    threads = torch.get_num_threads()
    try:
        assert main(["demo", "--out", str(out), "--quick"]) == 0
    finally:
        torch.set_num_threads(threads)
    return out
