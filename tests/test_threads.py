"""Thread plan: torch threads + loader workers never exceed the cores unless the user asks."""

from __future__ import annotations

import json

import pytest
import torch

from videoreid.engine.builders import write_run_info
from videoreid.engine.distributed import get_dist_info
from videoreid.engine.threads import available_cores, plan_threads


@pytest.mark.parametrize(("cores", "workers", "ranks", "want"), [
    (2, 0, 1, 2),    # no workers: every core to torch
    (2, 1, 1, 1),
    (16, 2, 1, 14),
    (16, 2, 4, 2),   # four ranks on one machine: 4 cores each
    (2, 2, 1, 1),    # workers fill the CPU: torch keeps one thread (said in the note)
])
def test_automatic_plan_fills_but_does_not_oversubscribe(cores, workers, ranks, want):
    plan = plan_threads(workers, 0, cores=cores, local_world_size=ranks)
    assert plan.torch_threads == want and plan.loader_workers == workers
    if workers < plan.cores:
        assert plan.torch_threads + plan.loader_workers == plan.cores
    else:
        assert "oversubscribed" in plan.note


def test_pinned_threads_and_bad_values():
    plan = plan_threads(1, 3, cores=2)
    assert plan.torch_threads == 3 and "pinned" in plan.note and "more than" in plan.note
    with pytest.raises(ValueError):
        plan_threads(-1, 0, cores=2)
    assert available_cores() >= 1


def test_run_info_records_the_plan(tmp_path):
    plan = plan_threads(1, 0, cores=4)
    info = write_run_info(tmp_path, torch.device("cpu"), get_dist_info(), threads=plan.as_dict())
    on_disk = json.loads((tmp_path / "run_info.json").read_text())
    assert on_disk["threads"] == info["threads"] == {
        "cores": 4, "torch_threads": 3, "loader_workers": 1,
        "note": "4 cores = 3 torch threads + 1 loader workers"}
