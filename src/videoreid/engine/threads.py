"""How many CPU threads a run uses: torch's intra-op pool plus the loader's worker processes.

Default (``train.threads=0``): the run uses the cores it may run on
(``os.sched_getaffinity``, else ``os.cpu_count``; divided among the ranks of a DDP job on one
machine) and never asks for more threads than that: torch gets
``cores - data.workers`` threads (at least 1), each loader worker runs single-threaded
(PyTorch sets one torch thread per worker). With as many workers as cores the CPU is
oversubscribed whatever torch does; the plan says so in its note. ``train.threads=N`` pins
torch's pool to N threads. The plan is applied with ``torch.set_num_threads`` and recorded in
``run_info.json`` (``threads``).

Why subtract the workers: with uint8 clips a worker is busy only while decoding, but while it
is, a torch pool as wide as the machine would have one thread descheduled mid-kernel, and
oneDNN's kernels wait for their slowest thread.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import torch

__all__ = ["ThreadPlan", "available_cores", "plan_threads", "apply_thread_plan"]


@dataclass(frozen=True)
class ThreadPlan:
    """Threads of one process.

    Attributes:
        cores: cores this process may use (its share on a multi-process machine).
        torch_threads: torch intra-op threads.
        loader_workers: DataLoader worker processes.
        note: why, in words.
    """

    cores: int
    torch_threads: int
    loader_workers: int
    note: str

    def as_dict(self) -> dict:
        return asdict(self)


def available_cores() -> int:
    """Cores this process may run on (CPU affinity where the OS reports it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def plan_threads(workers: int, threads: int = 0, cores: int | None = None,
                 local_world_size: int = 1) -> ThreadPlan:
    """Size torch's thread pool next to ``workers`` loader processes.

    Args:
        workers: DataLoader workers (``data.workers``), honoured as given.
        threads: torch threads; 0 = automatic (``cores - workers``, at least 1).
        cores: cores available (default :func:`available_cores`).
        local_world_size: processes sharing this machine (DDP ranks); each gets its share.

    Returns:
        the plan (apply with :func:`apply_thread_plan`).
    """
    if workers < 0 or threads < 0:
        raise ValueError(f"workers and threads must be >= 0, got {workers}, {threads}")
    total = cores if cores is not None else available_cores()
    share = max(1, total // max(1, local_world_size))
    if threads:
        note = f"train.threads={threads} (pinned)"
        if threads + workers > share:
            note += f"; with {workers} loader workers that is more than the {share} cores"
        return ThreadPlan(share, threads, workers, note)
    n = max(1, share - workers)
    if workers >= share:
        note = (f"{workers} loader workers on {share} cores: the CPU is oversubscribed while "
                f"they decode; torch keeps 1 thread (lower data.workers if data_wait_frac in "
                f"log.csv is small)")
    else:
        note = f"{share} cores = {n} torch threads + {workers} loader workers"
    return ThreadPlan(share, n, workers, note)


def apply_thread_plan(plan: ThreadPlan) -> None:
    """``torch.set_num_threads(plan.torch_threads)``."""
    torch.set_num_threads(plan.torch_threads)
