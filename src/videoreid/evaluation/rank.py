"""CMC, mAP and mINP from a distance matrix, under an explicitly named protocol.

Protocols (see ``docs/evaluation.md``; numbers are NOT comparable across them):

======================  =========================================  ================  ===============
protocol                junk (removed from the ranking)            AP                queries counted
======================  =========================================  ================  ===============
``official``            pid −1; same pid & same camera             trapezoidal       all
``market``              pid −1; same pid & same camera             non-interpolated  with a match
``query_in_gallery``    pid −1; same pid & same camera             non-interpolated  all
``cross_camera``        pid −1; everything in the query's camera   non-interpolated  with a match
======================  =========================================  ================  ===============

A *good* (true match) is a non-junk gallery item with the query's pid. pid 0 (MARS
distractors) is an ordinary negative. Gallery items with pid −1 are junk for every query,
which is the same as dropping them from the gallery: the ``market`` rule of removing them
beforehand therefore gives identical numbers whether or not the caller has dropped them.
Queries must not have pid −1.

``official`` transcribes the MARS authors' MATLAB evaluation (``utils/evaluation_mars.m`` and
``compute_AP.m`` of github.com/liangzheng06/MARS-evaluation): the gallery is all test
tracklets (the queries included; the query itself is removed as same pid & same camera),
``AP = Σ_hits (r_i − r_{i−1})·(p_{i−1} + p_i)/2`` over the junk-free ranking with
``p_0 = 1``, CMC = 1 from the first good on, and the mean is over all queries. Where the
MATLAB code would produce NaN (a query with no good at all: ``0/0`` recall) the AP is 0, as
in the widely used variant of that file that sets ``ap(isnan(ap)) = 0``.

``market`` is the common open-source rule (torchreid's ``eval_market1501``): AP is the mean
of the precision at each hit; queries without any good are skipped (and counted in a
warning). ``query_in_gallery`` counts every query (AP 0 when it has no good).
``cross_camera`` is the iLIDS-VID / PRID2011 rule: only other cameras are searched.

mINP (Ye et al., 2021) is ``#goods / (position of the last good + 1)`` in the junk-free
ranking; 0 for a counted query without a good.

Ties: items at equal distance are ranked in gallery (column) order, exactly as a *stable*
argsort of each row does (MATLAB's ``sort`` is stable too). The implementation never sorts
indices: per block of query rows it sorts the distances (``np.sort``, which releases the GIL,
so blocks run on several threads) and locates every same-pid item by a batched binary
search; only items tied with another item at the same distance need an extra exact count.
Everything is vectorised over queries; the only Python loops are over row blocks, binary
search steps and (for the per-camera table) cameras.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

PROTOCOLS: tuple[str, ...] = ("official", "market", "query_in_gallery", "cross_camera")


@dataclass(frozen=True)
class _Rule:
    trapezoid_ap: bool  # MARS authors' interpolation
    count_all: bool  # queries without a good count (AP 0, CMC 0) instead of being skipped
    drop_query_camera: bool  # cross-camera rule: the query's whole camera is junk


_RULES: dict[str, _Rule] = {
    "official": _Rule(trapezoid_ap=True, count_all=True, drop_query_camera=False),
    "market": _Rule(trapezoid_ap=False, count_all=False, drop_query_camera=False),
    "query_in_gallery": _Rule(trapezoid_ap=False, count_all=True, drop_query_camera=False),
    "cross_camera": _Rule(trapezoid_ap=False, count_all=False, drop_query_camera=True),
}

# Elements of the distance matrix sorted at once per thread (16 MiB of float32).
DEFAULT_BLOCK_ELEMS = 1 << 22


# --------------------------------------------------------------------------- inputs


def _as_matrix(distmat: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(distmat, torch.Tensor):
        distmat = distmat.detach().cpu().numpy()
    d = np.asarray(distmat)
    if d.ndim != 2:
        raise ValueError(f"distmat must be a 2-D (Nq, Ng) matrix, got shape {d.shape}")
    if d.dtype not in (np.float32, np.float64):
        d = d.astype(np.float64)
    return d


def _as_labels(x: Sequence[int] | np.ndarray | torch.Tensor, name: str, n: int) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.ndim != 1 or a.shape[0] != n:
        raise ValueError(f"{name} must be a 1-D array of length {n} (matching distmat), got shape {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        if not np.all(a == np.round(a)):
            raise ValueError(f"{name} must hold integers")
    return a.astype(np.int64, copy=False)


# --------------------------------------------------------------------------- ranking core


def _same_label_pairs(q: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All ``(i, j)`` with ``q[i] == g[j]``, sorted by ``i`` then ``j``."""
    order = np.argsort(g, kind="stable")
    gs = g[order]
    lo = np.searchsorted(gs, q, side="left")
    cnt = np.searchsorted(gs, q, side="right") - lo
    qi = np.repeat(np.arange(q.shape[0]), cnt)
    # position of each pair inside its query's run → index into the sorted gallery
    first = np.cumsum(cnt) - cnt
    gj = order[np.arange(qi.shape[0]) + np.repeat(lo - first, cnt)]
    return qi, gj


def _segment_searchsorted(
    flat: np.ndarray, lo: np.ndarray, hi: np.ndarray, t: np.ndarray, right: bool
) -> np.ndarray:
    """``lo[k] + np.searchsorted(flat[lo[k]:hi[k]], t[k])`` for every k at once.

    Each segment ``flat[lo[k]:hi[k]]`` must be sorted; a plain binary search run on all k in
    lockstep (``bit_length`` of the longest segment steps).
    """
    lo = lo.copy()
    hi = hi.copy()
    if lo.shape[0] == 0:
        return lo
    last = max(flat.shape[0] - 1, 0)
    for _ in range(int((hi - lo).max()).bit_length()):
        active = lo < hi
        mid = (lo + hi) >> 1
        v = flat[np.minimum(mid, last)]
        go = (v <= t) if right else (v < t)
        lo = np.where(active & go, mid + 1, lo)
        hi = np.where(active & ~go, mid, hi)
    return lo


def _count_equal_before(sub: np.ndarray, r: np.ndarray, c: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``#{j < c[k] : sub[r[k], j] == t[k]}`` for every k (the stable tie-break)."""
    n = sub.shape[1]
    out = np.empty(r.shape[0], dtype=np.int64)
    step = max(1, DEFAULT_BLOCK_ELEMS // max(n, 1))
    cols = np.arange(n)
    for a in range(0, r.shape[0], step):
        rows = sub[r[a : a + step]]
        eq = (rows == t[a : a + step, None]) & (cols[None, :] < c[a : a + step, None])
        out[a : a + step] = eq.sum(1)
    return out


def _ordered_bits(x: np.ndarray) -> np.ndarray:
    """uint64 keys whose integer order is the float32 order of ``x`` (no NaN in ``x``).

    Equal values give equal keys (−0.0 is mapped to +0.0 first, as ``==`` treats them). The
    IEEE bit pattern orders non-negative floats; negative ones are ordered by flipping all
    bits, non-negative ones by setting the sign bit.
    """
    u = (x.astype(np.float32) + np.float32(0.0)).view(np.uint32)
    neg = (u >> np.uint32(31)).astype(bool)
    u = np.where(neg, ~u, u | np.uint32(0x80000000))
    return u.astype(np.uint64)


# A row whose elements up to its largest same-pid distance are more than this fraction of
# the row is sorted whole (np.sort); sparser rows sort only those elements.
_DENSE_ROW_FRACTION = 1 / 8


def _block_ranks(sub: np.ndarray, r: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Stable ranks of ``sub[r[k], c[k]]`` within their rows (``r`` sorted ascending).

    An element before ``t = sub[r, c]`` in a stable sort is either smaller than ``t`` or
    equal to it with a smaller column index. Only elements not larger than the row's largest
    query threshold can be before any of them, so a row is reduced to those elements
    (usually a few percent of the gallery once features carry identity) and only they are
    sorted; counts come from a batched binary search and exact tie counts on the full row.
    Rows where that subset is large are sorted whole instead. A NaN in any row that has
    pairs raises (elsewhere it cannot change a result).
    """
    nr, n = sub.shape
    t = sub[r, c]
    # row maximum of the thresholds (r is sorted, so runs are contiguous)
    run = np.flatnonzero(np.r_[True, r[1:] != r[:-1]])
    T = np.full(nr, -np.inf, dtype=sub.dtype)
    T[r[run]] = np.maximum.reduceat(t, run)
    # ~(x > T) rather than x <= T: it keeps NaN, which must raise rather than vanish
    keep = sub > T[:, None]
    np.logical_not(keep, out=keep)
    # flat positions of the kept elements: one pass over the mask, row-major so grouped by row
    idx = np.flatnonzero(keep)
    row = idx // n
    cnt = np.bincount(row, minlength=nr)
    dense = cnt > n * _DENSE_ROW_FRACTION
    # each pair is searched in a sorted segment [lo, hi) of one of two flat arrays
    lo = np.empty(r.shape[0], dtype=np.int64)
    hi = np.empty(r.shape[0], dtype=np.int64)
    rank = np.empty(r.shape[0], dtype=np.int64)
    n_eq = np.empty(r.shape[0], dtype=np.int64)
    in_dense = dense[r]
    if in_dense.any():
        S = np.sort(sub[dense], axis=1)
        if np.isnan(S[:, -1]).any():  # NaN sorts last
            raise ValueError("distmat contains NaN")
        lo[in_dense] = (np.cumsum(dense) - 1)[r[in_dense]] * n
        hi[in_dense] = lo[in_dense] + n
        left = _segment_searchsorted(S.reshape(-1), lo[in_dense], hi[in_dense], t[in_dense], False)
        right = _segment_searchsorted(S.reshape(-1), lo[in_dense], hi[in_dense], t[in_dense], True)
        rank[in_dense] = left - lo[in_dense]
        n_eq[in_dense] = right - left
    in_sparse = ~in_dense
    if in_sparse.any():
        if dense.any():
            sparse_el = ~dense[row]
            idx, row = idx[sparse_el], row[sparse_el]
            cnt = np.where(dense, 0, cnt)
        vals = sub.reshape(-1)[idx]
        if np.isnan(vals).any():
            raise ValueError("distmat contains NaN")
        seg = np.cumsum(cnt) - cnt
        rs, ts = r[in_sparse], t[in_sparse]
        if sub.dtype == np.float32:
            # one sort of (row, value) packed into uint64 keys, one global binary search
            keys = np.sort((row.astype(np.uint64) << np.uint64(32)) | _ordered_bits(vals))
            tk = (rs.astype(np.uint64) << np.uint64(32)) | _ordered_bits(ts)
            left = np.searchsorted(keys, tk, side="left")
            right = np.searchsorted(keys, tk, side="right")
            rank[in_sparse] = left - seg[rs]
        else:  # float64 values do not fit a packed key: sort by (row, value), segment search
            sorted_vals = vals[np.lexsort((vals, row))]
            lo_s, hi_s = seg[rs], seg[rs] + cnt[rs]
            left = _segment_searchsorted(sorted_vals, lo_s, hi_s, ts, right=False)
            right = _segment_searchsorted(sorted_vals, lo_s, hi_s, ts, right=True)
            rank[in_sparse] = left - lo_s
        n_eq[in_sparse] = right - left
    tied = n_eq > 1
    if tied.any():
        rank[tied] += _count_equal_before(sub, r[tied], c[tied], t[tied])
    return rank


def _stable_ranks(
    D: np.ndarray,
    rows: np.ndarray | None,
    cols: np.ndarray | None,
    pr: np.ndarray,
    pc: np.ndarray,
    num_threads: int,
    block_elems: int,
) -> np.ndarray:
    """Rank (0-based) of ``sub[pr[k], pc[k]]`` in its row under a stable ascending sort.

    ``sub = D[rows][:, cols]`` (``None`` = all); ``pr`` must be sorted ascending. Rows are
    processed in blocks of about ``block_elems`` elements, on ``num_threads`` threads (numpy
    releases the GIL while sorting and comparing).
    """
    n_rows = D.shape[0] if rows is None else rows.shape[0]
    n_cols = D.shape[1] if cols is None else cols.shape[0]
    ranks = np.empty(pr.shape[0], dtype=np.int64)
    if pr.shape[0] == 0:
        return ranks
    step = max(1, block_elems // max(n_cols, 1))
    starts = list(range(0, n_rows, step))
    bounds = np.searchsorted(pr, [*starts, n_rows])

    def work(i: int) -> None:
        a, b = starts[i], min(starts[i] + step, n_rows)
        p0, p1 = bounds[i], bounds[i + 1]
        if p0 == p1:
            return
        if rows is None:
            sub = D[a:b] if cols is None else np.take(D[a:b], cols, axis=1)
        else:
            sub = D[rows[a:b]] if cols is None else D[np.ix_(rows[a:b], cols)]
        ranks[p0:p1] = _block_ranks(sub, pr[p0:p1] - a, pc[p0:p1])

    if num_threads <= 1 or len(starts) == 1:
        for i in range(len(starts)):
            work(i)
    else:
        with ThreadPoolExecutor(max_workers=min(num_threads, len(starts))) as pool:
            list(pool.map(work, range(len(starts))))
    return ranks


def _block_ranks_torch(sub: torch.Tensor, r: np.ndarray, c: np.ndarray) -> np.ndarray:
    """:func:`_block_ranks` for a torch block on any device: sort every row, then a batched
    ``torch.searchsorted`` of each row's thresholds (padded to the row with most pairs)
    counts the smaller elements; exact tie counts as in the numpy path. Same integers."""
    dev = sub.device
    nr, n = sub.shape
    rt = torch.from_numpy(r).to(dev)
    ct = torch.from_numpy(c).to(dev)
    t = sub[rt, ct]
    rows_with_pairs = torch.unique_consecutive(rt)
    if bool(torch.isnan(sub[rows_with_pairs]).any()):
        raise ValueError("distmat contains NaN")
    S = torch.sort(sub, dim=1).values
    counts = np.bincount(r, minlength=nr)
    first = np.cumsum(counts) - counts
    pos = torch.from_numpy(np.arange(r.shape[0]) - first[r]).to(dev)
    V = torch.full((nr, int(counts.max())), float("inf"), dtype=sub.dtype, device=dev)
    V[rt, pos] = t
    left = torch.searchsorted(S, V, right=False)[rt, pos]
    n_eq = torch.searchsorted(S, V, right=True)[rt, pos] - left
    rank = left
    tied = torch.nonzero(n_eq > 1).flatten()
    step = max(1, DEFAULT_BLOCK_ELEMS // max(n, 1))
    cols = torch.arange(n, device=dev)
    for a in range(0, tied.shape[0], step):
        k = tied[a:a + step]
        eq = (sub[rt[k]] == t[k, None]) & (cols[None, :] < ct[k, None])
        rank[k] += eq.sum(1)
    return rank.cpu().numpy().astype(np.int64)


def _stable_ranks_torch(
    D: torch.Tensor,
    rows: np.ndarray | None,
    cols: np.ndarray | None,
    pr: np.ndarray,
    pc: np.ndarray,
    block_elems: int,
) -> np.ndarray:
    """:func:`_stable_ranks` for a torch distance matrix, on its device, block by block."""
    n_rows = D.shape[0] if rows is None else rows.shape[0]
    n_cols = D.shape[1] if cols is None else cols.shape[0]
    ranks = np.empty(pr.shape[0], dtype=np.int64)
    if pr.shape[0] == 0:
        return ranks
    rows_t = None if rows is None else torch.from_numpy(rows).to(D.device)
    cols_t = None if cols is None else torch.from_numpy(cols).to(D.device)
    step = max(1, block_elems // max(n_cols, 1))
    for a in range(0, n_rows, step):
        b = min(a + step, n_rows)
        p0, p1 = np.searchsorted(pr, [a, b])
        if p0 == p1:
            continue
        sub = D[a:b] if rows_t is None else D[rows_t[a:b]]
        if cols_t is not None:
            sub = sub[:, cols_t]
        ranks[p0:p1] = _block_ranks_torch(sub, pr[p0:p1] - a, pc[p0:p1])
    return ranks


def _ranked_same_pid(
    D: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    drop_query_camera: bool,
    num_threads: int,
    block_elems: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (query, gallery item with the query's pid) pair that is not dropped junk.

    Returns ``(q, g, rank)`` sorted by query then rank, where ``rank`` is the stable rank of
    the item among the gallery items that are not junk for *every* query of its group
    (pid −1, and under the cross-camera rule the query's camera).
    """
    keep = g_pids != -1
    groups: list[tuple[np.ndarray | None, np.ndarray]] = []
    if drop_query_camera:
        for cam in np.unique(q_camids):
            groups.append((np.flatnonzero(q_camids == cam), np.flatnonzero(keep & (g_camids != cam))))
    else:
        groups.append((None, np.flatnonzero(keep)))
    out_q, out_g, out_r = [], [], []
    for rows, cols in groups:
        qp = q_pids if rows is None else q_pids[rows]
        pr, pc = _same_label_pairs(qp, g_pids[cols])
        col_arg = None if cols.shape[0] == D.shape[1] else cols
        if isinstance(D, torch.Tensor):
            rank = _stable_ranks_torch(D, rows, col_arg, pr, pc, block_elems)
        else:
            rank = _stable_ranks(D, rows, col_arg, pr, pc, num_threads, block_elems)
        out_q.append(pr if rows is None else rows[pr])
        out_g.append(cols[pc])
        out_r.append(rank)
    q, g, r = (np.concatenate(x) for x in (out_q, out_g, out_r))
    order = np.lexsort((r, q))
    return q[order], g[order], r[order]


# --------------------------------------------------------------------------- metrics


def _positions(q: np.ndarray, rank: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Junk-free 0-based positions of the positive pairs.

    Pairs are sorted by (query, rank); every non-positive pair is junk for its query, so a
    positive's position is its rank minus the junk pairs ranked before it.
    """
    starts = np.searchsorted(q, q, side="left")
    junk = (~positive).astype(np.int64)
    cj = np.cumsum(junk)
    before_row = np.where(starts > 0, cj[np.maximum(starts - 1, 0)], 0)
    junk_before = cj - junk - before_row
    return q[positive], rank[positive] - junk_before[positive]


def _query_metrics(
    gq: np.ndarray, gpos: np.ndarray, num_query: int, trapezoid: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per query: (#goods, AP, INP, first-good position) from sorted (query, position) hits."""
    ngood = np.bincount(gq, minlength=num_query)
    first = np.cumsum(ngood) - ngood
    k = (np.arange(gq.shape[0]) - first[gq] + 1).astype(np.float64)  # hit index, 1-based
    p = gpos.astype(np.float64)
    if trapezoid:
        # (r_k − r_{k−1})·(p_{k−1} + p_k)/2 with r step 1/ngood; precision just before this
        # hit is (k−1)/p, or 1 at the top of the list (old_precision = 1.0 in compute_AP.m)
        prev = np.where(p > 0, (k - 1) / np.maximum(p, 1), 1.0)
        contrib = (prev + k / (p + 1)) / 2
    else:
        contrib = k / (p + 1)
    has = ngood > 0
    ap = np.zeros(num_query)
    ap[has] = np.bincount(gq, weights=contrib, minlength=num_query)[has] / ngood[has]
    first_pos = np.full(num_query, np.iinfo(np.int64).max, dtype=np.int64)
    is_first = k == 1
    first_pos[gq[is_first]] = gpos[is_first]
    inp = np.zeros(num_query)
    is_last = k == ngood[gq]
    inp[gq[is_last]] = ngood[gq[is_last]] / (gpos[is_last] + 1.0)
    return ngood, ap, inp, first_pos


def _cmc(first_pos: np.ndarray, max_rank: int) -> np.ndarray:
    """Fraction of queries whose first good is within rank r (r = 1..max_rank)."""
    if first_pos.shape[0] == 0:
        return np.zeros(max_rank)
    hist = np.bincount(np.minimum(first_pos, max_rank), minlength=max_rank + 1)[:max_rank]
    return np.cumsum(hist) / first_pos.shape[0]


def _per_camera(
    q: np.ndarray,
    g: np.ndarray,
    rank: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    q_gallery_index: np.ndarray | None,
    rule: _Rule,
    gallery_holds_queries: bool,
) -> dict[str, Any]:
    """Rank-1 and mAP per (query camera, gallery camera) cell, as the MARS code reports.

    Cell (a, b): queries from camera a searching for their identity in camera b only;
    positives are the query's pid in camera b (the query itself excluded), every other item
    of that pid is junk, like pid −1. A query counts in a cell only if it has a positive
    there. On the diagonal of the cross-camera rule nothing is searchable (NaN), and where
    the gallery holds the queries but ``q_gallery_index`` is not given the query itself
    cannot be told apart (NaN too).
    """
    cams = np.unique(np.concatenate([q_camids, g_camids]))
    C = cams.shape[0]
    nq = q_camids.shape[0]
    r1 = np.full((C, C), np.nan)
    mAP = np.full((C, C), np.nan)
    count = np.zeros((C, C), dtype=np.int64)
    qcam_idx = np.searchsorted(cams, q_camids)
    is_self = np.zeros(q.shape[0], dtype=bool)
    if q_gallery_index is not None:
        is_self = g == q_gallery_index[q]
    for bi, b in enumerate(cams):
        positive = (g_camids[g] == b) & ~is_self
        hq, hpos = _positions(q, rank, positive)
        ngood, ap, _, first_pos = _query_metrics(hq, hpos, nq, rule.trapezoid_ap)
        has = ngood > 0
        for ai in range(C):
            if ai == bi and (rule.drop_query_camera or (gallery_holds_queries and q_gallery_index is None)):
                continue
            sel = has & (qcam_idx == ai)
            count[ai, bi] = int(sel.sum())
            if count[ai, bi]:
                r1[ai, bi] = float((first_pos[sel] == 0).mean())
                mAP[ai, bi] = float(ap[sel].mean())
    off = ~np.eye(C, dtype=bool) & (count > 0)
    return {
        "cameras": cams.tolist(),
        "rank1": r1,
        "mAP": mAP,
        "num_queries": count,
        # the MARS code's summary: mean of the off-diagonal cells
        "cross_camera_rank1": float(r1[off].mean()) if off.any() else float("nan"),
        "cross_camera_mAP": float(mAP[off].mean()) if off.any() else float("nan"),
    }


def evaluate(
    distmat: np.ndarray | torch.Tensor,
    q_pids: Sequence[int] | np.ndarray | torch.Tensor,
    g_pids: Sequence[int] | np.ndarray | torch.Tensor,
    q_camids: Sequence[int] | np.ndarray | torch.Tensor,
    g_camids: Sequence[int] | np.ndarray | torch.Tensor,
    protocol: str = "market",
    max_rank: int = 50,
    per_camera: bool = False,
    q_gallery_index: Sequence[int] | np.ndarray | None = None,
    num_threads: int | None = None,
    block_elems: int = DEFAULT_BLOCK_ELEMS,
    backend: str = "auto",
) -> dict[str, Any]:
    """CMC, mAP and mINP of a ranking under a named protocol (see the module docstring).

    Args:
        distmat: ``(Nq, Ng)`` distances, smaller = more similar (numpy or torch).
        q_pids, g_pids: ``(Nq,)`` / ``(Ng,)`` identity labels (−1 = junk, 0 = distractor).
        q_camids, g_camids: ``(Nq,)`` / ``(Ng,)`` camera labels.
        protocol: one of ``PROTOCOLS``.
        max_rank: length of the returned CMC curve (ranks beyond the gallery repeat the
            last value, which is what the CMC means there).
        per_camera: also return the per-camera-pair rank-1 / mAP table (``"per_camera"``).
        q_gallery_index: ``(Nq,)`` index of each query inside the gallery, −1 if absent;
            only used by the per-camera table's same-camera cells.
        num_threads: threads for sorting row blocks (default ``torch.get_num_threads()``).
        block_elems: distance-matrix elements sorted at once per thread (bounds memory).
        backend: ``"numpy"`` (host), ``"torch"`` (ranks computed with torch on the tensor's
            device, block by block: a CUDA distance matrix never leaves the GPU) or
            ``"auto"``: torch for a tensor on a non-CPU device, numpy otherwise. Both give
            the same integers, hence identical metrics.

    Returns:
        dict with ``cmc`` ``(max_rank,)`` float64, ``mAP``, ``mINP`` (floats in [0, 1]),
        ``num_valid`` (queries counted), ``num_query``, ``num_gallery``, ``protocol``,
        ``ap`` ``(Nq,)`` per-query AP (NaN for skipped queries), and ``per_camera`` if asked.
    """
    if protocol not in _RULES:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    rule = _RULES[protocol]
    if backend not in ("auto", "numpy", "torch"):
        raise ValueError(f"backend must be 'auto', 'numpy' or 'torch', got {backend!r}")
    use_torch = backend == "torch" or (backend == "auto" and isinstance(distmat, torch.Tensor)
                                       and distmat.device.type != "cpu")
    if use_torch:
        D = torch.as_tensor(distmat).detach()
        if D.ndim != 2:
            raise ValueError(f"distmat must be a 2-D (Nq, Ng) matrix, got shape {tuple(D.shape)}")
        if D.dtype not in (torch.float32, torch.float64):
            D = D.double()
    else:
        D = _as_matrix(distmat)
    nq, ng = D.shape
    q_pids = _as_labels(q_pids, "q_pids", nq)
    q_camids = _as_labels(q_camids, "q_camids", nq)
    g_pids = _as_labels(g_pids, "g_pids", ng)
    g_camids = _as_labels(g_camids, "g_camids", ng)
    if (q_pids == -1).any():
        raise ValueError(
            f"{int((q_pids == -1).sum())} queries have pid -1 (junk); junk tracklets cannot be queries"
        )
    if nq == 0:
        raise ValueError("no queries: distmat has 0 rows")
    threads = num_threads if num_threads is not None else max(1, min(torch.get_num_threads(), os.cpu_count() or 1))

    q, g, rank = _ranked_same_pid(
        D, q_pids, g_pids, q_camids, g_camids, rule.drop_query_camera, threads, block_elems
    )
    good = q_camids[q] != g_camids[g]
    gq, gpos = _positions(q, rank, good)
    ngood, ap, inp, first_pos = _query_metrics(gq, gpos, nq, rule.trapezoid_ap)
    has = ngood > 0
    n_missing = int((~has).sum())
    valid = np.ones(nq, dtype=bool) if rule.count_all else has
    num_valid = int(valid.sum())
    if n_missing:
        what = "count with AP 0" if rule.count_all else "are skipped"
        log.warning("%s protocol: %d of %d queries have no true match in the gallery and %s",
                    protocol, n_missing, nq, what)
    if num_valid == 0:
        raise ValueError(f"{protocol} protocol: no query has a true match in the gallery")
    ap_out = np.where(valid, ap, np.nan)
    result: dict[str, Any] = {
        "protocol": protocol,
        "cmc": _cmc(first_pos[valid], max_rank),
        "mAP": float(ap[valid].mean()),
        "mINP": float(inp[valid].mean()),
        "num_valid": num_valid,
        "num_query": nq,
        "num_gallery": ng,
        "ap": ap_out,
    }
    if per_camera:
        qgi = None
        if q_gallery_index is not None:
            qgi = _as_labels(q_gallery_index, "q_gallery_index", nq)
        result["per_camera"] = _per_camera(
            q, g, rank, q_camids, g_camids, qgi, rule,
            gallery_holds_queries=protocol in ("official", "query_in_gallery"),
        )
    return result
