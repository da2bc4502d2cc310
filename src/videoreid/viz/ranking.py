"""Ranked retrieval results: a query tracklet beside its top-k gallery tracklets.

Each tracklet is drawn as a strip of a few evenly spaced frames; gallery tracklets get a
green border when they show the query's identity and red otherwise. The gallery is
filtered like every protocol of ``videoreid.evaluation.rank`` does for a query: junk
tracklets (pid -1) and tracklets of the query's identity seen by the query's camera are not
ranked (the latter would be trivial matches).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from videoreid.data.tracklet import Tracklet
from videoreid.utils.io import atomic_path

__all__ = ["rank_for_query", "tracklet_strip", "plot_ranked_results"]

GREEN = np.array([40, 170, 60], dtype=np.uint8)
RED = np.array([210, 40, 40], dtype=np.uint8)
GRAY = np.array([90, 90, 90], dtype=np.uint8)


def rank_for_query(
    dist_row: np.ndarray,
    q_pid: int,
    q_camid: int,
    g_pids: np.ndarray,
    g_camids: np.ndarray,
    topk: int = 5,
) -> np.ndarray:
    """Indices of the ``topk`` nearest valid gallery items (stable for ties).

    Args:
        dist_row: ``(Ng,)`` distances from the query to the gallery.
        q_pid, q_camid: the query's labels.
        g_pids, g_camids: ``(Ng,)`` gallery labels.
    """
    g_pids, g_camids = np.asarray(g_pids), np.asarray(g_camids)
    valid = (g_pids != -1) & ~((g_pids == q_pid) & (g_camids == q_camid))
    order = np.argsort(np.asarray(dist_row), kind="stable")
    return order[valid[order]][:topk]


def tracklet_strip(
    tracklet: Tracklet, num_frames: int = 4, height: int = 128, width: int = 64,
    border: int = 0, color: np.ndarray = GRAY,
) -> np.ndarray:
    """``(H, n·W, 3)`` uint8: ``num_frames`` evenly spaced frames side by side, with a border."""
    import cv2

    from videoreid.data.decode import decode_image

    n = len(tracklet.frames)
    idx = np.unique(np.linspace(0, n - 1, num=min(num_frames, n)).round().astype(int))
    tiles = [cv2.resize(decode_image(tracklet.frames[i]), (width, height),
                        interpolation=cv2.INTER_AREA) for i in idx]
    strip = np.concatenate(tiles, axis=1)
    if border:
        strip = np.pad(strip, ((border, border), (border, border), (0, 0)))
        strip[:border], strip[-border:] = color, color
        strip[:, :border], strip[:, -border:] = color, color
    return strip


def plot_ranked_results(
    queries: Sequence[Tracklet],
    rankings: Sequence[Sequence[tuple[Tracklet, float]]],
    path: str | Path,
    *,
    num_frames: int = 4,
    title: str = "",
) -> Path:
    """Draw each query (one row) beside its ranked gallery tracklets; save a PNG atomically.

    Args:
        queries: query tracklets.
        rankings: per query, the ranked ``(gallery tracklet, distance)`` pairs to show.
        path: output PNG.
        num_frames: frames shown per tracklet.
        title: figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if len(queries) != len(rankings):
        raise ValueError(f"{len(queries)} queries but {len(rankings)} rankings")
    cols = 1 + max((len(r) for r in rankings), default=0)
    rows = max(1, len(queries))
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols * num_frames / 2, 2.3 * rows),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for r, (q, ranked) in enumerate(zip(queries, rankings, strict=True)):
        axes[r, 0].imshow(tracklet_strip(q, num_frames, border=4, color=GRAY))
        axes[r, 0].set_title(f"query id {_pid(q)} cam {q.camid + 1}", fontsize=8)
        for c, (g, d) in enumerate(ranked, start=1):
            ok = g.pid == q.pid
            axes[r, c].imshow(tracklet_strip(g, num_frames, border=4, color=GREEN if ok else RED))
            axes[r, c].set_title(f"#{c} id {_pid(g)} cam {g.camid + 1}\nd={d:.3g}", fontsize=7,
                                 color="green" if ok else "red")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return path


def _pid(t: Tracklet) -> int:
    return int(t.meta.get("orig_pid", t.pid))
