"""Score normalisation of a query × gallery score matrix (AlignNet, paper file 001, §4.4).

The paper: "Each similarity score is normalized by subtracting the means and dividing by
the standard deviations of that score's row and column" (citing Wu, Li & Jiang,
*Normalization and transformation techniques for robust speaker recognition*, 2008 — the
speaker-recognition Z-/T-norm family). The sentence does not say how the row and the column
statistics are combined, so this module offers the two standard readings and chooses one:

- ``"symmetric"`` (default): ``s' = ½·[(s − μ_row)/σ_row + (s − μ_col)/σ_col]`` — the
  symmetric ("S-norm") combination. Chosen because it uses both statistics of the *same*
  raw score, as the sentence says, and does not depend on an order the paper never gives.
- ``"sequential"``: z-normalise every row, then every column of the result (the ZT-norm
  style chain; row first).
- ``"row"`` / ``"column"``: one side only (T-norm-like / Z-norm-like), for ablations.

Statistics are the population mean and standard deviation (ddof = 0) over the whole row
(all gallery items of that query) or column (all queries for that gallery item) of the
matrix given — i.e. over the evaluated query and gallery sets, as a test-time
post-processing. A zero standard deviation is replaced by 1 (a constant row/column carries
no ranking information either way).

Distances work as well as similarities: z-scoring is linear, so normalising ``−d`` gives
exactly ``−(normalised d)``; the result keeps the input's orientation (smaller is better
for distances). The computation is float64 in blocks of rows for column statistics that do
not lose precision, and the output has the input's dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import torch

Mode = Literal["symmetric", "sequential", "row", "column"]
MODES: tuple[str, ...] = ("symmetric", "sequential", "row", "column")


def _row_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = x.mean(axis=1, dtype=np.float64)
    sd = x.std(axis=1, dtype=np.float64)
    sd[sd == 0] = 1.0
    return mu, sd


def _col_stats(rows: Callable[[int, int], np.ndarray], n: int, m: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    # two passes over row blocks (mean, then centred squares): accurate and bounded memory
    s = np.zeros(m)
    for a in range(0, n, block):
        s += rows(a, a + block).sum(axis=0)
    mu = s / n
    ss = np.zeros(m)
    for a in range(0, n, block):
        d = rows(a, a + block) - mu
        ss += (d * d).sum(axis=0)
    sd = np.sqrt(ss / n)
    sd[sd == 0] = 1.0
    return mu, sd


def score_normalize(
    scores: np.ndarray | torch.Tensor, mode: Mode = "symmetric", block_size: int = 1024
) -> np.ndarray | torch.Tensor:
    """Z-normalise each score by its row and column statistics.

    Args:
        scores: ``(Nq, Ng)`` similarities or distances (numpy or torch).
        mode: ``"symmetric"`` (default), ``"sequential"``, ``"row"`` or ``"column"``; see
            the module docstring.
        block_size: rows processed at once.

    Returns:
        ``(Nq, Ng)`` normalised scores, same kind, dtype and orientation as the input.
    """
    if mode not in MODES:
        raise ValueError(f"unknown score normalisation mode {mode!r}; choose from {', '.join(MODES)}")
    is_torch = isinstance(scores, torch.Tensor)
    x = scores.detach().cpu().numpy() if is_torch else np.asarray(scores)
    if x.ndim != 2:
        raise ValueError(f"scores must be a 2-D (Nq, Ng) matrix, got shape {x.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"scores must be non-empty, got shape {x.shape}")
    dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.float64
    n, m = x.shape
    mu_r, sd_r = _row_stats(x) if mode != "column" else (np.zeros(n), np.ones(n))

    def raw(a: int, b: int) -> np.ndarray:
        return x[a:b].astype(np.float64)

    def row_z(a: int, b: int) -> np.ndarray:
        return (x[a:b].astype(np.float64) - mu_r[a:b, None]) / sd_r[a:b, None]

    if mode == "symmetric":
        mu_c, sd_c = _col_stats(raw, n, m, block_size)
    elif mode in ("sequential", "column"):
        # sequential: column statistics of the row-normalised matrix
        mu_c, sd_c = _col_stats(row_z if mode == "sequential" else raw, n, m, block_size)
    out = np.empty(x.shape, dtype=dtype)
    for a in range(0, n, block_size):
        b = min(a + block_size, n)
        if mode == "row":
            z = row_z(a, b)
        elif mode == "column":
            z = (raw(a, b) - mu_c) / sd_c
        elif mode == "sequential":
            z = (row_z(a, b) - mu_c) / sd_c
        else:
            z = 0.5 * (row_z(a, b) + (raw(a, b) - mu_c) / sd_c)
        out[a:b] = z
    return torch.from_numpy(out).to(scores.device) if is_torch else out
