"""``torch.distributed`` helpers for runs launched with ``torchrun``.

``torchrun --nproc_per_node N -m videoreid.cli.main train CONFIG`` (or the ``videoreid``
script) sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`init_distributed` reads them and joins the process group with ``gloo`` on CPU and
``nccl`` on CUDA. Without those variables everything runs in one process and every helper
here is a cheap no-op, so library code calls them unconditionally.

Data parallelism: each rank draws its own P/W identities × K tracklets (the P×K sampler is
sharded by rank, identities disjoint across ranks), computes its local mean loss, and DDP
averages gradients. The update therefore equals one process on the global batch exactly
when the loss is a mean of per-sample terms and nothing couples samples across the batch
(no train-mode BatchNorm, no in-batch mining); see docs/training.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "DistInfo",
    "get_dist_info",
    "init_distributed",
    "resolve_device",
    "barrier",
    "all_reduce_mean",
    "any_across_ranks",
    "broadcast_object",
    "wrap_ddp",
    "unwrap",
    "cleanup",
    "setup_logging",
]


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job (``rank 0 of 1`` outside ``torchrun``)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def get_dist_info() -> DistInfo:
    """Rank and world size of the initialised process group, else from the environment."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(),
                        int(os.environ.get("LOCAL_RANK", 0)))
    return DistInfo(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                    int(os.environ.get("LOCAL_RANK", 0)))


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` → this rank's GPU when CUDA is available, else CPU; other names as given.

    Under DDP a bare ``cuda`` also means this rank's GPU (``cuda:LOCAL_RANK``).
    """
    name = (name or "auto").lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("train.device=cuda but CUDA is not available; use device=cpu")
        return torch.device("cuda", local_rank)
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name} requested but CUDA is not available")
    return device


def init_distributed(device_name: str = "auto") -> tuple[DistInfo, torch.device]:
    """Join the process group when launched by ``torchrun``; pick this rank's device.

    Returns:
        ``(info, device)``. With ``WORLD_SIZE`` unset or 1 no process group is created.
    """
    info = get_dist_info()
    device = resolve_device(device_name, info.local_rank)
    if info.world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, init_method="env://")
        info = get_dist_info()
    return info, device


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of ``value`` over ranks (a copy; the input itself is unchanged)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    out = value.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()


def any_across_ranks(flag: bool, device: torch.device) -> bool:
    """True if ``flag`` is true on any rank (so that all ranks take the same branch)."""
    if not (dist.is_available() and dist.is_initialized()):
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` from rank ``src`` on every rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def wrap_ddp(model: nn.Module, device: torch.device, find_unused_parameters: bool = False) -> nn.Module:
    """Wrap in ``DistributedDataParallel`` when a process group exists, else return as is."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(
        model, device_ids=ids, find_unused_parameters=find_unused_parameters
    )


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (state dicts and evaluation use this)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def cleanup() -> None:
    """Tear down the process group once every rank has arrived.

    Without the barrier a rank that finishes first (rank 0 still writing a file, the other
    already exiting) destroys its gloo pairs while the peer's are live, and the peer's
    background thread aborts the process ("terminate called without an active exception").
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def setup_logging(level: int | str = "INFO") -> None:
    """Console logging for command-line runs: ``level`` on rank 0, warnings only elsewhere."""
    import logging

    info = get_dist_info()
    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s" if info.world_size == 1 else (
        f"%(asctime)s [rank {info.rank}] %(levelname)s %(name)s: %(message)s")
    logging.basicConfig(level=level if info.is_main else "WARNING", format=fmt,
                        datefmt="%H:%M:%S", force=True)
