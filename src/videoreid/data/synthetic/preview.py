"""A contact sheet of a generated dataset: a few identities (rows) across cameras (columns)."""

from __future__ import annotations

import os

import cv2
import numpy as np

from videoreid.data.synthetic.identity import Identity
from videoreid.utils.io import atomic_write_bytes


def choose_rows(samples: dict[tuple[int, int], np.ndarray], identities: list[Identity],
                rows: int = 6) -> list[int]:
    """Identities to show: a look-alike pair first (if any), then those seen by most cameras."""
    seen: dict[int, int] = {}
    for ident, _ in samples:
        seen[ident] = seen.get(ident, 0) + 1
    chosen: list[int] = []
    for ident in sorted(seen):
        base = identities[ident].lookalike_of
        if base is not None and base in seen and seen[base] > 1 and seen[ident] > 1:
            chosen = [base, ident]
            break
    for ident in sorted(seen, key=lambda i: (-seen[i], i)):
        if len(chosen) >= rows:
            break
        if ident not in chosen:
            chosen.append(ident)
    return chosen


def preview_grid(samples: dict[tuple[int, int], np.ndarray], identities: list[Identity],
                 labels: dict[int, str], cameras: int, height: int, width: int,
                 rows: int = 6) -> np.ndarray:
    """Tile one frame per (identity, camera) into a grid.

    Args:
        samples: ``(identity, camid) → (H, W, 3)`` BGR frame.
        identities: all identities (for look-alike links).
        labels: row label per identity (e.g. its pid).
        cameras: number of cameras (columns).
        height, width: frame size.
        rows: maximum number of identities shown.

    Returns:
        ``(header + rows * (H + gap), label + cameras * (W + gap), 3)`` uint8 BGR image;
        cameras where the identity was not seen are left grey.
    """
    chosen = choose_rows(samples, identities, rows)
    gap, head, left = 2, 14, 44
    grid = np.full((head + len(chosen) * (height + gap), left + cameras * (width + gap), 3), 235,
                   dtype=np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for c in range(cameras):
        cv2.putText(grid, f"cam{c + 1}", (left + c * (width + gap) + 2, head - 3), font, 0.35,
                    (0, 0, 0), 1, cv2.LINE_AA)
    for r, ident in enumerate(chosen):
        y = head + r * (height + gap)
        text = labels.get(ident, str(ident))
        if identities[ident].lookalike_of is not None:
            text += "*"
        cv2.putText(grid, text, (2, y + height // 2), font, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
        for c in range(cameras):
            x = left + c * (width + gap)
            frame = samples.get((ident, c))
            grid[y:y + height, x:x + width] = frame if frame is not None else 180
    return grid


def write_png(path: str | os.PathLike[str], image: np.ndarray) -> None:
    """Write a BGR image as PNG atomically."""
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError(f"could not encode the preview image for {path}")
    atomic_write_bytes(path, buf.tobytes())
