"""Ranked retrieval results: a query tracklet beside its nearest gallery tracklets.

Each tracklet is drawn as a strip of a few evenly spaced frames under a caption in a large
font (rank, identity, camera, distance); gallery tracklets are framed green when they show
the query's identity, red when they do not, and gray when that is unknown (search results
on unlabelled video). The query's caption carries its AP and the rank of its first true
match when the caller knows them. Pictures are composed as arrays (see
:mod:`videoreid.viz.canvas`) and saved as palette PNG or JPEG, a few tens of kB each.

Public entry points:

- :func:`render_ranked_list` / :func:`draw_ranked_list`: one query from plain frames and
  labels (no dataset, no model: also used for search results);
- :func:`rank_for_query`, :func:`first_match_rank`: the protocol's ranking of one query;
- :func:`plot_ranked_results`: several queries of a split, one row each.

The gallery is filtered like the protocols of :mod:`videoreid.evaluation.rank` filter it
for a query: junk tracklets (pid −1) and tracklets of the query's identity seen by the
query's camera are not ranked (the latter would be trivial matches); with
``exclude_same_camera`` (the ``cross_camera`` protocol) nothing from the query's camera is.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from videoreid.data.tracklet import Tracklet
from videoreid.viz.canvas import add_border, hstack, label_bar, save_image, vstack
from videoreid.viz.naming import camera_label, pid_label

__all__ = [
    "rank_for_query",
    "first_match_rank",
    "tracklet_frames",
    "tracklet_strip",
    "render_ranked_list",
    "draw_ranked_list",
    "plot_ranked_results",
]

GREEN = (40, 160, 60)
RED = (205, 40, 40)
GRAY = (120, 120, 120)
BLUE = (40, 90, 200)
BORDER = 5


def _valid_order(dist_row: np.ndarray, q_pid: int, q_camid: int, g_pids: np.ndarray,
                 g_camids: np.ndarray, exclude_same_camera: bool) -> np.ndarray:
    g_pids, g_camids = np.asarray(g_pids), np.asarray(g_camids)
    if exclude_same_camera:
        valid = (g_pids != -1) & (g_camids != q_camid)
    else:
        valid = (g_pids != -1) & ~((g_pids == q_pid) & (g_camids == q_camid))
    order = np.argsort(np.asarray(dist_row), kind="stable")  # ties in gallery order
    return order[valid[order]]


def rank_for_query(
    dist_row: np.ndarray,
    q_pid: int,
    q_camid: int,
    g_pids: np.ndarray,
    g_camids: np.ndarray,
    topk: int = 5,
    *,
    exclude_same_camera: bool = False,
) -> np.ndarray:
    """Indices of the ``topk`` nearest ranked gallery items (ties in gallery order).

    Args:
        dist_row: ``(Ng,)`` distances from the query to the gallery.
        q_pid, q_camid: the query's labels.
        g_pids, g_camids: ``(Ng,)`` gallery labels.
        topk: how many.
        exclude_same_camera: drop everything seen by the query's camera (``cross_camera``).
    """
    return _valid_order(dist_row, q_pid, q_camid, g_pids, g_camids, exclude_same_camera)[:topk]


def first_match_rank(
    dist_row: np.ndarray,
    q_pid: int,
    q_camid: int,
    g_pids: np.ndarray,
    g_camids: np.ndarray,
    *,
    exclude_same_camera: bool = False,
) -> int | None:
    """1-based rank of the first true match in the protocol's ranking; ``None`` if none.

    Equals ``1 + first_pos`` of :mod:`videoreid.evaluation.rank` (the CMC at rank k is the
    fraction of counted queries whose first match rank is ≤ k).
    """
    order = _valid_order(dist_row, q_pid, q_camid, g_pids, g_camids, exclude_same_camera)
    hits = np.flatnonzero(np.asarray(g_pids)[order] == q_pid)
    return int(hits[0]) + 1 if hits.size else None


def tracklet_frames(tracklet: Tracklet, num_frames: int = 4) -> list[np.ndarray]:
    """``num_frames`` evenly spaced decoded frames ``(H, W, 3)`` uint8 (fewer if shorter)."""
    from videoreid.data.decode import decode_image

    n = len(tracklet.frames)
    idx = np.unique(np.linspace(0, n - 1, num=min(num_frames, n)).round().astype(int))
    return [decode_image(tracklet.frames[int(i)]) for i in idx]


def _strip(frames: Sequence[np.ndarray], height: int, width: int) -> np.ndarray:
    import cv2

    if not frames:
        raise ValueError("a tracklet strip needs at least one frame")
    tiles = []
    for f in frames:
        f = np.asarray(f)
        if f.ndim != 3 or f.shape[2] != 3:
            raise ValueError(f"frames must be (H, W, 3) uint8 images, got shape {f.shape}")
        interp = cv2.INTER_AREA if f.shape[0] > height else cv2.INTER_LINEAR
        tiles.append(cv2.resize(f.astype(np.uint8, copy=False), (width, height),
                                interpolation=interp))
    return np.concatenate(tiles, axis=1)


def tracklet_strip(
    tracklet: Tracklet, num_frames: int = 4, height: int = 128, width: int = 64,
    border: int = 0, color: Sequence[int] = GRAY,
) -> np.ndarray:
    """``(H, n·W, 3)`` uint8: ``num_frames`` evenly spaced frames side by side, with a border."""
    strip = _strip(tracklet_frames(tracklet, num_frames), height, width)
    return add_border(strip, border, color) if border else strip


def _lines(label: str | Sequence[str]) -> list[str]:
    return label.split("\n") if isinstance(label, str) else [str(x) for x in label]


def _captioned(frames: Sequence[np.ndarray], lines: list[str], color: Sequence[int],
               height: int, width: int, font_size: int, text_color: Sequence[int]) -> np.ndarray:
    strip = add_border(_strip(frames, height, width), BORDER, color)
    caption = label_bar(lines, strip.shape[1], font_size, color=tuple(text_color),
                        bold_first=True)
    return vstack([caption, strip])


def render_ranked_list(
    query_frames: Sequence[np.ndarray],
    gallery_frames_list: Sequence[Sequence[np.ndarray]],
    matches: Sequence[bool | None],
    labels: Sequence[str | Sequence[str]],
    *,
    query_label: str | Sequence[str] = "query",
    title: str = "",
    frame_height: int = 128,
    frame_width: int = 64,
    font_size: int = 16,
    per_row: int = 6,
) -> np.ndarray:
    """One query and its ranked results as an ``(H, W, 3)`` uint8 picture.

    Args:
        query_frames: the query's frames, each ``(h, w, 3)`` uint8 (resized to
            ``frame_height × frame_width``).
        gallery_frames_list: per ranked result (best first), its frames.
        matches: per result, ``True`` (same identity: green), ``False`` (red) or ``None``
            (unknown: gray).
        labels: per result, its caption (a string with newlines, or a list of lines); the
            first line is bold.
        query_label: the query's caption.
        title: a line above everything (empty: none).
        frame_height, frame_width: size of each frame tile.
        font_size: caption size in pixels.
        per_row: results per row before wrapping.

    Raises:
        ValueError: the three per-result lists differ in length, or a frame is not RGB.
    """
    if not len(gallery_frames_list) == len(matches) == len(labels):
        raise ValueError(f"{len(gallery_frames_list)} gallery tracklets, {len(matches)} match "
                         f"flags and {len(labels)} labels: one of each per result")
    query = _captioned(query_frames, _lines(query_label), BLUE, frame_height, frame_width,
                       font_size, BLUE)
    tiles = []
    for frames, ok, label in zip(gallery_frames_list, matches, labels, strict=True):
        color = GRAY if ok is None else GREEN if ok else RED
        tiles.append(_captioned(frames, _lines(label), color, frame_height, frame_width,
                                font_size, (20, 20, 20) if ok is None else color))
    rows = [hstack(tiles[i:i + per_row], gap=8) for i in range(0, len(tiles), max(1, per_row))]
    right = vstack(rows, gap=8) if rows else np.full((1, 1, 3), 255, np.uint8)
    body = hstack([query, np.full((query.shape[0], 3, 3), 200, np.uint8), right], gap=10)
    parts = [label_bar(title, body.shape[1], font_size + 2, bold_first=True)] if title else []
    return vstack([*parts, body], gap=4)


def draw_ranked_list(
    query_frames: Sequence[np.ndarray],
    gallery_frames_list: Sequence[Sequence[np.ndarray]],
    matches: Sequence[bool | None],
    labels: Sequence[str | Sequence[str]],
    out_path: str | Path,
    **kwargs,
) -> Path:
    """:func:`render_ranked_list` saved atomically to ``out_path`` (``.png``: palette PNG,
    ``.jpg``: JPEG); keyword arguments as for :func:`render_ranked_list`."""
    return save_image(render_ranked_list(query_frames, gallery_frames_list, matches, labels,
                                         **kwargs), out_path)


def plot_ranked_results(
    queries: Sequence[Tracklet],
    rankings: Sequence[Sequence[tuple[Tracklet, float]]],
    path: str | Path,
    *,
    num_frames: int = 4,
    title: str = "",
    dataset: str = "",
) -> Path:
    """Draw each query (one row) beside its ranked gallery tracklets; save a PNG atomically.

    Args:
        queries: query tracklets.
        rankings: per query, the ranked ``(gallery tracklet, distance)`` pairs to show.
        path: output PNG.
        num_frames: frames shown per tracklet.
        title: figure title.
        dataset: dataset name, for camera numbers as its files write them
            (:func:`videoreid.viz.naming.camera_label`).
    """
    if len(queries) != len(rankings):
        raise ValueError(f"{len(queries)} queries but {len(rankings)} rankings")
    rows = []
    for q, ranked in zip(queries, rankings, strict=True):
        rows.append(render_ranked_list(
            tracklet_frames(q, num_frames),
            [tracklet_frames(g, num_frames) for g, _ in ranked],
            [g.pid == q.pid for g, _ in ranked],
            [[f"#{r} id {pid_label(g)} cam {camera_label(dataset, g.camid)}", f"d = {d:.3g}"]
             for r, (g, d) in enumerate(ranked, start=1)],
            query_label=[f"query id {pid_label(q)}", f"cam {camera_label(dataset, q.camid)}"],
        ))
    img = vstack(rows, gap=14)
    if title:
        img = vstack([label_bar(title, img.shape[1], 18, bold_first=True), img], gap=4)
    return save_image(img, path)
