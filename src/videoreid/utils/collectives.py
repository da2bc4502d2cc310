"""Collectives that library code below the engine may call (losses, model layers).

Each is a cheap no-op without an initialised ``torch.distributed`` process group (or with one
rank), so callers use them unconditionally. The engine's own helpers live in
``videoreid.engine.distributed``; these sit in ``utils`` so that ``losses`` and ``models``
need not import the engine.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["world_size", "all_reduce_sum", "all_gather_cat"]


def world_size() -> int:
    """Ranks in the default process group (1 without one)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def all_reduce_sum(t: Tensor) -> Tensor:
    """Sum of ``t`` over ranks, differentiable: the gradient is the sum of every rank's.

    That backward is what makes a statistic pooled across ranks (synchronised batch norm)
    give each rank the gradient of the global objective.
    """
    if world_size() == 1:
        return t
    return _AllReduceSum.apply(t)


class _AllReduceSum(torch.autograd.Function):
    """``all_reduce(SUM)`` whose backward is ``all_reduce(SUM)`` of the incoming gradient."""

    @staticmethod
    def forward(ctx: Any, t: Tensor) -> Tensor:  # noqa: D102
        out = t.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # noqa: D102
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


@torch.no_grad()
def all_gather_cat(t: Tensor) -> Tensor:
    """Every rank's ``t`` concatenated along dim 0 in rank order (no gradient).

    Ranks may hold different numbers of rows: sizes are exchanged first and rows padded to
    the largest, then cut back.
    """
    w = world_size()
    if w == 1:
        return t
    t = t.contiguous()
    n = torch.tensor([t.shape[0]], device=t.device, dtype=torch.int64)
    sizes = [torch.zeros_like(n) for _ in range(w)]
    dist.all_gather(sizes, n)
    counts = [int(s.item()) for s in sizes]
    longest = max(counts)
    if t.shape[0] < longest:
        pad = t.new_zeros((longest - t.shape[0], *t.shape[1:]))
        t = torch.cat([t, pad])
    parts = [torch.empty_like(t) for _ in range(w)]
    dist.all_gather(parts, t)
    return torch.cat([p[:c] for p, c in zip(parts, counts, strict=True)])
