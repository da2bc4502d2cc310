"""Attention pictures from ``ReIDOutput.attention`` alone: by name and shape, for any model.

Every model returns its maps in ``ReIDOutput.attention`` (see ``docs/architecture.md``,
"Model output contract"). This module draws them for one tracklet of a batch without
knowing which model made them, so a new model that returns named maps gets pictures with
no new drawing code. The kind of each map follows from its shape (batch dimension first,
``T`` = frames of the clip):

====================  ==========================  ===========================================
shape                 kind                        drawn as
====================  ==========================  ===========================================
``(B, T, K, h, w)``   spatial, K maps per frame   K rows: each frame with map k upsampled and
                                                  blended over it (e.g. STAN's K parts,
                                                  CMMANet's MAM heads, AlignNet's 3 parts)
``(B, T, h, w)``      spatial, one map per frame  one row (e.g. RGSA's channel-mean weights)
``(B, T)``            temporal, one weight/frame  bars under the frames (TA, TAP, MAN)
``(B, T, K)``         temporal, K weights/frame   K coloured bars per frame (STAN per part)
``(B, T, T)`` with    frame-to-frame relation     a T × T matrix (RGTR's relation vectors)
"relation" in name
====================  ==========================  ===========================================

Anything else (another rank, or a time axis that is not the clip's) is listed under the
picture as "not drawn" with its shape, never dropped silently.

Display choices (recorded here because they change what a reader sees):

- A spatial row is scaled to [0, 1] by its own minimum and maximum over all frames of the
  tracklet, so frames are comparable within a row and the row's label prints that range in
  the map's own units (a softmax map peaking at 0.2 and a sigmoid gate near 0.9 look
  equally bright; read the range for the absolute level).
- Upsampling is bilinear with pixel centres aligned (``cv2.resize``), colours are the
  ``jet`` map blended at 50 % over the frame.
- A map with more than ``max_rows`` channels (RGSA's per-channel weights: C up to 2048)
  shows the ``max_rows`` channels whose maps vary most over space (mean over frames of the
  spatial standard deviation), labelled with their channel index, and says so.
- Temporal bars share one scale per map (0 to the map's maximum, printed).
- Extra streams (e.g. the optical flow a two-stream model consumes) are drawn as a row of
  their own and every spatial map is blended over them too, so MAN's mutual attention is
  seen on both of the streams it gates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from videoreid.viz.canvas import hstack, label_bar, save_image, vstack

__all__ = [
    "MapView",
    "classify_attention",
    "flow_picture",
    "render_attention",
    "draw_attention",
    "map_names",
]

# distinct colours for the K bars of a temporal map (tab10)
PALETTE = np.array([
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
], dtype=np.uint8)
LABEL_WIDTH = 190


@dataclass(frozen=True)
class MapView:
    """One named map of one tracklet, ready to draw.

    Attributes:
        name: the key in ``ReIDOutput.attention``.
        kind: ``"spatial"``, ``"temporal"`` or ``"relation"``.
        values: spatial ``(T, K, h, w)``, temporal ``(T, K)``, relation ``(T, T)``; float64.
        channels: original channel index of each of the K rows kept.
        total_channels: K of the map before any selection.
    """

    name: str
    kind: str
    values: np.ndarray
    channels: tuple[int, ...]
    total_channels: int


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def classify_attention(
    attention: Mapping[str, Any],
    index: int = 0,
    num_frames: int | None = None,
    max_rows: int = 8,
) -> tuple[list[MapView], list[str]]:
    """Sort the maps of tracklet ``index`` of a batch by kind (see the module table).

    Args:
        attention: ``ReIDOutput.attention``: name → tensor/array with the batch dim first.
        index: which item of the batch.
        num_frames: T of the clip; maps whose second dimension differs are not drawn.
        max_rows: most spatial rows per map (larger K: the most selective channels).

    Returns:
        ``(views, skipped)``: drawable maps in name order, and one ``"name (shape): why"``
        line per map that cannot be drawn.
    """
    views: list[MapView] = []
    skipped: list[str] = []
    for name in sorted(attention):
        a = _numpy(attention[name])
        shape = tuple(a.shape)
        if a.ndim < 2 or a.ndim > 5:
            skipped.append(f"{name} {shape}: rank {a.ndim} is neither (B, T[, K]) nor "
                           "(B, T[, K], h, w)")
            continue
        if not 0 <= index < a.shape[0]:
            skipped.append(f"{name} {shape}: batch has no item {index}")
            continue
        if num_frames is not None and a.shape[1] != num_frames:
            skipped.append(f"{name} {shape}: dimension 1 is not the clip's {num_frames} frames")
            continue
        x = a[index]
        if a.ndim == 5:
            kind = "spatial"
        elif a.ndim == 4:
            kind, x = "spatial", x[:, None]
        elif a.ndim == 3 and "relation" in name and x.shape[0] == x.shape[1]:
            views.append(MapView(name, "relation", x, tuple(range(x.shape[1])), x.shape[1]))
            continue
        elif a.ndim == 3:
            kind = "temporal"
        else:
            kind, x = "temporal", x[:, None]
        total = x.shape[1]
        keep = np.arange(total)
        if kind == "spatial" and total > max_rows:
            spread = x.reshape(x.shape[0], total, -1).std(axis=2).mean(axis=0)  # (K,)
            keep = np.sort(np.argsort(-spread, kind="stable")[:max_rows])
            x = x[:, keep]
        views.append(MapView(name, kind, x, tuple(int(k) for k in keep), total))
    return views, skipped


def flow_picture(flow: np.ndarray) -> np.ndarray:
    """``(2, H, W)`` displacement field → ``(H, W, 3)`` uint8, hue = direction, value =
    magnitude (scaled by the field's 99th-percentile magnitude)."""
    import cv2

    flow = np.asarray(flow, dtype=np.float32)
    if flow.ndim != 3 or flow.shape[0] != 2:
        raise ValueError(f"flow must be (2, H, W), got {flow.shape}")
    mag, ang = cv2.cartToPolar(flow[0], flow[1])
    scale = float(np.percentile(mag, 99)) or 1.0
    hsv = np.zeros((*mag.shape, 3), np.uint8)
    hsv[..., 0] = (ang * (90.0 / np.pi)).astype(np.uint8)  # OpenCV hue is 0..179
    hsv[..., 1] = 255
    hsv[..., 2] = np.clip(mag / scale * 255.0, 0, 255).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def _resize(img: np.ndarray, height: int, width: int) -> np.ndarray:
    import cv2

    interp = cv2.INTER_AREA if img.shape[0] > height else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(img), (width, height), interpolation=interp)


def _overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``heat`` (h, w) in [0, 1], upsampled over ``image`` (H, W, 3)."""
    import cv2

    up = cv2.resize(heat.astype(np.float32), (image.shape[1], image.shape[0]),
                    interpolation=cv2.INTER_LINEAR)
    colour = cv2.applyColorMap(np.clip(up * 255.0, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    colour = cv2.cvtColor(colour, cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(image, 1.0 - alpha, colour, alpha, 0.0)


def _row(label: Sequence[str], tiles: Sequence[np.ndarray], font_size: int) -> np.ndarray:
    body = hstack(list(tiles), gap=2)
    head = label_bar(list(label), LABEL_WIDTH, font_size, bold_first=True)
    return hstack([head, body], gap=4)


def _fmt(v: float) -> str:
    return "0" if abs(v) < 5e-4 else f"{v:.3g}"  # 1e-19 of a softmax is zero to a reader


def _spatial_rows(view: MapView, streams: Mapping[str, np.ndarray],
                  font_size: int) -> list[np.ndarray]:
    rows = []
    x = view.values  # (T, K, h, w)
    for j, k in enumerate(view.channels):
        m = x[:, j]
        lo, hi = float(m.min()), float(m.max())
        heat = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
        which = f"k = {k} (of {view.total_channels})" if view.total_channels > 1 else ""
        for sname, pics in streams.items():
            label = [view.name, *([which] if which else []), f"range {_fmt(lo)}–{_fmt(hi)}"]
            if len(streams) > 1:
                label.append(f"over {sname}")
            rows.append(_row(label, [_overlay(p, h) for p, h in zip(pics, heat, strict=True)],
                             font_size))
    if view.total_channels > len(view.channels):
        rows.append(label_bar(f"{view.name}: {len(view.channels)} of {view.total_channels} "
                              "channels shown (largest spatial spread)", LABEL_WIDTH * 3,
                              font_size - 2))
    return rows


def _temporal_row(view: MapView, tile_w: int, font_size: int, height: int = 70) -> np.ndarray:
    x = view.values  # (T, K)
    t, k = x.shape
    top = float(x.max()) if x.size and float(x.max()) > 0 else 1.0
    tiles = []
    bar_w = max(2, (tile_w - 8) // max(1, k))
    for ti in range(t):
        tile = np.full((height, tile_w, 3), 255, np.uint8)
        tile[-1] = 150  # baseline
        for kj in range(k):
            hgt = int(round(np.clip(x[ti, kj] / top, 0.0, 1.0) * (height - 18)))
            x0 = 4 + kj * bar_w
            if hgt:
                tile[height - 1 - hgt:height - 1, x0:x0 + max(1, bar_w - 1)] = PALETTE[kj % 10]
        if k == 1:
            cap = label_bar(_fmt(float(x[ti, 0])), tile_w, font_size - 3, align="center")[:16]
            tile[:cap.shape[0]] = cap
        tiles.append(tile)
    label = [view.name, f"{k} weight{'s' if k > 1 else ''}/frame" if k > 1 else "weight/frame",
             f"bars 0–{_fmt(top)}"]
    return _row(label, tiles, font_size)


def _relation_panel(view: MapView, font_size: int, cell: int = 26) -> np.ndarray:
    import cv2

    x = view.values
    lo, hi = float(x.min()), float(x.max())
    heat = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    img = cv2.applyColorMap(np.clip(heat * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    img = cv2.resize(img, (cell * x.shape[1], cell * x.shape[0]), interpolation=cv2.INTER_NEAREST)
    label = [view.name, f"frame t (row) × frame s (column), {x.shape[0]}×{x.shape[1]}",
             f"range {_fmt(lo)}–{_fmt(hi)}"]
    return _row(label, [img], font_size)


def render_attention(
    frames: Sequence[np.ndarray] | np.ndarray,
    attention: Mapping[str, Any],
    *,
    index: int = 0,
    streams: Mapping[str, Sequence[np.ndarray]] | None = None,
    title: str | Sequence[str] = "",
    frame_height: int = 128,
    frame_width: int = 64,
    max_rows: int = 8,
    font_size: int = 14,
) -> np.ndarray:
    """Every named map of one tracklet over its frames, as an ``(H, W, 3)`` uint8 picture.

    Args:
        frames: the clip's ``T`` frames, each ``(h, w, 3)`` uint8 (the frames the model saw).
        attention: ``ReIDOutput.attention`` of the batch holding the clip.
        index: the clip's position in that batch.
        streams: other per-frame pictures of the clip to draw and blend over (name → ``T``
            ``(h, w, 3)`` uint8 images), e.g. ``{"flow": [flow_picture(f) for f in flow]}``.
        title: line(s) above the picture.
        frame_height, frame_width: tile size.
        max_rows: most rows per spatial map (see the module docstring).
        font_size: label size in pixels.

    Returns:
        the picture: a row of frames, a row per extra stream, then per map its rows.
    """
    pics = [_resize(np.asarray(f, dtype=np.uint8), frame_height, frame_width) for f in frames]
    t = len(pics)
    if t == 0:
        raise ValueError("render_attention needs at least one frame")
    all_streams: dict[str, list[np.ndarray]] = {"frames": pics}
    for name, imgs in (streams or {}).items():
        if len(imgs) != t:
            raise ValueError(f"stream {name!r} has {len(imgs)} pictures for {t} frames")
        all_streams[name] = [_resize(np.asarray(p, dtype=np.uint8), frame_height, frame_width)
                             for p in imgs]
    views, skipped = classify_attention(attention, index, t, max_rows)
    rows = [_row([name, f"{t} frames"], imgs, font_size) for name, imgs in all_streams.items()]
    for v in views:
        if v.kind == "spatial":
            rows.extend(_spatial_rows(v, all_streams, font_size))
    for v in views:
        if v.kind == "temporal":
            rows.append(_temporal_row(v, frame_width, font_size))
        elif v.kind == "relation":
            rows.append(_relation_panel(v, font_size))
    if not views:
        rows.append(label_bar("this model returns no attention maps", LABEL_WIDTH * 2, font_size))
    body = vstack(rows, gap=4)
    notes = [f"not drawn: {s}" for s in skipped]
    if notes:
        body = vstack([body, label_bar(notes, body.shape[1], font_size - 2, color=(160, 30, 30))])
    if title:
        lines = [title] if isinstance(title, str) else list(title)
        body = vstack([label_bar(lines, body.shape[1], font_size + 2, bold_first=True), body])
    return body


def draw_attention(
    frames: Sequence[np.ndarray] | np.ndarray,
    attention: Mapping[str, Any],
    out_path: str | Path,
    **kwargs: Any,
) -> Path:
    """:func:`render_attention` saved atomically to ``out_path`` (``.png`` palette PNG or
    ``.jpg``); keyword arguments as for :func:`render_attention`."""
    return save_image(render_attention(frames, attention, **kwargs), out_path)


def map_names(attention: Mapping[str, Any], num_frames: int | None = None) -> list[str]:
    """Names of the maps :func:`render_attention` draws (for checks and captions)."""
    views, _ = classify_attention(attention, 0, num_frames)
    return [v.name for v in views]
