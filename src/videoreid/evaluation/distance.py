"""Query × gallery distance matrices, computed in blocks with bounded memory.

Both metrics are written as one matrix product per block of query rows, so the temporaries
never exceed ``block_size × Ng`` elements beyond the returned matrix itself:

- ``euclidean``: ``sqrt(max(|q|² + |g|² − 2 q·g, 0))`` (``squared=True`` skips the root);
  the clamp removes the small negative values that cancellation produces for near-identical
  vectors.
- ``cosine``: ``1 − q̂·ĝ`` with L2-normalised rows (zero rows stay zero, so their distance
  to everything is 1), clamped at 0 likewise (rounding gives −1e-7 for identical vectors;
  re-ranking relies on distances being non-negative).

Inputs may be numpy arrays or torch tensors; the result has the same kind (numpy in → numpy
out) and is float32 unless both inputs are float64.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

Metric = Literal["euclidean", "cosine"]
METRICS: tuple[str, ...] = ("euclidean", "cosine")


def _as_tensor(x: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    if t.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (N, D) feature matrix, got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        t = t.float()
    return t


@torch.no_grad()
def compute_distance(
    qf: np.ndarray | torch.Tensor,
    gf: np.ndarray | torch.Tensor,
    metric: Metric = "euclidean",
    block_size: int = 4096,
    squared: bool = False,
) -> np.ndarray | torch.Tensor:
    """Distance matrix between query and gallery features.

    Args:
        qf: query features ``(Nq, D)``.
        gf: gallery features ``(Ng, D)``.
        metric: ``"euclidean"`` or ``"cosine"``.
        block_size: number of query rows computed at once (bounds temporary memory to about
            ``block_size × Ng`` elements).
        squared: for ``euclidean``, return squared distances.

    Returns:
        ``(Nq, Ng)`` distances (smaller = more similar), numpy if ``qf`` was numpy, else a
        tensor on ``qf``'s device.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    as_numpy = isinstance(qf, np.ndarray)
    q = _as_tensor(qf, "qf")
    g = _as_tensor(gf, "gf").to(q.device)
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"feature dimensions differ: qf has {q.shape[1]}, gf has {g.shape[1]}")
    dtype = torch.float64 if (q.dtype == torch.float64 and g.dtype == torch.float64) else torch.float32
    q, g = q.to(dtype), g.to(dtype)
    if metric == "cosine":
        q, g = F.normalize(q, dim=1), F.normalize(g, dim=1)
    else:
        g_sq = (g * g).sum(1)
    out = torch.empty(q.shape[0], g.shape[0], dtype=dtype, device=q.device)
    gt = g.t()
    for a in range(0, q.shape[0], block_size):
        qb = q[a : a + block_size]
        ob = out[a : a + block_size]
        if metric == "cosine":
            torch.mm(qb, gt, out=ob)
            ob.neg_().add_(1.0).clamp_(min=0)
        else:
            # |q|² + |g|² − 2 q·g, built in place in the output block
            torch.addmm(g_sq.unsqueeze(0), qb, gt, beta=1.0, alpha=-2.0, out=ob)
            ob.add_((qb * qb).sum(1, keepdim=True)).clamp_(min=0)
            if not squared:
                ob.sqrt_()
    return out.cpu().numpy() if as_numpy else out
